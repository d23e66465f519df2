"""Adversarial attacks on a binary safety decision, batched, in [0, 1] pixel units.

White-box attacks (Gaussian noise, FGSM, PGD, DeepFool) need a torch classifier's differentiable path
(`input_pixels`, `unsafe_logits`); every attack pushes each image's logit across the decision
threshold in the direction that flips its (correct) label. Black-box attacks live in `blackbox.py`.
All of them are found by name through `imagesafety.registry` (kind `attack`), so packages can add more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from imagesafety import registry

LogitFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class AttackSpec:
    """An attack and its settings; `eps` bounds L-inf (fgsm, pgd, deepfool, square) or is the noise std (gn)."""

    name: str
    eps: float = 0.01
    steps: int = 100
    step_size: float | None = None  # pgd: default 2.5 * eps / steps
    overshoot: float = 0.02  # deepfool
    random_start: bool = True

    def key(self) -> dict:
        return {
            "name": self.name,
            "eps": self.eps,
            "steps": self.steps,
            "step_size": self.step_size,
            "overshoot": self.overshoot,
            "random_start": self.random_start,
        }


def _margin(logits: torch.Tensor, threshold: float, labels: torch.Tensor) -> torch.Tensor:
    """Positive while the decision is still correct: (logit - thr) for unsafe images, (thr - logit) for safe ones."""
    sign = labels.float() * 2 - 1
    return sign * (logits - threshold)


def gaussian_noise(x: torch.Tensor, eps: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random noise of standard deviation eps (UnsafeBench's non-adversarial baseline)."""
    noise = torch.randn(x.shape, generator=generator, dtype=x.dtype, device="cpu").to(x.device)
    return (x + eps * noise).clamp(0, 1)


def fgsm(x: torch.Tensor, labels: torch.Tensor, logit_fn: LogitFn, threshold: float, eps: float) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    _margin(logit_fn(x), threshold, labels).sum().backward()
    return (x - eps * x.grad.sign()).clamp(0, 1).detach()


def pgd(
    x: torch.Tensor,
    labels: torch.Tensor,
    logit_fn: LogitFn,
    threshold: float,
    eps: float,
    steps: int = 100,
    step_size: float | None = None,
    random_start: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L-inf projected gradient descent on the margin; stays inside the eps ball and [0, 1]; stops early per image once
    flipped."""
    alpha = step_size or 2.5 * eps / steps
    adv = x.clone()
    if random_start:
        noise = (torch.rand(x.shape, generator=generator, dtype=x.dtype, device="cpu") * 2 - 1).to(x.device)
        adv = (x + eps * noise).clamp(0, 1)
    low, high = (x - eps).clamp_(0, 1), (x + eps).clamp_(0, 1)  # the eps ball intersected with valid pixels
    active = torch.ones(len(x), dtype=torch.bool, device=x.device)
    for _ in range(steps):
        adv = adv.detach().requires_grad_(True)
        margin = _margin(logit_fn(adv), threshold, labels)
        active = active & (margin.detach() > 0)
        if not active.any():
            break
        margin.sum().backward()
        step_sizes = (-alpha * active.to(x.dtype)).view(-1, *[1] * (x.dim() - 1))  # 0 for images already flipped
        adv = (
            adv.detach().add_(adv.grad.sign_().mul_(step_sizes)).clamp_(low, high)
        )  # in place: no new full-size tensors
    return adv.detach()


def deepfool(
    x: torch.Tensor,
    labels: torch.Tensor,
    logit_fn: LogitFn,
    threshold: float,
    steps: int = 100,
    overshoot: float = 0.02,
    max_linf: float | None = None,
) -> torch.Tensor:
    """Binary DeepFool: linearise the margin and step to the boundary, repeated; the total step is (1 + overshoot) r,
    clipped to the L-inf ball of `max_linf` so its robust accuracy compares with the other attacks at the same eps."""
    r_total = torch.zeros_like(x)
    active = torch.ones(len(x), dtype=torch.bool, device=x.device)
    shape = (-1, *[1] * (x.dim() - 1))
    for _ in range(steps):
        adv = (x + (1 + overshoot) * r_total).clamp(0, 1).detach().requires_grad_(True)
        margin = _margin(logit_fn(adv), threshold, labels)
        active = active & (margin.detach() > 0)
        if not active.any():
            break
        margin.sum().backward()
        grad = adv.grad
        norm_sq = grad.flatten(1).pow(2).sum(1).clamp_min(1e-12)
        r = -(margin.detach().abs() + 1e-4) / norm_sq
        r_total = r_total + (r.view(shape) * grad) * active.view(shape)
    delta = (1 + overshoot) * r_total
    if max_linf is not None:
        delta = delta.clamp(-max_linf, max_linf)
    return (x + delta).clamp(0, 1).detach()


def gaussian_noise_attack(x, labels, logit_fn, threshold, spec: AttackSpec, generator):
    return gaussian_noise(x, spec.eps, generator)


def fgsm_attack(x, labels, logit_fn, threshold, spec: AttackSpec, generator):
    return fgsm(x, labels, logit_fn, threshold, spec.eps)


def pgd_attack(x, labels, logit_fn, threshold, spec: AttackSpec, generator):
    return pgd(x, labels, logit_fn, threshold, spec.eps, spec.steps, spec.step_size, spec.random_start, generator)


def deepfool_attack(x, labels, logit_fn, threshold, spec: AttackSpec, generator):
    return deepfool(x, labels, logit_fn, threshold, spec.steps, spec.overshoot, spec.eps)


def is_white_box(name: str) -> bool:
    """Whether a registered attack needs the classifier's gradients."""
    return bool(registry.get("attack", name).attributes["white_box"])


def run_attack(
    spec: AttackSpec, x: torch.Tensor, labels: torch.Tensor, logit_fn: LogitFn, threshold: float, seed: int = 0
) -> torch.Tensor:
    """Adversarial versions of a batch of [0, 1] pixel tensors, by a registered white-box attack."""
    if not is_white_box(spec.name):
        raise ValueError(f"{spec.name!r} is not a white-box attack")
    attack = registry.get("attack", spec.name).load()
    return attack(x, labels, logit_fn, threshold, spec, torch.Generator().manual_seed(seed))


def perturbation_sizes(clean: torch.Tensor, adv: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per image: L-inf, L2 and MSE of the perturbation, in [0, 1] pixel units."""
    delta = (adv - clean).flatten(1)
    return {"linf": delta.abs().max(1).values, "l2": delta.norm(dim=1), "mse": delta.pow(2).mean(1)}
