"""Tests of the event generator (sparkad.generate): layout, physics sanity, run structure, faults,
determinism, exact-layout switch, configuration errors. A few thousand events per sample."""
from __future__ import annotations

import warnings

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from sparkad.generate import layout, runs
from sparkad.generate.api import generate
from sparkad.generate.config import GeneratorConfigError, list_presets, load_preset

N = 3000
PROCS = ["wjets", "dyjets", "ttbar", "qcd", "a4l", "lq_btau", "h0_tautau", "hpm_taunu"]
RUNS_CFG = {"n_runs": 4, "lumis_per_run": [60, 60], "runs_per_fill": 2, "lifetime_hours": 0.4}
HOT = {"type": "hot_cells", "runs": [194051], "lumis": [10, 40], "rate": 0.5, "eta": [1.6, 2.1], "phi": [0.6, 1.0]}


def physics_cfg(seed=7, **kw):
    cfg = {
        "name": "test", "sqrt_s": 8000, "seed": seed, "max_events_per_file": 100_000,
        "samples": {p: {"process": p, "events": N} for p in PROCS},
    }
    cfg["samples"]["data"] = {"data_like": True, "events": 6000, "mix": ["wjets", "dyjets", "ttbar"],
                              "runs": RUNS_CFG, "faults": [HOT]}
    cfg.update(kw)
    return cfg


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    fs = generate(physics_cfg(), out_dir=out, progress=False)
    doc = yaml.safe_load(fs.read_text())
    cache = {}

    def get(name):
        if name not in cache:
            files = [fs.parent / f for f in doc["datasets"][name]["files"]]
            cache[name] = ak.concatenate([uproot.open(f)["Events"].arrays() for f in files])
        return cache[name]

    get.fileset = fs
    get.doc = doc
    return get


# ----------------------------------------------------------------------------- helpers

def leptons(a):
    mu = ak.zip({"pt": a.Muon_pt, "eta": a.Muon_eta, "phi": a.Muon_phi, "iso": a.Muon_pfRelIso03_all})
    el = ak.zip({"pt": a.Electron_pt, "eta": a.Electron_eta, "phi": a.Electron_phi,
                 "iso": a.Electron_pfRelIso03_all})
    lep = ak.concatenate([mu, el], axis=1)
    return lep[ak.argsort(lep.pt, ascending=False)]


def lead(a):
    return ak.firsts(leptons(a))


def good_jets(a, lep0, pt=30.0):
    jets = ak.zip({"pt": a.Jet_pt, "eta": a.Jet_eta, "phi": a.Jet_phi, "btag": a.Jet_btag})
    jets = jets[(jets.pt > pt) & (abs(jets.eta) < 2.4)]
    dphi = (jets.phi - ak.fill_none(lep0.phi, 99.0) + np.pi) % (2 * np.pi) - np.pi
    dr = np.sqrt((jets.eta - ak.fill_none(lep0.eta, 99.0)) ** 2 + dphi ** 2)
    return jets[dr > 0.4]


def selected(a, iso=0.1):
    l0 = lead(a)
    return ak.fill_none((l0.pt > 23) & (l0.iso >= 0) & (l0.iso < iso), False)


def mt(a):
    l0 = lead(a)
    return np.sqrt(2 * l0.pt * a.MET_pt * (1 - np.cos(l0.phi - a.MET_phi)))


# ----------------------------------------------------------------------------- schema

