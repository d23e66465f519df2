"""TensorFlow graph models (tfjs `loadGraphModel`, converter output with fused ops), compiled to a Program.

Ops: Placeholder, Const, Identity, _FusedConv2D, Conv2D, FusedDepthwiseConv2dNative, DepthwiseConv2dNative, BiasAdd,
AddV2/Add, Mul, Sub, RealDiv, Relu, Relu6, Sigmoid, Tanh, Elu, AvgPool, MaxPool, Squeeze, Mean, _FusedMatMul, MatMul,
Softmax. Fused ops: BiasAdd followed by Relu, Relu6, Elu, Sigmoid, Tanh or LeakyRelu. Attributes arrive as tfjs
writes them: lists of strings, base64 byte strings, NHWC strides and axes (mapped to NCHW here).
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from imagesafety.tfjs import ops
from imagesafety.tfjs.program import NHWC_TO_NCHW, Program, Step, TopologyError

UNARY = {
    "Relu": torch.relu,
    "Relu6": lambda x: torch.clamp(x, 0.0, 6.0),
    "Sigmoid": torch.sigmoid,
    "Tanh": torch.tanh,
    "Elu": F.elu,
    "Identity": lambda x: x,
    "Softmax": lambda x: torch.softmax(x, dim=-1),
}
BINARY = {"AddV2": torch.add, "Add": torch.add, "Mul": torch.mul, "Sub": torch.sub, "RealDiv": torch.div}


def _attr(node: dict, key: str, default: Any = None) -> Any:
    value = node.get("attr", {}).get(key)
    if value is None:
        return default
    if "s" in value:
        return base64.b64decode(value["s"]).decode()
    if "i" in value:
        return int(value["i"])
    if "f" in value:
        return float(value["f"])
    if "b" in value:
        return bool(value["b"])
    if "list" in value:
        items = value["list"]
        if "s" in items:
            return [base64.b64decode(s).decode() for s in items["s"]]
        if "i" in items:
            return [int(i) for i in items["i"]]
        if "f" in items:
            return [float(f) for f in items["f"]]
        return []
    return value


def _nhwc_pair(values: list[int] | None) -> tuple[int, int]:
    values = values or [1, 1, 1, 1]
    return int(values[1]), int(values[2])


def _fused_activation(node: dict, fused: list[str]):
    """The activation after BiasAdd in a fused op's list (or identity)."""
    if not fused or fused[0] != "BiasAdd" or len(fused) > 2:
        raise TopologyError(
            f"node {node['name']!r} ({node['op']}): fused ops {fused} (BiasAdd then one activation are supported)"
        )
    if len(fused) == 1:
        return lambda x: x
    if fused[1] == "LeakyRelu":
        alpha = _attr(node, "leakyrelu_alpha", 0.2)
        return lambda x: F.leaky_relu(x, alpha)
    if fused[1] not in UNARY:
        raise TopologyError(f"node {node['name']!r}: fused activation {fused[1]!r} is not supported")
    return UNARY[fused[1]]


def _padding(node: dict) -> str:
    padding = _attr(node, "padding", "VALID")
    if padding not in ("SAME", "VALID"):
        raise TopologyError(f"node {node['name']!r}: padding {padding!r} (SAME and VALID are supported)")
    if _attr(node, "data_format", "NHWC") != "NHWC":
        raise TopologyError(f"node {node['name']!r}: data format {_attr(node, 'data_format')!r} (NHWC is supported)")
    return padding.lower()


