"""Make a loaded torch model cheap to differentiate with respect to its input, as attacks do.

Two changes, neither of which alters the function the model computes:
- its weights stop requiring gradients, so a backward pass computes only the input gradient;
- on CPU, ViT patch embeddings (a Conv2d whose stride equals its kernel) become a reshape and a matmul:
  the same linear map, but CPU convolution backward for this shape is many times slower than a matmul.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class PatchLinear(nn.Module):
    """A non-overlapping patch convolution computed as a matmul over flattened patches (same weights, same output)."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.weight, self.bias = conv.weight, conv.bias
        self.out_channels = conv.out_channels
        self.kernel_size = conv.kernel_size
        self.stride = conv.stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.kernel_size
        batch, channels, height, width = x.shape
        rows, cols = height // kh, width // kw
        x = x[:, :, : rows * kh, : cols * kw]  # a convolution drops the incomplete border patches too
        patches = (
            x.reshape(batch, channels, rows, kh, cols, kw).permute(0, 2, 4, 1, 3, 5).reshape(batch, rows * cols, -1)
        )
        out = F.linear(patches, self.weight.reshape(self.out_channels, -1), self.bias)
        return out.transpose(1, 2).reshape(batch, self.out_channels, rows, cols)


def _is_patch_conv(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.Conv2d)
        and tuple(module.stride) == tuple(module.kernel_size)
        and module.groups == 1
        and tuple(module.dilation) == (1, 1)
        and module.padding in ((0, 0), 0, "valid")
        and module.padding_mode == "zeros"
    )


def linearise_patch_convs(model: nn.Module) -> int:
    """Replace every non-overlapping patch Conv2d in `model` by a `PatchLinear`; returns how many were replaced."""
    targets = [
        (name, module)
        for name, module in model.named_modules()
        if name and _is_patch_conv(module) and not name.endswith("base_layer")
    ]  # a PEFT adapter wraps that conv and expects its type
    for name, conv in targets:
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, PatchLinear(conv))
    return len(targets)


def prepare_for_inference(model: nn.Module, device: str) -> nn.Module:
    """Eval mode, frozen weights, and (on CPU) matmul patch embeddings; returns the model."""
    model.eval().requires_grad_(False)
    if str(device).startswith("cpu"):
        linearise_patch_convs(model)
    return model
