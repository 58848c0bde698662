"""The Pythia 8 dijet engine (sparkad.generate.dijet): real Pythia + FastJet (+ contrib) generation of a few
hundred 13 TeV events in the PFNano layout; the jets, their constituents and N-subjettiness recomputed
independently here (numpy, no FastJet)."""
from __future__ import annotations

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from sparkad.generate.api import generate
from sparkad.generate.config import GeneratorConfigError, load_preset
from sparkad.generate.dijet import PROCESS_IDS, substructure

QCD, GWW = 120, 40


def dijet_preset(**data):
    return {"name": "pytest_dijet", "engine": "pythia_dijet", "sqrt_s": 13000, "seed": 4, "luminosity": 1000.0,
            "samples": {"qcd": {"process": "qcd_dijet", "events": QCD},
                        "g_ww": {"process": "rsg_ww", "events": GWW, "params": {"mass": 2000.0}},
                        **({"data": {"data_like": True, "events": 120, "runs": {"n_runs": 2, "lumis_per_run": [5, 5]},
                                     "mix": data}} if data else {})}}


@pytest.fixture(scope="module")
def produced(tmp_path_factory):
    out = tmp_path_factory.mktemp("dijet")
    # the signal injected at the QCD cross section: about half of the data-like events are G -> WW
    fs = generate(dijet_preset(qcd=None, g_ww=200.0), out_dir=out, progress=False)
    doc = yaml.safe_load(fs.read_text())
    arrays = {name: uproot.open(fs.parent / d["files"][0])["Events"].arrays() for name, d in doc["datasets"].items()}
    return {"fileset": fs, "doc": doc, "events": arrays}


def p4(pt, eta, phi, m):
    pt, eta, phi, m = (np.asarray(x, np.float64) for x in (pt, eta, phi, m))
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    return np.stack([np.sqrt(px ** 2 + py ** 2 + pz ** 2 + m ** 2), px, py, pz], axis=-1)


def test_layout_counts_and_provenance(produced):
    doc, ev = produced["doc"], produced["events"]
    assert doc["generator"]["engine"] == "pythia_dijet"
    assert doc["generator"]["substructure"]["nsubjettiness"]["axes"] == "OnePass_KT_Axes"
    for name, n in (("qcd", QCD), ("g_ww", GWW)):
        a = ev[name]
        assert len(a) == n == doc["datasets"][name]["n_gen"]
        assert ak.all(a.Truth_process == PROCESS_IDS["qcd_dijet" if name == "qcd" else "rsg_ww"])
        assert ak.all(a.Truth_isSignal == (name == "g_ww"))
        # Pythia's LO sigma of pT-hat > 600 GeV QCD at 13 TeV is O(200 pb); the fileset records it
        sigma = doc["generator"]["pythia"][name]["sigma_gen_pb"]
        assert doc["datasets"][name]["xsec"] == pytest.approx(sigma, rel=1e-5)
    assert 50 < doc["datasets"]["qcd"]["xsec"] < 1000
    for f in ("pt", "eta", "phi", "mass", "msoftdrop", "tau1", "tau2", "tau3", "nConstituents"):
        assert f"FatJet_{f}" in ev["qcd"].fields
    for b in ("PFCands_pt", "PFCands_pdgId", "FatJetPFCands_jetIdx", "FatJetPFCands_pFCandsIdx", "run", "genWeight"):
        assert b in ev["qcd"].fields


