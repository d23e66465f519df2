"""ONNX graphs as torch modules, so models that ship as ONNX files (OpenNSFW, NudeNet) are white-box.

onnx2torch does the conversion (a torch.fx module whose nodes are the graph's operators, weights copied as they
are); every operator is checked against its converters first, so a graph it cannot read fails in one line naming
the operator instead of deep inside the conversion. Nothing is cached: converting these graphs takes a fraction
of a second, and the weights' identity is the ONNX file's digest.

When no gradients are recorded, ReLUs and additions whose input feeds nothing else write into that input: a
fresh buffer per activation made the converted OpenNSFW 2.2x onnxruntime on CPU, most of the difference being
page faults on newly mapped memory rather than arithmetic (onnxruntime reuses an arena). With gradients on, every
operator allocates as before, so attacks and evidence maps see the graph unchanged. On the CPU the rest of that
difference is glibc returning every freed activation (tens of MB each) to the system and faulting it in again on
the next batch; `keep_freed_memory` makes the process keep them, as onnxruntime's arena does.
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


#: glibc's mallopt parameters, and the values `keep_freed_memory` sets: blocks up to 512 MB come from the heap
#: instead of their own mapping, and up to 1 GB of free heap is kept instead of being returned at once
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEEP = {_M_MMAP_THRESHOLD: 512 << 20, _M_TRIM_THRESHOLD: 1 << 30}


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep large freed blocks for reuse (process-wide; a no-op elsewhere). Returns whether
    it applied. The process's resident memory then stays near its peak, which a model server's does anyway."""
    import ctypes
    import ctypes.util
    import platform

    if platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    return all(libc.mallopt(parameter, value) == 1 for parameter, value in _KEEP.items())


def load_onnx_module(path: str | Path, device: str = "cpu"):
    """The ONNX file at `path` as a torch module in eval mode on `device`, without gradients on its weights, and
    its content digest (`sha256:...`). On the CPU, freed memory is kept for reuse (`keep_freed_memory`)."""
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
    module = reuse_buffers(convert(model).eval()).to(device)
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    if device == "cpu":
        keep_freed_memory()
    return module, digest


def reuse_buffers(module: Any) -> Any:
    """Make ReLUs and same-shape additions of a converted graph write into their input where that input is a
    fresh tensor (the output of a convolution, a linear layer, a ReLU or an addition, never a view that may share
    memory with another tensor) read by nothing else; they do so only under `torch.no_grad()` / inference mode."""
    import torch
    from onnx2torch.node_converters.binary_math_operations import OnnxBinaryMathOperation

    class ReluInPlace(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(x) if torch.is_grad_enabled() else torch.relu_(x)

    class AddInPlace(torch.nn.Module):
        def forward(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
            if torch.is_grad_enabled() or torch.broadcast_shapes(first.shape, second.shape) != first.shape:
                return first + second
            return first.add_(second)

    fresh = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.ReLU, OnnxBinaryMathOperation, ReluInPlace, AddInPlace)

    def sole_fresh_tensor(node: Any) -> bool:
        return (
            isinstance(node, torch.fx.Node)
            and node.op == "call_module"
            and isinstance(module.get_submodule(node.target), fresh)
            and len(node.users) == 1
        )

    for node in module.graph.nodes:
        if node.op != "call_module" or not node.args or not sole_fresh_tensor(node.args[0]):
            continue
        target = module.get_submodule(node.target)
        if isinstance(target, torch.nn.ReLU):
            module.set_submodule(node.target, ReluInPlace())
        elif (
            isinstance(target, OnnxBinaryMathOperation)
            and target.math_op_function is torch.add
            and target.broadcast is None
            and len(node.args) == 2
        ):
            module.set_submodule(node.target, AddInPlace())
    module.recompile()
    return module
