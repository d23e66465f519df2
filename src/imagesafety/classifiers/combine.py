"""Combinators that are classifiers themselves: `cascade:A>B` (B only on images whose A score falls in the band),
`vote:K/N:A,B,C` (unsafe when at least K parts decide unsafe), `max:A,B` and `mean:A,B` (scores on a common scale:
calibrate the parts first). Per category, the rule applies category by category over the categories all parts score.

Each combined prediction keeps its parts' scores and which stage decided (`raw`); the run's summary counts model calls
and seconds per stage (and endpoint cost where the parts report one), so a leaderboard can set F1 against cost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from imagesafety.classifiers.base import (
    Classifier,
    ModelFailure,
    Prediction,
    SafetyClassifier,
    Usage,
    cache_key,
    coverage,
    decide,
)

RULES = ("cascade", "vote", "max", "mean")


@dataclass
class StageCost:
    """What one part cost over a run: model calls (images it was asked about), seconds, and endpoint cost."""

    images: int = 0
    seconds: float = 0.0
    cost: float = 0.0


def _cost_of(pred: Prediction) -> float:
    return pred.usage.cost if pred.usage is not None else 0.0


def parse_band(value: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in str(value).split(":"))
    except ValueError:
        raise ValueError(f"band={value!r}: give LO:HI, e.g. band=0.2:0.8") from None
    if not 0 <= lo <= hi <= 1:
        raise ValueError(f"band={value!r}: LO and HI must satisfy 0 <= LO <= HI <= 1")
    return lo, hi


class Combined(Classifier):
    """Parts combined by a rule; the threshold is 0.5 on the combined score (`vote`: K/N)."""

    version = "1"

    def __init__(
        self,
        rule: str,
        parts: list[SafetyClassifier],
        *,
        k: int | None = None,
        band: tuple[float, float] = (0.2, 0.8),
        spec: str = "",
    ):
        if rule not in RULES:
            raise ValueError(f"unknown combination {rule!r}; combinations: {', '.join(RULES)}")
        if len(parts) < 2:
            raise ValueError(f"{rule}: combine at least two classifiers")
        self.rule, self.parts, self.band = rule, list(parts), band
        self.name = spec or f"{rule}:{','.join(p.name for p in parts)}"
        self.taxonomy = parts[0].taxonomy
        covers = [coverage(p) for p in parts]
        if rule == "vote":
            if k is None or not 1 <= k <= len(parts):
                raise ValueError(f"vote:K/N: K must be between 1 and N={len(parts)}, got {k}")
            declared = [c for c in covers if c is not None]
            self.covers = frozenset.intersection(*declared) if declared else None
            if declared and not self.covers:
                raise ValueError(
                    "vote: the parts' categories do not overlap "
                    f"({'; '.join(', '.join(sorted(c)) for c in declared)}): "
                    "no image could get a vote from every part"
                )
        else:
            self.covers = None if any(c is None for c in covers) else frozenset.union(*covers)
        self.k = k
        self.threshold = (k / len(parts)) if rule == "vote" else 0.5
        self.costs = {p.name: StageCost() for p in parts}
        self.config = {
            "rule": rule,
            "k": k,
            "band": list(band) if rule == "cascade" else None,
            "parts": [list(cache_key(p)) for p in parts],
            "thresholds": [float(p.threshold) for p in parts],
        }

    def _run(self, part: SafetyClassifier, images: list[Image.Image]) -> list[Prediction]:
        started = time.perf_counter()
        preds = part.predict(images) if images else []
        cost = self.costs[part.name]
        cost.images += len(images)
        cost.seconds += time.perf_counter() - started
        for p in preds:
            if isinstance(p, ModelFailure):
                raise RuntimeError(f"{part.name}: {p}")
            cost.cost += _cost_of(p)
        return preds

    def predict_prepared(self, images: list[Image.Image]) -> list[Prediction]:
        return self._cascade(images) if self.rule == "cascade" else self._together(images)

    def _cascade(self, images: list[Image.Image]) -> list[Prediction]:
        lo, hi = self.band
        stages: list[list[dict]] = [[] for _ in images]
        spent: list[Usage | None] = [None] * len(images)
        final: list[Prediction | None] = [None] * len(images)
        pending = list(range(len(images)))
        for depth, part in enumerate(self.parts):
            preds = self._run(part, [images[i] for i in pending])
            last = depth == len(self.parts) - 1
            onward = []
            for i, pred in zip(pending, preds):
                stages[i].append({"stage": part.name, "score": pred.unsafe_score, "decision": pred.decision})
                spent[i] = Usage.total([spent[i], pred.usage])
                if last or not lo <= pred.unsafe_score <= hi:
                    final[i] = pred
                else:
                    onward.append(i)
            pending = onward
            if not pending:
                break
        out = []
        for i, pred in enumerate(final):
            decided = stages[i][-1]["stage"]
            out.append(
                Prediction(
                    pred.unsafe_score,
                    pred.decision,
                    dict(pred.category_scores),
                    {"rule": "cascade", "band": [lo, hi], "decided_by": decided, "stages": stages[i]},
                    usage=spent[i],
                )
            )
        return out

    def _together(self, images: list[Image.Image]) -> list[Prediction]:
        per_part = [self._run(p, images) for p in self.parts]
        out = []
        for i in range(len(images)):
            preds = [pp[i] for pp in per_part]
            scores = np.array([p.unsafe_score for p in preds], dtype=float)
            votes = int(sum(p.decision for p in preds))
            shared = set.intersection(*(set(p.category_scores) for p in preds))
            if self.rule == "vote":
                score, decision = votes / len(preds), int(votes >= self.k)
                cats = {
                    c: float(
                        sum(p.category_scores[c] >= part.threshold for p, part in zip(preds, self.parts)) / len(preds)
                    )
                    for c in shared
                }
            elif self.rule == "max":
                score, decision = float(scores.max()), int(votes >= 1)
                cats = {c: max(p.category_scores[c] for p in preds) for c in shared}
            else:
                score = float(scores.mean())
                decision = decide(score, self.threshold)
                cats = {c: float(np.mean([p.category_scores[c] for p in preds])) for c in shared}
            parts = [
                {"stage": part.name, "score": p.unsafe_score, "decision": p.decision}
                for part, p in zip(self.parts, preds)
            ]
            raw = {"rule": self.rule, "k": self.k, "stages": parts}
            out.append(Prediction(score, decision, cats, raw, usage=Usage.total([p.usage for p in preds])))
        return out

    def run_summary(self, rows) -> dict[str, Any]:
        """Cost per stage over the run: images each part saw, its seconds, and endpoint cost (cached rows cost
        nothing)."""
        total = max(1, int(rows["error"].isna().sum()))
        coverage_rule = (
            "intersection of the parts' categories" if self.rule == "vote" else "union of the parts' categories"
        )
        return {
            "rule": self.rule,
            "coverage": {"covers": sorted(self.covers) if self.covers is not None else "all", "rule": coverage_rule},
            "per_category": "the rule applied category by category over the categories every part scores",
            "stages": {
                name: {
                    "images": c.images,
                    "seconds": round(c.seconds, 4),
                    "cost": c.cost,
                    "share_of_images": c.images / total,
                }
                for name, c in self.costs.items()
            },
            "seconds_per_image": sum(c.seconds for c in self.costs.values()) / total,
            "cost_per_1000_images": 1000 * sum(c.cost for c in self.costs.values()) / total,
        }


def _split(arg: str | None, sep: str, what: str) -> list[str]:
    parts = [p.strip() for p in (arg or "").split(sep) if p.strip()]
    if len(parts) < 2:
        raise ValueError(f"{what} needs at least two classifiers separated by {sep!r}, e.g. {what}:nudenet{sep}nsfwjs")
    return parts


def _build(specs: list[str]) -> list[SafetyClassifier]:
    from imagesafety import registry

    return [registry.build("classifier", s) for s in specs]


def cascade_from_spec(arg: str | None, *, band: str = "0.2:0.8") -> Combined:
    """`cascade:A>B[>C...]`: each next stage sees only the images whose score at this stage is within band=LO:HI."""
    lo_hi = parse_band(band)
    specs = _split(arg, ">", "cascade")
    return Combined("cascade", _build(specs), band=lo_hi, spec=f"cascade:{arg}")


def vote_from_spec(arg: str | None) -> Combined:
    """`vote:K/N:A,B,C`: unsafe when at least K of the N parts decide unsafe."""
    head, _, rest = (arg or "").partition(":")
    try:
        k, n = (int(v) for v in head.split("/"))
    except ValueError:
        raise ValueError(f"vote:{arg}: write vote:K/N:A,B,C (e.g. vote:2/3:nudenet,nsfwjs,q16)") from None
    specs = _split(rest, ",", f"vote:{head}")
    if n != len(specs):
        raise ValueError(f"vote:{head}: N={n} but {len(specs)} classifiers are named")
    if not 1 <= k <= n:
        raise ValueError(f"vote:{head}: K must be between 1 and N (K > N can never vote unsafe)")
    return Combined("vote", _build(specs), k=k, spec=f"vote:{arg}")


def max_from_spec(arg: str | None) -> Combined:
    return Combined("max", _build(_split(arg, ",", "max")), spec=f"max:{arg}")


def mean_from_spec(arg: str | None) -> Combined:
    return Combined("mean", _build(_split(arg, ",", "mean")), spec=f"mean:{arg}")
