"""`sparkad extract --analysis dijet`: hand-made NanoAOD FatJet events with known answers, a real Pythia dijet
sample read back, missing inputs and bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import awkward as ak
import numpy as np
import pandas as pd
import pytest
import uproot
import vector
import yaml

from sparkad.core.parquet_io import read_metadata
from sparkad.extract.dijet import leading_constituents, leading_pair
from sparkad.extract.fileset import load_fileset
from sparkad.extract.run import ExtractOptions, run_extraction
from sparkad.generate.api import generate

# per event: jets (pt, eta, phi, mass, msoftdrop, tau1, tau2, tau3) and constituents (jet index, pt, eta, phi)
EVENTS = [
    {"jets": [(500, 0.5, 0.1, 80, 75, 0.30, 0.09, 0.05), (450, -0.7, 3.0, 120, 20, 0.20, 0.16, 0.12),
              (40, 3.0, 1.0, 5, 5, 0.1, 0.05, 0.02)],
     "cands": [(0, 200, 0.45, 0.12), (1, 100, -0.72, 3.05), (0, 250, 0.52, 0.08), (1, 300, -0.69, -3.10),
               (0, 30, 0.8, 0.4), (2, 40, 3.0, 1.0)]},
    {"jets": [(300, 0.1, 0.0, 50, 40, 0.2, 0.1, 0.05)], "cands": [(0, 300, 0.1, 0.0)]},      # one jet: cut
    {"jets": [(900, 2.6, 0.0, 60, 10, 0.2, 0.1, 0.1), (600, 1.0, 1.5, 30, 30, 0.0, 0.0, 0.0),  # leading out of |eta|
              (200, -1.0, -1.5, 90, 85, 0.4, 0.1, 0.05)],                                      # tau1 = 0: NaN ratios
     "cands": [(1, 600, 1.0, 1.5), (2, 120, -1.1, -1.4), (2, 80, -0.9, -1.6)]},
    {"jets": [(400, 0.0, 0.0, 20, 10, 0.3, 0.2, 0.1), (25, 0.0, 3.0, 5, 5, 0.3, 0.2, 0.1)],  # second below 30
     "cands": []},
]


def nano_arrays(constituents=True, substructure=True):
    jets = [[dict(zip(("pt", "eta", "phi", "mass", "msoftdrop", "tau1", "tau2", "tau3"), j)) for j in e["jets"]]
            for e in EVENTS]
    if not substructure:
        jets = [[{k: v for k, v in j.items() if k in ("pt", "eta", "phi", "mass")} for j in e] for e in jets]
    out = {"run": np.full(len(EVENTS), 1, np.uint32), "luminosityBlock": np.arange(1, len(EVENTS) + 1, dtype=np.uint32),
           "event": np.arange(1, len(EVENTS) + 1, dtype=np.uint64), "genWeight": np.ones(len(EVENTS), np.float32),
           "FatJet": ak.values_astype(ak.Array(jets), np.float32)}
    if constituents:
        # PFCands in a shuffled order, linked through FatJetPFCands (jetIdx, pFCandsIdx) as in PFNano
        cands = [[{"pt": c[1], "eta": c[2], "phi": c[3], "mass": 0.0} for c in e["cands"][::-1]] for e in EVENTS]
        link = [[{"jetIdx": c[0], "pFCandsIdx": len(e["cands"]) - 1 - k} for k, c in enumerate(e["cands"])] for e in EVENTS]
        out["PFCands"] = ak.values_astype(ak.Array(cands), np.float32)
        out["FatJetPFCands"] = ak.values_astype(ak.Array(link), np.int32)
    return out


def write(path, arrays):
    """The NanoAOD layout: a collection's fields as COLL_field branches with an nCOLL counter."""
    with uproot.recreate(path) as f:
        tree = f.mktree("Events", {k: (v.dtype if isinstance(v, np.ndarray) else v.type) for k, v in arrays.items()})
        tree.extend(arrays)
    return path


def sparkad(*args):
    return subprocess.run([sys.executable, "-m", "sparkad.cli", *map(str, args)], capture_output=True, text=True)


