"""The critical line chi1 = 1 for tanh (theory.md section 1, case 4) and its q*-parametrisation.

Each test pins a number from /work/shared/reference/theory.md ('case N' = its "Reference
test cases").
"""

from __future__ import annotations

import pytest

from gradmedic import theory as T

TANH_CRITICAL = [  # sb2, critical sw2, q* on the line (case 4, abs 1e-4)
    (0.0, 1.000000, 0.0),
    (0.01, 1.424205, 0.273301),
    (0.05, 1.760955, 0.570048),
    (0.1, 1.986073, 0.805799),
    (0.3, 2.505127, 1.461169),
]


@pytest.mark.parametrize(("sb2", "sw2", "q_star"), TANH_CRITICAL)
def test_tanh_critical_sigma_w2_and_q_star(sb2: float, sw2: float, q_star: float) -> None:
    w = T.critical_sigma_w2("tanh", sb2)
    assert w == pytest.approx(sw2, abs=1e-4)
    assert T.fixed_point_q("tanh", w, sb2) == pytest.approx(q_star, abs=1e-4)
    assert T.chi1("tanh", w, sb2) == pytest.approx(1.0, abs=1e-8)


def test_critical_line_matches_critical_sigma_w2() -> None:
    pts = T.critical_line("tanh", [sb2 for sb2, _, _ in TANH_CRITICAL])
    for p, (sb2, sw2, q_star) in zip(pts, TANH_CRITICAL, strict=True):
        assert isinstance(p, T.CriticalPoint)
        assert p.sigma_b2 == sb2
        assert p.sigma_w2 == pytest.approx(sw2, abs=1e-4)
        assert p.q_star == pytest.approx(q_star, abs=1e-4)


@pytest.mark.parametrize(
    ("q", "sw2", "sb2", "tol_b"),
    [  # Section 1, "Line parametrised by q*" (6 decimals given, 4.7e-6 and 1.51803 fewer)
        (1 / 64, 1.030558, 4.7e-6, 1e-7),
        (0.25, 1.393962, 0.008125, 1e-6),
        (0.5, 1.687975, 0.038041, 1e-6),
        (1.0, 2.153303, 0.150965, 1e-6),
        (2.0, 2.861162, 0.512265, 1e-6),
        (4.0, 3.90700, 1.51803, 1e-5),
    ],
)
def test_critical_line_parametrised_by_q(q: float, sw2: float, sb2: float, tol_b: float) -> None:
    p = T.critical_point_at_q("tanh", q)
    assert p.sigma_w2 == pytest.approx(sw2, abs=1e-5)
    assert p.sigma_b2 == pytest.approx(sb2, abs=tol_b)
    # the two parametrisations describe the same line
    assert T.fixed_point_q("tanh", p.sigma_w2, p.sigma_b2) == pytest.approx(q, rel=1e-8)
    assert T.chi1("tanh", p.sigma_w2, p.sigma_b2) == pytest.approx(1.0, abs=1e-10)
    assert T.critical_line_from_q("tanh", [q]) == [p]
