"""Guard heads: learn a known boundary, calibrate thresholds, reload bit-identically, use pairs."""

import numpy as np
import pytest

from imagesafety.bench.metrics import threshold_at_fpr
from imagesafety.guard import GuardConfig, train_guard
from imagesafety.guard.efficiency import sample_efficiency, summarise, write_efficiency_report
from imagesafety.guard.train import head_scores
from imagesafety.run.embed import Embeddings

torch = pytest.importorskip("torch")


def separable(n=600, d=32, seed=0, categories=("sexual", "violence")):
    """Labels from a known hyperplane with a margin; categories alternate."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=d)
    X = rng.normal(size=(n * 2, d))
    margin = X @ w / np.linalg.norm(w)
    X = X[np.abs(margin) > 0.3][:n]
    labels = (X @ w > 0).astype(int)
    cats = [categories[i % len(categories)] for i in range(n)]
    return Embeddings.from_arrays(X, labels, "synthetic", category=cats)


def test_linear_and_mlp_heads_learn_a_known_boundary():
    for head in ("linear", "mlp"):
        result = train_guard(separable(), config=GuardConfig(head=head, target="multilabel"))
        val = result.card.metrics["validation"]
        assert result.card.outputs == ["unsafe", "sexual", "violence"]
        assert val["unsafe"]["f1"] > 0.95 and val["sexual"]["f1"] > 0.9 and val["violence"]["f1"] > 0.9


def test_saved_guard_reloads_bit_identically(tmp_path):
    from imagesafety.classifiers.probe import load_guard

    result = train_guard(separable(seed=1), tmp_path / "g", config=GuardConfig(head="mlp", hidden=8, epochs=30))
    head, card = load_guard(tmp_path / "g")
    for key, value in result.head.state_dict().items():
        assert torch.equal(value, head.state_dict()[key])
    assert card.thresholds == result.card.thresholds and card.encoder == "synthetic"
    assert (tmp_path / "g" / "history.json").is_file()


def test_fpr_calibration_holds_on_held_out_data():
    rng = np.random.default_rng(3)

    def noisy(n):
        labels = rng.integers(0, 2, n)
        X = rng.normal(size=(n, 8)) + labels[:, None] * 0.8
        return Embeddings.from_arrays(X, labels, "synthetic")

    result = train_guard(noisy(4000), config=GuardConfig(calibrate="fpr:0.1", val_fraction=0.5))
    held_out = noisy(20000)
    scores = head_scores(result.head, held_out.matrix)[:, 0]
    labels = held_out.frame["label"].to_numpy(dtype=int)
    fpr = (scores[labels == 0] >= result.card.thresholds["unsafe"]).mean()
    assert abs(fpr - 0.1) < 0.02


def test_threshold_at_fpr_counts_ties_and_limits():
    labels = [0, 0, 0, 0, 1]
    scores = [0.1, 0.2, 0.2, 0.9, 0.95]
    t = threshold_at_fpr(labels, scores, 0.25)  # one of four negatives may pass: the 0.9, not the tied 0.2s
    assert 0.2 < t < 0.2 + 1e-9
    assert sum(s >= t for s, y in zip(scores, labels) if y == 0) == 1
    assert 0.9 < threshold_at_fpr(labels, scores, 0.0) < 0.95
    with pytest.raises(ValueError, match="needs safe images"):
        threshold_at_fpr([1], [0.5], 0.1)


def spurious_task(n, seed, correlated=True):
    """Label = sign of feature 0 (small); feature 1 is a strong context cue correlated with the label when
    `correlated`."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    X = rng.normal(scale=0.5, size=(n, 12))
    X[:, 0] = np.where(labels == 1, 0.5, -0.5) + rng.normal(scale=0.15, size=n)
    context = np.where(rng.random(n) < (0.95 if correlated else 0.5), labels, 1 - labels)
    X[:, 1] = np.where(context == 1, 2.0, -2.0) + rng.normal(scale=0.3, size=n)
    return X, labels