def test_features_of_hand_made_events(tmp_path, extract):
    path = write(tmp_path / "fatjet.root", nano_arrays())
    rep, df = extract([path], tmp_path / "out", analysis="dijet")
    assert list(df.event) == [1, 3]  # one jet / second jet below 30 GeV: cut
    steps = rep["datasets"]["ds"]["cut"], json.loads((tmp_path / "out" / "_cutflow.json").read_text())
    assert steps[0] == 2 and steps[1]["ds"]["total"][">= 2 large-R jets pT > 30 GeV, |eta| < 2.4"] == 2
    e0, e2 = df.iloc[0], df.iloc[1]
    # event 1: jets 0 and 1; event 3: the 900 GeV jet is outside |eta| < 2.4, so jets 1 and 2
    for row, (a, b) in ((e0, EVENTS[0]["jets"][:2]), (e2, EVENTS[2]["jets"][1:3])):
        va = vector.obj(pt=a[0], eta=a[1], phi=a[2], mass=a[3])
        vb = vector.obj(pt=b[0], eta=b[1], phi=b[2], mass=b[3])
        assert row.mjj == pytest.approx((va + vb).mass, rel=1e-5)
        assert row.deta == pytest.approx(abs(a[1] - b[1]), abs=1e-6)
        assert (row.j1_pt, row.j2_pt, row.j1_msd) == pytest.approx((a[0], b[0], a[4]))
        light, heavy = sorted((a, b), key=lambda j: j[3])
        assert (row.mJ1, row.dmJ) == pytest.approx((light[3], heavy[3] - light[3]))
    assert (e0.j1_tau21, e0.j1_tau32) == pytest.approx((0.3, 0.05 / 0.09), rel=1e-5)
    assert np.isnan(e2.j1_tau21) and np.isnan(e2.j1_tau32) and np.isnan(e2.tau21_J1)  # tau1 = 0: recorded NaN
    assert e2.tau21_J2 == pytest.approx(0.25)
    assert rep["undefined_ratios"]["ds"]["j1_tau21"] == 1
    # constituents of jet 1 of event 1, in decreasing pT, relative to the jet axis, zero-padded
    assert e0.j1_ncons == 3 and e2.j2_ncons == 2
    assert list(e0.j1_c_pt[:4]) == pytest.approx([250, 200, 30, 0])
    assert list(e0.j1_c_deta[:3]) == pytest.approx([0.02, -0.05, 0.3], abs=1e-6)
    # phi wraps: a candidate at -3.10 next to a jet at 3.0 is dphi = 2 pi - 6.10
    assert list(e0.j2_c_dphi[:2]) == pytest.approx([2 * np.pi - 6.10, 0.05], abs=1e-5)
    assert len(e0.j1_c_pt) == 100


def test_missing_constituents_are_refused_or_recorded(tmp_path, extract):
    path = write(tmp_path / "nocands.root", nano_arrays(constituents=False))
    with pytest.raises(Exception, match="cannot provide j1_ncons, j2_ncons .*FatJetPFCands_jetIdx"):
        extract([path], tmp_path / "a", analysis="dijet")
    rep, df = extract([path], tmp_path / "b", analysis="dijet", on_missing="nan")
    assert df.j1_ncons.isna().all() and not df.mjj.isna().any()
    assert "j1_c_pt" not in df.columns
    assert rep["nan_features"][0]["missing_inputs"] == ["constituents"]
    # features that need only the jets: no constituents, no refusal
    _, df = extract([write(tmp_path / "plain.root", nano_arrays(constituents=False, substructure=False))],
                    tmp_path / "c", analysis="dijet", feature_set="mjj,deta,j1_pt,j2_pt,mJ1,dmJ")
    assert list(df.columns[-6:]) == ["mjj", "deta", "j1_pt", "j2_pt", "mJ1", "dmJ"]


def test_kernels_against_loops():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 6, 300)
    off = np.r_[0, np.cumsum(counts)]
    pt, eta = rng.exponential(60, off[-1]), rng.uniform(-3, 3, off[-1])
    i1, i2, nj = leading_pair(off, pt, eta, 30.0, 2.4)
    for e in range(300):
        ok = [q for q in range(off[e], off[e + 1]) if pt[q] > 30 and abs(eta[q]) < 2.4]
        ok.sort(key=lambda q: -pt[q])
        assert nj[e] == len(ok)
        assert (i1[e], i2[e]) == ((ok + [-1, -1])[0], (ok + [-1, -1])[1])
    # a link outside the event's candidates is an error, not a silent read of the next event
    with pytest.raises(ValueError, match="outside the event's PFCands"):
        leading_constituents(np.array([0]), np.array([0]), np.zeros(1), np.zeros(1), np.array([0, 1]),
                             np.array([0]), np.array([5]), np.array([0, 2]), np.ones(2), np.zeros(2), np.zeros(2), 4)


