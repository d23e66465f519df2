"""Keras layers models (tfjs `loadLayersModel`): the functional topology in `model_config`, compiled to a Program.

Layer types: InputLayer, ZeroPadding2D, Conv2D, DepthwiseConv2D, BatchNormalization, ReLU (max_value, negative_slope,
threshold), Activation, Add, Concatenate, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, Flatten, Dense,
Dropout. Weights are named `LAYER/kernel`, `LAYER/bias`, `LAYER/gamma`, ... as tfjs saves them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from imagesafety.tfjs import ops
from imagesafety.tfjs.program import NHWC_TO_NCHW, Program, Step, TopologyError


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, (int, float)) else (int(value[0]), int(value[1]))


def _activation(name: str | None, layer: str):
    name = name or "linear"
    if name not in ops.ACTIVATIONS:
        raise TopologyError(
            f"layer {layer!r}: activation {name!r} is not supported (known: {', '.join(ops.ACTIVATIONS)})"
        )
    return ops.ACTIVATIONS[name]


class _Weights:
    """The layer's weights by short name (`kernel`, `bias`, ...), found as `LAYER/NAME` (or `.../LAYER/NAME`)."""

    def __init__(self, all_weights: dict[str, np.ndarray], tensors: dict[str, torch.Tensor]):
        self.all, self.tensors = all_weights, tensors

    def find(self, layer: str, short: str, required: bool = True) -> str | None:
        exact = f"{layer}/{short}"
        if exact in self.all:
            return exact
        found = [k for k in self.all if k.endswith(f"/{exact}")]
        if len(found) == 1:
            return found[0]
        if required:
            raise TopologyError(f"layer {layer!r}: no weight {exact!r} in the weights manifest")
        return None

    def add(self, layer: str, short: str, convert=torch.from_numpy, required: bool = True) -> str | None:
        name = self.find(layer, short, required)
        if name is not None and name not in self.tensors:
            self.tensors[name] = convert(np.ascontiguousarray(self.all[name], dtype=np.float32))
        return name


def _conv(layer: str, cfg: dict, w: _Weights, depthwise: bool):
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise TopologyError(f"layer {layer!r}: data_format {cfg['data_format']!r} (only channels_last is supported)")
    kernel = w.add(
        layer, "depthwise_kernel" if depthwise else "kernel", ops.depthwise_weight if depthwise else ops.conv_weight
    )
    bias = w.add(layer, "bias") if cfg.get("use_bias", True) else None
    stride, dilation, padding = (
        _pair(cfg.get("strides", 1)),
        _pair(cfg.get("dilation_rate", 1)),
        cfg.get("padding", "valid"),
    )
    act = _activation(cfg.get("activation"), layer)

    def run(p, x):
        weight = p.weight(kernel)
        groups = x.shape[1] if depthwise else 1
        return act(ops.conv2d(x, weight, p.weight(bias) if bias else None, stride, padding, dilation, groups))

    return run


def _batch_norm(layer: str, cfg: dict, w: _Weights):
    axis = cfg.get("axis", -1)
    axis = axis[0] if isinstance(axis, list) else axis
    if axis not in (-1, 3, 1):
        raise TopologyError(
            f"layer {layer!r}: BatchNormalization over axis {axis} (only the channel axis is supported)"
        )
    eps = float(cfg.get("epsilon", 1e-3))
    mean, var = w.add(layer, "moving_mean"), w.add(layer, "moving_variance")
    gamma = w.add(layer, "gamma") if cfg.get("scale", True) else None
    beta = w.add(layer, "beta") if cfg.get("center", True) else None

    def run(p, x):
        shape = (1, -1, 1, 1) if x.dim() == 4 else (1, -1)
        out = (x - p.weight(mean).view(shape)) * torch.rsqrt(p.weight(var).view(shape) + eps)
        if gamma:
            out = out * p.weight(gamma).view(shape)
        return out + p.weight(beta).view(shape) if beta else out

    return run


def _relu(cfg: dict):
    max_value = cfg.get("max_value")
    slope, threshold = float(cfg.get("negative_slope", 0) or 0), float(cfg.get("threshold", 0) or 0)

    def run(p, x):
        out = torch.where(x >= threshold, x, slope * (x - threshold))
        return torch.clamp(out, max=float(max_value)) if max_value is not None else out

    return run


def _pool(layer: str, cfg: dict, kind: str):
    size = _pair(cfg.get("pool_size", 2))
    stride = _pair(cfg.get("strides") or size)
    padding = cfg.get("padding", "valid")
    pool = ops.max_pool if kind == "max" else ops.avg_pool
    return lambda p, x: pool(x, size, stride, padding)


