"""The Pythia 8 engine of the generator (sparkad.generate.pythia): real Pythia + FastJet generation of a few
hundred events, written in the CMS 2012 layout, read back by the real extraction."""
from __future__ import annotations

import awkward as ak
import numpy as np
import pandas as pd
import pytest
import uproot
import yaml

from sparkad.extract.fileset import load_fileset
from sparkad.extract.run import ExtractOptions, run_extraction
from sparkad.generate.api import generate
from sparkad.generate.config import GeneratorConfigError
from sparkad.generate.pythia import N_JETS, N_LEPTONS, PythiaSource

# known 8 TeV cross sections (pb): W -> l nu summed over e, mu, tau (NNLO 3 x 12.1 nb), Z/gamma* -> l l
# with m_ll > 50 GeV (NNLO 3 x 1.17 nb), ttbar (NNLO+NNLL 245.8 pb); Pythia's LO must be within x2
KNOWN_PB = {"wjets": 36257.0, "dyjets": 3504.0, "ttbar": 245.8}
LEP_CUT = 20.0


RUNS = {"n_runs": 2, "lumis_per_run": [20, 20], "runs_per_fill": 2}
JES = {"type": "jes_shift", "runs": [194051], "lumis": [1, 20], "shift": 0.3}


def cocktail(seed=8, **events):
    ev = {"wjets": 260, "dyjets": 140, "ttbar": 120, **events}
    return {"name": "pytest_pythia", "engine": "pythia", "sqrt_s": 8000, "seed": seed,
            "samples": {"wjets": {"process": "wjets", "events": ev["wjets"], "params": {"lepton_pt_min": LEP_CUT}},
                        "dyjets": {"process": "dyjets", "events": ev["dyjets"]},  # unfiltered: eff = 1
                        "ttbar": {"process": "ttbar", "events": ev["ttbar"], "params": {"lepton_pt_min": LEP_CUT}}}}


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    out = tmp_path_factory.mktemp("pythia")
    cfg = cocktail()
    cfg["samples"]["data"] = {"data_like": True, "events": 200, "mix": ["wjets", "dyjets", "ttbar"], "runs": RUNS,
                              "faults": [JES]}
    fs = generate(cfg, out_dir=out / "gen", progress=False)
    rep = run_extraction(load_fileset(fs), ExtractOptions.from_conf(out / "hlf", progress=False), log=lambda m: None)
    return {"fileset": fs, "doc": yaml.safe_load(fs.read_text()), "hlf": pd.read_parquet(out / "hlf"), "report": rep}


def events(fs, name):
    doc = yaml.safe_load(fs.read_text())
    return ak.concatenate([uproot.open(fs.parent / f)["Events"].arrays() for f in doc["datasets"][name]["files"]])


def test_files_have_the_layout_and_the_counts(produced):
    doc = produced["doc"]
    for name, n in (("wjets", 260), ("dyjets", 140), ("ttbar", 120)):  # MC
        a = events(produced["fileset"], name)
        assert len(a) == n == doc["datasets"][name]["n_gen"]
        for b in ("Muon_pt", "Electron_pfRelIso03_all", "Jet_btag", "MET_pt", "GenPart_pdgId", "PF_nChargedHadron"):
            assert b in a.fields
        assert ak.all(a.Truth_process == {"wjets": 1, "dyjets": 2, "ttbar": 3}[name])
    assert doc["generator"]["engine"] == "pythia"


