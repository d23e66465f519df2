"""Reading a tfjs model folder: `model.json` with binary shards (the converter's output), or NSFWJS's bundles
(`model.min.js` with `group*-shard*.min.js`, the JSON and base64 shards wrapped as JavaScript modules)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from imagesafety.tfjs.literal import LiteralError, bundle_value
from imagesafety.tfjs.program import Program, TopologyError
from imagesafety.tfjs.weights import WeightsError, read_weights


class TfjsError(ValueError):
    """A model folder that cannot be read: names the file and what was expected."""


@dataclass
class TfjsModel:
    """A model's JSON (topology, manifest, format) and its decoded weights."""

    folder: Path
    spec: dict[str, Any]
    weights: dict[str, np.ndarray]

    @property
    def format(self) -> str:
        """ "layers-model" or "graph-model"."""
        if self.spec.get("format"):
            return str(self.spec["format"])
        return "graph-model" if "node" in self.spec["modelTopology"] else "layers-model"


def _model_file(folder: Path) -> Path:
    for name in ("model.json", "model.min.js"):
        if (folder / name).is_file():
            return folder / name
    raise TfjsError(f"{folder}: no model.json or model.min.js (expected a tfjs model folder)")


def read_spec(folder: str | Path) -> dict[str, Any]:
    """The model JSON of a folder (model.json, or the value model.min.js exports)."""
    file = _model_file(Path(folder))
    text = file.read_text(encoding="utf-8")
    try:
        spec = json.loads(text) if file.suffix == ".json" else bundle_value(text, str(file))
    except (json.JSONDecodeError, LiteralError) as exc:
        raise TfjsError(f"{file}: {exc}") from None
    if not isinstance(spec, dict) or "modelTopology" not in spec or "weightsManifest" not in spec:
        raise TfjsError(f"{file}: not a tfjs model (expected modelTopology and weightsManifest)")
    return spec


def read_shard(folder: Path, path: str) -> bytes:
    """One weight shard: the binary file, or the base64 string a `PATH.min.js` bundle exports."""
    binary = folder / path
    if binary.is_file():
        return binary.read_bytes()
    bundle = folder / f"{path}.min.js"
    if not bundle.is_file():
        raise TfjsError(f"{folder}: weight shard {path!r} missing (neither {path} nor {path}.min.js)")
    try:
        value = bundle_value(bundle.read_text(encoding="utf-8"), str(bundle))
    except LiteralError as exc:
        raise TfjsError(str(exc)) from None
    if not isinstance(value, str):
        raise TfjsError(f"{bundle}: exports a {type(value).__name__}, expected the shard's base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise TfjsError(f"{bundle}: not valid base64 ({exc}): a corrupted shard") from None


def read_model(folder: str | Path) -> TfjsModel:
    """Topology and decoded weights of a tfjs model folder."""
    folder = Path(folder)
    spec = read_spec(folder)
    paths = [p for group in spec["weightsManifest"] for p in group["paths"]]
    shards = {p: read_shard(folder, p) for p in paths}
    try:
        weights = read_weights(spec["weightsManifest"], shards, str(folder))
    except WeightsError as exc:
        raise TfjsError(str(exc)) from None
    return TfjsModel(folder, spec, weights)


def build_module(spec: dict[str, Any], weights: dict[str, np.ndarray], where: str = "model") -> Program:
    """The torch module of a model JSON and its weights (layers or graph topology)."""
    from imagesafety.tfjs.graph import build_graph_model
    from imagesafety.tfjs.layers import build_layers_model

    topology = spec["modelTopology"]
    try:
        if "node" in topology:
            return build_graph_model(
                topology,
                weights,
                (spec.get("userDefinedMetadata") or {}).get("signature") or spec.get("signature"),
                where,
            )
        return build_layers_model(topology, weights, where)
    except TopologyError as exc:
        raise TfjsError(str(exc)) from None