def _zero_padding(layer: str, cfg: dict):
    pad = cfg.get("padding", 1)
    if isinstance(pad, (int, float)):
        (top, bottom), (left, right) = (pad, pad), (pad, pad)
    elif isinstance(pad[0], (int, float)):
        (top, bottom), (left, right) = (pad[0], pad[0]), (pad[1], pad[1])
    else:
        (top, bottom), (left, right) = pad
    return lambda p, x: F.pad(x, (int(left), int(right), int(top), int(bottom)))


def _flatten(p, x):
    return (x.permute(0, 2, 3, 1) if x.dim() == 4 else x).reshape(x.shape[0], -1)  # channels-last order, as Keras


def _dense(layer: str, cfg: dict, w: _Weights, activation: bool = True):
    kernel = w.add(layer, "kernel", lambda k: torch.from_numpy(np.ascontiguousarray(k.T)))
    bias = w.add(layer, "bias") if cfg.get("use_bias", True) else None
    act = _activation(cfg.get("activation"), layer) if activation else ops.ACTIVATIONS["linear"]
    return lambda p, x: act(F.linear(x, p.weight(kernel), p.weight(bias) if bias else None))


def _concatenate(layer: str, cfg: dict):
    axis = int(cfg.get("axis", -1))

    def run(p, *xs):
        return torch.cat(xs, dim=NHWC_TO_NCHW[axis] if xs[0].dim() == 4 else axis)

    return run


def build_layers_model(topology: dict[str, Any], weights: dict[str, np.ndarray], where: str = "model") -> Program:
    """The Program of a tfjs layers model; its output is the final Dense layer before a softmax activation."""
    config = topology.get("model_config", topology)
    if config.get("class_name") not in ("Model", "Functional", "Sequential"):
        raise TopologyError(
            f"{where}: a {config.get('class_name')!r} model (Model/Functional topologies are supported)"
        )
    cfg = config["config"]
    layers = cfg["layers"] if isinstance(cfg, dict) else cfg
    if config["class_name"] == "Sequential" or not isinstance(cfg, dict) or "output_layers" not in cfg:
        raise TopologyError(
            f"{where}: Sequential topologies are not supported yet (save the model as a functional Model)"
        )
    if len(cfg["input_layers"]) != 1 or len(cfg["output_layers"]) != 1:
        raise TopologyError(f"{where}: models with one input and one output are supported")
    input_name, output_name = cfg["input_layers"][0][0], cfg["output_layers"][0][0]
    tensors: dict[str, torch.Tensor] = {}
    w = _Weights(weights, tensors)
    steps: list[Step] = []
    input_size = None
    output_activation, features = "linear", None
    for layer in layers:
        kind, name, lc = layer["class_name"], layer.get("name") or layer["config"]["name"], layer["config"]
        inbound = [n[0] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else []
        if len(layer["inbound_nodes"]) > 1:
            raise TopologyError(f"{where}: layer {name!r} is called more than once (shared layers are not supported)")
        if kind == "InputLayer":
            shape = lc.get("batch_input_shape") or lc.get("batch_shape")
            input_size = (int(shape[1]), int(shape[2]))
            continue
        if kind in ("Conv2D", "DepthwiseConv2D"):
            run = _conv(name, lc, w, kind == "DepthwiseConv2D")
        elif kind == "BatchNormalization":
            run = _batch_norm(name, lc, w)
        elif kind == "ReLU":
            run = _relu(lc)
        elif kind == "Activation":
            act = _activation(lc.get("activation"), name)
            run = lambda p, x, act=act: act(x)  # noqa: E731
        elif kind in ("MaxPooling2D", "AveragePooling2D"):
            run = _pool(name, lc, "max" if kind == "MaxPooling2D" else "avg")
        elif kind == "GlobalAveragePooling2D":
            run = lambda p, x: x.mean(dim=(2, 3))  # noqa: E731
        elif kind == "ZeroPadding2D":
            run = _zero_padding(name, lc)
        elif kind == "Flatten":
            run = lambda p, x: _flatten(p, x)  # noqa: E731
        elif kind == "Dense":
            final_softmax = name == output_name and lc.get("activation") == "softmax"
            run = _dense(name, lc, w, activation=not final_softmax)
            if name == output_name:
                output_activation, features = ("softmax" if final_softmax else "linear"), inbound[0]
        elif kind == "Dropout":
            run = lambda p, x: x  # noqa: E731
        elif kind == "Add":
            run = lambda p, *xs: sum(xs[1:], xs[0])  # noqa: E731
        elif kind == "Concatenate":
            run = _concatenate(name, lc)
        else:
            raise TopologyError(f"{where}: layer {name!r} is a {kind}, which this reader does not know")
        steps.append(Step(name, inbound, run))
    if input_size is None:
        raise TopologyError(f"{where}: no InputLayer")
    unused = sorted(set(weights) - set(tensors))
    if unused:
        raise TopologyError(
            f"{where}: {len(unused)} weights belong to no layer (e.g. {unused[0]!r}): another model's weights?"
        )
    return Program(steps, input_name, output_name, features or output_name, output_activation, input_size, tensors)
