"""Is one classifier really better than another on the same images? McNemar's exact test on their decisions, a paired
bootstrap interval of the F1 difference, and Holm's correction across every comparison of a leaderboard."""

from __future__ import annotations

from itertools import combinations
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd

ALL = "all"
PAIR_COLUMNS = (
    "classifier_a",
    "classifier_b",
    "category",
    "source",
    "n",
    "mcnemar_p",
    "holm_p",
    "significant",
    "f1_a",
    "f1_b",
    "f1_diff",
    "f1_diff_low",
    "f1_diff_high",
    "a_right_b_wrong",
    "a_wrong_b_right",
)


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts (a right and b wrong, and the reverse): twice the
    binomial(b + c, 1/2) tail at min(b, c), at most 1 (as statsmodels' `mcnemar(exact=True)`)."""
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return min(1.0, 2 * tail)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (as statsmodels' `multipletests(method="holm")`)."""
    m = len(pvalues)
    order = np.argsort(pvalues, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()


def f1(labels: np.ndarray, decisions: np.ndarray) -> float:
    tp = float(np.sum((labels == 1) & (decisions == 1)))
    fp = float(np.sum((labels == 0) & (decisions == 1)))
    fn = float(np.sum((labels == 1) & (decisions == 0)))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


def paired_bootstrap_f1(
    labels: np.ndarray, a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95% percentile interval of F1(a) - F1(b) over row resamples shared by both classifiers (the images are
    paired)."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    diffs = np.empty(n_boot)
    for r in range(n_boot):
        idx = rng.integers(0, n, n)
        diffs[r] = f1(labels[idx], a[idx]) - f1(labels[idx], b[idx])
    diffs = diffs[~np.isnan(diffs)]
    if not len(diffs):
        return float("nan"), float("nan")
    return float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))


def _decisions(folder: Path) -> pd.DataFrame:
    rows = pd.read_parquet(
        folder / "predictions.parquet", columns=["id", "sha256", "label", "category", "source", "decision", "error"]
    )
    rows = rows[rows["error"].isna() & rows["label"].notna() & rows["decision"].notna()]
    return rows.assign(key=rows["sha256"].fillna("") + "|" + rows["id"].astype(str)).set_index("key")


def pair_table(
    runs: list[tuple[str, Path, frozenset[str] | None]], n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> pd.DataFrame:
    """Every pair of runs on their shared images: per category and source (and `all`), over the categories both
    cover."""
    from imagesafety.bench.coverage import is_covered

    frames = {name: _decisions(folder) for name, folder, _ in runs}
    covers = {name: c for name, _, c in runs}
    out = []
    for (a, _, _), (b, _, _) in combinations(runs, 2):
        shared = frames[a].index.intersection(frames[b].index)
        left, right = frames[a].loc[shared], frames[b].loc[shared]
        both = left["category"].map(lambda c: is_covered(c, covers[a]) and is_covered(c, covers[b])).astype(bool)
        left, right = left[both], right[both]
        groups = [(ALL, ALL, np.ones(len(left), bool))]
        for category in sorted(left["category"].dropna().unique()):
            groups.append((category, ALL, (left["category"] == category).to_numpy()))
        for source in sorted(left["source"].dropna().unique()):
            groups.append((ALL, source, (left["source"] == source).to_numpy()))
        for category, source, mask in groups:
            if not mask.any():
                continue
            labels = left["label"].to_numpy()[mask].astype(int)
            da, db = left["decision"].to_numpy()[mask].astype(int), right["decision"].to_numpy()[mask].astype(int)
            ra, rb = da == labels, db == labels
            n10, n01 = int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))
            lo, hi = paired_bootstrap_f1(labels, da, db, n_boot, seed)
            fa, fb = f1(labels, da), f1(labels, db)
            out.append(
                {
                    "classifier_a": a,
                    "classifier_b": b,
                    "category": category,
                    "source": source,
                    "n": int(mask.sum()),
                    "mcnemar_p": mcnemar_exact(n10, n01),
                    "f1_a": fa,
                    "f1_b": fb,
                    "f1_diff": fa - fb,
                    "f1_diff_low": lo,
                    "f1_diff_high": hi,
                    "a_right_b_wrong": n10,
                    "a_wrong_b_right": n01,
                }
            )
    table = pd.DataFrame(out)
    if table.empty:
        return pd.DataFrame(columns=list(PAIR_COLUMNS))
    table["holm_p"] = holm(table["mcnemar_p"].tolist())
    table["significant"] = table["holm_p"] < alpha
    return table[list(PAIR_COLUMNS)]
