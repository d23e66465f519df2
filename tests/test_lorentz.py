"""Lorentz geometry against float64 formulas written out here, identities, cone properties and finite gradients."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from imagesafety.hyperbolic import lorentz as L  # noqa: E402


def ref_time(x, c):
    return math.sqrt(1 / c + sum(v * v for v in x))


def ref_inner(x, y, c):
    return sum(a * b for a, b in zip(x, y)) - ref_time(x, c) * ref_time(y, c)


def ref_dist(x, y, c):
    return math.acosh(max(1.0, -c * ref_inner(x, y, c))) / math.sqrt(c)


def ref_exp0(v, c):
    n = math.sqrt(sum(a * a for a in v))
    return [math.sinh(math.sqrt(c) * n) * a / (math.sqrt(c) * n) for a in v]


def ref_aper(x, c, k=0.1):
    return math.asin(min(1.0, 2 * k / (math.sqrt(c) * math.sqrt(sum(a * a for a in x)))))


def ref_ext(x, y, c):
    cxy = c * ref_inner(x, y, c)
    num = ref_time(y, c) + cxy * ref_time(x, c)
    den = math.sqrt(sum(a * a for a in x)) * math.sqrt(cxy * cxy - 1)
    return math.acos(max(-1.0, min(1.0, num / den)))


@pytest.fixture
def points():
    rng = np.random.default_rng(0)
    return torch.tensor(rng.normal(size=(20, 6)) * 1.5, dtype=torch.float64), torch.tensor(rng.normal(size=(20, 6)), dtype=torch.float64)


@pytest.mark.parametrize("c", [0.1, 1.0, 2.5])
def test_functions_match_float64_formulas(points, c):
    x, y = points
    for i in range(len(x)):
        xi, yi = x[i].tolist(), y[i].tolist()
        assert L.inner(x[i], y[i], c).item() == pytest.approx(ref_inner(xi, yi, c), rel=1e-9)
        assert L.dist(x[i], y[i], c).item() == pytest.approx(ref_dist(xi, yi, c), rel=1e-6, abs=1e-6)
        assert L.pairwise_dist(x[i : i + 1], y[i : i + 1], c).item() == pytest.approx(ref_dist(xi, yi, c), rel=1e-6)
        assert L.exp_map0(y[i], c).tolist() == pytest.approx(ref_exp0(yi, c), rel=1e-9)
        assert L.half_aperture(x[i], c).item() == pytest.approx(ref_aper(xi, c), rel=1e-6)
        assert L.exterior_angle(x[i], y[i], c).item() == pytest.approx(ref_ext(xi, yi, c), rel=1e-5, abs=1e-5)
        assert L.dist_to_origin(x[i], c).item() == pytest.approx(ref_dist(xi, [0.0] * 6, c), rel=1e-7)


def test_distance_identities(points):
    x, y = points
    c = 1.3
    assert torch.all(L.dist(x, x, c) == 0)
    assert torch.allclose(L.dist(x, y, c), L.dist(y, x, c))
    z = torch.roll(y, 1, 0)
    assert torch.all(L.dist(x, z, c) <= L.dist(x, y, c) + L.dist(y, z, c) + 1e-9)
    pw = L.pairwise_dist(x, y, c)
    assert torch.allclose(pw.diagonal(), L.dist(x, y, c), atol=1e-6)


def test_exp_and_log_are_inverse_and_geodesics_end_at_their_points(points):
    x, y = points
    c = 0.7
    assert torch.allclose(L.exp_map0(L.log_map0(x, c), c), x, atol=1e-9)
    assert torch.allclose(L.geodesic(x, y, 0.0, c), x, atol=1e-9) and torch.allclose(L.geodesic(x, y, 1.0, c), y, atol=1e-7)
    mid = L.geodesic(x, y, 0.5, c)
    assert torch.allclose(L.dist(x, mid, c), L.dist(x, y, c) / 2, atol=1e-6)
    toward = L.toward_origin(x, 0.25, c)
    assert torch.allclose(L.dist_to_origin(toward, c), 0.75 * L.dist_to_origin(x, c), atol=1e-9)


def test_cone_properties():
    c = 1.0
    x = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    beyond = L.exp_map0(L.log_map0(x, c) * 3, c)  # same direction, farther from the origin
    assert L.exterior_angle(x, beyond, c).item() == pytest.approx(0.0, abs=2e-3)  # acos clamped at 1 - EPS
    assert L.entailment_loss(x, beyond, c).item() == 0.0
    sideways = torch.tensor([[0.0, 2.0, 0.0]], dtype=torch.float64)
    assert L.exterior_angle(x, sideways, c).item() > L.half_aperture(x, c).item()
    assert L.entailment_loss(x, sideways, c).item() > 0
    # apertures shrink with distance from the origin
    assert L.half_aperture(x * 2, c) < L.half_aperture(x, c)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_large_norms_stay_finite_in_low_precision(dtype):
    x = (torch.randn(8, 64) * 300).to(dtype)
    y = (torch.randn(8, 64) * 300).to(dtype)
    for value in (L.dist(x, y, 1.0), L.pairwise_dist(x, y, 1.0), L.dist_to_origin(x, 1.0), L.half_aperture(x, 1.0),
                  L.exterior_angle(x, y, 1.0), L.log_map0(x, 1.0), L.exp_map0(torch.randn(8, 64).to(dtype) * 500, 1.0)):
        assert value.dtype == dtype and torch.isfinite(value.float()).all()


def test_gradients_are_finite_at_the_clamps():
    x = torch.zeros(4, 5, requires_grad=True)  # origin: aperture and log map at their clamps
    y = torch.zeros(4, 5, requires_grad=True)
    total = L.dist(x, y, 1.0).sum() + L.half_aperture(x + 1e-9, 1.0).sum() + L.log_map0(x, 1.0).sum() \
        + L.pairwise_dist(x, y, 1.0).sum() + L.entailment_loss(x + 1e-3, y, 1.0)
    total.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    big = (torch.ones(2, 3) * 1e3).requires_grad_(True)
    L.exp_map0(big, 1.0).sum().backward()
    assert torch.isfinite(big.grad).all()
