"""Binary safety metrics (unsafe = positive) with bootstrap 95% intervals, in memory that does not grow with resamples.

Resampling n rows with replacement gives confusion-matrix cells distributed Multinomial(n, observed cell shares), so
the six confusion-matrix metrics resample the four counts directly (constant memory per group, whatever n). AUROC and
AUPRC need the rows: the scores are sorted once and resampled as multinomial row weights, a chunk of resamples at a
time, the chunk sized so that chunk x rows stays under `WEIGHT_BUDGET` values. The point estimate (weights all 1) and
the resamples share one code path.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

from imagesafety.bench.grouping import grouped
from imagesafety.records.metrics_document import METRIC_NAMES

METRICS = METRIC_NAMES
BOOTSTRAP_CHUNK = 256
#: at most this many row weights (resamples x rows) at once in the ranking-metric bootstrap: ~32 MB of float64
WEIGHT_BUDGET = 1 << 22


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)


def weighted_metrics(
    labels: np.ndarray, scores: np.ndarray, decisions: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """Each metric for each row of `weights` (shape R x n); undefined values are NaN."""
    y = labels.astype(bool)
    w = np.atleast_2d(weights).astype(np.float64)
    out = confusion_metrics(w @ cell_indicators(y, decisions.astype(bool)))
    out["auroc"], out["auprc"] = _ranking_metrics(y, scores.astype(np.float64), w, w @ y, w @ ~y)
    return out


def cell_indicators(y: np.ndarray, d: np.ndarray) -> np.ndarray:
    """(n, 4) one-hot of each row's confusion cell, in the order tp, fp, fn, tn."""
    return np.stack([y & d, ~y & d, y & ~d, ~y & ~d], axis=1).astype(np.float64)


def confusion_metrics(counts: np.ndarray) -> dict[str, np.ndarray]:
    """The six confusion-matrix metrics for each row of `counts` (R x 4: tp, fp, fn, tn); undefined values are NaN."""
    tp, fp, fn, tn = np.atleast_2d(counts).astype(np.float64).T
    pos, neg = tp + fn, fp + tn
    return {
        "accuracy": _ratio(tp + tn, pos + neg),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, pos),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "fpr": _ratio(fp, neg),
        "fnr": _ratio(fn, pos),
    }


def _ranking_metrics(
    y: np.ndarray, scores: np.ndarray, w: np.ndarray, pos: np.ndarray, neg: np.ndarray, presorted: bool = False
):
    """AUROC (ties count one half) and average precision (as scikit-learn defines it), per weight row; with
    `presorted`, the rows are already in descending score order.

    Positives and negatives are cumulated separately (each over its own columns), and each positive reads the
    negatives' running total at the end of its run of tied scores: a few passes over the weights, whatever the ties."""
    if presorted:
        s, ys, ws = scores, y, w
    else:
        order = np.argsort(-scores, kind="mergesort")  # descending
        s, ys, ws = scores[order], y[order], w[:, order]
    pos_idx, neg_idx = np.flatnonzero(ys), np.flatnonzero(~ys)
    ends = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each run of tied scores
    starts = np.r_[0, ends[:-1] + 1]
    run = np.searchsorted(ends, pos_idx)  # each positive's run of ties
    zero = np.zeros((len(ws), 1), dtype=ws.dtype)
    cum_neg = np.concatenate(
        [zero, np.cumsum(ws[:, neg_idx], axis=1)], axis=1
    )  # [:, k]: weight of the first k negatives
    cum_pos = np.concatenate([zero, np.cumsum(ws[:, pos_idx], axis=1)], axis=1)
    neg_through = cum_neg[:, np.searchsorted(neg_idx, ends[run], side="right")]  # negatives scored >= this positive
    neg_tied = neg_through - cum_neg[:, np.searchsorted(neg_idx, starts[run], side="left")]
    wp = ws[:, pos_idx]
    # AUROC: each positive beats the negatives scored strictly lower, and half of those tied with it.
    auroc = _ratio((wp * (neg[:, None] - neg_through + 0.5 * neg_tied)).sum(axis=1), pos * neg)
    pos_through = cum_pos[:, np.searchsorted(pos_idx, ends[run], side="right")]  # precision at the end of the run
    precision = np.nan_to_num(_ratio(pos_through, pos_through + neg_through))
    auprc = _ratio((wp * precision).sum(axis=1), pos)
    return auroc, auprc


def curve_points(labels: Iterable[int], scores: Iterable[float]) -> dict[str, np.ndarray]:
    """ROC (fpr, tpr, from (0, 0)) and precision-recall (recall, precision, from recall 0 at precision 1) at every
    distinct score threshold, highest first: the points scikit-learn's roc_curve and precision_recall_curve give
    (without dropping collinear ROC points)."""
    y = np.asarray(list(labels), dtype=bool)
    s = np.asarray(list(scores), dtype=np.float64)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    ends = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tp, fp = np.cumsum(y)[ends].astype(np.float64), np.cumsum(~y)[ends].astype(np.float64)
    pos, neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return {
        "fpr": np.r_[0.0, fp / neg],
        "tpr": np.r_[0.0, tp / pos],
        "recall": np.r_[0.0, tp / pos],
        "precision": np.r_[1.0, tp / (tp + fp)],
    }