def test_branch_names_and_types_match_cms2012_layout(sample):
    for name, is_mc in (("wjets", True), ("data", False)):
        path = sample.fileset.parent / sample.doc["datasets"][name]["files"][0]
        tree = uproot.open(path)["Events"]
        want = layout.layout(is_mc=is_mc)
        got = {b.name: b.interpretation for b in tree.branches}
        assert list(got) == list(want)
        for bname, dt in want.items():
            interp = got[bname]
            content = getattr(interp, "content", interp)
            assert content.from_dtype.newbyteorder("=") == dt, bname
    # the real layout's key types
    t = uproot.open(sample.fileset.parent / "wjets_0000.root")["Events"]
    assert t["run"].typename == "int32_t" and t["luminosityBlock"].typename == "uint32_t"
    assert t["event"].typename == "uint64_t" and t["nMuon"].typename == "uint32_t"
    assert t["Muon_tightId"].typename == "bool[]" and t["Jet_btag"].typename == "float[]"
    runs_tree = uproot.open(sample.fileset.parent / "wjets_0000.root")["Runs"].arrays()
    assert runs_tree.genEventCount.tolist() == [N] and runs_tree.genEventSumw.tolist() == [float(N)]
    data_keys = uproot.open(sample.fileset.parent / "data_0000.root").keys(cycle=False)
    assert "Runs" not in data_keys
    assert not any(k.startswith("GenPart") or k == "genWeight" for k in uproot.open(
        sample.fileset.parent / "data_0000.root")["Events"].keys())