def test_data_like_mix_with_runs_and_faults(produced):
    """A data-like mix of the Pythia samples: composition by their cross sections (sigma_gen x filter eff),
    the Run2012B run / lumi structure, and the JES fault only in its window."""
    doc = produced["doc"]
    mix = doc["generator"]["pythia"]["data"]["mix_xsec_pb"]
    for name in ("wjets", "dyjets", "ttbar"):
        assert mix[name] == pytest.approx(doc["datasets"][name]["xsec"], rel=1e-5)
    a = events(produced["fileset"], "data")
    assert len(a) == 200 and doc["datasets"]["data"]["is_data"] and "GenPart_pt" not in a.fields
    proc = ak.to_numpy(a.Truth_process)
    w = np.array([mix["wjets"], mix["dyjets"], mix["ttbar"]])
    expect = 200 * w / w.sum()
    got = np.array([(proc == k).sum() for k in (1, 2, 3)])
    assert got.sum() == 200 and np.all(np.abs(got - expect) < 4 * np.sqrt(expect) + 2)
    r, ls = ak.to_numpy(a.run).astype(np.int64), ak.to_numpy(a.luminosityBlock).astype(np.int64)
    assert set(np.unique(r)) == {194050, 194051} and np.all(np.diff(r) >= 0)
    assert np.all(np.diff(ls)[np.diff(r) == 0] >= 0)
    fault = ak.to_numpy(a.Truth_fault)
    window = (r == 194051) & (ls <= 20)
    assert np.all(fault[~window] == 0) and np.all(fault[window] == 3) and window.sum() > 20
    df = produced["hlf"]
    assert (df[df.dataset == "data"].weight == 1).all() and (df.dataset == "data").sum() > 100


def test_hlf_physics(produced):
    df = produced["hlf"]
    w, z, tt = (df[df.label == k] for k in ("W", "Z", "ttbar"))
    assert len(w) > 150 and len(z) > 50 and len(tt) > 40
    # W transverse mass: Jacobian edge near 80 GeV (many events just below, few above)
    below = ((w.MT > 55) & (w.MT < 85)).sum()
    above = ((w.MT > 95) & (w.MT < 125)).sum()
    assert below > 5 * above and below > 0.4 * len(w)
    # Z -> mu mu: the dimuon mass peaks at the Z
    mm = z.mu_mass[z.n_mu >= 2]
    assert len(mm) > 15 and 84 < mm.median() < 98 and ((mm > 76) & (mm < 106)).mean() > 0.7
    # ttbar: more jets and b-tags than W+jets; the leading lepton is isolated in W events
    assert tt.NJ.mean() > w.NJ.mean() + 1.5 and tt.NB.mean() > w.NB.mean() + 0.6
    assert w.lep_iso.median() < 0.08 and (w.lep_iso < 0.1).mean() > 0.6


def test_isolation_from_the_particles_in_the_cone(produced):
    """Prompt leptons (linked to the hard process's GenPart) are isolated; leptons from B/C hadron decays
    in ttbar (no GenPart link) carry their jet's particles in the cone."""
    a = events(produced["fileset"], "ttbar")
    lep = ak.concatenate([ak.flatten(ak.zip({"pt": a[f"{c}_pt"], "iso": a[f"{c}_pfRelIso03_all"],
                                             "gen": a[f"{c}_genPartIdx"]})) for c in ("Muon", "Electron")])
    lep = lep[lep.iso >= 0]  # non-PF muons hold -999
    prompt = ak.to_numpy(lep.iso[(lep.gen >= 0) & (lep.pt > 15)])
    nonprompt = ak.to_numpy(lep.iso[(lep.gen < 0) & (lep.pt > 5)])
    assert len(prompt) > 40 and len(nonprompt) > 15
    assert np.median(prompt) < 0.1 and np.median(nonprompt) > 0.5
    assert (prompt < 0.2).mean() > 0.8 and (nonprompt > 0.2).mean() > 0.7
    # the split is the particles': the components add up, and a jet's cone is mostly charged hadrons
    mu = ak.flatten(ak.zip({k: a[k] for k in ("Muon_pfRelIso03_all", "Muon_pfRelIso03_chg", "Muon_pfRelIso03_neu",
                                              "Muon_pfRelIso03_pho", "Muon_genPartIdx")}))
    mu = mu[mu.Muon_pfRelIso03_all >= 0]
    parts = mu.Muon_pfRelIso03_chg + mu.Muon_pfRelIso03_neu + mu.Muon_pfRelIso03_pho
    np.testing.assert_allclose(ak.to_numpy(parts), ak.to_numpy(mu.Muon_pfRelIso03_all), rtol=1e-5, atol=1e-6)
    np_mu = mu[(mu.Muon_genPartIdx < 0) & (mu.Muon_pfRelIso03_all > 0.5)]
    share = ak.to_numpy(np_mu.Muon_pfRelIso03_chg / np_mu.Muon_pfRelIso03_all)
    assert len(share) > 5 and 0.4 < np.median(share) < 0.85


