"""One group-by for every per-category / per-source table (metrics, pair metrics, robust accuracy, answers)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

MISSING = {"category": "uncategorised", "source": "unknown"}
GROUP_KEYS = {"category": "by_category", "source": "by_source"}


def grouped(
    frame: pd.DataFrame,
    block: Callable[[pd.DataFrame, str], Any],
    by: tuple[str, ...] = ("category", "source"),
    crossed: bool = False,
) -> dict[str, Any]:
    """`{"overall": block(frame), "by_category": {c: block(part)}, "by_source": {...}}` for the columns in `by`
    (missing values named 'uncategorised' / 'unknown'), and with `crossed` also `by_category_source[c][s]`.
    `block(part, name)` gets a stable name per group (for per-group seeds)."""
    frame = frame.assign(**{c: frame[c].fillna(MISSING[c]) for c in by})
    out: dict[str, Any] = {"overall": block(frame, "overall")}
    for column in by:
        out[GROUP_KEYS[column]] = {
            str(value): block(part, f"{column}={value}") for value, part in frame.groupby(column, sort=True)
        }
    if crossed:
        table: dict[str, dict[str, Any]] = {}
        for (category, source), part in frame.groupby(["category", "source"], sort=True):
            table.setdefault(str(category), {})[str(source)] = block(part, f"{category}/{source}")
        out["by_category_source"] = table
    return out