def test_jets_are_the_sums_of_their_linked_constituents(produced):
    a = produced["events"]["qcd"]
    assert ak.all(a.FatJet_pt > 30.0)
    assert ak.all(a.FatJet_pt[:, :-1] >= a.FatJet_pt[:, 1:])  # decreasing pT
    checked = 0
    for i in range(len(a)):
        cand = p4(a.PFCands_pt[i], a.PFCands_eta[i], a.PFCands_phi[i], a.PFCands_mass[i])
        jet_idx, cand_idx = ak.to_numpy(a.FatJetPFCands_jetIdx[i]), ak.to_numpy(a.FatJetPFCands_pFCandsIdx[i])
        for j in range(len(a.FatJet_pt[i])):
            mine = cand_idx[jet_idx == j]
            assert len(mine) == a.FatJet_nConstituents[i][j]
            pts = ak.to_numpy(a.PFCands_pt[i])[mine]
            assert np.all(pts[:-1] >= pts[1:])  # constituents in decreasing pT
            s = cand[mine].sum(axis=0)  # E-scheme: the jet is the four-vector sum of its constituents
            pt, m = np.hypot(s[1], s[2]), np.sqrt(max(s[0] ** 2 - s[1] ** 2 - s[2] ** 2 - s[3] ** 2, 0.0))
            assert pt == pytest.approx(float(a.FatJet_pt[i][j]), rel=1e-4)
            assert m == pytest.approx(float(a.FatJet_mass[i][j]), rel=2e-3, abs=0.05)
            assert a.FatJet_msoftdrop[i][j] <= a.FatJet_mass[i][j] * (1 + 1e-4) + 1e-3
            checked += 1
    assert checked > 2 * QCD


def _exclusive_kt_axes(p, n):
    """Exclusive kT with E-scheme recombination and R -> infinity (d_ij = min(pT_i^2, pT_j^2) dR_ij^2,
    rapidity-phi distance): merge the closest pair until n objects remain (FastJet contrib's KT_Axes)."""
    p = [np.array(x) for x in p]
    while len(p) > n:
        best, pair = np.inf, None
        for i in range(len(p)):
            for j in range(i + 1, len(p)):
                d = min(_pt2(p[i]), _pt2(p[j])) * _dr2(p[i], p[j])
                if d < best:
                    best, pair = d, (i, j)
        i, j = pair
        p[i] = p[i] + p[j]
        del p[j]
    return p


def _pt2(v):
    return v[1] ** 2 + v[2] ** 2


def _rap_phi(v):
    return 0.5 * np.log((v[0] + v[3]) / (v[0] - v[3])), np.arctan2(v[2], v[1])


def _dr2(a, b):
    ya, fa = _rap_phi(a)
    yb, fb = _rap_phi(b)
    dphi = (fa - fb + np.pi) % (2 * np.pi) - np.pi
    return (ya - yb) ** 2 + dphi ** 2


def test_nsubjettiness_matches_the_definition(produced):
    """tau_N = sum_i pT_i min_k dR_ik / (sum_i pT_i R0) with exclusive-kT axes (HLF.md), recomputed in numpy
    for the leading jets of a few events and compared with FastJet contrib's value for the same axes."""
    a = produced["events"]["g_ww"]
    jets = []
    for i in range(6):
        cand = p4(a.PFCands_pt[i], a.PFCands_eta[i], a.PFCands_phi[i], a.PFCands_mass[i])
        mine = ak.to_numpy(a.FatJetPFCands_pFCandsIdx[i])[ak.to_numpy(a.FatJetPFCands_jetIdx[i]) == 0]
        jets.append(cand[mine])
    cons = ak.Array([{"px": j[:, 1], "py": j[:, 2], "pz": j[:, 3], "E": j[:, 0]} for j in jets])
    cons = ak.zip({k: cons[k] for k in ("px", "py", "pz", "E")})
    got = substructure(cons, 0.8, axes="KT_Axes")
    for j, jet in enumerate(jets):
        pt = np.hypot(jet[:, 1], jet[:, 2])
        for n in (1, 2, 3):
            axes = _exclusive_kt_axes(list(jet), n)
            dr = np.array([[np.sqrt(_dr2(c, ax)) for ax in axes] for c in jet]).min(axis=1)
            tau = np.sum(pt * dr) / (np.sum(pt) * 0.8)
            assert got[f"tau{n}"][j] == pytest.approx(tau, rel=2e-3, abs=1e-5), (j, n)


