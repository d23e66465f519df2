"""Paired comparisons against statsmodels and an independent bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from imagesafety.bench.significance import f1, holm, mcnemar_exact, paired_bootstrap_f1


def test_mcnemar_and_holm_equal_statsmodels():
    sm = pytest.importorskip("statsmodels.stats.contingency_tables")
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(0)
    ps = []
    for _ in range(40):
        table = rng.integers(0, 30, (2, 2))
        expected = sm.mcnemar(table, exact=True).pvalue
        assert mcnemar_exact(int(table[0, 1]), int(table[1, 0])) == pytest.approx(expected, rel=1e-12, abs=1e-15)
        ps.append(expected)
    assert holm(ps) == pytest.approx(multipletests(ps, method="holm")[1].tolist(), rel=1e-12)
    assert mcnemar_exact(0, 0) == 1.0


def test_paired_bootstrap_equals_an_independent_computation_with_the_same_draws():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    a = np.where(rng.random(200) < 0.8, labels, 1 - labels)
    b = np.where(rng.random(200) < 0.7, labels, 1 - labels)
    lo, hi = paired_bootstrap_f1(labels, a, b, n_boot=300, seed=11)
    draws = np.random.default_rng(11)
    diffs = []
    for _ in range(300):
        idx = draws.integers(0, 200, 200)
        la, pa, pb = labels[idx], a[idx], b[idx]
        f = lambda p: (
            2
            * ((la == 1) & (p == 1)).sum()
            / (2 * ((la == 1) & (p == 1)).sum() + ((la == 0) & (p == 1)).sum() + ((la == 1) & (p == 0)).sum())
        )  # noqa: E731
        diffs.append(f(pa) - f(pb))
    assert (lo, hi) == pytest.approx((np.percentile(diffs, 2.5), np.percentile(diffs, 97.5)))
    assert lo < f1(labels, a) - f1(labels, b) < hi


def test_leaderboard_writes_pairs_and_marks_significance(tmp_path, red_folder):
    from conftest import MeanRedClassifier
    from imagesafety.bench.evaluate import evaluate
    from imagesafety.bench.leaderboard import build_leaderboard
    from imagesafety.bench.report.leaderboard_files import write_leaderboard

    class Coin(MeanRedClassifier):
        name = "coin"

        def predict(self, images):
            from imagesafety.classifiers.base import Prediction

            return [
                Prediction(0.9 if i % 2 else 0.1, i % 2, {"sexual": 0.9 if i % 2 else 0.1})
                for i, _ in enumerate(images)
            ]

    evaluate(MeanRedClassifier(), red_folder, tmp_path / "red", cache=None, progress=False, n_boot=10)
    evaluate(Coin(), red_folder, tmp_path / "coin", cache=None, progress=False, n_boot=10)
    board = build_leaderboard([tmp_path / "red", tmp_path / "coin"])
    files = write_leaderboard(board, tmp_path / "board")
    pairs = pd.read_csv(files["pairs"])
    assert {
        "classifier_a",
        "classifier_b",
        "category",
        "source",
        "n",
        "mcnemar_p",
        "holm_p",
        "f1_diff",
        "f1_diff_low",
        "f1_diff_high",
    } <= set(pairs.columns)
    overall = pairs[(pairs["category"] == "all") & (pairs["source"] == "all")].iloc[0]
    assert overall["n"] == 12 and overall["holm_p"] >= overall["mcnemar_p"]
    page = files["html"].read_text()
    assert (
        "Which differences are real" in page and "F1 against cost" in page and page.count("r='8'") >= 1
    )  # the Pareto front ringed
