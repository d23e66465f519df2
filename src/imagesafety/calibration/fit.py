"""Calibration maps and operating points, as pure functions and records: isotonic (pool adjacent violators), Platt
(logistic on the score) or temperature (one scale on the logit); reliability curves and the expected calibration error;
the threshold for a target FPR, precision, recall or the best F1, and the achieved rate with its interval."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("isotonic", "platt", "temperature")
UNSAFE = "unsafe"
FORMAT, VERSION = "imagesafety-calibration", 1


def isotonic_fit(scores: np.ndarray, labels: np.ndarray) -> tuple[list[float], list[float]]:
    """Non-decreasing step function by pool adjacent violators (ties pooled first), as scikit-learn's IsotonicRegression
    with out_of_bounds='clip': knots (x, y) interpolated linearly between."""
    order = np.argsort(scores, kind="mergesort")
    x, y = scores[order].astype(float), labels[order].astype(float)
    ux, start = np.unique(x, return_index=True)
    sums = np.add.reduceat(y, start)
    counts = np.diff(np.append(start, len(x))).astype(float)
    blocks: list[list[float]] = []  # [sum, count, x_lo, x_hi]
    for s, c, xv in zip(sums, counts, ux):
        blocks.append([s, c, xv, xv])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            s2, c2, _, hi = blocks.pop()
            blocks[-1][0] += s2
            blocks[-1][1] += c2
            blocks[-1][3] = hi
    knots_x, knots_y = [], []
    for s, c, lo, hi in blocks:
        knots_x += [lo, hi] if hi > lo else [lo]
        knots_y += [s / c] * (2 if hi > lo else 1)
    return knots_x, knots_y


def platt_fit(scores: np.ndarray, labels: np.ndarray, iterations: int = 100) -> tuple[float, float]:
    """p = sigmoid(a * score + b), by Newton's method on the log-loss (an unregularised logistic regression on the
    score)."""
    a, b = 1.0, 0.0
    x, y = scores.astype(float), labels.astype(float)
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(a * x + b)))
        w = p * (1 - p) + 1e-12
        g = np.array([np.sum((p - y) * x), np.sum(p - y)])
        h = np.array([[np.sum(w * x * x), np.sum(w * x)], [np.sum(w * x), np.sum(w)]]) + 1e-9 * np.eye(2)
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-10:
            break
    return float(a), float(b)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p.astype(float), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def temperature_fit(scores: np.ndarray, labels: np.ndarray) -> float:
    """T minimising the log-loss of sigmoid(logit(score) / T) (golden-section search on log T)."""
    z, y = _logit(scores), labels.astype(float)

    def loss(log_t: float) -> float:
        p = np.clip(1 / (1 + np.exp(-z / math.exp(log_t))), 1e-12, 1 - 1e-12)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))

    lo, hi = math.log(0.05), math.log(20.0)
    g = (math.sqrt(5) - 1) / 2
    for _ in range(80):
        c, d = hi - g * (hi - lo), lo + g * (hi - lo)
        if loss(c) < loss(d):
            hi = d
        else:
            lo = c
    return math.exp((lo + hi) / 2)


@dataclass
class CategoryMap:
    """One category's fitted map (`params` by method) and its operating threshold (on the calibrated score)."""

    method: str
    params: dict[str, Any]
    threshold: float = 0.5
    target: str | None = None

    def apply(self, scores: np.ndarray) -> np.ndarray:
        s = np.asarray(scores, dtype=float)
        if self.method == "isotonic":
            return np.interp(s, self.params["x"], self.params["y"])
        if self.method == "platt":
            return 1 / (1 + np.exp(-(self.params["a"] * s + self.params["b"])))
        return 1 / (1 + np.exp(-_logit(s) / self.params["t"]))


def fit_map(scores: np.ndarray, labels: np.ndarray, method: str) -> CategoryMap:
    if method not in METHODS:
        raise ValueError(f"unknown calibration method {method!r}; methods: {', '.join(METHODS)}")
    if method == "isotonic":
        x, y = isotonic_fit(scores, labels)
        return CategoryMap(method, {"x": x, "y": y})
    if method == "platt":
        a, b = platt_fit(scores, labels)
        return CategoryMap(method, {"a": a, "b": b})
    return CategoryMap(method, {"t": temperature_fit(scores, labels)})


