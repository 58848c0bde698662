"""HLF on hand-made events in the CMS 2012 layout: every definition of HLF.md against numbers
computed by hand (see the event list in tests/rootfiles.py)."""
import math

import numpy as np
import pytest

from sparkad.core.errors import FeatureUnavailableError


def test_alad24_on_cms2012_with_pf_extras(cms2012_file, tmp_path, extract):
    report, df = extract([cms2012_file], tmp_path / "out", feature_set="alad24")
    assert list(df.event) == [1001, 1002]  # event 1003: no lepton > 23 GeV; event 7: non-PF muon (iso -999)
    e0, e1 = df.iloc[0], df.iloc[1]
    # event 1001: muon 40 GeV is the lepton; the jet at ΔR 0.07 from it and the |η| = 2.8 jet are removed
    assert e0.lep_pt == pytest.approx(40.0) and e0.lep_is_ele == 0 and e0.lep_charge == -1
    assert e0.HT == pytest.approx(125.0) and e0.NJ == 2 and e0.NB == 1
    mj = math.sqrt((math.sqrt(80**2 * math.cosh(1.0) ** 2 + 100) + math.sqrt(45**2 * math.cosh(0.3) ** 2 + 36)) ** 2
                   - (80 * math.cos(-2.0) + 45 * math.cos(1.5)) ** 2 - (80 * math.sin(-2.0) + 45 * math.sin(1.5)) ** 2
                   - (80 * math.sinh(1.0) + 45 * math.sinh(-0.3)) ** 2)
    assert e0.MJ == pytest.approx(mj, rel=1e-5)
    assert e0.MT == pytest.approx(math.sqrt(2 * 40 * 50 * (1 - math.cos(3.0 - 0.2))), rel=1e-5)
    assert e0.met_par == pytest.approx(50 * math.cos(2.8), rel=1e-5)
    assert e0.met_perp == pytest.approx(50 * math.sin(2.8), rel=1e-5)
    assert (e0.lep_iso_ch, e0.lep_iso_neu, e0.lep_iso_gamma) == pytest.approx((0.02, 0.02, 0.01), rel=1e-5)
    assert e0.lep_iso == pytest.approx(0.05, rel=1e-5)
    assert (e0.n_ch, e0.n_neu, e0.n_photon) == (300, 80, 150)
    assert e0.n_mu == 1 and e0.mu_pt_tot == pytest.approx(40.0) and e0.mu_mass == pytest.approx(0.10566, rel=1e-4)
    assert e0.n_ele == 1 and e0.ele_pt_tot == pytest.approx(8.0)
    # event 1002: electron (60 GeV) beats the non-isolated muon; Δφ(MET, e) = 6.1 wraps to 6.1 - 2π
    assert e1.lep_is_ele == 1 and e1.lep_pt == pytest.approx(60.0)
    dphi = 3.1 - (-3.0) - 2 * math.pi
    assert e1.MT == pytest.approx(math.sqrt(2 * 60 * 20 * (1 - math.cos(dphi))), rel=1e-4)
    assert e1.met_perp == pytest.approx(20 * math.sin(dphi), rel=1e-4) and e1.met_perp < 0
    assert e1.HT == pytest.approx(31.0) and e1.NJ == 1 and e1.NB == 0
    # the muon and electron of event 1002 are opposite in φ: |Σ pT| = 60 - 25 only if collinear; here computed
    assert e1.n_mu == 1 and e1.mu_pt_tot == pytest.approx(25.0)
    # cut-flow reconciles
    assert report["totals"]["events_in"] == 4 and report["totals"]["written"] == 2 and report["totals"]["cut"] == 2


def test_vae_st_adds_leptons_and_photons(cms2012_file, tmp_path, extract):
    _, df = extract([cms2012_file], tmp_path / "out", feature_set="vae21")
    # event 1001: HT 125 + muon 40 + photon 35 (electron 8 GeV is below 30)
    assert df.iloc[0].ST == pytest.approx(125.0 + 40.0 + 35.0)
    assert df.iloc[1].ST == pytest.approx(31.0 + 60.0)
    assert list(df.columns[6:]) == ["lep_pt", "lep_iso_ch", "lep_iso_neu", "lep_iso_gamma", "lep_charge", "lep_is_ele",
                                    "ST", "NJ", "MJ", "NB", "met_par", "met_perp", "MT", "n_mu", "mu_mass", "mu_pt_tot",
                                    "n_ele", "ele_mass", "ele_pt_tot", "n_ch", "n_neu"]


def test_top_rediscovery_cutflow(cms2012_file, tmp_path, extract):
    report, df = extract([cms2012_file], tmp_path / "out", selection="top_rediscovery")
    import json
    cf = json.loads((tmp_path / "out" / "_cutflow.json").read_text())["ds"]["total"]
    assert list(cf.items()) == [("all", 4), ("lepton pT > 23", 3), ("lepton Iso < 0.1", 2),
                                ("lepton |eta| < 1.4", 2), (">= 2 jets pT > 30", 1), ("finite features", 1)]
    assert list(df.event) == [1001]


def test_exact_2012_layout_runs_cms2012_and_refuses_alad24(cms2012_exact_file, tmp_path, extract):
    report, df = extract([cms2012_exact_file], tmp_path / "ok", feature_set="cms2012")
    assert len(df) == 2 and report["datasets"]["ds"]["files_read"] == 1
    # total isolation falls back on the stored pfRelIso03_all
    assert df.iloc[0].lep_iso == pytest.approx(0.05)
    with pytest.raises(FeatureUnavailableError) as err:
        extract([cms2012_exact_file], tmp_path / "refused", feature_set="alad24")
    msg = str(err.value)
    assert "cms2012_exact.root" in msg and "n_ch" in msg and "lep_iso_neu" in msg and "PF_nChargedHadron" in msg
    assert "\n" not in msg
    assert not (tmp_path / "refused").exists()  # nothing written before the checks


def test_exact_2012_layout_nan_mode_records_the_gap(cms2012_exact_file, tmp_path, extract):
    from sparkad.core.parquet_io import read_metadata
    report, df = extract([cms2012_exact_file], tmp_path / "nan", feature_set="alad24", on_missing="nan")
    assert df.n_ch.isna().all() and df.lep_iso_gamma.isna().all()
    assert np.isfinite(df.MT).all()
    assert report["nan_features"][0]["nan_features"] == sorted(
        ["n_neu", "n_ch", "n_photon", "lep_iso_ch", "lep_iso_neu", "lep_iso_gamma"])
    part = next((tmp_path / "nan" / "ds").glob("*.parquet"))
    md = read_metadata(part)
    assert md["input_format"] == "cms2012" and "n_ch" in md["nan_features"] and md["feature_set"] == "alad24"
    assert md["selection"]["name"] == "single_lepton" and md["code_version"]