def test_pf_multiplicities_from_the_particles(produced):
    """PF counts = the event's own particles + pile-up: ttbar (more jets) has more charged hadrons than W,
    and every event has more than the pile-up alone would give on average at its npv."""
    from sparkad.generate.detector import DETECTOR_DEFAULTS

    w, tt = events(produced["fileset"], "wjets"), events(produced["fileset"], "ttbar")

    def own(a):  # charged hadrons beyond the mean pile-up contribution at the event's npv
        return ak.to_numpy(a.PF_nChargedHadron) - DETECTOR_DEFAULTS["pf_pu_charged"] * ak.to_numpy(a.PV_npvs)

    assert own(w).mean() > 20 and own(tt).mean() > own(w).mean() + 15
    npv = ak.to_numpy(w.PV_npvs)
    assert np.corrcoef(npv, ak.to_numpy(w.PF_nChargedHadron))[0, 1] > 0.3
    assert (ak.to_numpy(w.PF_nPhoton) > 0).all() and (ak.to_numpy(w.PF_nNeutralHadron) >= 0).all()


def test_alad24_features_with_pf_information(produced, tmp_path):
    """The PF-based features (seeds/000 Appendix A) extract from the Pythia files: finite, PF counts from
    the particles, isolation components adding up to the total."""
    rep = run_extraction(load_fileset(produced["fileset"]), ExtractOptions.from_conf(tmp_path, progress=False,
                                                                                    feature_set="alad24"),
                         log=lambda m: None)
    df = pd.read_parquet(tmp_path)
    assert np.isfinite(df[rep["features"]].to_numpy()).all() and set(df.label) == {"W", "Z", "ttbar", "data"}
    assert (df.n_ch > 20).all() and (df.n_photon > 0).all() and (df.lep_iso_ch >= 0).all()
    np.testing.assert_allclose(df.lep_iso_ch + df.lep_iso_neu + df.lep_iso_gamma, df.lep_iso, rtol=1e-4, atol=1e-5)


def test_b_tags_come_from_b_hadrons(produced):
    """ttbar has two b jets per event: the medium CSV working point tags ~70 % of them, light jets rarely."""
    a = events(produced["fileset"], "ttbar")
    j = a.Jet_btag[(a.Jet_pt > 30) & (abs(a.Jet_eta) < 2.4)]
    nb = ak.sum(j > 0.679, axis=1)
    assert 0.9 < ak.mean(nb) < 1.8
    w = events(produced["fileset"], "wjets")
    jw = w.Jet_btag[(w.Jet_pt > 30) & (abs(w.Jet_eta) < 2.4)]
    assert ak.sum(jw > 0.679) <= 0.1 * max(ak.sum(ak.num(jw)), 1) + 2


def test_cross_sections_from_pythia(produced):
    doc = produced["doc"]
    py = doc["generator"]["pythia"]
    lumi = doc["luminosity"]
    for name, known in KNOWN_PB.items():
        p = py[name]
        assert known / 2 < p["sigma_gen_pb"] < known * 2, (name, p)
        assert p["sigma_err_pb"] < 0.2 * p["sigma_gen_pb"]
        # the filter counts add up: tried >= passed >= written, and the dataset's xsec is sigma x eff
        assert p["n_tried"] >= p["n_passed"] >= doc["datasets"][name]["n_gen"]
        assert p["filter_eff"] == pytest.approx(p["n_passed"] / p["n_tried"], rel=1e-5)
        assert doc["datasets"][name]["xsec"] == pytest.approx(p["sigma_gen_pb"] * p["filter_eff"], rel=1e-4)
    assert py["dyjets"]["n_tried"] == py["dyjets"]["n_passed"] and py["dyjets"]["filter_eff"] == 1.0
    # a lepton with pT > 20 GeV, |eta| < 2.5: ~2/3 of W decays (e, mu) x acceptance ~0.6, plus tau -> l
    assert 0.3 < py["wjets"]["filter_eff"] < 0.55
    # ttbar: >= 1 leptonic W (e, mu, or tau -> e/mu) is ~0.43 of decays, times acceptance
    assert 0.25 < py["ttbar"]["filter_eff"] < 0.5
    # the extraction normalises with them
    df = produced["hlf"]
    for name in KNOWN_PB:
        ds = doc["datasets"][name]
        assert df[df.dataset == name].weight.to_numpy() == pytest.approx(ds["xsec"] * lumi / ds["sum_w"], rel=1e-6)


