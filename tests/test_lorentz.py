"""Lorentz geometry against the references' formulas written out here (MERU's and HySAC's `lorentz.py`: their eps,
clamps and caps), in float64, float32 and float16, near the origin, at huge norms and for near-duplicates; plus
the places where ours is deliberately more accurate, checked against high-precision truth."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from imagesafety.hyperbolic import lorentz as L  # noqa: E402

# ---- the references, written independently (torch, as MERU / HySAC compute them) ----------------------------


def meru_pairwise_inner(x, y, curv):
    xt = torch.sqrt(1 / curv + torch.sum(x**2, dim=-1, keepdim=True))
    yt = torch.sqrt(1 / curv + torch.sum(y**2, dim=-1, keepdim=True))
    return x @ y.T - xt @ yt.T


def meru_pairwise_dist(x, y, curv, eps=1e-8):
    return torch.acosh(torch.clamp(-curv * meru_pairwise_inner(x, y, curv), min=1 + eps)) / curv**0.5


def meru_exp_map0(x, curv, eps=1e-8):
    rc_xnorm = curv**0.5 * torch.norm(x, dim=-1, keepdim=True)
    sinh_input = torch.clamp(rc_xnorm, min=eps, max=math.asinh(2**15))
    return torch.sinh(sinh_input) * x / torch.clamp(rc_xnorm, min=eps)


def meru_log_map0(x, curv, eps=1e-5):
    rc_x_time = torch.sqrt(1 + curv * torch.sum(x**2, dim=-1, keepdim=True))
    distance0 = torch.acosh(torch.clamp(rc_x_time, min=1 + eps))
    return distance0 * x / torch.clamp(curv**0.5 * torch.norm(x, dim=-1, keepdim=True), min=eps)


def meru_half_aperture(x, curv, min_radius=0.1, eps=1e-5):
    asin_input = 2 * min_radius / (torch.norm(x, dim=-1) * curv**0.5 + eps)
    return torch.asin(torch.clamp(asin_input, min=-1 + eps, max=1 - eps))


def meru_oxy_angle(x, y, curv, eps=1e-5):
    xt = torch.sqrt(1 / curv + torch.sum(x**2, dim=-1))
    yt = torch.sqrt(1 / curv + torch.sum(y**2, dim=-1))
    c_xyl = curv * (torch.sum(x * y, dim=-1) - xt * yt)
    numer = yt + c_xyl * xt
    denom = torch.sqrt(torch.clamp(c_xyl**2 - 1, min=eps))
    return torch.acos(torch.clamp(numer / (torch.norm(x, dim=-1) * denom + eps), min=-1 + eps, max=1 - eps))


def exact_dist(x, y, c):
    """High-precision truth (Python floats, 50 digits) for one pair of points."""
    from decimal import Decimal, getcontext

    getcontext().prec = 50
    cx = Decimal(c)
    xs, ys = [Decimal(float(v)) for v in x], [Decimal(float(v)) for v in y]
    xt = (1 / cx + sum(v * v for v in xs)).sqrt()
    yt = (1 / cx + sum(v * v for v in ys)).sqrt()
    m = sum((a - b) ** 2 for a, b in zip(xs, ys)) - (xt - yt) ** 2  # Minkowski norm of the difference, exactly
    return 2 / math.sqrt(c) * math.asinh(math.sqrt(c) / 2 * math.sqrt(max(float(m), 0.0)))


# ---- points in the regimes that decide ties and losses ---------------------------------------------------------


def regimes(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    ordinary = torch.randn(16, 8, generator=g, dtype=torch.float64) * 1.5
    near_origin = torch.randn(16, 8, generator=g, dtype=torch.float64) * 1e-3
    huge = torch.randn(16, 8, generator=g, dtype=torch.float64) * 2e3
    return {name: p.to(dtype) for name, p in (("ordinary", ordinary), ("near origin", near_origin), ("huge", huge))}


TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-6, torch.float16: 1e-6}  # fp16 is computed in float32


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
@pytest.mark.parametrize("c", [0.3, 1.0, 2.5])
def test_functions_equal_the_references_in_every_regime(dtype, c):
    for name, x in regimes(dtype).items():
        y = torch.roll(x, 1, 0)
        ref_x, ref_y = x.float() if dtype == torch.float16 else x, y.float() if dtype == torch.float16 else y
        tol = TOLERANCE[dtype]

        def same(ours, theirs, what):
            ours, theirs = ours.to(theirs.dtype), theirs.to(ours.dtype) if dtype != torch.float16 else theirs.half()
            np.testing.assert_allclose(
                ours.double().numpy(),
                theirs.double().numpy(),
                rtol=max(tol, 1e-3 if dtype == torch.float16 else tol),
                atol=tol,
                err_msg=f"{what}, {name}, {dtype}, c={c}",
            )

        same(L.pairwise_dist(x, y, c), meru_pairwise_dist(ref_x, ref_y, c), "pairwise_dist")
        same(L.exp_map0(x, c), meru_exp_map0(ref_x, c), "exp_map0")
        same(L.half_aperture(x, c), meru_half_aperture(ref_x, c), "half_aperture")
        same(L.exterior_angle(x, y, c), meru_oxy_angle(ref_x, ref_y, c), "exterior_angle")
        same(
            L.entailment_loss(x, y, c),
            torch.clamp(meru_oxy_angle(ref_x, ref_y, c) - meru_half_aperture(ref_x, c), min=0).mean(),
            "entailment_loss",
        )


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_near_duplicates_are_ranked_as_the_reference_ranks_them(dtype):
    """The reference floors -c<x,y>_L at 1 + 1e-8 before arccosh; so do we (our old 1e-6 floored distances at 1.4e-3
    and tied near-duplicates the reference tells apart in float64)."""
    g = torch.Generator().manual_seed(1)
    base = torch.randn(1, 8, generator=g, dtype=torch.float64)
    gallery = (
        base
        + torch.logspace(-6, -2, 12, dtype=torch.float64)[:, None]
        * torch.randn(12, 8, generator=g, dtype=torch.float64)
    ).to(dtype)
    ours = L.pairwise_dist(base.to(dtype), gallery, 1.0)
    theirs = meru_pairwise_dist(base.to(dtype), gallery, 1.0)
    assert torch.equal(ours, theirs)
    if dtype == torch.float64:
        assert ours.min().item() < 1e-3  # no 1.4e-3 floor
        assert torch.argsort(ours[0]).tolist() == torch.argsort(theirs[0]).tolist()


def test_where_ours_is_more_accurate_than_the_reference():
    """Documented exceptions: element-wise `dist`, `dist_to_origin` and `log_map0` avoid arccosh near 1, so they
    are exact near the origin and for near-duplicates, where the reference's clamps give a floor."""
    x = torch.tensor([[3e-6, -2e-6, 1e-6]], dtype=torch.float64)
    truth = math.asinh(float(x.norm()))  # c = 1
    assert L.dist_to_origin(x, 1.0).item() == pytest.approx(truth, rel=1e-12)
    assert meru_pairwise_dist(x, torch.zeros_like(x), 1.0).item() > 10 * truth  # the reference's floor
    np.testing.assert_allclose(L.log_map0(x, 1.0).numpy(), (x * truth / x.norm()).numpy(), rtol=1e-10)
    assert np.abs(meru_log_map0(x, 1.0).numpy() - x.numpy()).max() > 1e-3  # clamped to a floor
    a = torch.tensor([[0.7, -1.2, 0.3]], dtype=torch.float64)
    b = a + 1e-7
    assert L.dist(a, b, 1.0).item() == pytest.approx(exact_dist(a[0], b[0], 1.0), rel=1e-6)
    assert L.dist(a, a, 1.0).item() < 1e-150  # identical points: 0, without a constant offset
    assert L.dist(a, a + 0.25, 1.0).item() == pytest.approx(exact_dist(a[0], (a + 0.25)[0], 1.0), rel=1e-12)


