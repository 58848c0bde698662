"""Features of real CMS events (../shared/data/cms-samples) against an independent hand
computation: plain uproot arrays and Python loops, one event at a time."""
import math

import numpy as np
import pytest
import uproot

LOOSE = "lepton: {pt_min: 23.0, iso_max: 1000.0}\njets: {pt_min: 30.0, eta_max: 2.4, lepton_dr: 0.4}\n"


def _dphi(a, b):
    return (a - b + math.pi) % (2 * math.pi) - math.pi


def _dr(e1, p1, e2, p2):
    return math.hypot(e1 - e2, _dphi(p1, p2))


def _mass(objs):
    px = sum(pt * math.cos(ph) for pt, eta, ph, m in objs)
    py = sum(pt * math.sin(ph) for pt, eta, ph, m in objs)
    pz = sum(pt * math.sinh(eta) for pt, eta, ph, m in objs)
    e = sum(math.sqrt((pt * math.cosh(eta)) ** 2 + m * m) for pt, eta, ph, m in objs)
    return math.sqrt(max(e * e - px * px - py * py - pz * pz, 0.0)), math.hypot(px, py)


def _lepton(ev, iso_of):
    cands = []
    for kind, flag in (("Muon", 0), ("Electron", 1)):
        for i in range(len(ev[f"{kind}_pt"])):
            iso = iso_of(kind, i)
            if ev[f"{kind}_pt"][i] > 23 and 0 <= iso < 1000:
                cands.append((ev[f"{kind}_pt"][i], ev[f"{kind}_eta"][i], ev[f"{kind}_phi"][i], flag, iso, kind, i))
    return max(cands, key=lambda c: c[0]) if cands else None


def _nano_events(path):
    return uproot.open(path)["Events"].arrays(library="ak", how=dict)


def _rows(arrays, i):
    return {k: (v[i].tolist() if hasattr(v[i], "tolist") else v[i]) for k, v in arrays.items()}


