import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as sk

from imagesafety.bench.metrics import (
    bootstrap_weights,
    f1_optimal_threshold,
    group_seed,
    grouped_metrics,
    metrics_with_ci,
    weighted_metrics,
)


def random_predictions(n=400, seed=0, ties=True):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    s = rng.random(n) * 0.6 + 0.3 * y
    if ties:
        s = np.round(s, 1)  # many tied scores
    return y, s, (s >= 0.5).astype(int)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_point_metrics_match_scikit_learn(seed):
    y, s, d = random_predictions(seed=seed)
    m = {k: v[0] for k, v in weighted_metrics(y, s, d, np.ones((1, len(y)))).items()}
    tn, fp, fn, tp = sk.confusion_matrix(y, d).ravel()
    assert m["accuracy"] == pytest.approx(sk.accuracy_score(y, d))
    assert m["precision"] == pytest.approx(sk.precision_score(y, d))
    assert m["recall"] == pytest.approx(sk.recall_score(y, d))
    assert m["f1"] == pytest.approx(sk.f1_score(y, d))
    assert m["fpr"] == pytest.approx(fp / (fp + tn))
    assert m["fnr"] == pytest.approx(fn / (fn + tp))
    assert m["auroc"] == pytest.approx(sk.roc_auc_score(y, s))
    assert m["auprc"] == pytest.approx(sk.average_precision_score(y, s))


def test_weighted_rows_equal_metrics_of_the_resampled_data():
    y, s, d = random_predictions(n=200, seed=3)
    weights = bootstrap_weights(len(y), 5, np.random.default_rng(0))
    assert (weights.sum(axis=1) == len(y)).all()
    batch = weighted_metrics(y, s, d, weights)
    for row, w in enumerate(weights):
        idx = np.repeat(np.arange(len(y)), w)
        assert batch["f1"][row] == pytest.approx(sk.f1_score(y[idx], d[idx]))
        assert batch["auroc"][row] == pytest.approx(sk.roc_auc_score(y[idx], s[idx]))
        assert batch["auprc"][row] == pytest.approx(sk.average_precision_score(y[idx], s[idx]))


def test_intervals_bracket_the_estimate_and_shrink_with_more_data():
    small = metrics_with_ci(*random_predictions(n=100, seed=4), n_boot=500, seed=1)
    large = metrics_with_ci(*random_predictions(n=3000, seed=4), n_boot=500, seed=1)
    for block in (small, large):
        lo, hi = block["f1"]["ci95"]
        assert lo <= block["f1"]["value"] <= hi
    width = lambda b: b["auroc"]["ci95"][1] - b["auroc"]["ci95"][0]  # noqa: E731
    assert width(large) < width(small) / 3
    assert small["support"] == 100 and small["positives"] + small["negatives"] == 100


def test_undefined_metrics_are_none_not_nan():
    block = metrics_with_ci([0, 0, 0], [0.1, 0.2, 0.9], [0, 0, 1], n_boot=50)
    assert block["recall"]["value"] is None and block["auroc"]["value"] is None
    assert block["fpr"]["value"] == pytest.approx(1 / 3)
    assert metrics_with_ci([], [], [])["f1"]["value"] is None


def test_grouped_metrics_leave_out_errors_and_count_them():
    y, s, d = random_predictions(n=120, seed=5)
    frame = pd.DataFrame(
        {
            "label": y,
            "score": s,
            "decision": d,
            "category": np.where(np.arange(120) % 2, "sexual", "hate"),
            "source": np.where(np.arange(120) % 3, "real", "generated"),
            "error": [None] * 118 + ["broken", "broken"],
        }
    )
    g = grouped_metrics(frame, n_boot=100)
    ok = frame.iloc[:118]
    assert g["overall"]["support"] == 118 and g["overall"]["errors"] == 2
    assert g["overall"]["f1"]["value"] == pytest.approx(sk.f1_score(ok["label"], ok["decision"]))
    part = ok[(ok["category"] == "sexual") & (ok["source"] == "real")]
    assert g["by_category_source"]["sexual"]["real"]["f1"]["value"] == pytest.approx(
        sk.f1_score(part["label"], part["decision"])
    )
    assert set(g["by_source"]) == {"real", "generated"}


def test_f1_optimal_threshold_beats_every_other_cut():
    y, s, _ = random_predictions(n=300, seed=6, ties=False)
    t = f1_optimal_threshold(y, s)
    best = sk.f1_score(y, (s >= t).astype(int))
    for cut in np.unique(s):
        assert sk.f1_score(y, (s >= cut).astype(int)) <= best + 1e-12
    with pytest.raises(ValueError, match="both safe and unsafe"):
        f1_optimal_threshold([1, 1], [0.2, 0.3])


