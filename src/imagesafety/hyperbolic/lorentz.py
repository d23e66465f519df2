"""The Lorentz model of hyperbolic space with curvature -c, as pure torch functions.

Points are stored by their space part x; the time part is x_t = sqrt(1/c + |x|^2). Every function
computes in float32 at least (float16 inputs are upcast, results cast back), and clamps the inputs
of arccosh, arcsin and sinh so values and gradients stay finite.
"""

from __future__ import annotations

import torch
from torch import Tensor

EPS = 1e-6
MAX_SINH_INPUT = 80.0  # sinh(80) ~ 2.8e34: inside float32's range
CONE_K = 0.1


def _f(x: Tensor) -> Tensor:
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _like(out: Tensor, ref: Tensor) -> Tensor:
    return out.to(ref.dtype) if ref.dtype in (torch.float16, torch.bfloat16) else out


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
    """Geodesic distance, element-wise; exact 0 for identical points and stable for close ones.

    Uses d = (2 / sqrt c) asinh(sqrt(c) / 2 * |x - y|_L), with the Minkowski norm of the difference,
    which equals arccosh(-c <x, y>_L) / sqrt(c) without its cancellation near 1.
    """
    xf, yf = _f(x), _f(y)
    xt, yt = time_component(xf, c), time_component(yf, c)
    dt = ((xf * xf).sum(-1) - (yf * yf).sum(-1)) / (xt + yt)  # x_t - y_t without cancellation
    diff = xf - yf
    minkowski_sq = ((diff * diff).sum(-1) - dt * dt).clamp_min(0)
    sqrt_c = torch.as_tensor(c, dtype=xf.dtype, device=xf.device).sqrt()
    # sqrt(m + EPS^2), offset so that identical points are exactly 0 apart and the gradient stays finite there
    norm = torch.sqrt(minkowski_sq + EPS**2)
    return _like(2 / sqrt_c * (torch.asinh(sqrt_c / 2 * norm) - torch.asinh(sqrt_c / 2 * EPS)), x)


def pairwise_dist(x: Tensor, y: Tensor, c: float | Tensor) -> Tensor:
    """Distances for all pairs (n, m) = arccosh(-c <x_i, y_j>_L) / sqrt(c), argument clamped to >= 1 + EPS."""
    xf, yf = _f(x), _f(y)
    sqrt_c = torch.as_tensor(c, dtype=xf.dtype, device=xf.device).sqrt()
    arg = (-c * pairwise_inner(xf, yf, c)).clamp_min(1 + EPS)
    return _like(torch.acosh(arg) / sqrt_c, x)


def dist_to_origin(x: Tensor, c: float | Tensor) -> Tensor:
    """Distance from the origin: asinh(sqrt(c) |x|) / sqrt(c)."""
    xf = _f(x)
    sqrt_c = torch.as_tensor(c, dtype=xf.dtype, device=xf.device).sqrt()
    return _like(torch.asinh(sqrt_c * xf.norm(dim=-1)) / sqrt_c, x)


def exp_map0(v: Tensor, c: float | Tensor) -> Tensor:
    """Exponential map at the origin: sinh(sqrt(c)|v|) v / (sqrt(c)|v|), space part."""
    vf = _f(v)
    sqrt_c = torch.as_tensor(c, dtype=vf.dtype, device=vf.device).sqrt()
    r = (sqrt_c * vf.norm(dim=-1, keepdim=True)).clamp_min(EPS)
    # bound sinh's input so the result fits the caller's dtype (float16 overflows past ~11)
    limit = min(MAX_SINH_INPUT, float(torch.asinh(torch.tensor(torch.finfo(v.dtype).max / 10.0))))
    return _like(torch.sinh(r.clamp_max(limit)) * vf / r, v)


def log_map0(x: Tensor, c: float | Tensor) -> Tensor:
    """Logarithmic map at the origin, the inverse of `exp_map0`: asinh(sqrt(c)|x|) x / (sqrt(c)|x|)."""
    xf = _f(x)
    sqrt_c = torch.as_tensor(c, dtype=xf.dtype, device=xf.device).sqrt()
    s = (sqrt_c * xf.norm(dim=-1, keepdim=True)).clamp_min(EPS)
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
    sqrt_c = torch.as_tensor(c, dtype=xf.dtype, device=xf.device).sqrt()
    d = (sqrt_c * dist(xf, yf, c)).clamp_min(EPS)[..., None]
    a = torch.sinh((1 - t) * d) / torch.sinh(d)
    b = torch.sinh(t * d) / torch.sinh(d)
    return _like(a * xf + b * yf, x)


def half_aperture(x: Tensor, c: float | Tensor, k: float = CONE_K) -> Tensor:
    """Half-aperture of the entailment cone at x: arcsin(2K / (sqrt(c)|x|)), argument clamped inside (-1, 1)."""
    xf = _f(x)
    sqrt_c = torch.as_tensor(c, dtype=xf.dtype, device=xf.device).sqrt()
    arg = 2 * k / (sqrt_c * xf.norm(dim=-1).clamp_min(EPS))
    return _like(torch.asin(arg.clamp(-1 + EPS, 1 - EPS)), x)


def exterior_angle(x: Tensor, y: Tensor, c: float | Tensor) -> Tensor:
    """Angle at x between the origin->x ray extended and y (element-wise): 0 when y lies straight beyond x."""
    xf, yf = _f(x), _f(y)
    xt, yt = time_component(xf, c), time_component(yf, c)
    c_xy = c * ((xf * yf).sum(-1) - xt * yt)
    numerator = yt + c_xy * xt
    denominator = xf.norm(dim=-1) * torch.sqrt((c_xy * c_xy - 1).clamp_min(EPS))
    return _like(torch.acos((numerator / denominator.clamp_min(EPS)).clamp(-1 + EPS, 1 - EPS)), x)


def entailment_loss(x: Tensor, y: Tensor, c: float | Tensor, eta: float = 1.0, k: float = CONE_K) -> Tensor:
    """mean(max(0, ext(x, y) - eta * aper(x))): y should lie inside the cone of the more generic x."""
    return torch.relu(exterior_angle(x, y, c) - eta * half_aperture(x, c, k)).mean()
