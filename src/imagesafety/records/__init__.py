"""Typed records of what crosses between packages and onto disk (the metrics document, model cards, pair
candidates). Each is validated once where it is read, written from the record, and has a JSON Schema generated from
it."""

from __future__ import annotations

import importlib
from typing import Any

#: record name -> "module:function" returning its JSON Schema (`imagesafety schema NAME`)
SCHEMAS: dict[str, str] = {
    "metrics": "imagesafety.records.metrics_document:metrics_schema",
    "robustness": "imagesafety.records.robustness_document:robustness_schema",
    "guard-card": "imagesafety.records.cards:guard_card_schema",
    "hysac-card": "imagesafety.records.cards:hysac_card_schema",
    "lora-card": "imagesafety.records.cards:lora_card_schema",
    "pair-candidate": "imagesafety.records.pairs:pair_candidate_schema",
}


def schema(name: str) -> dict[str, Any]:
    """The JSON Schema of a record written to disk, e.g. `schema("metrics")` for metrics.json."""
    if name not in SCHEMAS:
        raise ValueError(f"no schema named {name!r}; schemas: {', '.join(SCHEMAS)}")
    module, _, attr = SCHEMAS[name].partition(":")
    return getattr(importlib.import_module(module), attr)()
