"""The generator's scalar numba kernels against numpy references (exact where they claim to be)."""
import numpy as np
import pytest
from numba import njit

from sparkad.generate.detector import simulate
from sparkad.generate.kinematics import s_poisson_exact, s_ptetaphim
from sparkad.generate.processes import Context, generate_truth


@njit
def _poisson_draws(rng, lam, n):
    out = np.empty(n, np.int64)
    for i in range(n):
        out[i] = s_poisson_exact(rng, lam)
    return out


@pytest.mark.parametrize("lam", [0.5, 3.0, 9.99, 10.0, 11.0, 14.7, 35.5, 99.0, 400.0])
def test_poisson_draws_are_numpys(lam):
    """Same seed, same deviates as numpy's Generator.poisson (numba's own port of PTRS truncates where
    numpy floors and drifts from numpy's stream at 10 <= lam ~< 20)."""
    n = 200_000
    ours = _poisson_draws(np.random.default_rng(7), lam, n)
    np.testing.assert_array_equal(ours, np.random.default_rng(7).poisson(lam, n))


@njit
def _kin(p4):
    out = np.empty((p4.shape[0], 4))
    for i in range(p4.shape[0]):
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = s_ptetaphim(p4[i, 0], p4[i, 1], p4[i, 2], p4[i, 3])
    return out


def test_ptetaphim_matches_numpy_with_eta_clamp():
    r = np.random.default_rng(3)
    n = 100_000
    pt = 10 ** r.uniform(-1, 3, n)
    eta = r.uniform(-12, 12, n)
    phi = r.uniform(-np.pi, np.pi, n)
    m = r.uniform(0, 100, n)
    px, py, pz = pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)
    p4 = np.stack([np.sqrt(px ** 2 + py ** 2 + pz ** 2 + m ** 2), px, py, pz], 1)
    p4 = np.vstack([p4, [[1.0, 0.0, 0.0, 1.0]]])  # pt = 0: eta 0
    got = _kin(p4)
    ref_eta = np.clip(np.arcsinh(p4[:-1, 3] / np.hypot(p4[:-1, 1], p4[:-1, 2])), -10, 10)
    np.testing.assert_allclose(got[:-1, 0], np.hypot(px, py), rtol=1e-14)
    np.testing.assert_allclose(got[:-1, 1], ref_eta, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got[:-1, 2], np.arctan2(py, px), rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(got[:-1, 3], m, rtol=1e-6, atol=2e-3 * np.sqrt(p4[:-1, 0]).max())
    assert got[-1, 1] == 0.0 and got[-1, 0] == 0.0
    assert np.abs(got[:, 1]).max() == 10.0


@pytest.mark.parametrize("process", ["wjets", "ttbar", "h0_tautau"])
def test_genpart_kinematics_are_those_of_the_truth_record(process):
    """GenPart entries reuse the kinematics of the reconstructed slot holding the same particle (taus'
    slots hold only the visible part, so theirs are computed anew): both paths give the record's."""
    n = 3000
    rng = np.random.default_rng(11)
    batch = generate_truth(process, rng, n, Context(8000.0), {})
    reco = simulate(batch, rng, {}, np.full(n, 21.0), is_data=False, faults=[])
    gen = reco["GenPart"]
    np.testing.assert_array_equal(gen.counts, batch.gvalid.sum(1))
    gp4 = batch.gp4[batch.gvalid]
    pt = np.hypot(gp4[:, 1], gp4[:, 2])
    eta = np.clip(np.arcsinh(gp4[:, 3] / np.where(pt > 0, pt, 1.0)), -10, 10)
    m2 = gp4[:, 0] ** 2 - pt ** 2 - gp4[:, 3] ** 2
    np.testing.assert_allclose(gen.fields["pt"], pt, rtol=1e-6)
    np.testing.assert_allclose(gen.fields["eta"], eta, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gen.fields["phi"], np.arctan2(gp4[:, 2], gp4[:, 1]), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gen.fields["mass"], np.sqrt(np.maximum(m2, 0)), rtol=1e-4, atol=0.05)
    np.testing.assert_array_equal(gen.fields["pdgId"], batch.gpdg[batch.gvalid])


def test_poisson_of_nan_returns_instead_of_looping():
    @njit
    def draw(rng):
        return s_poisson_exact(rng, np.nan)

    assert draw(np.random.default_rng(1)) == 0
