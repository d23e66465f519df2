"""Binary safety metrics (unsafe = positive) with bootstrap 95% intervals, in memory and time that do not grow with
the rows.

Resampling n rows with replacement gives confusion-matrix cells distributed Multinomial(n, observed cell shares), so
the six confusion-matrix metrics resample the four counts directly (constant memory per group, whatever n). AUROC and
AUPRC depend only on how positives and negatives interleave in the score order, so the sorted rows are first cut into
atoms the two metrics cannot tell apart (each tie group's positives and its negatives; runs of negative-only groups
merged): resampling rows is then exactly Multinomial(n, atom shares) over the atoms, and a chunk of resamples
at a time is drawn so that chunk x atoms stays under `WEIGHT_BUDGET`. Only in large groups where both labels are
plentiful (64 or more quantiles of 50 rows each, `pooling_bins`) are consecutive atoms pooled into at most
`ATOM_BINS` bins, each within one quantile of the positives and one of the negatives, with the resampled values
shifted by the exact point estimate minus the pooled one, and the bins' counts drawn as independent Poisson counts of
mean n x share (the Poisson bootstrap, Hanley and MacGibbon 2006: for ratios such as AUROC and AUPRC in groups this
large, the same intervals as multinomial counts, at less than half the cost of the multinomial's conditional binomial
draws): there the interval ends stay within Monte-Carlo error of the row bootstrap (tested; coarser pooling narrowed
the AUPRC interval), and the cost no longer grows with n. The point estimates are always computed on the rows
themselves.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from imagesafety.bench.grouping import MISSING, grouped
from imagesafety.records.metrics_document import METRIC_NAMES

METRICS = METRIC_NAMES
BOOTSTRAP_CHUNK = 256
#: at most this many atom weights (resamples x atoms) at once in the ranking-metric bootstrap: ~16 MB of float32
WEIGHT_BUDGET = 1 << 22
#: the ranking-metric bootstrap pools consecutive atoms into at most this many bins (`pooling_bins`)
ATOM_BINS = 128
#: rows of each label a pooled bin's label quantile holds at least, and the fewest quantiles pooling uses
POOL_MIN_PER_BIN, POOL_MIN_QUANTILES = 50, 64


def as_array(values: Iterable, dtype: type) -> np.ndarray:
    """Values as a numpy array; arrays and Series converted whole (iterating 200,000 of them cost more than the
    metrics)."""
    if isinstance(values, (np.ndarray, pd.Series, pd.api.extensions.ExtensionArray)):
        return np.asarray(values, dtype=dtype)
    return np.asarray(list(values), dtype=dtype)


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
    y = as_array(labels, bool)
    s = as_array(scores, np.float64)
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


def ranking_atoms(ys: np.ndarray, ss: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(score, label, count) of the atoms of rows sorted by descending score, and each row's atom: each tie group's
    positives and its negatives, with consecutive groups of negatives only merged (no positive lies between them, so
    their order changes neither AUROC nor AUPRC; positives stay in their tie groups, as precision is read at each).
    Atoms keep the descending order; a mixed tie group's two atoms share its score."""
    n = len(ys)
    if n == 0:
        return ss[:0], ys[:0], np.zeros(0), np.zeros(0, dtype=np.int64)
    starts = np.r_[True, ss[1:] != ss[:-1]]
    group = np.cumsum(starts) - 1
    pos = np.bincount(group, weights=ys.astype(np.float64))
    neg = np.bincount(group) - pos
    negative_only = pos == 0
    new = np.r_[True, ~(negative_only[1:] & negative_only[:-1])]  # only runs of negative-only groups merge
    segment = np.cumsum(new) - 1
    seg_pos, seg_neg = np.bincount(segment, weights=pos), np.bincount(segment, weights=neg)
    scores = np.repeat(ss[np.flatnonzero(starts)[new]], 2)
    labels = np.tile([True, False], len(seg_pos))
    counts = np.stack([seg_pos, seg_neg], axis=1).ravel()
    keep = counts > 0
    slot = segment[group] * 2 + (~ys.astype(bool)).astype(np.int64)  # each row's (segment, label) slot
    return scores[keep], labels[keep], counts[keep], (np.cumsum(keep) - 1)[slot]


