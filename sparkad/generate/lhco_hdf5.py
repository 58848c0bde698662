"""The official LHC Olympics 2020 HDF5 files (R&D data set and black boxes, seeds/002) as sparkad input.

Those files hold one row per event: up to 700 particles as (pT, η, φ) triplets, zero-padded (2100 columns),
massless (Delphes-like detector level), and in the R&D data set a 2101st column, the truth label (1 signal).
`read_events` reads them with h5py in any of the layouts pandas writes (`fixed`: /<key>/block*_values,
`table`: /<key>/table with values_block_*) or a plain 2-D dataset; `convert` clusters the particles with
FastJet (anti-kT R = 1.0 as the challenge, soft drop, τ1..3: the dijet engine's `particle_branches`) and
writes the PFNano-style ROOT files and fileset that `sparkad extract --analysis dijet --selection lhco`
reads like any other — the labels, when present, go to truth/ apart, as a blind black box's truth does.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from sparkad.core.errors import SparkadError

N_PARTICLES = 700
ROW = 3 * N_PARTICLES  # pT, eta, phi per particle


def _datasets(h5):
    """(2-D row block datasets, key) of the first pandas frame or plain 2-D dataset in the file."""
    import h5py

    for key in h5:
        node = h5[key]
        if isinstance(node, h5py.Dataset) and node.ndim == 2:
            return [node], key
        if isinstance(node, h5py.Group):
            if "table" in node and node["table"].dtype.names:  # pandas format="table"
                return [("table", node["table"], n) for n in node["table"].dtype.names if n.startswith("values_block")], key
            blocks = sorted(k for k in node if k.startswith("block") and k.endswith("_values"))
            if blocks:  # pandas format="fixed": column blocks side by side
                return [node[b] for b in blocks], key
    return [], None


def read_events(path, start: int = 0, stop: int | None = None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(particles (n, 700, 3) float64 as pT, η, φ; labels (n,) or None; total rows in the file)."""
    import h5py

    try:
        h5 = h5py.File(path, "r")
    except OSError as e:
        raise SparkadError(f"{path}: not a readable HDF5 file ({e})") from None
    with h5:
        blocks, key = _datasets(h5)
        if not blocks:
            raise SparkadError(f"{path}: no event table (a pandas frame or a 2-D dataset) in the HDF5 file")
        parts = []
        for b in blocks:
            if isinstance(b, tuple):  # a table column: (n,) of (k,) vectors
                parts.append(np.asarray(b[1][start:stop][b[2]], np.float64).reshape(-1, b[1].dtype[b[2]].shape[0]
                                                                                     if b[1].dtype[b[2]].shape else 1))
                total = b[1].shape[0]
            else:
                parts.append(np.asarray(b[start:stop], np.float64))
                total = b.shape[0]
        rows = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    if rows.shape[1] not in (ROW, ROW + 1):
        raise SparkadError(f"{path}: /{key} rows have {rows.shape[1]} columns, not the LHC Olympics {ROW} (700 particles "
                           f"× pT, η, φ) or {ROW + 1} (with the truth label)")
    labels = rows[:, ROW].astype(np.int8) if rows.shape[1] == ROW + 1 else None
    if labels is not None and not np.all(np.isin(labels, (0, 1))):
        raise SparkadError(f"{path}: the last column is not a 0/1 truth label")
    return rows[:, :ROW].reshape(-1, N_PARTICLES, 3), labels, int(total)


def particles(triplets: np.ndarray):
    """The non-padding particles of (n, 700, 3) (pT, η, φ) rows as the awkward (px, py, pz, E, pdgId) record
    of ``particle_branches`` (massless; pdgId 0: the files do not say)."""
    import awkward as ak

    pt, eta, phi = triplets[..., 0], triplets[..., 1], triplets[..., 2]
    keep = pt > 0
    counts = keep.sum(axis=1)
    pt, eta, phi = pt[keep], eta[keep], phi[keep]
    rec = {"px": pt * np.cos(phi), "py": pt * np.sin(phi), "pz": pt * np.sinh(eta), "E": pt * np.cosh(eta),
           "pdgId": np.zeros(len(pt), np.int32)}
    return ak.zip({k: ak.unflatten(v, counts) for k, v in rec.items()})


def convert(path, out_dir, dataset: str | None = None, max_events: int | None = None, jet_r: float = 1.0,
            jet_pt_min: float = 30.0, events_per_file: int = 100_000, chunk: int = 5000, progress=None) -> Path:
    """Write OUT/<dataset>_NNNN.root (PFNano layout) and OUT/fileset.yaml from an LHC Olympics HDF5 file;
    labels, if the file has them, to OUT/truth/<file>.parquet. Returns the fileset path."""
    import yaml

    from sparkad.core.atomic import write_text_atomic
    from sparkad.generate import layout
    from sparkad.generate.api import FILESET_NAME, write_truth
    from sparkad.generate.dijet import SUBSTRUCTURE, particle_branches

    path, out = Path(path), Path(out_dir)
    name = dataset or path.stem
    _, _, total = read_events(path, 0, 1)
    n = total if max_events is None else min(int(max_events), total)
    if n < 1:
        raise SparkadError(f"{path}: no events")
    out.mkdir(parents=True, exist_ok=True)
    (out / FILESET_NAME).unlink(missing_ok=True)  # complete only when rewritten at the end
    files, labelled = [], False
    for f in range(math.ceil(n / events_per_file)):
        lo, hi = f * events_per_file, min((f + 1) * events_per_file, n)
        target = out / f"{name}_{f:04d}.root"
        truth = []
        with layout.RootWriter(target, "zlib:4", is_mc=False) as w:
            for a in range(lo, hi, chunk):
                b = min(a + chunk, hi)
                trip, labels, _ = read_events(path, a, b)
                k = np.arange(a, b, dtype=np.int64)
                ids = {"run": np.ones(b - a, np.uint32), "luminosityBlock": (1 + k // 1000).astype(np.uint32),
                       "event": (k + 1).astype(np.uint64)}
                w.extend({**ids, **particle_branches(particles(trip), jet_r, jet_pt_min)})
                if labels is not None:
                    labelled = True
                    truth.append({"run": ids["run"].astype(np.int64), "luminosityBlock": ids["luminosityBlock"].astype(np.int64),
                                  "event": ids["event"].astype(np.int64), "is_signal": labels.astype(bool),
                                  "process": labels.astype(np.int32)})
                if progress:
                    progress(b - a)
        if truth:
            write_truth(target, truth)
        files.append(target.name)
    doc = {"luminosity": 1.0,
           "datasets": {name: {"files": files, "treename": "Events", "is_data": True, "label": "data"}},
           "generator": {"preset": f"lhco_hdf5:{path.name}", "engine": "lhco_hdf5", "jet_r": jet_r,
                         "events": n, "labels_in_truth": labelled, "substructure": SUBSTRUCTURE}}
    fs = out / FILESET_NAME
    write_text_atomic(yaml.safe_dump(doc, sort_keys=False), fs)
    return fs