def pairs_for(n_pairs, seed):
    """Counterfactual pairs: same context and noise, only feature 0 flips (and the label with it)."""
    X, _ = spurious_task(n_pairs, seed + 100, correlated=False)
    unsafe, safe = X.copy(), X.copy()
    unsafe[:, 0], safe[:, 0] = 0.5, -0.5
    rows = np.concatenate([unsafe, safe])
    labels = [1] * n_pairs + [0] * n_pairs
    pair_id = [f"p{i}" for i in range(n_pairs)] * 2
    role = ["original"] * n_pairs + ["edited"] * n_pairs
    return Embeddings.from_arrays(rows, labels, "synthetic", pair_id=pair_id, role=role)


def test_pairs_make_the_guard_more_sample_efficient(tmp_path):
    """Training images carry a spurious context cue; the test set does not. Pairs show what really matters."""
    Xtr, ytr = spurious_task(400, 0)
    Xte, yte = spurious_task(400, 1, correlated=False)
    emb = Embeddings.from_arrays(
        np.concatenate([Xtr, Xte]), np.concatenate([ytr, yte]), "synthetic", split=["train"] * 400 + ["test"] * 400
    )
    runs = sample_efficiency(
        emb, pairs_for(200, 0), sizes=[16, 32], seeds=4, config=GuardConfig(epochs=150), progress=False
    )
    summary = summarise(runs).set_index(["size", "with_pairs"])
    for n in (16, 32):
        assert summary.loc[(n, True), "f1_mean"] > summary.loc[(n, False), "f1_mean"] + 0.05
    files = write_efficiency_report(runs, tmp_path / "eff")
    html = files["html"].read_text()
    assert "with pairs" in html and "<svg " in html
    assert len(runs) == 2 * 4 * 2


def test_pair_consistency_loss_separates_pairs():
    Xtr, ytr = spurious_task(64, 5)
    emb = Embeddings.from_arrays(Xtr, ytr, "synthetic")
    pairs = pairs_for(100, 5)
    with_loss = train_guard(
        emb, pairs=pairs, config=GuardConfig(pair_weight=2.0, val_fraction=0, epochs=100, calibrate="none")
    )
    s = head_scores(with_loss.head, pairs.matrix)[:, 0]
    assert (s[:100] > 0.5).mean() > 0.95 and (s[100:] < 0.5).mean() > 0.95
    assert with_loss.card.training["pairs"] == 100


def test_bad_input_is_named_before_training():
    emb = separable()
    other = Embeddings.from_arrays(np.zeros((2, 32)), [1, 0], "other-encoder", pair_id=["a", "a"])
    with pytest.raises(ValueError, match="pair embeddings come from encoder 'other-encoder'"):
        train_guard(emb, pairs=other)
    narrow = Embeddings.from_arrays(np.zeros((2, 8)), [1, 0], "synthetic", pair_id=["a", "a"])
    with pytest.raises(ValueError, match="pair embeddings are 8-d, but the training embeddings are 32-d"):
        train_guard(emb, pairs=narrow)
    with pytest.raises(ValueError, match=r"categories \['sexual', 'violence'\] are not in taxonomy 'llavaguard'"):
        train_guard(emb, taxonomy="llavaguard")
    one_sided = Embeddings.from_arrays(
        np.random.default_rng(0).normal(size=(40, 4)),
        [1] * 20 + [0] * 20,
        "synthetic",
        category=["hate"] * 20 + ["spam"] * 20,
    )
    with pytest.raises(ValueError, match=r"category 'hate' has a single class \(\d+ unsafe, 0 safe\)"):
        train_guard(one_sided, config=GuardConfig(target="multilabel", val_fraction=0))
    with pytest.raises(ValueError, match="unknown target 'both'"):
        train_guard(emb, config=GuardConfig(target="both"))
