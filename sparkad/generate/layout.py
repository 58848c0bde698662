"""The CMS 2012 Open Data NanoAOD-like layout (AOD2NanoAODOutreachTool) and the ROOT writer.

`CMS2012_EVENT`, `CMS2012_COLLECTIONS` and `MET_BRANCHES` give the exact branch names and types of the
real files (see ../shared/spec/HLF.md); `EXTRA_*` are the project's additions (PF summaries, isolation
components, optional PFCands, Truth_*, genWeight), dropped by the exact-layout switch.

Jagged collections are written through uproot's jagged-array writing (`mktree`/`extend` with awkward
records), which creates the counters nMuon, nJet, ... ; they are written as uint32 (UInt_t, as in the
real files) by temporarily widening uproot's counter type while the tree is declared.
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from sparkad.core.root_zlib import use_isal

F4, I4, U4, U8, B = np.float32, np.int32, np.uint32, np.uint64, np.bool_

CMS2012_EVENT = [
    ("run", I4), ("luminosityBlock", U4), ("event", U8),
    ("HLT_IsoMu24_eta2p1", B), ("HLT_IsoMu24", B), ("HLT_IsoMu17_eta2p1_LooseIsoPFTau20", B),
    ("PV_npvs", I4), ("PV_x", F4), ("PV_y", F4), ("PV_z", F4),
]
CMS2012_COLLECTIONS = {
    "Muon": [("pt", F4), ("eta", F4), ("phi", F4), ("mass", F4), ("charge", I4),
             ("pfRelIso03_all", F4), ("pfRelIso04_all", F4), ("tightId", B), ("softId", B),
             ("dxy", F4), ("dxyErr", F4), ("dz", F4), ("dzErr", F4), ("jetIdx", I4), ("genPartIdx", I4)],
    "Electron": [("pt", F4), ("eta", F4), ("phi", F4), ("mass", F4), ("charge", I4),
                 ("pfRelIso03_all", F4), ("dxy", F4), ("dxyErr", F4), ("dz", F4), ("dzErr", F4),
                 ("cutBasedId", B), ("pfId", B), ("jetIdx", I4), ("genPartIdx", I4)],
    "Tau": [("pt", F4), ("eta", F4), ("phi", F4), ("mass", F4), ("charge", I4), ("decayMode", I4),
            ("relIso_all", F4), ("jetIdx", I4), ("genPartIdx", I4), ("idDecayMode", B), ("idIsoRaw", F4),
            ("idIsoVLoose", B), ("idIsoLoose", B), ("idIsoMedium", B), ("idIsoTight", B),
            ("idAntiEleLoose", B), ("idAntiEleMedium", B), ("idAntiEleTight", B),
            ("idAntiMuLoose", B), ("idAntiMuMedium", B), ("idAntiMuTight", B)],
    "Photon": [("pt", F4), ("eta", F4), ("phi", F4), ("mass", F4), ("charge", I4),
               ("pfRelIso03_all", F4), ("jetIdx", I4), ("genPartIdx", I4)],
}
MET_BRANCHES = [("MET_pt", F4), ("MET_phi", F4), ("MET_sumet", F4), ("MET_significance", F4),
                ("MET_CovXX", F4), ("MET_CovXY", F4), ("MET_CovYY", F4)]
JET = [("pt", F4), ("eta", F4), ("phi", F4), ("mass", F4), ("puId", B), ("btag", F4)]
GENPART = [("pt", F4), ("eta", F4), ("phi", F4), ("mass", F4), ("pdgId", I4), ("status", I4)]

# ---- the project's additions (absent from real 2012 files) --------------------------------------
EXTRA_LEPTON_FIELDS = [("pfRelIso03_chg", F4), ("pfRelIso03_neu", F4), ("pfRelIso03_pho", F4)]
EXTRA_EVENT = [("PF_nChargedHadron", I4), ("PF_nNeutralHadron", I4), ("PF_nPhoton", I4)]
PFCANDS = [("pt", F4), ("eta", F4), ("phi", F4), ("mass", F4), ("charge", I4), ("pdgId", I4)]
TRUTH = [("Truth_process", I4), ("Truth_isSignal", B), ("Truth_fault", I4)]
GEN_WEIGHT = ("genWeight", F4)
COUNTER_DTYPE = np.uint32


def layout(is_mc: bool, exact: bool = False, pfcands: bool = False) -> dict:
    """Ordered {branch name: numpy dtype} of the Events tree, counters included."""
    out = {name: np.dtype(t) for name, t in CMS2012_EVENT}

    def coll(name, fields):
        out["n" + name] = np.dtype(COUNTER_DTYPE)
        for f, t in fields:
            out[f"{name}_{f}"] = np.dtype(t)

    for name, fields in CMS2012_COLLECTIONS.items():
        if not exact and name in ("Muon", "Electron"):
            fields = fields + EXTRA_LEPTON_FIELDS
        coll(name, fields)
    out.update({k: np.dtype(t) for k, t in MET_BRANCHES})
    coll("Jet", JET)
    if is_mc:
        coll("GenPart", GENPART)
    if not exact:
        out.update({k: np.dtype(t) for k, t in EXTRA_EVENT})
        if pfcands:
            coll("PFCands", PFCANDS)
        out.update({k: np.dtype(t) for k, t in TRUTH})
        if is_mc:
            out[GEN_WEIGHT[0]] = np.dtype(GEN_WEIGHT[1])
    return out


def _jagged_record(packed, fields) -> ak.Array:
    counts = np.asarray(packed.counts, dtype=np.int64)
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    contents = [ak.contents.NumpyArray(np.ascontiguousarray(packed.fields[f], dtype=t)) for f, t in fields]
    rec = ak.contents.RecordArray(contents, [f for f, _ in fields], length=int(offsets[-1]))
    return ak.Array(ak.contents.ListOffsetArray(ak.index.Index64(offsets), rec))


def to_branches(reco: dict, ids: dict, is_mc: bool, exact: bool = False, pfcands: bool = False) -> dict:
    """Assemble the uproot `extend` payload (scalars as numpy, collections as awkward records) in
    layout order. `ids` holds run, luminosityBlock, event, Truth_process, Truth_isSignal, genWeight."""
    src = {**reco, **ids}
    out = {}
    for name, t in CMS2012_EVENT:
        out[name] = np.asarray(src[name], dtype=t)
    for name, fields in CMS2012_COLLECTIONS.items():
        if not exact and name in ("Muon", "Electron"):
            fields = fields + EXTRA_LEPTON_FIELDS
        out[name] = _jagged_record(reco[name], fields)
    for name, t in MET_BRANCHES:
        out[name] = np.asarray(src[name], dtype=t)
    out["Jet"] = _jagged_record(reco["Jet"], JET)
    if is_mc:
        out["GenPart"] = _jagged_record(reco["GenPart"], GENPART)
    if not exact:
        for name, t in EXTRA_EVENT:
            out[name] = np.asarray(src[name], dtype=t)
        if pfcands:
            out["PFCands"] = _jagged_record(reco["PFCands"], PFCANDS)
        for name, t in TRUTH:
            out[name] = np.asarray(src[name], dtype=t)
        if is_mc:
            out[GEN_WEIGHT[0]] = np.asarray(src[GEN_WEIGHT[0]], dtype=GEN_WEIGHT[1])
    return out


def parse_compression(spec):
    """'zlib:4', 'lzma:1', 'lz4:1', 'zstd:5' or 'none' -> an uproot compression object."""
    if spec is None or str(spec).lower() in ("none", "0", ""):
        return None
    algo, _, level = str(spec).partition(":")
    algos = {"zlib": uproot.ZLIB, "lzma": uproot.LZMA, "lz4": uproot.LZ4, "zstd": uproot.ZSTD}
    if algo.lower() not in algos:
        raise ValueError(f"unknown compression {spec!r}; use zlib:N, lzma:N, lz4:N, zstd:N or none")
    try:
        lvl = int(level) if level else 4
    except ValueError:
        raise ValueError(f"bad compression level in {spec!r}") from None
    return algos[algo.lower()](lvl)


@contextlib.contextmanager
def _uint32_counters():
    """Declare uproot's generated counters as UInt_t (the 2012 files' nMuon/i) instead of Int_t."""
    from uproot.writing import _cascadetree as ct

    orig = ct.Tree._branch_np

    def patched(self, name, btype, bdtype, counter=None, kind="normal"):
        if kind == "counter":
            bdtype = np.dtype(COUNTER_DTYPE)
            btype = bdtype
        return orig(self, name, btype, bdtype, counter=counter, kind=kind)

    ct.Tree._branch_np = patched
    try:
        yield
    finally:
        ct.Tree._branch_np = orig


def _branch_type(v):
    return v.dtype if isinstance(v, np.ndarray) else v.type


class RootWriter:
    """Write chunks to `path` atomically (a temporary name, renamed on a clean close)."""

    def __init__(self, path, compression="zlib:4", is_mc=True, write_runs=True):
        use_isal()  # the CMS-like zlib presets deflate ~6x faster
        self.path = Path(path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.file = uproot.recreate(self.tmp, compression=parse_compression(compression))
        self.tree = None
        self.is_mc = is_mc
        self.write_runs = write_runs and is_mc
        self.n = 0
        self.sumw = 0.0

    def extend(self, branches: dict):
        if self.tree is None:
            with _uint32_counters():
                self.tree = self.file.mktree("Events", {k: _branch_type(v) for k, v in branches.items()},
                                             title="Events")
        self.tree.extend(branches)
        n = len(next(iter(branches.values())))
        self.n += n
        self.sumw += float(np.sum(branches["genWeight"], dtype=np.float64)) if "genWeight" in branches else n

    def close(self):
        if self.write_runs:
            self.file["Runs"] = {"run": np.array([1], np.uint32),
                                 "genEventCount": np.array([self.n], np.int64),
                                 "genEventSumw": np.array([self.sumw], np.float64)}
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self):
        with contextlib.suppress(Exception):
            self.file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.tmp)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False