def test_signal_jets_are_two_pronged_w_candidates(produced):
    """G -> WW (W -> qq'): soft-drop masses near m_W and low tau21; QCD jets light and one-pronged."""
    w, q = produced["events"]["g_ww"], produced["events"]["qcd"]
    msd_w = ak.to_numpy(w.FatJet_msoftdrop[:, 0])
    tau21_w = ak.to_numpy(w.FatJet_tau2[:, 0] / w.FatJet_tau1[:, 0])
    msd_q = ak.to_numpy(q.FatJet_msoftdrop[:, 0])
    tau21_q = ak.to_numpy(q.FatJet_tau2[:, 0] / q.FatJet_tau1[:, 0])
    assert 65 < np.median(msd_w) < 95
    assert np.median(msd_q) < 45
    assert np.median(tau21_w) + 0.15 < np.median(tau21_q)


def test_data_like_mix_injects_the_signal_at_its_weight(produced):
    a = produced["events"]["data"]
    sig = ak.to_numpy(a.Truth_isSignal)
    assert np.array_equal(sig, ak.to_numpy(a.Truth_process) == PROCESS_IDS["rsg_ww"])
    share = produced["doc"]["generator"]["pythia"]["data"]["mix_xsec_pb"]
    f = share["g_ww"] / (share["g_ww"] + share["qcd"])
    n = len(a)
    assert abs(sig.mean() - f) < 4 * np.sqrt(f * (1 - f) / n) + 1e-9
    assert "genWeight" not in a.fields and len(np.unique(ak.to_numpy(a.run))) == 2


@pytest.mark.parametrize("change, message", [
    ({"process": "wjets"}, "unknown process 'wjets' for engine pythia_dijet"),
    ({"params": {"mass": -1.0}}, "mass must be in [0, sqrt_s"),
    ({"params": {"lepton_pt_min": 20.0}}, "unknown parameter(s) ['lepton_pt_min']"),
    ({"xsec": 1.0}, "xsec comes from Pythia under engine pythia_dijet"),
])
def test_bad_dijet_samples_are_refused(change, message):
    cfg = dijet_preset()
    cfg["samples"]["g_ww"].update(change)
    with pytest.raises(GeneratorConfigError) as e:
        load_preset(cfg)
    assert message in str(e.value)


def test_lepton_detector_settings_do_not_apply():
    with pytest.raises(GeneratorConfigError, match="detector does not apply to engine pythia_dijet"):
        load_preset({**dijet_preset(), "detector": {"pileup_mu": 40.0}})


def test_pileup_overlay_and_charged_hadron_subtraction():
    """Pile-up on the same hard events (same seed): minimum-bias particles join the jets; with CHS the charged
    ones are removed, so jet 1 keeps (about) its charged constituents and gains neutral ones only."""
    import awkward as ak

    from sparkad.generate.dijet import DijetSource

    def jet1(mu, chs):
        b = DijetSource("qcd_dijet", {"pileup_mu": mu, "pileup_chs": chs}, 13000.0, 23, 5).branches(30)
        link, pf = b["FatJetPFCands"], b["PFCands"]  # the generator's link is one to one, in order
        ids = np.abs(ak.to_numpy(ak.flatten(pf.pdgId)))
        is_ch = ak.unflatten(np.isin(ids, [211, 321, 2212, 11, 13, 3112, 3222]), ak.num(pf.pdgId))
        charged = ak.to_numpy(ak.sum((link.jetIdx == 0) & is_ch, axis=1))
        return ak.to_numpy(b["FatJet"].nConstituents[:, 0]), charged, ak.to_numpy(b["FatJet"].mass[:, 0])

    n0, c0, m0 = jet1(0.0, True)
    n1, c1, m1 = jet1(10.0, True)
    n2, c2, m2 = jet1(10.0, False)
    assert n1.mean() > n0.mean() + 5 and m1.mean() > m0.mean()
    assert abs(c1.mean() - c0.mean()) < 0.1 * c0.mean() + 1  # CHS: the charged pile-up is gone
    assert c2.mean() > c0.mean() + 5 and n2.mean() > n1.mean()  # without it, charged pile-up joins the jet
    with pytest.raises(GeneratorConfigError, match="pileup_mu must be in"):
        load_preset({"name": "x", "engine": "pythia_dijet", "sqrt_s": 13000,
                     "samples": {"q": {"process": "qcd_dijet", "events": 5, "params": {"pileup_mu": -1}}}})