def test_curve_points_are_scikit_learns():
    """ROC and PR points at every distinct threshold equal scikit-learn's (the reference), ties included."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    from imagesafety.bench.metrics import curve_points

    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 300)
    s = np.round(rng.random(300) * 0.5 + 0.4 * y, 2)  # ties on purpose
    points = curve_points(y, s)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(points["fpr"], fpr)
    np.testing.assert_allclose(points["tpr"], tpr)
    precision, recall, _ = precision_recall_curve(y, s)
    np.testing.assert_allclose(points["precision"], precision[::-1])
    np.testing.assert_allclose(points["recall"], recall[::-1])


def test_cell_count_metrics_equal_an_independent_row_bootstrap_when_the_draws_are_shared():
    """The confusion metrics of resampled cell counts equal scikit-learn's on the resampled rows themselves."""
    from imagesafety.bench.metrics import cell_indicators, confusion_metrics

    y, s, d = random_predictions(n=300, seed=6)
    weights = bootstrap_weights(len(y), 6, np.random.default_rng(2))
    counts = weights @ cell_indicators(y.astype(bool), d.astype(bool))
    batch = confusion_metrics(counts)
    for row, w in enumerate(weights):
        idx = np.repeat(np.arange(len(y)), w)
        tn, fp, fn, tp = sk.confusion_matrix(y[idx], d[idx]).ravel()
        assert batch["f1"][row] == pytest.approx(sk.f1_score(y[idx], d[idx]))
        assert batch["precision"][row] == pytest.approx(sk.precision_score(y[idx], d[idx]))
        assert batch["accuracy"][row] == pytest.approx(sk.accuracy_score(y[idx], d[idx]))
        assert batch["fpr"][row] == pytest.approx(fp / (fp + tn))


def assert_like_row_bootstrap(ours: dict, metrics: dict, n: int, seed: int, tolerance: float) -> None:
    """Our 95% interval ends for each metric equal an independent row bootstrap's (2,000 draws of row indices, the
    metric computed on the drawn rows) within `tolerance` times the metric's bootstrap spread: the interval ends move
    by a small fraction of it between repeats of 2,000 (Monte-Carlo error)."""
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, n, n) for _ in range(2000)]
    for metric, value_on in metrics.items():
        values = np.array([value_on(idx) for idx in draws])
        low, high = np.percentile(values, [2.5, 97.5])
        spread = values.std()
        assert ours[metric]["ci95"][0] == pytest.approx(low, abs=tolerance * spread), metric
        assert ours[metric]["ci95"][1] == pytest.approx(high, abs=tolerance * spread), metric


def test_cell_count_intervals_equal_row_bootstrap_intervals_within_monte_carlo_error():
    """Multinomial cell draws are the row bootstrap's distribution: 2,000 resamples each way give the same 95%
    interval ends within Monte-Carlo error (compared to the spread of the interval end over independent repeats)."""
    from imagesafety.bench.metrics import metrics_with_ci

    y, s, d = random_predictions(n=500, seed=7)
    ours = metrics_with_ci(y, s, d, n_boot=2000, seed=11)
    metrics = {"f1": lambda i: sk.f1_score(y[i], d[i]), "recall": lambda i: sk.recall_score(y[i], d[i])}
    assert_like_row_bootstrap(ours, metrics, len(y), seed=12, tolerance=0.15)


def test_bootstrap_memory_does_not_grow_with_resamples_or_rows(monkeypatch):
    """The ranking-metric weights come a chunk at a time over atoms, the chunk bounded by the weight budget and the
    atoms by 2 x ATOM_BINS; confusion metrics never build row weights at all."""
    import imagesafety.bench.metrics as metrics

    seen = []
    real = metrics.atom_weights
    monkeypatch.setattr(metrics, "WEIGHT_BUDGET", 20_000)
    monkeypatch.setattr(
        metrics,
        "atom_weights",
        lambda n, shares, r, rng, poisson=False: seen.append((r, len(shares))) or real(n, shares, r, rng, poisson),
    )
    for n in (5000, 50_000):
        seen.clear()
        y, s, d = random_predictions(n=n, seed=8)
        block = metrics.metrics_with_ci(y, s, d, n_boot=1000, seed=0)
        assert max(r * atoms for r, atoms in seen) <= 20_000 and sum(r for r, _ in seen) == 1000
        assert max(atoms for _, atoms in seen) <= 2 * metrics.ATOM_BINS
        lo, hi = block["auroc"]["ci95"]
        assert lo < block["auroc"]["value"] < hi