def reliability(scores: np.ndarray, labels: np.ndarray, bins: int = 10) -> dict[str, Any]:
    """Equal-width bins over [0, 1]: mean score and share unsafe per non-empty bin (as scikit-learn's
    calibration_curve),
    and the expected calibration error (sum over bins of count/N x |share - mean score|)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.searchsorted(edges[1:-1], scores, side="right"), 0, bins - 1)
    prob_pred, prob_true, counts = [], [], []
    for b in range(bins):
        mask = which == b
        if mask.any():
            prob_pred.append(float(scores[mask].mean()))
            prob_true.append(float(labels[mask].mean()))
            counts.append(int(mask.sum()))
    ece = sum(c / len(scores) * abs(t - p) for c, t, p in zip(counts, prob_true, prob_pred))
    return {"prob_pred": prob_pred, "prob_true": prob_true, "counts": counts, "ece": float(ece)}


def operating_threshold(scores: np.ndarray, labels: np.ndarray, target: str) -> float:
    """The threshold meeting `target` on these scores: `fpr:X` (the lowest threshold whose FPR <= X), `precision:X`
    (the lowest whose precision >= X), `recall:X` (the highest whose recall >= X) or `f1` (the best F1)."""
    kind, _, value = target.partition(":")
    if kind not in ("fpr", "precision", "recall", "f1") or (kind != "f1" and not value):
        raise ValueError(f"--operating-point {target!r}: use fpr:X, precision:X, recall:X or f1")
    goal = float(value) if value else None
    candidates = np.unique(np.concatenate([scores, [1.0 + 1e-9]]))
    pos, neg = labels == 1, labels == 0
    best, best_f1 = None, -1.0
    for t in candidates:
        flag = scores >= t
        tp, fp = np.sum(flag & pos), np.sum(flag & neg)
        fpr = fp / max(1, neg.sum())
        recall = tp / max(1, pos.sum())
        precision = tp / (tp + fp) if tp + fp else 1.0
        if kind == "fpr" and fpr <= goal:
            return float(t)
        if kind == "precision" and precision >= goal and tp > 0:
            return float(t)
        if kind == "recall" and recall >= goal:
            best = float(t)
        if kind == "f1":
            f = 2 * tp / (2 * tp + fp + (pos.sum() - tp)) if tp else 0.0
            if f > best_f1:
                best, best_f1 = float(t), f
    if best is None:
        raise ValueError(f"no threshold reaches {target} on the fitting split")
    return best


def rate(
    scores: np.ndarray, labels: np.ndarray, threshold: float, kind: str, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The achieved rate (fpr, precision, recall or f1) at `threshold`, with a bootstrap 95% interval."""

    def value(s, y):
        flag = s >= threshold
        tp, fp, fn = np.sum(flag & (y == 1)), np.sum(flag & (y == 0)), np.sum(~flag & (y == 1))
        if kind == "fpr":
            return fp / max(1, np.sum(y == 0))
        if kind == "precision":
            return tp / (tp + fp) if tp + fp else float("nan")
        if kind == "recall":
            return tp / max(1, np.sum(y == 1))
        return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")

    rng = np.random.default_rng(seed)
    boots = [
        value(scores[idx], labels[idx]) for idx in (rng.integers(0, len(scores), len(scores)) for _ in range(n_boot))
    ]
    boots = [b for b in boots if not math.isnan(b)]
    return {
        "value": float(value(scores, labels)),
        "ci95": [float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))] if boots else None,
        "n": int(len(scores)),
    }


@dataclass
class Calibration:
    """Maps per category (`unsafe`: the unsafe score), the classifier they were fitted for (its prediction key), how."""

    classifier: list[str]
    split: str
    maps: dict[str, CategoryMap]
    report: dict[str, Any] = field(default_factory=dict)

    def save(self, out: str | Path) -> Path:
        from imagesafety.files import write_json

        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        write_json(
            folder / "calibration.json",
            {
                "format": FORMAT,
                "version": VERSION,
                "classifier": self.classifier,
                "split": self.split,
                "maps": {k: asdict(m) for k, m in self.maps.items()},
                "report": self.report,
            },
        )
        return folder


def load_calibration(path: str | Path) -> Calibration:
    from imagesafety.files import read_json

    folder = Path(path)
    file = folder / "calibration.json" if folder.is_dir() else folder
    data = read_json(file)
    if data.get("format") != FORMAT:
        raise ValueError(f"{file}: not an imagesafety calibration (format {data.get('format')!r})")
    if data.get("version") != VERSION:
        raise ValueError(
            f"{file}: calibration format version {data.get('version')!r}; this imagesafety reads version {VERSION}"
        )
    return Calibration(
        data["classifier"],
        data["split"],
        {k: CategoryMap(**m) for k, m in data["maps"].items()},
        data.get("report", {}),
    )


def check_identity(calibration: Calibration, key: list[str], where: str) -> None:
    """A calibration fitted for another classifier (name, version, settings or weights) is refused."""
    if list(calibration.classifier[:1]) != list(key[:1]) or list(calibration.classifier) != list(
        key[: len(calibration.classifier)]
    ):
        raise ValueError(
            f"{where}: this calibration was fitted for {calibration.classifier[0]} with key "
            f"{json.dumps(calibration.classifier)}, "
            f"not for this classifier ({json.dumps(list(key))}): fit one for it with `imagesafety calibrate`"
        )