def test_coffea_nanoaod_schema_opens_files(sample):
    from coffea.nanoevents import NanoAODSchema, NanoEventsFactory

    for name in ("ttbar", "data"):
        path = str(sample.fileset.parent / sample.doc["datasets"][name]["files"][0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ev = NanoEventsFactory.from_root({path: "Events"}, schemaclass=NanoAODSchema, mode="eager").events()
        assert len(ev) > 0
        assert ak.all(ak.num(ev.Jet) == uproot.open(path)["Events"]["nJet"].array())
        assert "pfRelIso03_chg" in ev.Muon.fields and "nChargedHadron" in ev.PF.fields
        # cross references resolve: muons matched to their jets
        has = ev.Muon.jetIdx >= 0
        assert ak.all(ak.is_none(ev.Muon.matched_jet[has], axis=1) == False)  # noqa: E712


def test_isolation_components_sum_to_total(sample):
    for name in ("wjets", "qcd"):
        a = sample(name)
        for coll in ("Muon", "Electron"):
            tot = ak.flatten(a[f"{coll}_pfRelIso03_all"])
            parts = [ak.flatten(a[f"{coll}_pfRelIso03_{c}"]) for c in ("chg", "neu", "pho")]
            pf = tot != -999.0
            s = (parts[0] + parts[1] + parts[2])[pf]
            assert np.allclose(ak.to_numpy(s), ak.to_numpy(tot[pf]), rtol=1e-6, atol=1e-7)
            assert ak.all(parts[0][pf] >= 0)
        nonpf = ak.flatten(a.Muon_pfRelIso03_all) == -999.0
        assert 0 < ak.mean(nonpf) < 0.05  # a small fraction of non-PF muons, as in 2012 files


def test_pf_multiplicities_grow_with_pileup(sample):
    a = sample("wjets")
    npv = ak.to_numpy(a.PV_npvs)
    nch = ak.to_numpy(a.PF_nChargedHadron)
    lo, hi = npv < np.percentile(npv, 25), npv > np.percentile(npv, 75)
    assert nch[hi].mean() > 1.5 * nch[lo].mean()
    assert ak.all(a.PF_nNeutralHadron > 0) and ak.all(a.PF_nPhoton > 0)


# ----------------------------------------------------------------------------- physics

def test_w_transverse_mass_has_jacobian_edge(sample):
    a = sample("wjets")
    m = ak.to_numpy(ak.drop_none(mt(a)[selected(a)]))
    h, _ = np.histogram(m, bins=[40, 55, 70, 85, 100, 115])
    assert h[2] > h[0] and h[2] > 2 * h[3] and h[3] > 2 * h[4], h  # rising to ~80 GeV, sharp fall after
    assert 60 < np.median(m) < 85


def test_z_dilepton_mass_peaks_at_91(sample):
    a = sample("dyjets")
    masses = []
    for coll in ("Muon", "Electron"):
        two = a[ak.num(a[f"{coll}_pt"]) >= 2]
        pt, eta, phi = two[f"{coll}_pt"], two[f"{coll}_eta"], two[f"{coll}_phi"]
        masses.append(ak.to_numpy(np.sqrt(2 * pt[:, 0] * pt[:, 1] * (np.cosh(eta[:, 0] - eta[:, 1])
                                                                      - np.cos(phi[:, 0] - phi[:, 1])))))
    m = np.concatenate(masses)
    assert len(m) > 0.3 * N
    h, edges = np.histogram(m, bins=np.arange(60, 122, 4))
    assert 86 <= edges[np.argmax(h)] <= 92
    assert 88 < np.median(m[(m > 70) & (m < 110)]) < 94


def test_ttbar_has_more_jets_and_btags_than_w(sample):
    res = {}
    for name in ("wjets", "ttbar"):
        a = sample(name)
        sel = selected(a)
        j = good_jets(a, lead(a))[sel]
        res[name] = (ak.mean(ak.num(j)), ak.mean(ak.sum(j.btag > 0.679, axis=1)))
    assert res["ttbar"][0] > res["wjets"][0] + 1.5
    assert res["ttbar"][1] > 0.8 and res["wjets"][1] < 0.1
    a = sample("ttbar")
    # generator record: two on-shell tops and the W's
    pdg, mass = a.GenPart_pdgId, a.GenPart_mass
    assert ak.all(ak.sum(abs(pdg) == 6, axis=1) == 2)
    tm = ak.to_numpy(ak.flatten(mass[abs(pdg) == 6]))
    wm = ak.to_numpy(ak.flatten(mass[abs(pdg) == 24]))
    assert abs(np.median(tm) - 172.5) < 1.5 and abs(np.median(wm) - 80.4) < 1.5


def test_qcd_leptons_are_less_isolated(sample):
    iso = {}
    for name in ("wjets", "qcd"):
        a = sample(name)
        l0 = lead(a)
        ok = ak.fill_none((l0.pt > 23) & (l0.iso >= 0), False)
        iso[name] = np.median(ak.to_numpy(ak.drop_none(l0.iso[ok])))
    assert iso["qcd"] > 5 * iso["wjets"]
    a = sample("qcd")
    # heavy-flavour leptons sit inside their jet
    assert ak.mean(ak.flatten(a.Muon_jetIdx) >= 0) > 0.7


def test_a4l_has_four_leptons(sample):
    frac = {}
    for name in ("a4l", "wjets"):
        a = sample(name)
        nlep = ak.num(a.Muon_pt) + ak.num(a.Electron_pt)
        frac[name] = (ak.mean(nlep >= 3), ak.mean(nlep >= 4))
    # soft leptons (m_A = 50 GeV): all four reconstructed in ~10% of the events
    assert frac["a4l"][1] > 0.08 and frac["a4l"][1] > 20 * frac["wjets"][1]
    assert frac["a4l"][0] > 0.3 and frac["wjets"][0] < 0.02
    gen = sample("a4l").GenPart_pdgId
    assert ak.all(ak.sum((abs(gen) == 11) | (abs(gen) == 13), axis=1) == 4)


def test_lq_btau_has_bjets_and_taus(sample):
    res = {}
    for name in ("lq_btau", "wjets"):
        a = sample(name)
        nb = ak.sum((a.Jet_pt > 20) & (abs(a.Jet_eta) < 2.4) & (a.Jet_btag > 0.679), axis=1)
        ntau = ak.sum((a.Tau_pt > 20) & a.Tau_idIsoMedium, axis=1)
        res[name] = (ak.mean(nb >= 1), ak.mean(ntau >= 1))
    assert res["lq_btau"][0] > 0.5 and res["lq_btau"][0] > 5 * res["wjets"][0]
    assert res["lq_btau"][1] > 0.15 and res["lq_btau"][1] > 3 * res["wjets"][1]


def test_bsm_taus_and_met(sample):
    # h0 -> tau tau and h+- -> tau nu give genuine hadronic taus; h+- has large MET
    for name in ("h0_tautau", "hpm_taunu"):
        a = sample(name)
        assert ak.mean(ak.any(a.Tau_genPartIdx >= 0, axis=1)) > 0.05
    assert np.median(ak.to_numpy(sample("hpm_taunu").MET_pt)) > np.median(ak.to_numpy(sample("dyjets").MET_pt))


def test_truth_labels(sample):
    assert ak.all(sample("a4l").Truth_isSignal) and not ak.any(sample("wjets").Truth_isSignal)
    assert set(np.unique(ak.to_numpy(sample("data").Truth_process))) <= {1, 2, 3}
    assert ak.all(sample("ttbar").Truth_process == 3)


# ----------------------------------------------------------------------------- runs and faults

def test_data_run_structure_monotonic_and_follows_profile(sample):
    a = sample("data")
    r, ls, ev = (ak.to_numpy(a[k]).astype(np.int64) for k in ("run", "luminosityBlock", "event"))
    key = np.stack([r, ls, ev], axis=1)
    assert np.all(np.diff(r) >= 0)
    same_run = np.diff(r) == 0
    assert np.all(np.diff(ls)[same_run] >= 0) and np.all(np.diff(ev)[same_run] > 0)
    assert len(np.unique(key, axis=0)) == len(key)
    assert set(np.unique(r)) == set(runs.RUN2012B_RUNS[:4])
    # per-lumi counts = the structure's multinomial counts; these follow the luminosity profile
    rs = runs.build(RUNS_CFG, 6000, np.random.default_rng(np.random.SeedSequence([7, 8, runs_salt()])))
    pairs, counts = np.unique(np.stack([r, ls], 1), axis=0, return_counts=True)
    want = {(int(x), int(y)): int(c) for x, y, c in zip(rs.run, rs.lumi, rs.counts) if c}
    assert {(int(x), int(y)): int(c) for (x, y), c in zip(pairs, counts)} == want
    chi2 = np.sum((rs.counts - rs.expected) ** 2 / rs.expected) / len(rs.expected)
    assert chi2 < 1.6
    assert np.corrcoef(rs.counts, rs.expected)[0, 1] > 0.7
    # decay within a fill: the first 20 lumi sections of a fill hold more events than the last 20
    first = counts[(pairs[:, 0] == runs.RUN2012B_RUNS[0]) & (pairs[:, 1] <= 20)].sum()
    last = counts[(pairs[:, 0] == runs.RUN2012B_RUNS[1]) & (pairs[:, 1] > 40)].sum()
    assert first > 1.3 * last
    # pile-up follows the luminosity too
    npv = ak.to_numpy(a.PV_npvs)
    assert npv[(r == runs.RUN2012B_RUNS[0]) & (ls <= 10)].mean() > npv[(r == runs.RUN2012B_RUNS[1]) & (ls > 50)].mean()


def runs_salt():
    from sparkad.generate.api import _RUNS_SALT

    return _RUNS_SALT


def test_fault_only_where_configured(sample):
    a = sample("data")
    r, ls = ak.to_numpy(a.run), ak.to_numpy(a.luminosityBlock)
    fault = ak.to_numpy(a.Truth_fault)
    window = (r == 194051) & (ls >= 10) & (ls <= 40)
    assert np.all(fault[~window] == 0)
    assert 0.3 < fault[window].astype(bool).mean() < 0.7  # rate 0.5
    jets = (a.Jet_pt > 30) & (a.Jet_eta > 1.6) & (a.Jet_eta < 2.1) & (a.Jet_phi > 0.6) & (a.Jet_phi < 1.0)
    hot = ak.to_numpy(ak.any(jets, axis=1))
    assert hot[window].mean() > 5 * hot[~window].mean()
    met = ak.to_numpy(a.MET_pt)
    assert np.median(met[fault == 1]) > np.median(met[~window]) + 10


def test_dead_muon_sector_and_jes_faults(tmp_path):
    cfg = {"name": "f", "seed": 3, "samples": {"data": {
        "data_like": True, "events": 4000, "mix": ["wjets", "ttbar"], "runs": RUNS_CFG,
        "faults": [{"type": "dead_muon_sector", "runs": [194050], "phi": [0.0, 1.0]},
                   {"type": "jes_shift", "runs": [194075], "lumis": [1, 30], "shift": 0.5}]}}}
    fs = generate(cfg, out_dir=tmp_path, progress=False)
    a = uproot.open(fs.parent / "data_0000.root")["Events"].arrays()
    r, ls, fault = ak.to_numpy(a.run), ak.to_numpy(a.luminosityBlock), ak.to_numpy(a.Truth_fault)
    dead = r == 194050
    in_sector = ak.to_numpy(ak.any((a.Muon_phi >= 0) & (a.Muon_phi < 1.0), axis=1))
    assert not in_sector[dead].any() and in_sector[~dead].mean() > 0.02
    assert set(np.unique(fault[dead])) <= {0, 2} and (fault[dead] == 2).any()
    jes = (r == 194075) & (ls <= 30)
    assert np.all(fault[jes] == 3) and np.all(fault[~dead & ~jes] == 0)
    lead_jet = ak.to_numpy(ak.fill_none(ak.firsts(a.Jet_pt), 0.0))
    assert np.median(lead_jet[jes & (lead_jet > 0)]) > 1.2 * np.median(lead_jet[~jes & ~dead & (lead_jet > 0)])


# ----------------------------------------------------------------------------- determinism, switches

def small_cfg(seed=11, **kw):
    cfg = {"name": "small", "seed": seed, "max_events_per_file": 700, "chunk_size": 300, "samples": {
        "ttbar": {"process": "ttbar", "events": 1500},
        "data": {"data_like": True, "events": 1200, "mix": ["wjets", "dyjets", "ttbar"],
                 "signal": {"process": "a4l", "fraction": 0.05}, "runs": RUNS_CFG}}}
    cfg.update(kw)
    return cfg


def read_all(fs):
    doc = yaml.safe_load(fs.read_text())
    return {name: [uproot.open(fs.parent / f)["Events"].arrays() for f in d["files"]]
            for name, d in doc["datasets"].items()}


def same(x, y):
    return all(len(a) == len(b) and a.fields == b.fields and all(ak.array_equal(a[f], b[f]) for f in a.fields)
               for a, b in zip(x, y, strict=True))


def test_deterministic_same_seed_identical_arrays(tmp_path):
    a = read_all(generate(small_cfg(), out_dir=tmp_path / "a", progress=False))
    b = read_all(generate(small_cfg(), out_dir=tmp_path / "b", progress=False, workers=2))
    c = read_all(generate(small_cfg(seed=12), out_dir=tmp_path / "c", progress=False))
    assert len(a["ttbar"]) == 3 and len(a["data"]) == 2  # split at max_events_per_file
    for name in a:
        assert same(a[name], b[name])
    assert not same(a["ttbar"], c["ttbar"])
    d = ak.concatenate(a["data"])
    assert 0.01 < ak.mean(d.Truth_isSignal) < 0.12 and ak.all(d.Truth_process[d.Truth_isSignal] == 101)


def test_exact_layout_switch_drops_extras(tmp_path):
    fs = generate(small_cfg(), out_dir=tmp_path, progress=False, exact_layout=True)
    for name, is_mc in (("ttbar", True), ("data", False)):
        f = uproot.open(fs.parent / f"{name}_0000.root")
        keys = f["Events"].keys()
        assert keys == list(layout.layout(is_mc=is_mc, exact=True))
        assert not any(k.startswith(("PF_", "Truth_", "PFCands")) or k.endswith(("_chg", "_neu", "_pho"))
                       or k == "genWeight" for k in keys)
        assert "Runs" not in f.keys(cycle=False)
    assert any(k.startswith("GenPart_") for k in uproot.open(fs.parent / "ttbar_0000.root")["Events"].keys())


def test_fileset_yaml(sample):
    doc = sample.doc
    assert doc["luminosity"] == 4400.0
    w = doc["datasets"]["wjets"]
    assert w["n_gen"] == N and w["is_data"] is False and w["label"] == "W" and w["treename"] == "Events"
    assert abs(w["xsec"] - 36257.2) < 1e-6
    assert doc["datasets"]["data"]["is_data"] is True and doc["datasets"]["data"]["label"] == "data"
    assert 120 < doc["datasets"]["ttbar"]["xsec"] < 140  # 164 pb x K 1.5 x BR(>= 1 leptonic W)
    for d in doc["datasets"].values():
        for f in d["files"]:
            assert (sample.fileset.parent / f).exists() and "/" not in f


# ----------------------------------------------------------------------------- config

def test_presets_exist_and_validate():
    presets = list_presets()
    for name in ("default", "sm13", "top8tev", "fault"):
        assert name in presets
        cfg = load_preset(name)
        assert cfg["samples"]
    assert load_preset("sm13")["sqrt_s"] == 13000
    assert sum(s["events"] for s in load_preset("default")["samples"].values()) <= 25_000
    tt = load_preset("top8tev")["samples"]["ttbar"]
    assert tt["xsec_total"] * tt["k_factor"] == pytest.approx(246.0)


@pytest.mark.parametrize("bad, msg", [
    ("no_such_preset", "unknown preset"),
    ({"samples": {"x": {"process": "zprime", "events": 10}}}, "unknown process"),
    ({"samples": {"x": {"process": "wjets", "events": -5}}}, "events must be > 0"),
    ({"samples": {"x": {"process": "wjets", "events": 10}}, "compression": "brotli:3"}, "unknown compression"),
    ({"samples": {"d": {"data_like": True, "events": 10, "mix": ["wjets"], "faults": [{"type": "flood"}]}}},
     "type must be one of"),
    ({"samples": {"x": {"process": "wjets", "events": 10}}, "detectr": {}}, "unknown key"),
    # names become file names: nothing may be written outside --out
    ({"samples": {"../esc": {"process": "wjets", "events": 10}}}, "not a plain name"),
    ({"samples": {"t": {"process": "ttbar", "events": 10, "params": [1, 2]}}}, "params must be a mapping"),
    ({"samples": {"t": {"process": "ttbar", "events": 10, "params": {"nonsense": 1}}}}, "unknown parameter(s) ['nonsense']"),
    ({"samples": {"d": {"data_like": True, "events": 10, "mix": ["wjets"], "runs": 5}}}, "runs must be a mapping"),
    ({"samples": {"d": {"data_like": True, "events": 10, "mix": ["wjets"], "runs": {"lumis_per_run": 5}}}},
     "lumis_per_run must be [low, high]"),
    ({"samples": {"d": {"data_like": True, "events": 10, "mix": ["wjets"], "runs": {"n_runs": 2},
                        "faults": [{"type": "hot_cells", "runs": [1]}]}}}, "are not among the sample's runs"),
    ({"samples": {"d": {"data_like": True, "events": 10, "mix": "wjets"}}}, "non-empty 'mix'"),
    ({"samples": {"x": {"process": "wjets", "events": 10}}, "detector": {"vertex_eff": 5}}, "is a probability"),
    ({"samples": {"x": {"process": "wjets", "events": 10}}, "detector": {"pileup_mu_sd": 0}}, "pileup_mu_sd must be > 0"),
    ({"samples": {"x": {"process": "wjets", "events": 10}}, "exact_layout": "no"}, "must be true or false"),
    ({"samples": {"x": {"process": "wjets", "events": 10}}, "sqrt_s": float("inf")}, "must be a finite number"),
])
def test_config_errors_are_one_line(bad, msg, tmp_path):
    with pytest.raises(GeneratorConfigError) as e:
        generate(bad, out_dir=tmp_path, progress=False)
    assert msg in str(e.value) and "\n" not in str(e.value)


def test_interrupted_rerun_leaves_no_stale_fileset(tmp_path, monkeypatch):
    """The old fileset (its n_gen / sum_w) must not survive next to files a failed re-run replaced."""
    from sparkad.generate import api

    cfg = {"name": "s", "seed": 1, "samples": {"wjets": {"process": "wjets", "events": 200}}}
    fs = generate(cfg, out_dir=tmp_path, progress=False)
    assert fs.exists()

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(api, "run_job", fail)
    with pytest.raises(OSError):
        generate(dict(cfg, samples={"wjets": {"process": "wjets", "events": 400}}), out_dir=tmp_path, progress=False)
    assert not fs.exists()


def test_cli(tmp_path):
    from click.testing import CliRunner

    from sparkad.generate.cli import generate as cmd

    r = CliRunner().invoke(cmd, ["--list-presets"])
    assert r.exit_code == 0 and "sm13" in r.output
    r = CliRunner().invoke(cmd, ["--preset", "nope", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown preset" in r.output
    r = CliRunner().invoke(cmd, ["--preset", "default", "--events", "1", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "fewer than the preset's 4 samples" in r.output  # not 4 events for 1 asked
    r = CliRunner().invoke(cmd, ["--preset", "default", "--events", "600", "--out", str(tmp_path), "--quiet",
                                 "--seed", "5"])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load((tmp_path / "fileset.yaml").read_text())
    total = sum(uproot.open(tmp_path / f)["Events"].num_entries
                for d in doc["datasets"].values() for f in d["files"])
    assert total == 600


def test_pfcands_consistent_with_counts_and_isolation(tmp_path):
    cfg = {"name": "p", "seed": 1, "pf_candidates": True,
           "samples": {"a4l": {"process": "a4l", "events": 300}, "qcd": {"process": "qcd", "events": 300}}}
    fs = generate(cfg, out_dir=tmp_path, progress=False)
    for name in ("a4l", "qcd"):
        a = uproot.open(fs.parent / f"{name}_0000.root")["Events"].arrays()
        pdg = abs(a.PFCands_pdgId)
        assert ak.all(ak.sum(pdg == 211, axis=1) == a.PF_nChargedHadron)
        assert ak.all(ak.sum(pdg == 130, axis=1) == a.PF_nNeutralHadron)
        assert ak.all(ak.sum(pdg == 22, axis=1) == a.PF_nPhoton)
        assert ak.all(ak.sum((pdg == 13), axis=1) == ak.sum(a.Muon_pfRelIso03_all != -999, axis=1))
        cands = ak.zip({"pt": a.PFCands_pt, "eta": a.PFCands_eta, "phi": a.PFCands_phi, "pdg": pdg})
        for coll in ("Muon", "Electron"):
            lep = ak.zip({"pt": a[f"{coll}_pt"], "eta": a[f"{coll}_eta"], "phi": a[f"{coll}_phi"]})
            lp, cp = ak.unzip(ak.cartesian([lep, cands], nested=True))
            dphi = (cp.phi - lp.phi + np.pi) % (2 * np.pi) - np.pi
            near = np.sqrt((cp.eta - lp.eta) ** 2 + dphi ** 2) < 0.3
            pf = a[f"{coll}_pfRelIso03_all"] != -999
            for comp, code in (("chg", 211), ("neu", 130), ("pho", 22)):
                iso = ak.sum(ak.where(near & (cp.pdg == code), cp.pt, 0.0), axis=2) / lep.pt
                diff = ak.flatten(abs(iso - a[f"{coll}_pfRelIso03_{comp}"])[pf])
                assert ak.max(diff, initial=0) < 1e-5


# ----------------------------------------------------------------------------- trigger, b-tag defaults

def test_single_muon_trigger_stream_with_qcd(tmp_path):
    cfg = {"name": "trig", "seed": 5, "samples": {"data": {
        "data_like": True, "events": 3000, "mix": ["wjets", "dyjets", "ttbar", "qcd"], "runs": RUNS_CFG,
        "trigger": {"single_muon": {"pt_min": 24, "eta_max": 2.1, "iso_max": 0.15}}}}}
    resolved = load_preset(cfg)["samples"]["data"]
    comps = {c["process"]: c for c in resolved["components"]}
    assert comps["qcd"]["params"]["force_muon"]["pt_min"] == pytest.approx(0.85 * 24)
    # QCD's weight: sigma x filter x P(generator bias) = P(muon) 0.5 x P(pT > 20.4) 0.4 x P(|eta| < 2.3) 0.85
    assert comps["qcd"]["weight"] == pytest.approx(3.64e8 * 7.4e-4 * 0.5 * (20.4 / 15) ** -3 * 0.85, rel=0.05)
    fs = generate(cfg, out_dir=tmp_path, progress=False)
    a = uproot.open(fs.parent / "data_0000.root")["Events"].arrays()
    assert len(a) == 3000
    # the default single_muon trigger is exactly HLT_IsoMu24_eta2p1
    assert ak.all(a.HLT_IsoMu24_eta2p1)
    proc = ak.to_numpy(a.Truth_process)
    assert 0.01 < np.mean(proc == 4) < 0.5 and np.mean(proc == 1) > 0.4  # W dominates, QCD sizeable
    # run structure unchanged by the rejection: per-lumi counts = the structure's
    rs = runs.build(RUNS_CFG, 3000, np.random.default_rng(np.random.SeedSequence([5, 0, runs_salt()])))
    r, ls = ak.to_numpy(a.run), ak.to_numpy(a.luminosityBlock)
    pairs, counts = np.unique(np.stack([r, ls], 1), axis=0, return_counts=True)
    assert {(int(x), int(y)): int(c) for (x, y), c in zip(pairs, counts)} == \
        {(int(x), int(y)): int(c) for x, y, c in zip(rs.run, rs.lumi, rs.counts) if c}
    # deterministic
    b = uproot.open(generate(cfg, out_dir=tmp_path / "b", progress=False).parent / "data_0000.root")["Events"].arrays()
    assert same([a], [b])


def test_qcd_bias_acceptance_matches_unbiased_fraction():
    from sparkad.generate.processes import Context, generate_truth, qcd_trigger_acceptance

    fm = {"pt_min": 20.4, "eta_max": 2.3}
    acc = qcd_trigger_acceptance({"lepton_pt_min": 15.0, "force_muon": fm})
    n = 400_000
    b = generate_truth("qcd", np.random.default_rng(3), n, Context(8000.0), {"lepton_pt_min": 15.0})
    lep = b.gp4[:, 1]
    pt = np.hypot(lep[:, 1], lep[:, 2])
    eta = np.arcsinh(lep[:, 3] / pt)
    frac = np.mean((np.abs(b.gpdg[:, 1]) == 13) & (pt > fm["pt_min"]) & (np.abs(eta) < fm["eta_max"]))
    assert acc == pytest.approx(frac, rel=0.05)
    biased = generate_truth("qcd", np.random.default_rng(4), 5000, Context(8000.0),
                            {"lepton_pt_min": 15.0, "force_muon": fm})
    lep = biased.gp4[:, 1]
    pt = np.hypot(lep[:, 1], lep[:, 2])
    assert np.all(np.abs(biased.gpdg[:, 1]) == 13) and np.all(pt > fm["pt_min"])
    assert np.all(np.abs(np.arcsinh(lep[:, 3] / pt)) < fm["eta_max"])


def test_btag_default_values_for_jets_without_computation(sample):
    a = sample("ttbar")
    btag, eta = ak.to_numpy(ak.flatten(a.Jet_btag)), ak.to_numpy(ak.flatten(a.Jet_eta))
    outside = np.abs(eta) >= 2.4
    assert np.all(btag[outside] == -10.0) and outside.any()
    inside = btag[~outside]
    assert 0.005 < np.mean(inside == -1.0) < 0.1
    assert np.all((inside == -1.0) | ((inside >= 0) & (inside <= 1)))