def tied_predictions(n: int, seed: int, positives: float = 0.3):
    """Scores with heavy ties (a block at 0 and values on a coarse grid) and runs of one label at both ends."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < positives).astype(int)
    s = np.round(np.clip(rng.normal(0.3 + 0.35 * y, 0.25), 0, 1), 2)
    s[rng.random(n) < 0.3] = 0.0
    return y, s, (s >= 0.5).astype(int)


def test_ranking_atoms_resample_exactly_as_rows_do_when_the_draws_are_shared():
    """Rows drawn with replacement, counted per atom, give the AUROC and AUPRC scikit-learn computes on the drawn
    rows themselves: the atoms lose nothing the two metrics read."""
    from imagesafety.bench.metrics import _ranking_metrics, ranking_atoms

    y, s, _ = tied_predictions(400, seed=9)
    order = np.argsort(-s, kind="mergesort")
    scores, labels, counts, row_atom = ranking_atoms(y[order].astype(bool), s[order])
    assert len(counts) < len(y) / 2 and counts.sum() == len(y)
    rng = np.random.default_rng(3)
    for _ in range(20):
        drawn = rng.integers(0, len(y), len(y))  # row indices, in the original order
        position = np.argsort(order)[drawn]  # the same rows, in sorted order
        w = np.bincount(row_atom[position], minlength=len(counts)).astype(np.float64)[None, :]
        auroc, auprc = _ranking_metrics(labels, scores, w, w @ labels, w @ ~labels, presorted=True)
        assert auroc[0] == pytest.approx(sk.roc_auc_score(y[drawn], s[drawn]), abs=1e-12)
        assert auprc[0] == pytest.approx(sk.average_precision_score(y[drawn], s[drawn]), abs=1e-12)


def continuous_predictions(n: int, seed: int, positives: float):
    """Scores without ties (a logistic of a normal shifted for positives): the interleaving pooling applies to."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < positives).astype(int)
    s = 1 / (1 + np.exp(-rng.normal(-0.5 + 1.2 * y, 1.0)))
    return y, s, (s >= 0.5).astype(int)


def test_pooled_atom_intervals_equal_row_bootstrap_intervals_within_monte_carlo_error(monkeypatch):
    """Where pooling applies (forced here with 96 bins; the bins' counts then drawn as Poisson counts), the AUROC and
    AUPRC intervals match an independent row bootstrap (scikit-learn on resampled rows) within Monte-Carlo error, for
    balanced and for scarce positives (without the shift by the exact point estimate they do not)."""
    import imagesafety.bench.metrics as metrics

    monkeypatch.setattr(metrics, "ATOM_BINS", 96)
    monkeypatch.setattr(metrics, "POOL_MIN_PER_BIN", 1)
    monkeypatch.setattr(metrics, "POOL_MIN_QUANTILES", 1)
    for y, s, d in (continuous_predictions(2500, seed=10, positives=0.4), continuous_predictions(2500, 11, 0.1)):
        order = np.argsort(-s, kind="mergesort")
        bins = metrics.pooling_bins(int(y.sum()), int(len(y) - y.sum()))
        assert bins == 96 and len(metrics.ranking_atoms(y[order].astype(bool), s[order])[2]) > 2 * bins  # pooled
        ours = metrics.metrics_with_ci(y, s, d, n_boot=2000, seed=5)
        scored = {
            "auroc": lambda i, y=y, s=s: sk.roc_auc_score(y[i], s[i]),
            "auprc": lambda i, y=y, s=s: sk.average_precision_score(y[i], s[i]),
        }
        assert_like_row_bootstrap(ours, scored, len(y), seed=6, tolerance=0.2)


def test_scarce_labels_are_never_pooled(monkeypatch):
    """Pooling narrows the AUPRC interval when a label quantile holds few rows: groups without 64 quantiles of 50 rows
    of each label are resampled exactly (the same values as with pooling switched off)."""
    import imagesafety.bench.metrics as metrics

    assert metrics.pooling_bins(3199, 50_000) == 0 and metrics.pooling_bins(3200, 50_000) == 128
    assert metrics.pooling_bins(100_000, 100_000) == metrics.ATOM_BINS
    y, s, d = continuous_predictions(20_000, seed=3, positives=0.05)  # 1,000 positives: about 2,000 atoms
    pooled_rule = metrics.metrics_with_ci(y, s, d, n_boot=200, seed=1)
    monkeypatch.setattr(metrics, "POOL_MIN_PER_BIN", 10**9)  # pooling off
    exact = metrics.metrics_with_ci(y, s, d, n_boot=200, seed=1)
    assert pooled_rule["auprc"] == exact["auprc"] and pooled_rule["auroc"] == exact["auroc"]


def test_grouped_metrics_do_not_depend_on_row_order():
    """The groups are computed in parallel from one frame sorted by score: shuffled rows (ties, an error row and a
    missing category included) give exactly the same document."""
    y, s, d = random_predictions(n=600, seed=7)
    frame = pd.DataFrame(
        {
            "label": pd.array(y, dtype="Int64"),
            "score": s,
            "decision": pd.array(d, dtype="Int64"),
            "category": np.where(np.arange(600) % 3 == 0, None, np.where(np.arange(600) % 2, "sexual", "hate")),
            "source": np.where(np.arange(600) % 5, "real", "generated"),
            "error": [None] * 599 + ["broken"],
        }
    )
    frame.loc[599, "score"] = np.nan
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert grouped_metrics(shuffled, n_boot=200) == grouped_metrics(frame, n_boot=200)
    one = grouped_metrics(frame, n_boot=200)["by_category_source"]["hate"]["real"]
    part = frame[(frame["category"] == "hate") & (frame["source"] == "real")]
    assert one == metrics_with_ci(part["label"], part["score"], part["decision"], 200, group_seed(0, "hate/real")) | {
        "errors": 0,
        "unlabelled": 0,
    }
