"""The kinematic kernels the extraction runs, against values computed by hand and against coffea's
vector methods on the same events."""
import math

import numpy as np
import pytest

import awkward as ak

from sparkad.extract.kernels import jet_sums, lepton_met, vector_sum
from sparkad.extract.kinematics import delta_phi, delta_r


@pytest.mark.parametrize("a,b,expected", [(3.0, -3.0, 6.0 - 2 * math.pi), (-3.0, 3.0, 2 * math.pi - 6.0),
                                          (0.5, 0.2, 0.3), (math.pi, 0.0, -math.pi)])
def test_delta_phi_wraps_into_minus_pi_pi(a, b, expected):
    d = delta_phi(np.array([a]), np.array([b]))[0]
    assert -math.pi <= d < math.pi
    assert d == pytest.approx(expected)


def test_delta_r_uses_wrapped_phi():
    assert delta_r(0.0, 3.1, 0.3, -3.1) == pytest.approx(math.hypot(0.3, 2 * math.pi - 6.2))


def _coffea(fields, name):
    from coffea.nanoevents.methods import vector

    return ak.zip(fields, with_name=name, behavior=vector.behavior)


def test_lepton_met_kernel_matches_coffea_vector_methods():
    """MT, and MET parallel / perpendicular to the lepton, from the kernel the extraction runs vs the
    same quantities from coffea's vector methods on the same events."""
    rng = np.random.default_rng(11)
    n = 3000
    lep = _coffea({"pt": rng.uniform(20, 300, n), "phi": rng.uniform(-np.pi, np.pi, n)}, "PolarTwoVector")
    met = _coffea({"pt": rng.exponential(40, n), "phi": rng.uniform(-np.pi, np.pi, n)}, "PolarTwoVector")
    mt, par, perp = lepton_met(ak.to_numpy(lep.pt), ak.to_numpy(lep.phi), ak.to_numpy(met.pt), ak.to_numpy(met.phi))
    dphi = ak.to_numpy(met.deltaphi(lep))
    unit = lep / lep.pt
    np.testing.assert_allclose(mt, ak.to_numpy(np.sqrt(2 * lep.pt * met.pt * (1 - np.cos(dphi)))), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(par, ak.to_numpy(met.dot(unit)), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(perp, ak.to_numpy(unit.x * met.y - unit.y * met.x), rtol=1e-9, atol=1e-9)  # signed: ẑ·(l̂ × MET)
    # the W Jacobian edge: MT of a back-to-back 40 GeV pair is 80
    assert lepton_met(np.array([40.0]), np.array([0.0]), np.array([40.0]), np.array([np.pi]))[0][0] == pytest.approx(80.0)


def test_vector_and_jet_sums_match_coffea_lorentz_sums():
    """vector_sum (pT and mass of the summed objects) and jet_sums (NJ, NB, HT, MJ with the pT / η cuts
    and the ΔR cleaning against the lepton) vs coffea's PtEtaPhiMLorentzVector methods."""
    rng = np.random.default_rng(12)
    counts = rng.integers(0, 7, 1500)
    off = np.concatenate([[0], np.cumsum(counts)])
    k = int(off[-1])
    pt, eta = rng.uniform(15, 400, k), rng.uniform(-3, 3, k)
    phi, mass = rng.uniform(-np.pi, np.pi, k), rng.uniform(0, 30, k)
    btag = rng.random(k) < 0.3
    lep_eta, lep_phi = rng.uniform(-2.4, 2.4, len(counts)), rng.uniform(-np.pi, np.pi, len(counts))
    ev = np.arange(len(counts))
    jets = ak.unflatten(_coffea({"pt": pt, "eta": eta, "phi": phi, "mass": mass}, "PtEtaPhiMLorentzVector"), counts)
    btags = ak.unflatten(btag, counts)

    n, ptot, m = vector_sum(off, pt, eta, phi, mass, ev)
    total = jets.sum(axis=1)
    np.testing.assert_array_equal(n, counts)
    np.testing.assert_allclose(ptot, ak.to_numpy(total.pt), rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(m, ak.to_numpy(total.mass), rtol=1e-7, atol=1e-5)

    lep = _coffea({"pt": np.ones(len(counts)), "eta": lep_eta, "phi": lep_phi, "mass": np.zeros(len(counts))},
                  "PtEtaPhiMLorentzVector")
    good = (jets.pt > 30) & (abs(jets.eta) < 2.4) & (jets.delta_r(lep) >= 0.4)
    nj, nb, ht, mj = jet_sums(off, pt, eta, phi, mass, btag, ev, lep_eta, lep_phi, 30.0, 2.4, 0.4)
    np.testing.assert_array_equal(nj, ak.to_numpy(ak.sum(good, axis=1)))
    np.testing.assert_array_equal(nb, ak.to_numpy(ak.sum(good & btags, axis=1)))
    np.testing.assert_allclose(ht, ak.to_numpy(ak.sum(jets.pt[good], axis=1)), rtol=1e-12)
    np.testing.assert_allclose(mj, ak.to_numpy(jets[good].sum(axis=1).mass), rtol=1e-7, atol=1e-5)


def test_vector_sum_of_two_massless_back_to_back_objects():
    off = np.array([0, 2, 2, 3])
    pt, eta = np.array([45.0, 45.0, 30.0]), np.array([0.0, 0.0, 1.0])
    phi, mass = np.array([0.0, math.pi, 0.5]), np.array([0.0, 0.0, 0.10566])
    n, ptot, m = vector_sum(off, pt, eta, phi, mass, np.arange(3))
    assert list(n) == [2, 0, 1]
    assert ptot == pytest.approx([0.0, 0.0, 30.0], abs=1e-9)
    assert m == pytest.approx([90.0, 0.0, 0.10566], rel=1e-6)
    # only the listed events are processed, in the listed order
    assert list(vector_sum(off, pt, eta, phi, mass, np.array([2, 0]))[0]) == [1, 2]


def test_jet_sums_cuts_and_lepton_cleaning():
    off = np.array([0, 4])
    pt = np.array([80.0, 29.0, 35.0, 50.0])
    eta = np.array([0.0, 0.0, 0.5, 2.5])
    phi = np.array([1.0, 0.0, 3.1, 0.0])
    btag = np.array([True, True, False, True])
    # lepton at (0.5, -3.1): ΔR to the 35 GeV jet is |Δφ| wrapped = 0.083 < 0.4 -> removed
    nj, nb, ht, mj = jet_sums(off, pt, eta, phi, np.zeros(4), btag, np.array([0]), np.array([0.5]), np.array([-3.1]),
                              30.0, 2.4, 0.4)
    assert (nj[0], nb[0], ht[0], mj[0]) == (1, 1, 80.0, pytest.approx(0.0, abs=1e-6))
    nj, _, ht, _ = jet_sums(off, pt, eta, phi, np.zeros(4), btag, np.array([0]), np.array([np.nan]), np.array([np.nan]),
                            30.0, 2.4, 0.4)
    assert (nj[0], ht[0]) == (2, 115.0)


def test_float32_angles_keep_single_object_masses_and_match_float64():
    """Float32 φ takes the SIMD path (kernels.directions): cos² + sin² is renormalised, so a lone
    muon keeps its own mass, and sums agree with the float64 path to float32 precision."""
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 5, 2000)
    off = np.concatenate([[0], np.cumsum(counts)])
    k = int(off[-1])
    pt = rng.uniform(5, 300, k).astype(np.float32)
    eta = rng.uniform(-2.5, 2.5, k).astype(np.float32)
    phi = rng.uniform(-np.pi, np.pi, k).astype(np.float32)
    mass = np.full(k, 0.1056584, np.float32)
    ev = np.arange(len(counts))
    n32, p32, m32 = vector_sum(off, pt, eta, phi, mass, ev)
    n64, p64, m64 = vector_sum(off, pt, eta, phi.astype(np.float64), mass, ev)
    assert list(n32) == list(n64)
    assert p32 == pytest.approx(p64, rel=1e-6, abs=1e-4)
    assert m32 == pytest.approx(m64, rel=1e-6, abs=1e-4)
    single = counts == 1
    assert m32[single] == pytest.approx(np.full(single.sum(), 0.1056584), rel=1e-4)


def test_kernel_delta_phi_matches_the_numpy_definition():
    from sparkad.extract.kernels import _dphi

    rng = np.random.default_rng(3)
    a = np.concatenate([rng.uniform(-np.pi, np.pi, 1000), rng.uniform(-20, 20, 1000), [np.pi, -np.pi, 0.0]])
    b = np.concatenate([rng.uniform(-np.pi, np.pi, 1000), rng.uniform(-20, 20, 1000), [0.0, np.pi, np.pi]])
    got = np.array([_dphi(x, y) for x, y in zip(a, b)])
    assert np.all((got >= -np.pi) & (got < np.pi))
    assert got == pytest.approx(delta_phi(a, b), abs=1e-12)