def test_distance_identities():
    g = torch.Generator().manual_seed(0)
    x, y = (
        torch.randn(20, 6, generator=g, dtype=torch.float64) * 1.5,
        torch.randn(20, 6, generator=g, dtype=torch.float64),
    )
    c = 1.3
    assert torch.all(L.dist(x, x, c) < 1e-150)
    assert torch.allclose(L.dist(x, y, c), L.dist(y, x, c))
    z = torch.roll(y, 1, 0)
    assert torch.all(L.dist(x, z, c) <= L.dist(x, y, c) + L.dist(y, z, c) + 1e-9)
    assert torch.allclose(L.pairwise_dist(x, y, c).diagonal(), L.dist(x, y, c), atol=1e-6)


def test_exp_and_log_are_inverse_and_geodesics_end_at_their_points():
    g = torch.Generator().manual_seed(2)
    x, y = (
        torch.randn(20, 6, generator=g, dtype=torch.float64) * 1.5,
        torch.randn(20, 6, generator=g, dtype=torch.float64),
    )
    c = 0.7
    assert torch.allclose(L.exp_map0(L.log_map0(x, c), c), x, atol=1e-9)
    assert torch.allclose(L.geodesic(x, y, 0.0, c), x, atol=1e-9) and torch.allclose(
        L.geodesic(x, y, 1.0, c), y, atol=1e-7
    )
    mid = L.geodesic(x, y, 0.5, c)
    assert torch.allclose(L.dist(x, mid, c), L.dist(x, y, c) / 2, atol=1e-6)
    toward = L.toward_origin(x, 0.25, c)
    assert torch.allclose(L.dist_to_origin(toward, c), 0.75 * L.dist_to_origin(x, c), atol=1e-9)


