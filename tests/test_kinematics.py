"""Pure kinematic helpers against values computed by hand."""
import math

import awkward as ak
import numpy as np
import pytest

from sparkad.kinematics import delta_phi, delta_r, met_projections, system_pt_mass, transverse_mass


@pytest.mark.parametrize("a,b,expected", [(3.0, -3.0, 6.0 - 2 * math.pi), (-3.0, 3.0, 2 * math.pi - 6.0),
                                          (0.5, 0.2, 0.3), (math.pi, 0.0, -math.pi)])
def test_delta_phi_wraps_into_minus_pi_pi(a, b, expected):
    d = delta_phi(np.array([a]), np.array([b]))[0]
    assert -math.pi <= d < math.pi
    assert d == pytest.approx(expected)


def test_delta_r_uses_wrapped_phi():
    assert delta_r(0.0, 3.1, 0.3, -3.1) == pytest.approx(math.hypot(0.3, 2 * math.pi - 6.2))


def test_transverse_mass_has_the_square_root():
    # back-to-back lepton and MET of 40 GeV: MT = 2 * 40 = 80
    assert transverse_mass(np.array([40.0]), np.array([40.0]), np.array([math.pi]))[0] == pytest.approx(80.0)
    assert transverse_mass(np.array([40.0]), np.array([40.0]), np.array([0.0]))[0] == pytest.approx(0.0)


def test_met_projections_are_signed():
    par, perp = met_projections(np.array([10.0, 10.0]), np.array([0.0, 0.0]), np.array([math.pi / 2, -math.pi / 2]))
    assert par == pytest.approx([0.0, 0.0], abs=1e-12)
    assert perp == pytest.approx([-10.0, 10.0])


def test_system_pt_mass_of_two_massless_back_to_back_objects():
    pt = ak.Array([[45.0, 45.0], [], [30.0]])
    eta = ak.Array([[0.0, 0.0], [], [1.0]])
    phi = ak.Array([[0.0, math.pi], [], [0.5]])
    mass = ak.Array([[0.0, 0.0], [], [0.10566]])
    ptot, m = system_pt_mass(pt, eta, phi, mass)
    assert ptot == pytest.approx([0.0, 0.0, 30.0], abs=1e-9)
    assert m == pytest.approx([90.0, 0.0, 0.10566], rel=1e-6)