def _leading_lepton(batch):
    lep = batch.p4[:, N_JETS:N_JETS + N_LEPTONS]
    pt = np.hypot(lep[..., 1], lep[..., 2])
    eta = np.arcsinh(lep[..., 3] / np.maximum(pt, 1e-9))
    ok = batch.valid[:, N_JETS:N_JETS + N_LEPTONS] & (pt > LEP_CUT) & (abs(eta) < 2.5)
    return ok, lep


def test_filter_keeps_exactly_the_passing_events_of_the_same_stream():
    """Same Pythia seed without the filter: the filtered source's events are the passing subset, in order,
    and its counts are those of the unfiltered stream."""
    filt = PythiaSource("wjets", {"lepton_pt_min": LEP_CUT}, 8000.0, 4242, 1)
    a = filt.truth(40)
    full = PythiaSource("wjets", {}, 8000.0, 4242, 1)
    b = full.truth(filt.n_tried)
    ok, lep_b = _leading_lepton(b)
    passing = np.flatnonzero(ok.any(axis=1))
    assert passing.size == filt.n_passed and full.n_passed == full.n_tried == filt.n_tried
    _, lep_a = _leading_lepton(a)
    np.testing.assert_array_equal(lep_a, lep_b[passing[:40]])


@pytest.mark.parametrize("process, params", [("wjets", {}), ("dyjets", {"m_min": 50.0, "m_max": 0.0})])
def test_jet_biased_boson_sample(process, params):
    """parton_pt_min: the boson produced with a hard parton (pT-hat above the cut, a smaller cross section
    than the inclusive process) and the dilepton mass window kept for Z/gamma*."""
    from sparkad.generate.pythia import base_settings, make_pythia, process_settings, sigma_pb

    def run(**extra):
        p = make_pythia(base_settings(8000.0, 17) + process_settings(process, {**params, **extra}))
        pthat, mass = [], []
        for _ in range(60):
            assert p.next()
            pthat.append(p.infoPython().pTHat())
            ev = p.process
            mass.append(max(ev[i].m() for i in range(ev.size()) if abs(ev[i].id()) in (23, 24)))
        return np.array(pthat), np.array(mass), sigma_pb(p)[0]

    pt_incl, m_incl, s_incl = run()
    pt_b, m_b, s_b = run(parton_pt_min=25.0)
    assert (pt_b > 25.0).all() and s_b < 0.5 * s_incl
    if process == "dyjets":
        assert (m_b > 50.0).all() and (m_incl > 50.0).all()


def test_a_filter_that_passes_nothing_is_an_error_not_a_hang():
    src = PythiaSource("dyjets", {"lepton_pt_min": 20.0, "lepton_eta_max": 1e-6}, 8000.0, 1, 2)
    src.max_tried_without_pass = 40
    with pytest.raises(ValueError, match=r"dyjets: the generator-level lepton filter .* passed none of \d+ generated"):
        src.truth(5)


def test_same_seed_identical_files_other_seed_differs(tmp_path):
    """Two files per sample (max_events_per_file), serial and on 2 workers: identical arrays and fileset."""
    small = {"dyjets": 50, "ttbar": 30, "wjets": 30}

    def arrays(d, seed, workers=1):
        cfg = {**cocktail(seed=seed, **small), "max_events_per_file": 25}
        fs = generate(cfg, out_dir=d, progress=False, workers=workers)
        return {k: events(fs, k) for k in small}, yaml.safe_load(fs.read_text())

    (a, fa), (b, fb), (c, _) = arrays(tmp_path / "a", 3), arrays(tmp_path / "b", 3, 2), arrays(tmp_path / "c", 4)
    assert all(len(fa["datasets"][k]["files"]) == 2 for k in small)
    for name in small:
        assert a[name].fields == b[name].fields
        assert all(ak.array_equal(a[name][f], b[name][f]) for f in a[name].fields)
        assert not ak.array_equal(a[name].MET_pt, c[name].MET_pt)
    assert fa["datasets"] == fb["datasets"] and fa["generator"] == fb["generator"]


