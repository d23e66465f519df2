"""Which rows train and which validate: one rule for every trainer and calibrator.

Training uses the rows of `--train-split` (default `train`; data without any split column is all training rows)
and validation the rows of `--val-split` (default `validation`, or `val`/`valid`/`dev`), else a seeded,
stratified fraction of the training rows. Rows of any other split, `test` above all, are never touched unless
named. What was used is returned for the model's card.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

VALIDATION_NAMES = ("validation", "val", "valid", "dev")


@dataclass
class SplitChoice:
    """Row indices for training and validation, and how they were chosen (for the card)."""

    train: np.ndarray
    val: np.ndarray
    record: dict[str, Any] = field(default_factory=dict)


def _names(value: str | list[str] | None) -> list[str] | None:
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else list(value)
    return [i.strip() for i in items if i.strip()] or None


def choose_splits(
    splits: np.ndarray | list,
    *,
    train_split: str | list[str] | None = None,
    val_split: str | list[str] | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    strata: np.ndarray | None = None,
    what: str = "data",
    need_train: bool = True,
) -> SplitChoice:
    """Training and validation rows of data whose rows carry `splits` (None for rows without one). With
    `need_train=False` (calibration), data holding only a validation split is fine."""
    split = np.array([s if isinstance(s, str) and s else "" for s in splits], dtype=object)
    present = sorted({s for s in split if s})
    if not 0 <= val_fraction < 1:
        raise ValueError(f"the validation fraction must be in [0, 1), got {val_fraction}")
    train_names = _names(train_split)
    if train_names is None:
        if not present:
            train_rows, train_desc = np.arange(len(split)), "all rows (the data has no split column)"
        elif "train" in present:
            train_names = ["train"]
        elif not need_train and any(n in present for n in (_names(val_split) or VALIDATION_NAMES)):
            train_rows, train_desc = np.array([], dtype=int), "none"
        else:
            raise ValueError(
                f"{what} has no 'train' split (splits present: {', '.join(present)}); name the training rows with "
                "--train-split"
            )
    if train_names is not None:
        missing = [n for n in train_names if n not in present]
        if missing:
            raise ValueError(f"{what} has no split {missing[0]!r} (splits present: {', '.join(present) or 'none'})")
        train_rows, train_desc = np.flatnonzero(np.isin(split, train_names)), ",".join(train_names)
    val_names = _names(val_split)
    if val_names is None:
        own = [n for n in VALIDATION_NAMES if n in present]
        val_names = own or None
    elif any(n not in present for n in val_names):
        raise ValueError(
            f"{what} has no split {next(n for n in val_names if n not in present)!r} (splits present: "
            f"{', '.join(present) or 'none'})"
        )
    if val_names is not None:
        if set(val_names) & set(train_names or []):
            raise ValueError(
                f"split {sorted(set(val_names) & set(train_names or []))[0]!r} cannot both train and validate"
            )
        val_rows, val_desc = np.flatnonzero(np.isin(split, val_names)), ",".join(val_names)
    elif val_fraction > 0:
        val_rows = stratified_fraction(
            train_rows, val_fraction, seed, None if strata is None else np.asarray(strata)[train_rows]
        )
        train_rows = np.setdiff1d(train_rows, val_rows)
        val_desc = f"a seeded {val_fraction:.0%} of the training rows (seed {seed})"
    else:
        val_rows, val_desc = np.array([], dtype=int), "none"
    if len(train_rows) == 0 and need_train:
        raise ValueError(f"{what}: no training rows ({train_desc})")
    untouched = sorted({s for s in split[np.setdiff1d(np.arange(len(split)), np.r_[train_rows, val_rows])] if s})
    record = {
        "train_split": train_desc,
        "validation_split": val_desc,
        "rows": {"train": int(len(train_rows)), "validation": int(len(val_rows))},
        "not_used": untouched,
    }
    return SplitChoice(np.sort(train_rows), np.sort(val_rows), record)


def stratified_fraction(rows: np.ndarray, fraction: float, seed: int, strata: np.ndarray | None) -> np.ndarray:
    """A seeded `fraction` of `rows`, taken within each stratum (e.g. category x label) so every stratum is
    represented."""
    rng = np.random.default_rng(seed)
    keys = np.zeros(len(rows), dtype=object) if strata is None else np.asarray(strata, dtype=object)
    chosen = []
    for key in sorted(set(keys.tolist()), key=str):
        members = rng.permutation(rows[keys == key])
        chosen.extend(members[: int(round(len(members) * fraction))])
    return np.sort(np.array(chosen, dtype=int))