def _channels(tensor: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
    """A per-channel vector broadcast against an NCHW image (channels-last broadcasting, as the graph means it)."""
    if tensor.dim() == 1 and other.dim() == 4 and tensor.numel() == other.shape[1] and tensor.numel() > 1:
        return tensor.view(1, -1, 1, 1)
    return tensor


def topological(nodes: list[dict]) -> list[dict]:
    """Nodes ordered so every input comes before its consumer."""
    by_name = {n["name"]: n for n in nodes}
    done: set[str] = set()
    order: list[dict] = []
    for root in nodes:
        stack = [(root["name"], False)]
        while stack:
            name, expanded = stack.pop()
            if name in done:
                continue
            if expanded:
                done.add(name)
                order.append(by_name[name])
                continue
            stack.append((name, True))
            for dep in by_name[name].get("input", []):
                dep = dep.split(":")[0].lstrip("^")
                if dep not in by_name:
                    raise TopologyError(f"node {name!r} reads {dep!r}, which the graph does not define")
                if dep not in done:
                    stack.append((dep, False))
    return order


def build_graph_model(
    topology: dict[str, Any], weights: dict[str, np.ndarray], signature: dict | None = None, where: str = "model"
) -> Program:
    """The Program of a tfjs graph model; its output is the logits when the graph ends in Softmax (then Identity)."""
    nodes = topological(topology["node"])
    by_name = {n["name"]: n for n in nodes}
    placeholders = [n for n in nodes if n["op"] == "Placeholder"]
    if len(placeholders) != 1:
        raise TopologyError(f"{where}: graphs with one input are supported (found {len(placeholders)})")
    dims = [int(d.get("size", -1)) for d in _attr(placeholders[0], "shape", {}).get("shape", {}).get("dim", [])]
    if len(dims) != 4:
        raise TopologyError(f"{where}: the input is not an image batch (shape {dims})")
    consumed = {i.split(":")[0].lstrip("^") for n in nodes for i in n.get("input", [])}
    outputs = [n["name"] for n in nodes if n["name"] not in consumed and n["op"] not in ("Const", "Placeholder")]
    if signature and signature.get("outputs"):
        outputs = [k.split(":")[0] for k in signature["outputs"]]
    if len(outputs) != 1:
        raise TopologyError(f"{where}: graphs with one output are supported (found {outputs})")
    output, activation = outputs[0], "linear"
    while by_name[output]["op"] in ("Identity", "Softmax"):  # the logits: before the final softmax
        if by_name[output]["op"] == "Softmax":
            activation = "softmax"
        output = by_name[output]["input"][0].split(":")[0]
        if activation == "softmax":
            break
    tensors: dict[str, torch.Tensor] = {}
    constants: dict[str, str] = {}
    steps: list[Step] = []

    def const(name: str, convert=None) -> str:
        key = name if convert is None else f"{name}#{convert.__name__}"
        if key not in tensors:
            if name not in weights:
                raise TopologyError(f"{where}: constant {name!r} is not in the weights manifest")
            array = np.asarray(weights[name], dtype=np.float32)
            tensors[key] = convert(array) if convert else torch.from_numpy(np.ascontiguousarray(array))
        return key

    for node in nodes:
        op, name = node["op"], node["name"]
        inputs = [i.split(":")[0] for i in node.get("input", []) if not i.startswith("^")]
        if op in ("Placeholder",):
            continue
        if op == "Const":
            constants[name] = name
            continue
        data = [i for i in inputs if i not in constants]
        if op in ("_FusedConv2D", "Conv2D", "FusedDepthwiseConv2dNative", "DepthwiseConv2dNative"):
            depthwise = "Depthwise" in op
            kernel = const(inputs[1], ops.depthwise_weight if depthwise else ops.conv_weight)
            fused = _attr(node, "fused_ops", []) if op.startswith(("_Fused", "Fused")) else []
            bias = const(inputs[2]) if fused else None
            act = _fused_activation(node, fused) if fused else (lambda x: x)
            stride, dilation, padding = (
                _nhwc_pair(_attr(node, "strides")),
                _nhwc_pair(_attr(node, "dilations")),
                _padding(node),
            )

            def run(
                p,
                x,
                kernel=kernel,
                bias=bias,
                act=act,
                stride=stride,
                dilation=dilation,
                padding=padding,
                depthwise=depthwise,
            ):
                groups = x.shape[1] if depthwise else 1
                return act(
                    ops.conv2d(x, p.weight(kernel), p.weight(bias) if bias else None, stride, padding, dilation, groups)
                )

            steps.append(Step(name, [inputs[0]], run))
        elif op in ("_FusedMatMul", "MatMul"):
            if _attr(node, "transpose_a", False):
                raise TopologyError(f"node {name!r}: MatMul with transpose_a is not supported")
            transpose_b = _attr(node, "transpose_b", False)
            kernel = const(
                inputs[1],
                (lambda k: torch.from_numpy(np.ascontiguousarray(k)))
                if transpose_b
                else (lambda k: torch.from_numpy(np.ascontiguousarray(k.T))),
            )
            fused = _attr(node, "fused_ops", []) if op == "_FusedMatMul" else []
            bias = const(inputs[2]) if fused else None
            act = _fused_activation(node, fused) if fused else (lambda x: x)
            steps.append(
                Step(
                    name,
                    [inputs[0]],
                    lambda p, x, k=kernel, b=bias, act=act: act(F.linear(x, p.weight(k), p.weight(b) if b else None)),
                )
            )
        elif op == "BiasAdd":
            bias = const(inputs[1])
            steps.append(Step(name, [inputs[0]], lambda p, x, b=bias: x + _channels(p.weight(b), x)))
        elif op in BINARY:
            fn = BINARY[op]
            names = [const(i) if i in constants else i for i in inputs]
            is_const = [i in constants for i in inputs]

            def run(p, *xs, fn=fn, names=names, is_const=is_const):
                it = iter(xs)
                args = [p.weight(n) if c else next(it) for n, c in zip(names, is_const)]
                image = next((a for a in args if a.dim() == 4), None)
                if image is not None:
                    args = [_channels(a, image) for a in args]
                return fn(args[0], args[1])

            steps.append(Step(name, data, run))
        elif op in UNARY:
            steps.append(Step(name, [inputs[0]], lambda p, x, fn=UNARY[op]: fn(x)))
        elif op in ("AvgPool", "MaxPool"):
            size, stride, padding = _nhwc_pair(_attr(node, "ksize")), _nhwc_pair(_attr(node, "strides")), _padding(node)
            pool = ops.avg_pool if op == "AvgPool" else ops.max_pool
            steps.append(
                Step(name, [inputs[0]], lambda p, x, pool=pool, s=size, st=stride, pad=padding: pool(x, s, st, pad))
            )
        elif op == "Squeeze":
            axes = _attr(node, "squeeze_dims", [])
            steps.append(Step(name, [inputs[0]], lambda p, x, axes=axes: _squeeze(x, axes)))
        elif op == "Mean":
            axes = [int(a) for a in np.asarray(weights[inputs[1]]).reshape(-1)]
            keep = bool(_attr(node, "keep_dims", False))
            steps.append(
                Step(
                    name,
                    [inputs[0]],
                    lambda p, x, axes=axes, keep=keep: x.mean(
                        dim=tuple(NHWC_TO_NCHW[a] if x.dim() == 4 else a for a in axes), keepdim=keep
                    ),
                )
            )
        else:
            raise TopologyError(f"{where}: node {name!r} is a {op} op, which this reader does not know")
    features = next(
        (s.inputs[0] for s in steps if s.name == output and by_name[output]["op"] in ("_FusedMatMul", "MatMul")), output
    )
    return Program(steps, placeholders[0]["name"], output, features, activation, (dims[1], dims[2]), tensors)


def _squeeze(x: torch.Tensor, axes: list[int]) -> torch.Tensor:
    dims = [NHWC_TO_NCHW[a] if x.dim() == 4 else a for a in axes] or [d for d in range(x.dim()) if x.shape[d] == 1]
    for d in sorted(dims, reverse=True):
        x = x.squeeze(d)
    return x
