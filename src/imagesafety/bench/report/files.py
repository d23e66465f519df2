"""metrics.json and predictions.parquet, written atomically (a reader never sees half a file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from imagesafety.files import atomic_path, write_json


def write_metrics_json(metrics: dict[str, Any], path: Path) -> Path:
    return write_json(path, metrics)


def flat_predictions(rows: pd.DataFrame) -> pd.DataFrame:
    """One column per category score (`score_<category>`) instead of a dict column."""
    scores = pd.DataFrame(list(rows["category_scores"].map(lambda d: d or {})), index=rows.index)
    scores.columns = [f"score_{c}" for c in scores.columns]
    return pd.concat([rows.drop(columns=["category_scores"]), scores.astype("float64")], axis=1)


def write_predictions(rows: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        flat_predictions(rows).to_parquet(tmp, index=False)
    return path
