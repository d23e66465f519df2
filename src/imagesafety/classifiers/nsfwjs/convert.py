"""A NSFWJS model as a torch module: read from the package with `imagesafety.tfjs` on first use, then from a
safetensors cache holding the decoded weights and the model JSON (later runs start in a fraction of a second).
A cache file that is truncated, unreadable or for other files is rebuilt, never used."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from imagesafety.classifiers.nsfwjs.package import FILES, MODELS, VERSION, cache_root, locate_package
from imagesafety.files import atomic_path
from imagesafety.tfjs import build_module, read_model
from imagesafety.tfjs.program import Program

CACHE_FORMAT = "imagesafety-tfjs-1"


def model_identity(model: str) -> str:
    """The content identity of a model: the digest of its (checked) files in the pinned release."""
    lines = "".join(f"{k}:{v}\n" for k, v in sorted(FILES.items()) if k.startswith(f"{model}/"))
    return f"sha256:{hashlib.sha256(lines.encode()).hexdigest()}"


def converted_path(model: str) -> Path:
    return cache_root() / "converted" / f"{model}.safetensors"


def _from_cache(path: Path, identity: str, model: str) -> Program | None:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
        if meta.get("format") != CACHE_FORMAT or meta.get("identity") != identity:
            return None
        return build_module(json.loads(meta["spec"]), load_file(str(path)), f"nsfwjs:{model}")
    except Exception:  # truncated, corrupted or half-written: convert again
        return None


def load_program(model: str, package: str | Path | None = None) -> tuple[Program, str]:
    """The model's torch module (eval mode) and its identity."""
    if model not in MODELS:
        raise ValueError(f"unknown NSFWJS model {model!r}; models: {', '.join(MODELS)}")
    identity = model_identity(model)
    cache = converted_path(model)
    program = _from_cache(cache, identity, model)
    if program is not None:
        return program.eval(), identity
    root = locate_package(package, [model])
    converted = read_model(root / "dist" / "models" / model)
    program = build_module(converted.spec, converted.weights, f"nsfwjs:{model}")
    save_converted(cache, converted.spec, converted.weights, identity)
    return program.eval(), identity


def save_converted(path: Path, spec: dict, weights: dict, identity: str) -> None:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    spec = {k: v for k, v in spec.items() if k != "weightsManifest"} | {"weightsManifest": []}
    meta = {"format": CACHE_FORMAT, "identity": identity, "version": VERSION, "spec": json.dumps(spec)}
    with atomic_path(path) as tmp:
        save_file(weights, str(tmp), metadata=meta)
