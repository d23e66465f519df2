"""ONNX graphs as torch modules, so models that ship as ONNX files (OpenNSFW, NudeNet) are white-box.

onnx2torch does the conversion (a torch.fx module whose nodes are the graph's operators, weights copied as they
are); every operator is checked against its converters first, so a graph it cannot read fails in one line naming
the operator instead of deep inside the conversion. Nothing is cached: converting these graphs takes a fraction
of a second, and the weights' identity is the ONNX file's digest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from imagesafety.identity import path_digest

#: where a model shipped as ONNX runs: converted to torch (white-box) or on onnxruntime
RUNTIMES = ("torch", "onnx")


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise ValueError(f"runtime={runtime}: choose one of {', '.join(RUNTIMES)}")
    return runtime


class UnsupportedOperatorError(ValueError):
    """The ONNX graph uses an operator the converter cannot turn into torch."""


def unsupported_operators(model: Any) -> list[str]:
    """`domain::Op(opset)` for every operator of the graph that onnx2torch has no converter for."""
    from onnx2torch.node_converters.registry import get_converter

    opsets = {o.domain or "": o.version for o in model.opset_import}
    missing = []
    for node in model.graph.node:
        domain = node.domain or ""
        try:
            get_converter(node.op_type, opsets.get(domain, opsets.get("", 1)), domain)
        except NotImplementedError:
            missing.append(f"{domain + '::' if domain else ''}{node.op_type}(opset {opsets.get(domain)})")
    return sorted(set(missing))


def load_onnx_module(path: str | Path):
    """The ONNX file at `path` as a torch module in eval mode, without gradients on its weights, and its content
    digest (`sha256:...`)."""
    import onnx
    from onnx2torch import convert

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"ONNX model {path}: no such file")
    digest = path_digest(path)
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises several types for a damaged file
        raise ValueError(f"ONNX model {path} cannot be read: {exc}") from None
    missing = unsupported_operators(model)
    if missing:
        raise UnsupportedOperatorError(
            f"ONNX model {path}: no torch conversion for operator(s) {', '.join(missing)}; use --option runtime=onnx"
        )
    module = convert(model).eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module, digest
