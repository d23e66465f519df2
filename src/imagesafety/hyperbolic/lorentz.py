"""The Lorentz model of hyperbolic space with curvature -c, as pure torch functions.

Points are stored by their space part x; the time part is x_t = sqrt(1/c + |x|^2). Float16 inputs are
computed in float32 and cast back. The clamps follow the reference implementations (MERU, HySAC), so edge
cases decide ties and losses as theirs do:
- `pairwise_dist`: arccosh(max(-c<x,y>_L, 1 + 1e-8)) / sqrt(c), MERU's floor (1.4e-4 in float64, 0 in float32);
- `exp_map0`: sinh's input capped at asinh(2^15) = 11.09, as MERU (the result then fits float16 too);
- `half_aperture` and `exterior_angle`: the authors' eps (1e-5) added to denominators and kept off the arcsin /
  arccos domain edges.
Deliberately more accurate than the references, and tested so: `dist` (element-wise) and `dist_to_origin` use
forms without arccosh's cancellation near 0, and `log_map0` uses asinh(sqrt(c)|x|) instead of
arccosh(sqrt(1 + c|x|^2)) (exact near the origin, where the reference clamps to a floor).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

EPS = 1e-8  # MERU's floor on -c<x,y>_L - 1 before arccosh
ANGLE_EPS = 1e-5  # the authors' eps in the aperture and exterior-angle formulas
MAX_SINH_INPUT = math.asinh(2**15)  # MERU's cap on sinh's input in the exponential map
CONE_K = 0.1


def _f(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _like(out: Tensor, ref: Tensor) -> Tensor:
    return out.to(ref.dtype) if ref.dtype in (torch.float16, torch.bfloat16) else out


def _sqrt_c(c: float | Tensor, like: Tensor) -> Tensor:
    return torch.as_tensor(c, dtype=like.dtype, device=like.device).sqrt()


def _tiny(like: Tensor) -> float:
    """The smallest positive normal number of the dtype: a floor that changes no value above it."""
    return float(torch.finfo(like.dtype).tiny)


def time_component(x: Tensor, c: float | Tensor) -> Tensor:
    """x_t = sqrt(1/c + |x|^2), shape (...,)."""
    x = _f(x)
    return torch.sqrt(1 / c + (x * x).sum(-1))


def inner(x: Tensor, y: Tensor, c: float | Tensor) -> Tensor:
    """Lorentzian inner product <x, y>_L = x.y - x_t y_t, element-wise over leading dimensions."""
    xf, yf = _f(x), _f(y)
    return _like((xf * yf).sum(-1) - time_component(xf, c) * time_component(yf, c), x)


def pairwise_inner(x: Tensor, y: Tensor, c: float | Tensor) -> Tensor:
    """<x_i, y_j>_L for all pairs: (n, d) x (m, d) -> (n, m)."""
    xf, yf = _f(x), _f(y)
    return _like(xf @ yf.T - time_component(xf, c)[:, None] * time_component(yf, c)[None, :], x)


def dist(x: Tensor, y: Tensor, c: float | Tensor) -> Tensor:
    """Geodesic distance, element-wise; exactly 0 for identical points and accurate for close ones.

    d = (2 / sqrt c) asinh(sqrt(c) / 2 * |x - y|_L), with the Minkowski norm of the difference: the same value
    as arccosh(-c <x, y>_L) / sqrt(c) without its cancellation near 1 (and without the references' floor)."""
    xf, yf = _f(x), _f(y)
    xt, yt = time_component(xf, c), time_component(yf, c)
    dt = ((xf * xf).sum(-1) - (yf * yf).sum(-1)) / (xt + yt)  # x_t - y_t without cancellation
    diff = xf - yf
    minkowski_sq = (diff * diff).sum(-1) - dt * dt
    norm = torch.sqrt(minkowski_sq.clamp_min(_tiny(xf)))  # the floor keeps the gradient finite at 0, no offset
    sqrt_c = _sqrt_c(c, xf)
    return _like(2 / sqrt_c * torch.asinh(sqrt_c / 2 * norm), x)


def pairwise_dist(x: Tensor, y: Tensor, c: float | Tensor, eps: float = EPS) -> Tensor:
    """Distances for all pairs (n, m) = arccosh(-c <x_i, y_j>_L) / sqrt(c), its argument floored at 1 + eps (MERU's)."""
    xf, yf = _f(x), _f(y)
    arg = (-c * pairwise_inner(xf, yf, c)).clamp_min(1 + eps)
    return _like(torch.acosh(arg) / _sqrt_c(c, xf), x)


def dist_to_origin(x: Tensor, c: float | Tensor) -> Tensor:
    """Distance from the origin: asinh(sqrt(c) |x|) / sqrt(c) (exact near the origin)."""
    xf = _f(x)
    sqrt_c = _sqrt_c(c, xf)
    return _like(torch.asinh(sqrt_c * xf.norm(dim=-1)) / sqrt_c, x)


def exp_map0(v: Tensor, c: float | Tensor, eps: float = EPS) -> Tensor:
    """Exponential map at the origin: sinh(sqrt(c)|v|) v / (sqrt(c)|v|), space part; sinh's input capped as MERU."""
    vf = _f(v)
    r = _sqrt_c(c, vf) * vf.norm(dim=-1, keepdim=True)
    return _like(torch.sinh(r.clamp(min=eps, max=MAX_SINH_INPUT)) * vf / r.clamp_min(eps), v)


def log_map0(x: Tensor, c: float | Tensor) -> Tensor:
    """Logarithmic map at the origin, the inverse of `exp_map0`: asinh(sqrt(c)|x|) x / (sqrt(c)|x|)."""
    xf = _f(x)
    s = (_sqrt_c(c, xf) * xf.norm(dim=-1, keepdim=True)).clamp_min(_tiny(xf))
    return _like(torch.asinh(s) * xf / s, x)


def toward_origin(x: Tensor, t: float | Tensor, c: float | Tensor) -> Tensor:
    """The point a fraction t of the way from x to the origin along their geodesic (t=0: x, t=1: origin)."""
    t = torch.as_tensor(t, dtype=_f(x).dtype, device=x.device)
    if t.dim() == 1:
        t = t[:, None]
    return exp_map0((1 - t) * log_map0(x, c), c)


def geodesic(x: Tensor, y: Tensor, t: float, c: float | Tensor) -> Tensor:
    """The point a fraction t of the way from x to y along the geodesic, space part.

    On the hyperboloid, gamma(t) = (sinh((1-t)D) X + sinh(tD) Y) / sinh(D) with D = sqrt(c) d(x, y).
    """
    xf, yf = _f(x), _f(y)
    d = (_sqrt_c(c, xf) * dist(xf, yf, c)).clamp_min(EPS)[..., None]
    a = torch.sinh((1 - t) * d) / torch.sinh(d)
    b = torch.sinh(t * d) / torch.sinh(d)
    return _like(a * xf + b * yf, x)


def half_aperture(x: Tensor, c: float | Tensor, k: float = CONE_K, eps: float = ANGLE_EPS) -> Tensor:
    """Half-aperture of the entailment cone at x: arcsin(2K / (sqrt(c)|x| + eps)), kept inside (-1, 1) as the authors
    do."""
    xf = _f(x)
    arg = 2 * k / (xf.norm(dim=-1) * _sqrt_c(c, xf) + eps)
    return _like(torch.asin(arg.clamp(-1 + eps, 1 - eps)), x)


def exterior_angle(x: Tensor, y: Tensor, c: float | Tensor, eps: float = ANGLE_EPS) -> Tensor:
    """Angle at x between the origin->x ray extended and y (element-wise): 0 when y lies straight beyond x."""
    xf, yf = _f(x), _f(y)
    xt, yt = time_component(xf, c), time_component(yf, c)
    c_xy = c * ((xf * yf).sum(-1) - xt * yt)
    numerator = yt + c_xy * xt
    denominator = torch.sqrt((c_xy * c_xy - 1).clamp_min(eps))
    return _like(torch.acos((numerator / (xf.norm(dim=-1) * denominator + eps)).clamp(-1 + eps, 1 - eps)), x)


def entailment_loss(x: Tensor, y: Tensor, c: float | Tensor, eta: float = 1.0, k: float = CONE_K) -> Tensor:
    """mean(max(0, ext(x, y) - eta * aper(x))): y should lie inside the cone of the more generic x."""
    return torch.relu(exterior_angle(x, y, c) - eta * half_aperture(x, c, k)).mean()
