"""TensorFlow's convolution and pooling rules in torch (NCHW): `same` padding puts the odd pixel after (bottom/right),
unlike torch's symmetric padding; average pooling with `same` padding divides by the pixels inside the image only;
max pooling pads with -inf. Kernels arrive channels-last ([kh, kw, in, out]) and are laid out for torch once."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) padding of one axis under TensorFlow's `same` rule."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def pad_for(
    x: torch.Tensor,
    padding: str,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
    value: float = 0.0,
) -> torch.Tensor:
    """`x` padded as TensorFlow pads it for this window (`valid`: not at all)."""
    if padding == "valid":
        return x
    if padding != "same":
        raise ValueError(f"padding {padding!r} (known: same, valid)")
    top, bottom = same_padding(x.shape[2], kernel[0], stride[0], dilation[0])
    left, right = same_padding(x.shape[3], kernel[1], stride[1], dilation[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


def conv_weight(kernel: np.ndarray) -> torch.Tensor:
    """[kh, kw, in, out] -> torch's [out, in, kh, kw]."""
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def depthwise_weight(kernel: np.ndarray) -> torch.Tensor:
    """[kh, kw, in, multiplier] -> torch's grouped [in * multiplier, 1, kh, kw] (output channel c * multiplier + m)."""
    kh, kw, channels, mult = kernel.shape
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(2, 3, 0, 1).reshape(channels * mult, 1, kh, kw)))


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    stride: tuple[int, int],
    padding: str,
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> torch.Tensor:
    kernel = (weight.shape[2], weight.shape[3])
    return F.conv2d(pad_for(x, padding, kernel, stride, dilation), weight, bias, stride, 0, dilation, groups)


def max_pool(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: str) -> torch.Tensor:
    return F.max_pool2d(pad_for(x, padding, kernel, stride, value=-math.inf), kernel, stride)


def avg_pool(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: str) -> torch.Tensor:
    """Average over the window's pixels that lie inside the image (TensorFlow's rule for `same` padding)."""
    padded = pad_for(x, padding, kernel, stride)
    summed = F.avg_pool2d(padded, kernel, stride)
    if padded.shape == x.shape:
        return summed
    ones = pad_for(torch.ones(1, 1, *x.shape[2:], dtype=x.dtype, device=x.device), padding, kernel, stride)
    return summed / F.avg_pool2d(ones, kernel, stride)


ACTIVATIONS = {
    "linear": lambda x: x,
    "relu": torch.relu,
    "relu6": lambda x: torch.clamp(x, 0.0, 6.0),
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": lambda x: torch.softmax(x, dim=-1 if x.dim() == 2 else 1),
    "elu": F.elu,
    "selu": F.selu,
    "softplus": F.softplus,
    "swish": F.silu,
}