def test_cli_engine_pythia(tmp_path):
    from click.testing import CliRunner

    from sparkad.generate.cli import generate as cmd

    r = CliRunner().invoke(cmd, ["--preset", "pythia8tev", "--events", "6", "--out", str(tmp_path), "--quiet",
                                 "--seed", "11"])
    assert r.exit_code == 0, r.output
    doc = yaml.safe_load((tmp_path / "fileset.yaml").read_text())
    assert doc["generator"]["engine"] == "pythia" and set(doc["generator"]["pythia"]) == {"wjets", "dyjets", "ttbar", "data"}
    r = CliRunner().invoke(cmd, ["--preset", "top8tev", "--engine", "pythia", "--events", "6", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown parameter(s) ['decay'] of process ttbar under engine pythia" in r.output


def test_jet_radius_follows_the_era():
    from sparkad.generate.config import load_preset

    def radius(sqrt_s, **params):
        cfg = load_preset({"engine": "pythia", "sqrt_s": sqrt_s,
                           "samples": {"w": {"process": "wjets", "events": 1, "params": params}}})
        return cfg["samples"]["w"]["params"]["jet_r"]

    assert radius(8000) == 0.5 and radius(13000) == 0.4 and radius(13000, jet_r=0.8) == 0.8


@pytest.mark.parametrize("bad, msg", [
    ({"engine": "herwig"}, "engine must be one of parametric, pythia"),
    ({"samples": {"x": {"process": "qcd", "events": 5}}}, "unknown process 'qcd' for engine pythia"),
    ({"samples": {"x": {"process": "ttbar", "events": 5, "params": {"decay": "leptonic"}}}},
     "unknown parameter(s) ['decay'] of process ttbar under engine pythia"),
    ({"samples": {"x": {"process": "ttbar", "events": 5, "params": {"settings": ["Top:nonsense = on"]}}}},
     "Pythia does not accept the setting 'Top:nonsense = on'"),
    ({"samples": {"x": {"process": "wjets", "events": 5, "xsec": 3.0}}}, "xsec comes from Pythia"),
    ({"samples": {"x": {"process": "dyjets", "events": 5, "params": {"m_min": 60, "m_max": 50}}}}, "m_max must be > m_min"),
    ({"samples": {"x": {"process": "wjets", "events": 5, "params": {"lepton_pt_min": -1}}}}, "lepton_pt_min must be >= 0"),
    ({"samples": {"x": {"process": "wjets", "events": 5, "params": {"jet_r": 2}}}}, "jet_r must be in (0, 1.5]"),
    ({"samples": {"x": {"process": "ttbar", "events": 5, "params": {"parton_pt_min": 20}}}},
     "unknown parameter(s) ['parton_pt_min'] of process ttbar"),
    ({"samples": {"x": {"process": "wjets", "events": 5, "params": {"parton_pt_min": -5}}}}, "parton_pt_min must be >= 0"),
    ({"samples": {"x": {"process": "wjets", "events": 5, "params": {"lepton_pt_min": 4000}}}},
     "lepton_pt_min must be below sqrt_s / 2 = 4000 GeV"),
    ({"engine": "parametric", "detector": {"particle_isolation": True}}, "particle_isolation needs engine pythia"),
    ({"samples": {"x": {"process": "wjets", "events": 5}, "d": {"data_like": True, "events": 5, "mix": ["qcd"]}}},
     "mix entry 'qcd' is not an MC sample of the preset"),
    ({"samples": {"x": {"process": "wjets", "events": 5}, "d": {"data_like": True, "events": 5, "mix": ["x"],
                                                               "trigger": {"single_muon": {}}}}},
     "trigger is not supported by engine pythia"),
])
def test_config_errors_are_one_line(bad, msg, tmp_path):
    cfg = {"name": "bad", "engine": "pythia", "samples": {"x": {"process": "wjets", "events": 5}}, **bad}
    with pytest.raises(GeneratorConfigError) as e:
        generate(cfg, out_dir=tmp_path, progress=False)
    assert msg in str(e.value) and "\n" not in str(e.value)
