"""A tfjs weights manifest applied to its shards' bytes: named float32 arrays, dequantised as tfjs does
(`q * scale + min` for uint8/uint16, computed in double precision and stored as float32; float16 widened)."""

from __future__ import annotations

from typing import Any

import numpy as np

_PLAIN = {"float32": np.float32, "int32": np.int32, "bool": np.bool_}
_QUANTISED = {"uint8": np.uint8, "uint16": np.uint16, "float16": np.float16}


class WeightsError(ValueError):
    """Shards that do not match their manifest (a corrupted or truncated shard, or another model's)."""


def _decode(spec: dict[str, Any], data: memoryview, offset: int, where: str) -> tuple[np.ndarray, int]:
    shape = [int(d) for d in spec["shape"]]
    count = int(np.prod(shape)) if shape else 1
    quant = spec.get("quantization")
    if quant:
        kind = quant.get("dtype")
        if kind not in _QUANTISED:
            raise WeightsError(
                f"{where}: weight {spec['name']!r} is quantised as {kind!r}; known: {', '.join(_QUANTISED)}"
            )
        stored = np.dtype(_QUANTISED[kind])
    else:
        if spec.get("dtype", "float32") not in _PLAIN:
            raise WeightsError(
                f"{where}: weight {spec['name']!r} has dtype {spec.get('dtype')!r}; known: {', '.join(_PLAIN)}"
            )
        stored = np.dtype(_PLAIN[spec.get("dtype", "float32")])
    end = offset + count * stored.itemsize
    if end > len(data):
        raise WeightsError(
            f"{where}: the shards end before weight {spec['name']!r} (need {end} bytes, have {len(data)}): "
            "a truncated or corrupted shard"
        )
    raw = np.frombuffer(data[offset:end], dtype=stored).reshape(shape)
    if quant and quant["dtype"] in ("uint8", "uint16"):
        values = np.asarray(raw.astype(np.float64) * float(quant["scale"]) + float(quant["min"]), dtype=np.float32)
    else:
        values = np.asarray(raw, dtype=np.float32) if stored != np.bool_ else raw.copy()
    return values, end


def read_weights(
    manifest: list[dict[str, Any]], shards: dict[str, bytes], where: str = "model"
) -> dict[str, np.ndarray]:
    """Every weight of the manifest by name, from the shard bytes by path; the bytes must be used up exactly."""
    weights: dict[str, np.ndarray] = {}
    for index, group in enumerate(manifest):
        missing = [p for p in group["paths"] if p not in shards]
        if missing:
            raise WeightsError(f"{where}: weight shard(s) {', '.join(missing)} missing")
        data = memoryview(b"".join(shards[p] for p in group["paths"]))
        offset = 0
        for spec in group["weights"]:
            weights[spec["name"]], offset = _decode(spec, data, offset, f"{where} group {index + 1}")
        if offset != len(data):
            raise WeightsError(
                f"{where} group {index + 1}: the shards hold {len(data)} bytes but the manifest describes {offset} "
                f"({', '.join(group['paths'])}): a corrupted shard or another model's"
            )
    return weights