@pytest.mark.parametrize("name", ["nano_dy.root", "nano_tt_v12.root"])
def test_nanoaod_mt_met_projections_mj_nb(name, cms_sample, tmp_path, extract):
    path = cms_sample(name)
    _, df = extract([path], tmp_path / "o", feature_set="cms2012")
    arrays = uproot.open(path)["Events"].arrays(
        filter_name=["event", "Muon_*", "Electron_*", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagDeepFlavB", "MET_*"],
        library="np")
    by_event = {int(e): i for i, e in enumerate(arrays["event"])}
    assert len(df) > 5
    checked_b = 0
    for row in df.itertuples():
        ev = {k: v[by_event[row.event]] for k, v in arrays.items()}
        lep = _lepton(ev, lambda k, i: ev[f"{k}_pfRelIso03_all"][i] if ev[f"{k}_pfRelIso03_all"][i] < 0.45 else -1)
        assert lep is not None
        lpt, leta, lphi = float(lep[0]), float(lep[1]), float(lep[2])
        met, mphi = float(ev["MET_pt"]), float(ev["MET_phi"])
        assert row.lep_pt == pytest.approx(lpt, rel=1e-6)
        assert row.MT == pytest.approx(math.sqrt(2 * lpt * met * (1 - math.cos(_dphi(mphi, lphi)))), rel=1e-4, abs=1e-3)
        assert row.met_par == pytest.approx(met * math.cos(_dphi(mphi, lphi)), rel=1e-4, abs=1e-3)
        assert row.met_perp == pytest.approx(met * math.sin(_dphi(mphi, lphi)), rel=1e-4, abs=1e-3)
        jets = [(float(ev["Jet_pt"][j]), float(ev["Jet_eta"][j]), float(ev["Jet_phi"][j]), float(ev["Jet_mass"][j]),
                 float(ev["Jet_btagDeepFlavB"][j])) for j in range(len(ev["Jet_pt"]))]
        jets = [j for j in jets if j[0] > 30 and abs(j[1]) < 2.4 and _dr(j[1], j[2], leta, lphi) >= 0.4]
        assert row.NJ == len(jets)
        assert row.HT == pytest.approx(sum(j[0] for j in jets), rel=1e-5)
        assert row.NB == sum(j[4] > 0.2783 for j in jets)
        checked_b += row.NB
        assert row.MJ == pytest.approx(_mass([j[:4] for j in jets])[0] if jets else 0.0, rel=1e-4, abs=1e-3)
        mu = [(float(ev["Muon_pt"][i]), float(ev["Muon_eta"][i]), float(ev["Muon_phi"][i]), float(ev["Muon_mass"][i]))
              for i in range(len(ev["Muon_pt"]))]
        m, ptot = _mass(mu) if mu else (0.0, 0.0)
        assert row.n_mu == len(mu) and row.mu_mass == pytest.approx(m, rel=1e-4, abs=1e-3)
        assert row.mu_pt_tot == pytest.approx(ptot, rel=1e-4, abs=1e-3)
    if name == "nano_tt_v12.root":
        assert checked_b > 0  # tt̄ events do have b-tagged jets to check


def test_pfnano_isolation_components_and_pf_counts(cms_sample, tmp_path, extract):
    path = cms_sample("pfnano.root")
    sel = tmp_path / "loose.yaml"
    sel.write_text(LOOSE)
    _, df = extract([path], tmp_path / "o", feature_set="alad24", selection=str(sel))
    arrays = uproot.open(path)["Events"].arrays(filter_name=["event", "Muon_*", "Electron_*", "PFCands_*"], library="np")
    by_event = {int(e): i for i, e in enumerate(arrays["event"])}
    assert len(df) >= 3
    for row in df.itertuples():
        ev = {k: v[by_event[row.event]] for k, v in arrays.items()}
        pdg = np.abs(ev["PFCands_pdgId"])
        assert (row.n_ch, row.n_neu, row.n_photon) == ((pdg == 211).sum(), (pdg == 130).sum(), (pdg == 22).sum())

        def comps(kind, i):
            eta, phi, pt = ev[f"{kind}_eta"][i], ev[f"{kind}_phi"][i], ev[f"{kind}_pt"][i]
            out = []
            for code in (211, 130, 22):
                s = sum(ev["PFCands_pt"][j] for j in range(len(pdg))
                        if pdg[j] == code and _dr(eta, phi, ev["PFCands_eta"][j], ev["PFCands_phi"][j]) < 0.3)
                out.append(s / pt)
            return out

        lep = _lepton(ev, lambda k, i: sum(comps(k, i)))
        ch, neu, pho = comps(lep[5], lep[6])
        assert row.lep_pt == pytest.approx(lep[0], rel=1e-6)
        assert (row.lep_iso_ch, row.lep_iso_neu, row.lep_iso_gamma) == pytest.approx((ch, neu, pho), rel=1e-4)
        assert row.lep_iso == pytest.approx(ch + neu + pho, rel=1e-4)


def test_delphes_isolation_from_eflow(cms_sample, tmp_path, extract):
    path = cms_sample("delphes.root")
    sel = tmp_path / "loose.yaml"
    sel.write_text(LOOSE.replace("23.0", "0.5"))  # this small Delphes file has one lepton above 23 GeV
    _, df = extract([path], tmp_path / "o", feature_set="alad24", selection=str(sel))
    t = uproot.open(path)["Delphes"]
    names = {"Muon": ["Muon.PT", "Muon.Eta", "Muon.Phi"], "Electron": ["Electron.PT", "Electron.Eta", "Electron.Phi"],
             "EFlowTrack": ["EFlowTrack.PT", "EFlowTrack.Eta", "EFlowTrack.Phi", "EFlowTrack.PID"],
             "EFlowNeutralHadron": ["EFlowNeutralHadron.ET", "EFlowNeutralHadron.Eta", "EFlowNeutralHadron.Phi"],
             "EFlowPhoton": ["EFlowPhoton.ET", "EFlowPhoton.Eta", "EFlowPhoton.Phi"]}
    arrays = {k: t.arrays(v, library="np") for k, v in names.items()}
    assert len(df) >= 2
    assert (df.run == 1).all() and (df.luminosityBlock == 1).all()
    for row in df.itertuples():
        i = row.event  # Delphes has no event ids: event = entry number
        tr = arrays["EFlowTrack"]
        ntrk = len(tr["EFlowTrack.PT"][i])
        assert row.n_ch == ntrk
        assert row.n_neu == len(arrays["EFlowNeutralHadron"]["EFlowNeutralHadron.ET"][i])
        assert row.n_photon == len(arrays["EFlowPhoton"]["EFlowPhoton.ET"][i])

        def comps(kind, j):
            a = arrays[kind]
            pt, eta, phi = a[f"{kind}.PT"][i][j], a[f"{kind}.Eta"][i][j], a[f"{kind}.Phi"][i][j]
            ch = sum(tr["EFlowTrack.PT"][i][k] for k in range(ntrk) if abs(tr["EFlowTrack.PID"][i][k]) not in (11, 13)
                     and _dr(eta, phi, tr["EFlowTrack.Eta"][i][k], tr["EFlowTrack.Phi"][i][k]) < 0.3)
            out = [ch]
            for coll in ("EFlowNeutralHadron", "EFlowPhoton"):
                c = arrays[coll]
                out.append(sum(c[f"{coll}.ET"][i][k] for k in range(len(c[f"{coll}.ET"][i]))
                               if _dr(eta, phi, c[f"{coll}.Eta"][i][k], c[f"{coll}.Phi"][i][k]) < 0.3))
            return [x / pt for x in out], pt

        best = None
        for kind, flag in (("Muon", 0), ("Electron", 1)):
            for j in range(len(arrays[kind][f"{kind}.PT"][i])):
                c, pt = comps(kind, j)
                if pt > 0.5 and (best is None or pt > best[0]):
                    best = (pt, c, flag)
        assert row.lep_pt == pytest.approx(best[0], rel=1e-6) and row.lep_is_ele == best[2]
        assert (row.lep_iso_ch, row.lep_iso_neu, row.lep_iso_gamma) == pytest.approx(best[1], rel=1e-4, abs=1e-7)
