"""The official LHC Olympics HDF5 format as input (issue 18): a file in that layout (700 particles × pT, η, φ,
zero-padded, the truth label as the last column) written here from real Pythia events, converted (FastJet
clustering), extracted, and compared with the extraction of the same events from the generator's files."""
from __future__ import annotations

import subprocess
import sys

import awkward as ak
import h5py
import numpy as np
import pandas as pd
import pytest
import uproot
import yaml

from sparkad.core.errors import SparkadError
from sparkad.generate.lhco_hdf5 import N_PARTICLES, read_events


@pytest.fixture(scope="module")
def lhco_file(lhco_hlf, tmp_path_factory):
    """The black box's events as an LHCO HDF5 file: each event's particles (the stored jet constituents,
    massless) as 700 (pT, η, φ) triplets, its truth label last (a pandas `fixed` frame layout)."""
    gen = lhco_hlf.parent / "gen"
    doc = yaml.safe_load((gen / "fileset.yaml").read_text())
    ev = uproot.concatenate([str(gen / f) + ":Events" for f in doc["datasets"]["blackbox"]["files"]])
    truth = pd.concat([pd.read_parquet(p) for p in sorted((gen / "truth").glob("blackbox_*.parquet"))])
    n = len(ev)
    rows = np.zeros((n, 3 * N_PARTICLES + 1))
    pt, eta, phi = (ak.to_list(ev[f"PFCands_{k}"]) for k in ("pt", "eta", "phi"))
    for i in range(n):
        k = min(len(pt[i]), N_PARTICLES)
        order = np.argsort(pt[i])[::-1][:k]
        rows[i, 0:3 * k:3] = np.asarray(pt[i])[order]
        rows[i, 1:3 * k:3] = np.asarray(eta[i])[order]
        rows[i, 2:3 * k:3] = np.asarray(phi[i])[order]
    rows[:, -1] = truth.is_signal.to_numpy()
    path = tmp_path_factory.mktemp("lhcoh5") / "events_rnd.h5"
    with h5py.File(path, "w") as h5:
        g = h5.create_group("df")
        g.create_dataset("block0_values", data=rows)
        g.create_dataset("axis0", data=np.arange(rows.shape[1]))
    ids = pd.DataFrame({k: ev[k].to_numpy().astype(np.int64) for k in ("run", "luminosityBlock", "event")})
    ids["row"] = np.arange(n)
    return path, truth, ids


def test_convert_and_extract_reproduce_the_generators_events(lhco_file, lhco_hlf, tmp_path):
    path, truth, ids = lhco_file
    r = subprocess.run([sys.executable, "-m", "sparkad.cli", "convert-lhco", str(path), "--out", str(tmp_path / "gen"),
                        "--dataset", "rnd", "--quiet"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    t = pd.concat([pd.read_parquet(p) for p in sorted((tmp_path / "gen" / "truth").glob("rnd_*.parquet"))])
    assert len(t) == len(truth) and (t.is_signal.to_numpy() == truth.is_signal.to_numpy()).all()
    r = subprocess.run([sys.executable, "-m", "sparkad.cli", "extract", "--fileset", str(tmp_path / "gen" / "fileset.yaml"),
                        "--analysis", "dijet", "--selection", "lhco", "--out", str(tmp_path / "hlf"), "--quiet"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    got = pd.read_parquet(tmp_path / "hlf" / "rnd")
    want = pd.read_parquet(lhco_hlf / "blackbox")
    # the same events by position (the converted file's event k is the HDF5 row k - 1), the same jets up to
    # the particles' masses
    got["row"] = got.event - 1
    want = want.merge(ids, on=["run", "luminosityBlock", "event"], validate="one_to_one")
    both = got.merge(want, on="row", suffixes=("", "_gen"))
    assert len(both) >= 0.95 * len(want)
    assert np.mean(np.abs(both.mjj / both.mjj_gen - 1) < 0.01) > 0.95
    assert np.mean(np.abs(both.j1_pt / both.j1_pt_gen - 1) < 0.01) > 0.95
    assert set(got.label) == {"data"}
    # the files' particles are massless (as the challenge's): each converted jet's mass is the massless sum of
    # its linked constituents, recomputed here (the generator's hadrons have masses: its jets are heavier)
    ev = uproot.open(tmp_path / "gen" / "rnd_0000.root")["Events"].arrays()
    for i in range(0, len(ev), 37):
        link, pf = ev["FatJetPFCands_jetIdx"][i], ev["FatJetPFCands_pFCandsIdx"][i]
        for j in range(min(2, len(ev["FatJet_pt"][i]))):
            c = np.asarray(pf[np.asarray(link) == j])
            pt, eta, phi = (np.asarray(ev[f"PFCands_{k}"][i], np.float64)[c] for k in ("pt", "eta", "phi"))
            e, px, py, pz = (pt * np.cosh(eta)).sum(), (pt * np.cos(phi)).sum(), (pt * np.sin(phi)).sum(), (pt * np.sinh(eta)).sum()
            m = np.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0))
            assert abs(m - float(ev["FatJet_mass"][i][j])) < 1e-3 * float(ev["FatJet_pt"][i][j]) + 0.5
    assert np.median(both.mJ1) < np.median(both.mJ1_gen)


def test_bad_files_are_refused(tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as h5:
        h5.create_dataset("x", data=np.zeros((3, 10)))
    with pytest.raises(SparkadError, match="not the LHC Olympics 2100"):
        read_events(bad)
    (tmp_path / "junk.h5").write_text("no hdf5")
    r = subprocess.run([sys.executable, "-m", "sparkad.cli", "convert-lhco", str(tmp_path / "junk.h5"), "--out",
                        str(tmp_path / "o"), "--quiet"], capture_output=True, text=True)
    assert r.returncode == 1 and "not a readable HDF5 file" in r.stderr and "Traceback" not in r.stderr
