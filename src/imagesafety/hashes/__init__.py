"""Known images first: perceptual hashes (PDQ, pHash), banks of known images searched with FAISS, matching, and the
near-duplicate audit of datasets. Names are imported on first use, so the CLI starts without pandas or FAISS."""

from __future__ import annotations

import importlib

_LAZY = {
    "add": "imagesafety.hashes.api",
    "build": "imagesafety.hashes.api",
    "compute_hashes": "imagesafety.hashes.api",
    "match": "imagesafety.hashes.api",
    "remove": "imagesafety.hashes.api",
    "audit": "imagesafety.hashes.audit",
    "BankError": "imagesafety.hashes.bank",
    "HashBank": "imagesafety.hashes.bank",
    "Match": "imagesafety.hashes.bank",
    "load_bank": "imagesafety.hashes.bank",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'imagesafety.hashes' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