def test_cone_properties():
    c = 1.0
    x = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    beyond = L.exp_map0(L.log_map0(x, c) * 3, c)  # same direction, farther from the origin
    assert L.exterior_angle(x, beyond, c).item() == pytest.approx(0.0, abs=5e-3)  # acos clamped at 1 - eps
    assert L.entailment_loss(x, beyond, c).item() == 0.0
    sideways = torch.tensor([[0.0, 2.0, 0.0]], dtype=torch.float64)
    assert L.exterior_angle(x, sideways, c).item() > L.half_aperture(x, c).item()
    assert L.entailment_loss(x, sideways, c).item() > 0
    assert L.half_aperture(x * 2, c) < L.half_aperture(x, c)  # apertures shrink with distance from the origin


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_large_norms_stay_finite_in_low_precision(dtype):
    x = (torch.randn(8, 64) * 300).to(dtype)
    y = (torch.randn(8, 64) * 300).to(dtype)
    for value in (
        L.dist(x, y, 1.0),
        L.pairwise_dist(x, y, 1.0),
        L.dist_to_origin(x, 1.0),
        L.half_aperture(x, 1.0),
        L.exterior_angle(x, y, 1.0),
        L.log_map0(x, 1.0),
        L.exp_map0(torch.randn(8, 64).to(dtype) * 500, 1.0),
    ):
        assert value.dtype == dtype and torch.isfinite(value.float()).all()


def test_gradients_are_finite_at_the_clamps():
    x = torch.zeros(4, 5, requires_grad=True)  # origin: aperture and log map at their clamps
    y = torch.zeros(4, 5, requires_grad=True)
    total = (
        L.dist(x, y, 1.0).sum()
        + L.half_aperture(x + 1e-9, 1.0).sum()
        + L.log_map0(x, 1.0).sum()
        + L.pairwise_dist(x, y, 1.0).sum()
        + L.entailment_loss(x + 1e-3, y, 1.0)
    )
    total.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    big = (torch.ones(2, 3) * 1e3).requires_grad_(True)
    L.exp_map0(big, 1.0).sum().backward()
    assert torch.isfinite(big.grad).all()


def test_hysac_total_loss_is_the_authors_formula():
    """The authors' trainer: loss weights normalised to sum to 1, the weighted sum of the seven terms divided by their
    count (so with equal weights: the sum of the terms / 49), written here independently of `hysac_loss`."""
    import torch

    from imagesafety.hyperbolic.losses import LossWeights, hysac_loss

    torch.manual_seed(0)
    st, si, ut, ui = (torch.randn(6, 8) * 0.5 for _ in range(4))
    curvature, scale = torch.tensor(1.0), torch.tensor(10.0)
    total, terms = hysac_loss(st, si, ut, ui, curvature, scale)
    assert len(terms) == 7
    assert float(total) == pytest.approx(sum(terms.values()) / 49, rel=1e-6)
    weights = LossWeights(entail_safe=0.2, entail_unsafe=0.2, entail_safety=0.2)
    total, terms = hysac_loss(st, si, ut, ui, curvature, scale, weights)
    raw = {k: getattr(weights, k) for k in terms}
    expected = sum(raw[k] / sum(raw.values()) * v for k, v in terms.items()) / 7
    assert float(total) == pytest.approx(expected, rel=1e-6)