def pooled_atoms(labels: np.ndarray, counts: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Consecutive atoms pooled into fewer than `bins` bins (an atom is never split), each bin's positives and
    negatives tied at one score: (score, label, count), descending. A bin holds atoms from one quantile of the
    positives and one of the negatives (bins // 2 quantiles each), so a few positives are never pooled with many."""
    half = max(1, bins // 2)
    pos_before = np.cumsum(counts * labels) - counts * labels
    neg_before = np.cumsum(counts * ~labels) - counts * ~labels
    which = (pos_before * half // max(pos_before[-1] + counts[-1] * labels[-1], 1)).astype(np.int64) + (
        neg_before * half // max(neg_before[-1] + counts[-1] * ~labels[-1], 1)
    ).astype(np.int64)
    total = int(which[-1]) + 1
    pos = np.bincount(which, weights=counts * labels, minlength=total)
    neg = np.bincount(which, weights=counts * ~labels, minlength=total)
    scores = np.repeat(np.arange(total, 0, -1, dtype=np.float64), 2)
    pooled_labels = np.tile([True, False], total)
    pooled = np.stack([pos, neg], axis=1).ravel()
    keep = pooled > 0
    return scores[keep], pooled_labels[keep], pooled[keep]


def bootstrap_metrics(
    y: np.ndarray, scores: np.ndarray, decisions: np.ndarray, n_boot: int, rng: np.random.Generator
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every metric's value on the rows (one element each) and `n_boot` resampled values: confusion metrics from the
    cell counts and multinomial draws of them (one (n_boot, 4) draw), ranking metrics from the atoms' counts and
    multinomial draws of them (`ranking_atoms`; pooled above 2 x `ATOM_BINS` atoms, and then Poisson draws), in chunks
    bounded by `WEIGHT_BUDGET`. The values are the atoms' metrics at the observed counts: the rows' own, with no
    second pass."""
    n = len(y)
    yb = y.astype(bool)
    db = decisions.astype(bool)
    tp, fp, fn = np.count_nonzero(yb & db), np.count_nonzero(~yb & db), np.count_nonzero(yb & ~db)
    counts = np.array([tp, fp, fn, n - tp - fp - fn], dtype=np.float64)
    cells = rng.multinomial(n, counts / n, size=n_boot) if n_boot else np.zeros((0, 4))
    point, out = confusion_metrics(counts), confusion_metrics(cells)
    order = np.argsort(-scores, kind="mergesort")
    a_scores, a_labels, a_counts, _ = ranking_atoms(yb[order], scores[order].astype(np.float64))
    exact = np.array(_ranking_metrics(a_labels, a_scores, a_counts[None, :], *_totals(a_counts, a_labels), True))
    point["auroc"], point["auprc"] = exact[0], exact[1]
    shift = np.zeros(2)
    bins = pooling_bins(int(yb.sum()), int(n - yb.sum()))
    pooling = bool(bins) and len(a_counts) > 2 * bins
    if pooling:
        a_scores, a_labels, a_counts = pooled_atoms(a_labels, a_counts, bins)
        pooled = np.array(_ranking_metrics(a_labels, a_scores, a_counts[None, :], *_totals(a_counts, a_labels), True))
        shift = (exact - pooled)[:, 0]
    chunk = max(1, min(BOOTSTRAP_CHUNK, WEIGHT_BUDGET // max(len(a_counts), 1)))
    shares = a_counts / max(a_counts.sum(), 1)
    ranking: dict[str, list[np.ndarray]] = {"auroc": [], "auprc": []}
    for start in range(0, n_boot, chunk):
        w = atom_weights(n, shares, min(chunk, n_boot - start), rng, poisson=pooling)
        auroc, auprc = _ranking_metrics(a_labels, a_scores, w, *_totals(w, a_labels), presorted=True)
        ranking["auroc"].append(auroc + shift[0])
        ranking["auprc"].append(auprc + shift[1])
    for m, parts in ranking.items():
        out[m] = np.concatenate(parts) if parts else np.array([])
    return point, out


def pooling_bins(positives: int, negatives: int) -> int:
    """How many bins the ranking-metric bootstrap pools atoms into: at most `ATOM_BINS`, and only so many that every
    bin holds at least `POOL_MIN_PER_BIN` rows of each label per label quantile (0: do not pool; with fewer rows of
    either label, the atoms are few enough to resample exactly, and pooling them would narrow the AUPRC interval)."""
    per_label = min(ATOM_BINS // 2, min(positives, negatives) // POOL_MIN_PER_BIN)
    return 2 * per_label if per_label >= POOL_MIN_QUANTILES else 0


def _totals(w: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positive and negative weight of each row of `w` (atoms in columns)."""
    w = np.atleast_2d(w)
    return w @ labels, w @ ~labels


def atom_weights(
    n: int, shares: np.ndarray, resamples: int, rng: np.random.Generator, poisson: bool = False
) -> np.ndarray:
    """`resamples` x atoms counts: how many of n resampled rows fall in each atom (multinomial), or with `poisson`,
    independent Poisson counts of mean n x share (their total varies around n)."""
    if poisson:
        return rng.poisson(n * shares, size=(resamples, len(shares))).astype(np.float32)
    return rng.multinomial(n, shares, size=resamples).astype(np.float32)  # counts: exact in float32 below 2**24


def metrics_with_ci(
    labels: Iterable[int], scores: Iterable[float], decisions: Iterable[int], n_boot: int = 1000, seed: int = 0
) -> dict:
    """Point estimates and percentile bootstrap 95% intervals of every metric, plus support counts."""
    y = as_array(labels, int)
    s = as_array(scores, np.float64)
    d = as_array(decisions, int)
    result: dict = {"support": int(len(y)), "positives": int(y.sum()), "negatives": int(len(y) - y.sum())}
    if len(y) == 0:
        return result | {m: {"value": None, "ci95": [None, None]} for m in METRICS}
    point, boots = bootstrap_metrics(y, s, d, n_boot, np.random.default_rng(seed))
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
        labels, failed = part["label"].to_numpy(), part["failed"].to_numpy()
        ok = ~failed & ~np.isnan(labels)
        scores, decisions = part["score"].to_numpy()[ok], part["decision"].to_numpy()[ok]
        stats = metrics_with_ci(labels[ok].astype(int), scores, decisions.astype(int), n_boot, group_seed(seed, name))
        stats["errors"] = int(failed.sum())
        stats["unlabelled"] = int((~failed & np.isnan(labels)).sum())
        return stats

    # the columns as numbers and categoricals (a group's rows are then taken without copying strings), sorted once by
    # score, highest first: every group inherits the order, and each of its sorts is then one pass
    used = pd.DataFrame(
        {
            "label": frame["label"].to_numpy(dtype=np.float64, na_value=np.nan),
            "score": frame["score"].to_numpy(dtype=np.float64, na_value=np.nan),
            "decision": frame["decision"].to_numpy(dtype=np.float64, na_value=np.nan),
            "category": pd.Categorical(frame["category"].fillna(MISSING["category"])),
            "source": pd.Categorical(frame["source"].fillna(MISSING["source"])),
            "failed": frame["error"].notna().to_numpy(),
        }
    )
    used = used.iloc[np.argsort(-used["score"].to_numpy(), kind="stable")]
    workers = min(4, os.cpu_count() or 1)
    slots = threading.BoundedSemaphore(2 * workers)  # groups waiting or running: each holds a copy of its rows

    def submit(part: pd.DataFrame, name: str) -> Future:
        slots.acquire()
        future = pool.submit(block, part, name)
        future.add_done_callback(lambda _: slots.release())
        return future

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="metrics") as pool:
        # groups in parallel: the resampling draws release the GIL, and each group has its own seed
        return _results(grouped(used, submit, crossed=True))


def _results(tree: Any) -> Any:
    """The tree with every Future replaced by its result."""
    if isinstance(tree, Future):
        return tree.result()
    if isinstance(tree, dict):
        return {k: _results(v) for k, v in tree.items()}
    return tree


def f1_optimal_threshold(labels: Iterable[int], scores: Iterable[float]) -> float:
    """The score threshold (decide unsafe when score >= it) that maximises F1 on these samples (the lowest such
    threshold among ties, as scikit-learn's precision-recall curve orders them)."""
    y = as_array(labels, int)
    s = as_array(scores, np.float64)
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
    y = as_array(labels, int)
    s = as_array(scores, np.float64)
    negatives = np.sort(s[y == 0])[::-1]
    if negatives.size == 0:
        raise ValueError("calibrating a false-positive rate needs safe images")
    if not 0 <= target_fpr < 1:
        raise ValueError(f"target false-positive rate must be in [0, 1), got {target_fpr}")
    allowed = int(np.floor(target_fpr * negatives.size))  # negatives that may score at or above the threshold
    return float(np.nextafter(negatives[allowed], np.inf))
