"""metrics.json and predictions.parquet, written atomically (a reader never sees half a file)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pandas as pd


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _json_safe(value.item())
    return value


def _replace(tmp: Path, path: Path) -> Path:
    os.replace(tmp, path)
    return path


def write_metrics_json(metrics: dict[str, Any], path: Path) -> Path:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_json_safe(metrics), indent=2), encoding="utf-8")
    return _replace(tmp, path)


def flat_predictions(rows: pd.DataFrame) -> pd.DataFrame:
    """One column per category score (`score_<category>`) instead of a dict column."""
    scores = pd.DataFrame(list(rows["category_scores"].map(lambda d: d or {})), index=rows.index)
    scores.columns = [f"score_{c}" for c in scores.columns]
    return pd.concat([rows.drop(columns=["category_scores"]), scores.astype("float64")], axis=1)


def write_predictions(rows: pd.DataFrame, path: Path) -> Path:
    tmp = path.with_suffix(".parquet.tmp")
    flat_predictions(rows).to_parquet(tmp, index=False)
    return _replace(tmp, path)
