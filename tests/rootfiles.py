"""Small ROOT files the tests write themselves with uproot: the CMS 2012 NanoAOD-like layout
(with or without sparkad's PF extras) and the bad-input cases."""
from __future__ import annotations

from pathlib import Path

import awkward as ak
import numpy as np
import uproot

# Hand-made events: values chosen so that features can be computed by hand.
EVENTS = [
    # 0: W-like muon event, 3 jets (one b-tagged, one overlapping the muon), MET opposite-ish
    dict(run=194050, lumi=10, event=1001,
         muons=[(40.0, 0.5, 0.2, 0.10566, -1, 0.05, (0.02, 0.02, 0.01))],
         electrons=[(8.0, -1.0, 2.0, 0.000511, 1, 0.8, (0.5, 0.2, 0.1))],
         jets=[(80.0, 1.0, -2.0, 10.0, 0.9), (45.0, -0.3, 1.5, 6.0, 0.1), (35.0, 0.55, 0.25, 5.0, 0.95),
               (50.0, 2.8, 0.0, 5.0, 0.9)],
         photons=[(35.0, 0.1, -1.0)], met=(50.0, 3.0), pf=(300, 80, 150)),
    # 1: electron leading, a second muon non-isolated; Δφ wrap across ±π
    dict(run=194050, lumi=11, event=1002,
         muons=[(25.0, 0.1, 3.1, 0.10566, 1, 0.6, (0.3, 0.2, 0.1))],
         electrons=[(60.0, -0.2, -3.0, 0.000511, -1, 0.02, (0.01, 0.005, 0.005))],
         jets=[(31.0, 0.0, 0.0, 4.0, 0.5)], photons=[], met=(20.0, 3.1), pf=(250, 60, 120)),
    # 2: no lepton above 23 GeV -> rejected
    dict(run=194050, lumi=11, event=1003, muons=[(15.0, 0.0, 0.0, 0.10566, 1, 0.01, (0.01, 0.0, 0.0))],
         electrons=[], jets=[(100.0, 0.0, 1.0, 10.0, 0.1)], photons=[], met=(5.0, 0.0), pf=(100, 20, 40)),
    # 3: non-PF muon (iso -999) only -> rejected
    dict(run=194051, lumi=1, event=7, muons=[(50.0, 0.0, 0.0, 0.10566, 1, -999.0, (0.0, 0.0, 0.0))],
         electrons=[], jets=[], photons=[], met=(30.0, 1.0), pf=(90, 10, 30)),
]


def _coll(rows, fields):
    return ak.Array([[dict(zip(fields, r)) for r in ev] for ev in rows])


def events_arrays(events=EVENTS, extras: bool = True, drop=()):
    """Branch dictionary in the CMS-2012 layout (subset needed by sparkad plus a few more)."""
    lep_fields = ["pt", "eta", "phi", "mass", "charge", "pfRelIso03_all"]
    out = {
        "run": np.array([e["run"] for e in events], np.int32),
        "luminosityBlock": np.array([e["lumi"] for e in events], np.uint32),
        "event": np.array([e["event"] for e in events], np.uint64),
        "HLT_IsoMu24": np.ones(len(events), bool),
        "PV_npvs": np.full(len(events), 12, np.int32),
        "MET_pt": np.array([e["met"][0] for e in events], np.float32),
        "MET_phi": np.array([e["met"][1] for e in events], np.float32),
        "MET_sumet": np.full(len(events), 500.0, np.float32),
    }
    colls = {}
    for name, key in (("Muon", "muons"), ("Electron", "electrons")):
        rows = [[(*m[:6], *m[6]) for m in e[key]] for e in events]
        fields = lep_fields + (["pfRelIso03_chg", "pfRelIso03_neu", "pfRelIso03_pho"] if extras else ["_c", "_n", "_p"])
        arr = _coll(rows, fields)
        if not extras:
            arr = arr[lep_fields]
        colls[name] = ak.zip({f: ak.values_astype(arr[f], np.int32 if f == "charge" else np.float32) for f in arr.fields})
    jets = _coll([e["jets"] for e in events], ["pt", "eta", "phi", "mass", "btag"])
    colls["Jet"] = ak.zip({f: ak.values_astype(jets[f], np.float32) for f in jets.fields})
    ph = _coll([e["photons"] for e in events], ["pt", "eta", "phi"])
    colls["Photon"] = ak.zip({f: ak.values_astype(ph[f], np.float32) for f in ph.fields})
    if extras:
        out["PF_nChargedHadron"] = np.array([e["pf"][0] for e in events], np.int32)
        out["PF_nNeutralHadron"] = np.array([e["pf"][1] for e in events], np.int32)
        out["PF_nPhoton"] = np.array([e["pf"][2] for e in events], np.int32)
    out.update(colls)
    for d in drop:
        out.pop(d, None)
    return out


def write_root(path, branches: dict | list | None = None, treename: str = "Events", repeat: int = 1) -> Path:
    """Write a TTree with uproot (jagged records become nX counters + X_field branches); a list of
    branch dictionaries is written as one basket (one ROOT cluster) each."""
    path = Path(path)
    batches = branches if isinstance(branches, list) else [events_arrays() if branches is None else branches]
    types = {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in batches[0].items()}
    with uproot.recreate(path) as f:
        tree = f.mktree(treename, types, counter_name=lambda c: "n" + c, field_name=lambda o, i: f"{o}_{i}")
        for _ in range(repeat):
            for b in batches:
                tree.extend(b)
    return path


def write_corrupt(path) -> Path:
    """The first KB of a real ROOT file followed by garbage."""
    path = Path(path)
    good = write_root(path.with_suffix(".tmp.root"))
    data = good.read_bytes()
    path.write_bytes(data[:400] + b"\x00garbage" * 50)
    good.unlink()
    return path


def write_truncated(path) -> Path:
    """A valid file cut at 60 %: keys still readable, baskets past the cut missing (an interrupted copy)."""
    path = Path(path)
    good = write_root(path.with_suffix(".tmp.root"), repeat=50)
    data = good.read_bytes()
    path.write_bytes(data[: int(len(data) * 0.6)])
    good.unlink()
    return path


def write_no_keys(path) -> Path:
    with uproot.recreate(path):
        pass
    return Path(path)


def write_other_tree(path) -> Path:
    return write_root(path, {"x": np.arange(5, dtype=np.int32)}, treename="NotEvents")


def write_empty_tree(path) -> Path:
    b = events_arrays(EVENTS[:1])
    b = {k: v[:0] for k, v in b.items()}
    return write_root(path, b)
