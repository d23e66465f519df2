"""Calibration against scikit-learn and an independent ECE; operating points; the calibrated classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest

from imagesafety.calibration.fit import fit_map, operating_threshold, reliability


def scores_and_labels(n=400, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(0.35 * labels + rng.beta(2, 3, n) * 0.65, 0, 1)  # informative but badly calibrated
    return scores, labels


def test_isotonic_and_platt_equal_scikit_learn():
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression

    scores, labels = scores_and_labels()
    grid = np.linspace(-0.1, 1.1, 97)
    ours = fit_map(scores, labels, "isotonic").apply(grid)
    theirs = IsotonicRegression(out_of_bounds="clip").fit(scores, labels).predict(grid)
    assert np.abs(ours - theirs).max() < 1e-9
    platt = fit_map(scores, labels, "platt")
    lr = LogisticRegression(penalty=None, tol=1e-12, max_iter=10_000).fit(scores[:, None], labels)
    assert np.abs(platt.apply(grid) - lr.predict_proba(grid[:, None])[:, 1]).max() < 1e-6


def test_reliability_equals_calibration_curve_and_an_independent_ece():
    from sklearn.calibration import calibration_curve

    scores, labels = scores_and_labels(seed=1)
    ours = reliability(scores, labels, bins=10)
    prob_true, prob_pred = calibration_curve(labels, scores, n_bins=10, strategy="uniform")
    assert np.allclose(ours["prob_true"], prob_true) and np.allclose(ours["prob_pred"], prob_pred)
    ece = 0.0
    for lo in np.arange(10) / 10:
        inside = (scores >= lo) & ((scores < lo + 0.1) if lo < 0.9 else (scores <= 1.0))
        if inside.any():
            ece += inside.mean() * abs(labels[inside].mean() - scores[inside].mean())
    assert ours["ece"] == pytest.approx(ece, abs=1e-12)
    after = reliability(fit_map(scores, labels, "isotonic").apply(scores), labels)
    assert after["ece"] < ours["ece"]


@pytest.mark.parametrize("target", ["fpr:0.05", "precision:0.9", "recall:0.9", "f1"])
def test_operating_points_meet_their_target(target):
    scores, labels = scores_and_labels(seed=2)
    t = operating_threshold(scores, labels, target)
    flag = scores >= t
    tp, fp = (flag & (labels == 1)).sum(), (flag & (labels == 0)).sum()
    kind, _, goal = target.partition(":")
    if kind == "fpr":
        assert fp / (labels == 0).sum() <= 0.05
    elif kind == "precision":
        assert tp / (tp + fp) >= 0.9
    elif kind == "recall":
        assert tp / (labels == 1).sum() >= 0.9
    with pytest.raises(ValueError, match="use fpr:X"):
        operating_threshold(scores, labels, "fnr:0.1")


def write_splits(
    root, unsafe_red: float, safe_red: float, spread: float, random_green: bool = False, per_class: int = 30
) -> None:
    """validation/ and test/ splits of 16 px squares whose red level (drawn around a mean per class) is the signal."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("validation", "test"):
        for label in ("safe", "unsafe"):
            folder = root / split / label / ("sexual" if label == "unsafe" else "")
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                red = int(np.clip(rng.normal(unsafe_red if label == "unsafe" else safe_red, spread), 0, 255))
                green = int(rng.integers(0, 255)) if random_green else 30
                Image.new("RGB", (16, 16), (red, green, 30)).save(folder / f"{i}.png")


def test_calibrate_a_run_and_use_it_as_an_option(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from conftest import MeanRedClassifier
    from imagesafety.bench.evaluate import evaluate
    from imagesafety.cli import app

    write_splits(tmp_path / "data", unsafe_red=150, safe_red=110, spread=25)
    evaluate(MeanRedClassifier(), tmp_path / "data", tmp_path / "run", cache=None, progress=False, n_boot=10)
    result = CliRunner().invoke(
        app,
        [
            "calibrate",
            "--run",
            str(tmp_path / "run"),
            "--split",
            "validation",
            "--out",
            str(tmp_path / "cal"),
            "--operating-point",
            "fpr:0.1",
            "--holdout",
            "test",
        ],
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "cal" / "calibration.json").read_text())
    op = saved["report"]["unsafe"]["operating_point"]
    assert op["fit"]["value"] <= 0.1 and op["holdout"]["split"] == "test" and len(op["holdout"]["ci95"]) == 2
    assert saved["report"]["unsafe"]["after"]["ece"] <= saved["report"]["unsafe"]["before"]["ece"]
    assert "ECE" in (tmp_path / "cal" / "calibration.html").read_text()
    from imagesafety.calibration import load_calibration
    from imagesafety.classifiers.calibrated import CalibratedClassifier

    cal = load_calibration(tmp_path / "cal")
    clf = CalibratedClassifier(MeanRedClassifier(), cal)
    img = Image.new("RGB", (8, 8), (140, 30, 30))
    raw = MeanRedClassifier().predict([img])[0].unsafe_score
    assert clf.predict([img])[0].unsafe_score == pytest.approx(cal.maps["unsafe"].apply(np.array([raw]))[0])
    with pytest.raises(ValueError, match="fitted for mean-red"):
        other = MeanRedClassifier(fail_on_green=True)  # another setting: another key
        CalibratedClassifier(other, cal)
    no_split = CliRunner().invoke(
        app, ["calibrate", "--run", str(tmp_path / "run"), "--split", "val", "--out", str(tmp_path / "c2")]
    )
    assert no_split.exit_code == 2 and "splits present: test, validation" in no_split.output