def test_pythia_dijet_sample_end_to_end(tmp_path):
    cfg = {"name": "pytest_dijet_x", "engine": "pythia_dijet", "sqrt_s": 13000, "seed": 9, "luminosity": 1000.0,
           "samples": {"g_ww": {"process": "rsg_ww", "events": 40, "params": {"mass": 3000.0}}}}
    fs = generate(cfg, out_dir=tmp_path / "gen", progress=False)
    rep = run_extraction(load_fileset(fs), ExtractOptions.from_conf(tmp_path / "hlf", analysis="dijet", progress=False),
                         log=lambda m: None)
    df = pd.read_parquet(tmp_path / "hlf" / "g_ww").sort_values("event").reset_index(drop=True)
    assert rep["totals"]["events_in"] == 40 and len(df) == rep["totals"]["written"] >= 36
    a = uproot.open(fs.parent / yaml.safe_load(fs.read_text())["datasets"]["g_ww"]["files"][0])["Events"].arrays()
    xsec = yaml.safe_load(fs.read_text())["datasets"]["g_ww"]["xsec"]
    assert df.weight.iloc[0] == pytest.approx(xsec * 1000.0 / 40)
    for _, row in df.iterrows():
        e = a[int(row.event) - 1]
        good = np.flatnonzero((ak.to_numpy(e.FatJet_pt) > 30) & (np.abs(ak.to_numpy(e.FatJet_eta)) < 2.4))[:2]
        j = [vector.obj(pt=float(e.FatJet_pt[k]), eta=float(e.FatJet_eta[k]), phi=float(e.FatJet_phi[k]),
                        mass=float(e.FatJet_mass[k])) for k in good]
        assert row.mjj == pytest.approx((j[0] + j[1]).mass, rel=1e-4)
        assert row.j1_tau21 == pytest.approx(float(e.FatJet_tau2[good[0]] / e.FatJet_tau1[good[0]]), rel=1e-5)
        assert row.j1_ncons == e.FatJet_nConstituents[good[0]]
        n = int(min(row.j1_ncons, 100))
        assert np.all(row.j1_c_pt[n:] == 0) and np.all(np.diff(row.j1_c_pt[:n]) <= 0)
        dr = np.hypot(row.j1_c_deta[:n], row.j1_c_dphi[:n])  # in (eta, phi); the clustering used (y, phi)
        assert row.j1_c_pt[:n][dr < 0.8].sum() > 0.95 * row.j1_c_pt[:n].sum()  # soft massive particles: y != eta
    # a resonance at 3 TeV: the dijet mass peaks there, the jets are W candidates
    assert 2500 < df.mjj.median() < 3200
    assert 60 < np.median(np.r_[df.j1_msd, df.j2_msd]) < 100
    md = read_metadata(next((tmp_path / "hlf" / "g_ww").glob("*.parquet")))
    assert md["substructure"]["nsubjettiness"]["axes"] == "OnePass_KT_Axes"
    assert md["constituent_columns"] == sorted(f"j{k}_c_{q}" for k in (1, 2) for q in ("pt", "deta", "dphi"))


def test_bad_input_and_mismatched_options_are_one_line_errors(tmp_path, cms2012_file):
    r = sparkad("extract", cms2012_file, "--analysis", "dijet", "--out", tmp_path / "x", "--quiet")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "missing branches nFatJet, FatJet_pt, FatJet_eta, FatJet_phi, FatJet_mass (needed for the dijet analysis)" \
        in r.stderr and str(cms2012_file) in r.stderr
    r = sparkad("extract", cms2012_file, "--analysis", "dijet", "--selection", "single_lepton", "--out", tmp_path / "y")
    assert r.returncode != 0 and "selection single_lepton belongs to the single_lepton analysis" in r.stderr
    r = sparkad("extract", cms2012_file, "--analysis", "dijet", "--features", "alad24", "--out", tmp_path / "z")
    assert r.returncode != 0 and "feature set alad24 does not belong to the dijet analysis" in r.stderr
    assert not (tmp_path / "x").exists()
