"""What both topologies compile to: an ordered list of steps over named tensors, run as a torch module. A step's
tensors are kept NCHW when they are images (`Value.image`); axes given channels-last by the model are mapped."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

NHWC_TO_NCHW = {0: 0, 1: 2, 2: 3, 3: 1, -1: 1, -2: 3, -3: 2, -4: 0}


class TopologyError(ValueError):
    """A model this reader cannot build: an unknown layer type or op (named), or an inconsistent graph."""


@dataclass
class Step:
    """One operation: `run(program, *input tensors)`; weights are read through `program.weight(name)`."""

    name: str
    inputs: list[str]
    run: Callable[..., torch.Tensor]


class Program(nn.Module):
    """Runs steps in order. `output` is the model's output before its final softmax (the logits) when the model ends in
    one (`output_activation` says so), and `features` the input of the final dense layer (the penultimate features)."""

    def __init__(
        self,
        steps: list[Step],
        input_name: str,
        output: str,
        features: str,
        output_activation: str,
        input_size: tuple[int, int],
        tensors: dict[str, torch.Tensor],
    ):
        super().__init__()
        self.steps, self.input_name, self.output, self.features_name = steps, input_name, output, features
        self.output_activation, self.input_size = output_activation, input_size
        self.names = {}
        for i, (name, tensor) in enumerate(tensors.items()):
            self.register_buffer(f"w{i}", tensor, persistent=False)
            self.names[name] = f"w{i}"

    def weight(self, name: str) -> torch.Tensor:
        """A weight by its model name (as a buffer, so it follows .to(device))."""
        return getattr(self, self.names[name])

    def run(self, x: torch.Tensor, until: str) -> torch.Tensor:
        values = {self.input_name: x}
        for step in self.steps:
            values[step.name] = step.run(self, *(values[i] for i in step.inputs))
            if step.name == until:
                return values[until]
        raise TopologyError(f"no step {until!r}")

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) inputs as the model takes them -> its output (logits when it ends in softmax)."""
        return self.run(pixels, self.output)

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.run(pixels, self.features_name)

    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        out = self(pixels)
        return torch.softmax(out, dim=-1) if self.output_activation == "softmax" else out
