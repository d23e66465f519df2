"""A deployable policy in one file: which classifiers, how they combine, their calibrations, a threshold per category
and the grades answers carry (Google's five likelihoods or Azure's severities, from score bands). `policy:FILE` is a
classifier (eval, serve), and `fit_policy` writes one from finished runs without running any model.

    name: marketplace
    classifiers:
      - spec: nudenet
        calibration: cal/nudenet
      - spec: nsfwjs
    combine: cascade        # single, cascade, vote, max or mean
    band: "0.2:0.8"         # cascade
    k: 2                    # vote
    thresholds: {unsafe: 0.5, sexual: 0.4}
    grades: {scheme: likelihood, bands: [0.2, 0.4, 0.6, 0.8]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from imagesafety.classifiers.base import Classifier, Prediction, PreparesInput, SafetyClassifier, cache_key, coverage

COMBINES = ("single", "cascade", "vote", "max", "mean")
SCHEMES = {"likelihood": ("VERY_UNLIKELY", "UNLIKELY", "POSSIBLE", "LIKELY", "VERY_LIKELY"), "severity": (0, 2, 4, 6)}
FIELDS = {"name", "classifiers", "combine", "band", "k", "thresholds", "grades"}
PART_FIELDS = {"spec", "calibration", "options"}


class PolicyError(ValueError):
    """A policy file that cannot be used: the message names the file and the field."""


@dataclass
class Policy:
    name: str
    classifiers: list[dict[str, Any]]
    combine: str = "single"
    band: str = "0.2:0.8"
    k: int | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    grades: dict[str, Any] | None = None
    path: Path | None = None

    def grade(self, score: float) -> Any:
        if not self.grades:
            return None
        levels, bands = SCHEMES[self.grades["scheme"]], self.grades["bands"]
        return levels[int(np.searchsorted(np.asarray(bands, dtype=float), score, side="right"))]

    def to_yaml(self) -> str:
        data = {
            "name": self.name,
            "classifiers": self.classifiers,
            "combine": self.combine,
            "thresholds": self.thresholds,
        }
        if self.combine == "cascade":
            data["band"] = self.band
        if self.combine == "vote":
            data["k"] = self.k
        if self.grades:
            data["grades"] = self.grades
        return yaml.safe_dump(data, sort_keys=False)


def _suggest(word: str, choices: set[str]) -> str:
    from imagesafety.registry import did_you_mean

    return did_you_mean(word, sorted(choices))


def read_policy(path: str | Path) -> Policy:
    """A policy file, every field checked before any model is built (one line naming the file and the field)."""
    file = Path(path)
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"{file}: cannot read the policy ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict):
        raise PolicyError(f"{file}: a policy is a mapping with fields {', '.join(sorted(FIELDS))}")
    for key in data:
        if key not in FIELDS:
            raise PolicyError(
                f"{file}: unknown field {key!r}{_suggest(key, FIELDS)}; fields: {', '.join(sorted(FIELDS))}"
            )
    parts = data.get("classifiers")
    if not isinstance(parts, list) or not parts:
        raise PolicyError(f"{file}: classifiers: a list of at least one {{spec: ...}}")
    parts = [{"spec": p} if isinstance(p, str) else p for p in parts]
    for i, part in enumerate(parts):
        if not isinstance(part, dict) or "spec" not in part:
            raise PolicyError(f"{file}: classifiers[{i}]: needs a spec")
        for key in part:
            if key not in PART_FIELDS:
                raise PolicyError(
                    f"{file}: classifiers[{i}]: unknown field {key!r}{_suggest(key, PART_FIELDS)}; fields: "
                    f"{', '.join(sorted(PART_FIELDS))}"
                )
        if part.get("calibration"):
            cal = Path(part["calibration"])
            part["calibration"] = str(cal if cal.is_absolute() else (file.parent / cal))
    combine = data.get("combine", "single" if len(parts) == 1 else None)
    if combine not in COMBINES:
        raise PolicyError(f"{file}: combine: {combine!r} is not one of {', '.join(COMBINES)}")
    if combine == "single" and len(parts) != 1:
        raise PolicyError(f"{file}: combine: single takes one classifier, not {len(parts)}")
    thresholds = data.get("thresholds") or {}
    if not isinstance(thresholds, dict) or not all(
        isinstance(v, (int, float)) and 0 <= v <= 1 for v in thresholds.values()
    ):
        raise PolicyError(f"{file}: thresholds: a mapping of category -> a number in [0, 1]")
    grades = data.get("grades")
    if grades is not None:
        if not isinstance(grades, dict) or grades.get("scheme") not in SCHEMES:
            raise PolicyError(f"{file}: grades: scheme must be one of {', '.join(SCHEMES)}")
        bands = grades.get("bands")
        need = len(SCHEMES[grades["scheme"]]) - 1
        if (
            not isinstance(bands, list)
            or len(bands) != need
            or sorted(bands) != bands
            or not all(0 <= b <= 1 for b in bands)
        ):
            raise PolicyError(
                f"{file}: grades: bands must be {need} increasing numbers in [0, 1] for {grades['scheme']}"
            )
    k = data.get("k")
    if combine == "vote" and (not isinstance(k, int) or not 1 <= k <= len(parts)):
        raise PolicyError(f"{file}: k: vote needs 1 <= k <= {len(parts)} (the number of classifiers), got {k!r}")
    return Policy(
        str(data.get("name") or file.stem),
        parts,
        combine,
        str(data.get("band", "0.2:0.8")),
        k,
        {str(c): float(v) for c, v in thresholds.items()},
        grades,
        file,
    )


class PolicyClassifier(Classifier):
    """The policy as a classifier: the combination's scores, unsafe when a category reaches its threshold (the `unsafe`
    threshold where it has none; the unsafe score when no category is scored), with a grade per category in `raw`."""

    version = "1"

    def __init__(self, policy: Policy, inner: SafetyClassifier):
        self.policy, self.inner = policy, inner
        self.name = f"policy:{policy.name}"
        self.taxonomy = inner.taxonomy
        self.covers = coverage(inner)
        self.threshold = float(policy.thresholds.get("unsafe", inner.threshold))
        self.config = {"inner": list(cache_key(inner)), "thresholds": policy.thresholds, "grades": policy.grades}

    def prepare(self, image):
        return self.inner.prepare(image) if isinstance(self.inner, PreparesInput) else image

    def predict_prepared(self, items) -> list[Prediction]:
        preds = (
            self.inner.predict_prepared(items) if isinstance(self.inner, PreparesInput) else self.inner.predict(items)
        )
        out = []
        for p in preds:
            # as the service decides: a category flags at its threshold (the unsafe threshold where it has none)
            flagged = {c: s >= self.policy.thresholds.get(c, self.threshold) for c, s in p.category_scores.items()}
            decision = int(any(flagged.values())) if flagged else int(p.unsafe_score >= self.threshold)
            grades = {c: self.policy.grade(s) for c, s in p.category_scores.items()} if self.policy.grades else None
            raw = {
                "inner": p.raw,
                "flagged_categories": sorted(c for c, f in flagged.items() if f),
                "grades": grades,
                "unsafe_grade": self.policy.grade(p.unsafe_score),
            }
            out.append(Prediction(p.unsafe_score, decision, p.category_scores, raw, p.views))
        return out


def build_policy(policy: Policy) -> PolicyClassifier:
    from imagesafety import registry
    from imagesafety.classifiers.combine import Combined, parse_band

    parts = [
        registry.build(
            "classifier",
            p["spec"],
            **(p.get("options") or {}),
            **({"calibration": p["calibration"]} if p.get("calibration") else {}),
        )
        for p in policy.classifiers
    ]
    if policy.combine == "single":
        inner = parts[0]
    else:
        inner = Combined(
            policy.combine, parts, k=policy.k, band=parse_band(policy.band), spec=f"{policy.combine}:{policy.name}"
        )
    return PolicyClassifier(policy, inner)


def from_spec(arg: str | None) -> PolicyClassifier:
    """`policy:FILE.yaml`."""
    if not arg:
        raise PolicyError("policy needs a file: policy:policy.yaml")
    return build_policy(read_policy(arg))


def fit_policy(
    runs: list[str | Path],
    target: str,
    out: str | Path,
    *,
    split: str = "validation",
    method: str = "isotonic",
    grades: str | None = "likelihood",
) -> Policy:
    """A policy from finished runs, no model run: each run's classifier calibrated on `split` (saved beside the policy),
    combined by `max` when there are several, and a threshold per category for `target` on the combined calibrated
    scores of `split`."""
    import pandas as pd

    from imagesafety.calibration import calibrate
    from imagesafety.calibration.fit import operating_threshold
    from imagesafety.files import write_atomic
    from imagesafety.records.metrics_document import load_metrics

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    parts, calibrated_rows = [], []
    for i, run in enumerate(map(Path, runs)):
        classifier = load_metrics(run / "metrics.json").classifier
        cal_dir = out.parent / f"{out.stem}-calibration-{i}"
        cal = calibrate(run, split, method, cal_dir)
        rows = pd.read_parquet(run / "predictions.parquet")
        rows = rows[(rows["split"] == split) & rows["error"].isna() & rows["label"].notna()]
        key = rows["sha256"].fillna("") + "|" + rows["id"].astype(str)
        frame = pd.DataFrame(
            {
                "key": key,
                "label": rows["label"].astype(int),
                "category": rows["category"],
                "unsafe": cal.maps["unsafe"].apply(rows["score"].to_numpy(float)),
            }
        )
        for column in [c for c in rows.columns if c.startswith("score_")]:
            k = column[len("score_") :]
            if k in cal.maps:
                frame[k] = cal.maps[k].apply(rows[column].to_numpy(float))
        calibrated_rows.append(frame.set_index("key"))
        if classifier.spec is None:
            raise PolicyError(
                f"{run}: the run does not record its classifier's spec (it was evaluated from a Python object); "
                "evaluate it by spec (e.g. `imagesafety eval -c nudenet ...`) to fit a policy from it"
            )
        part: dict[str, Any] = {"spec": classifier.spec, "calibration": cal_dir.name}
        if classifier.options:
            part["options"] = classifier.options
        parts.append(part)
    combined = calibrated_rows[0]
    for other in calibrated_rows[1:]:
        shared = combined.index.intersection(other.index)
        combined = combined.loc[shared].copy()
        for column in set(combined.columns) & set(other.columns) - {"label", "category"}:
            combined[column] = np.maximum(combined[column], other.loc[shared, column])
    thresholds = {"unsafe": operating_threshold(combined["unsafe"].to_numpy(), combined["label"].to_numpy(), target)}
    for column in [c for c in combined.columns if c not in ("label", "category", "unsafe")]:
        mask = (combined["label"] == 0) | (combined["category"] == column)
        labels = combined.loc[mask, "label"].to_numpy()
        if len(np.unique(labels)) == 2:
            thresholds[column] = operating_threshold(combined.loc[mask, column].to_numpy(), labels, target)
    policy = Policy(
        out.stem,
        parts,
        "max" if len(parts) > 1 else "single",
        thresholds={k: float(v) for k, v in thresholds.items()},
        grades={
            "scheme": grades,
            "bands": [float(b) for b in np.linspace(0, 1, len(SCHEMES[grades]) + 1)[1:-1].round(3)],
        }
        if grades
        else None,
    )
    write_atomic(out, policy.to_yaml())
    return policy