def bootstrap_weights(n: int, n_boot: int, rng: np.random.Generator, dtype: type = np.int64) -> np.ndarray:
    """`n_boot` x `n` multinomial counts: how often each sample is drawn in each resample (a row's counts at a time:
    cache-sized, several times faster than one count over all resamples)."""
    draws = rng.integers(0, n, size=(n_boot, n), dtype=np.int32 if n < 2**31 else np.int64)
    out = np.empty((n_boot, n), dtype=dtype)
    for i, row in enumerate(draws):
        out[i] = np.bincount(row, minlength=n)
    return out


def bootstrap_metrics(
    y: np.ndarray, scores: np.ndarray, decisions: np.ndarray, n_boot: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """`n_boot` resampled values of every metric: confusion metrics from multinomial cell counts (one (n_boot, 4)
    draw), ranking metrics from row weights over the once-sorted scores, in chunks bounded by `WEIGHT_BUDGET`."""
    n = len(y)
    yb = y.astype(bool)
    counts = cell_indicators(yb, decisions.astype(bool)).sum(axis=0)
    cells = rng.multinomial(n, counts / n, size=n_boot) if n_boot else np.zeros((0, 4))
    out = confusion_metrics(cells)
    order = np.argsort(-scores, kind="mergesort")
    ys, ss = yb[order], scores[order].astype(np.float64)
    chunk = max(1, min(BOOTSTRAP_CHUNK, WEIGHT_BUDGET // max(n, 1)))
    ranking: dict[str, list[np.ndarray]] = {"auroc": [], "auprc": []}
    for start in range(0, n_boot, chunk):
        w = bootstrap_weights(n, min(chunk, n_boot - start), rng, np.float32)  # counts: exact in float32 below 2**24
        auroc, auprc = _ranking_metrics(ys, ss, w, w @ ys, w @ ~ys, presorted=True)
        ranking["auroc"].append(auroc)
        ranking["auprc"].append(auprc)
    for m, parts in ranking.items():
        out[m] = np.concatenate(parts) if parts else np.array([])
    return out


def metrics_with_ci(
    labels: Iterable[int], scores: Iterable[float], decisions: Iterable[int], n_boot: int = 1000, seed: int = 0
) -> dict:
    """Point estimates and percentile bootstrap 95% intervals of every metric, plus support counts."""
    y = np.asarray(list(labels), dtype=int)
    s = np.asarray(list(scores), dtype=np.float64)
    d = np.asarray(list(decisions), dtype=int)
    result: dict = {"support": int(len(y)), "positives": int(y.sum()), "negatives": int(len(y) - y.sum())}
    if len(y) == 0:
        return result | {m: {"value": None, "ci95": [None, None]} for m in METRICS}
    point = weighted_metrics(y, s, d, np.ones((1, len(y))))
    boots = bootstrap_metrics(y, s, d, n_boot, np.random.default_rng(seed))
    for m in METRICS:
        values = boots[m]
        values = values[~np.isnan(values)]
        ci = (
            [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]
            if values.size and not np.isnan(point[m][0])
            else [None, None]
        )
        result[m] = {"value": _clean(point[m][0]), "ci95": ci}
    return result


def _clean(x: float) -> float | None:
    return None if x is None or np.isnan(x) else float(x)


def group_seed(seed: int, name: str) -> int:
    """A per-group seed, so a group's interval does not depend on which other groups were computed."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**32)


def grouped_metrics(frame: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict:
    """Metrics overall, by category, by source, and by category x source.

    `frame` has columns label, score, decision, category, source and error; rows with an error or
    without a label are left out of the metrics and counted under `errors` / `unlabelled`.
    """

    def block(part: pd.DataFrame, name: str) -> dict:
        ok = part[part["error"].isna() & part["label"].notna()]
        stats = metrics_with_ci(ok["label"].astype(int), ok["score"], ok["decision"], n_boot, group_seed(seed, name))
        stats["errors"] = int(part["error"].notna().sum())
        stats["unlabelled"] = int((part["error"].isna() & part["label"].isna()).sum())
        return stats

    return grouped(frame, block, crossed=True)


def f1_optimal_threshold(labels: Iterable[int], scores: Iterable[float]) -> float:
    """The score threshold (decide unsafe when score >= it) that maximises F1 on these samples (the lowest such
    threshold among ties, as scikit-learn's precision-recall curve orders them)."""
    y = np.asarray(list(labels), dtype=int)
    s = np.asarray(list(scores), dtype=np.float64)
    if y.sum() == 0 or y.sum() == len(y):
        raise ValueError("calibration needs both safe and unsafe images")
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s_sorted))[0], len(s_sorted) - 1]  # each distinct score, highest first
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    f1 = 2 * tp / (2 * tp + fp + (y.sum() - tp))
    best = np.flatnonzero(f1 == f1.max())[-1]  # ties: the lowest threshold, as scikit-learn's curve orders them
    return float(s_sorted[last[best]])


def threshold_at_fpr(labels: Iterable[int], scores: Iterable[float], target_fpr: float) -> float:
    """The lowest threshold whose false-positive rate (score >= threshold on safe images) is at most `target_fpr`."""
    y = np.asarray(list(labels), dtype=int)
    s = np.asarray(list(scores), dtype=np.float64)
    negatives = np.sort(s[y == 0])[::-1]
    if negatives.size == 0:
        raise ValueError("calibrating a false-positive rate needs safe images")
    if not 0 <= target_fpr < 1:
        raise ValueError(f"target false-positive rate must be in [0, 1), got {target_fpr}")
    allowed = int(np.floor(target_fpr * negatives.size))  # negatives that may score at or above the threshold
    return float(np.nextafter(negatives[allowed], np.inf))
