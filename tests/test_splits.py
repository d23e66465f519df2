"""Training and calibration never touch `test` unless it is named: the split rule, and the trainers that use it
(asserted on the rows each trainer really received)."""

import numpy as np
import pytest

from imagesafety.run.embed import Embeddings
from imagesafety.splits import choose_splits


def test_the_split_rule():
    splits = np.array(["train"] * 6 + ["validation"] * 2 + ["test"] * 2, dtype=object)
    chosen = choose_splits(splits)
    assert (
        chosen.train.tolist() == list(range(6))
        and chosen.val.tolist() == [6, 7]
        and chosen.record["not_used"] == ["test"]
    )
    fraction = choose_splits(np.array(["train"] * 10 + ["test"] * 5, dtype=object), val_fraction=0.2, seed=1)
    assert len(fraction.val) == 2 and set(fraction.train) | set(fraction.val) == set(range(10))  # test rows: none
    assert "seeded 20%" in fraction.record["validation_split"]
    unsplit = choose_splits(np.array([None] * 10, dtype=object), val_fraction=0.3)
    assert len(unsplit.train) + len(unsplit.val) == 10 and unsplit.record["train_split"].startswith("all rows")
    named = choose_splits(splits, train_split="train,test", val_split="validation")
    assert set(named.train) == {0, 1, 2, 3, 4, 5, 8, 9}
    with pytest.raises(
        ValueError, match="no 'train' split \\(splits present: test, validation\\); name the training rows"
    ):
        choose_splits(np.array(["validation", "test"], dtype=object))
    with pytest.raises(ValueError, match="has no split 'dev'"):
        choose_splits(splits, val_split="dev")


def test_guard_training_never_sees_a_test_row(monkeypatch):
    from imagesafety.guard import GuardConfig, train_guard
    from imagesafety.guard import train as guard_train

    rng = np.random.default_rng(0)
    n = 90
    X = rng.normal(size=(n, 8)).astype(np.float32)
    labels = (X[:, 0] > 0).astype(int)
    split = ["train"] * 50 + ["validation"] * 15 + ["test"] * 25
    emb = Embeddings.from_arrays(X, labels, "synthetic", id=[f"{s}-{i}" for i, s in enumerate(split)], split=split)
    emb.frame["sha256"] = [f"sha-{s}-{i}" for i, s in enumerate(split)]
    received = []
    original = guard_train.fit_head

    def spy(train, val, config):
        received.append((set(train.sha256), set(val.sha256) if val is not None else set()))
        return original(train, val, config)

    monkeypatch.setattr(guard_train, "fit_head", spy)
    result = train_guard(emb, config=GuardConfig(epochs=5))
    ((train, val),) = received
    assert all(s.startswith("sha-train") for s in train) and len(train) == 50
    assert all(s.startswith("sha-validation") for s in val) and len(val) == 15
    assert result.card.training["splits"]["not_used"] == ["test"]
    assert set(result.training_images) == train


def test_guard_efficiency_draws_from_train_and_scores_on_test_and_checks_sizes_first():
    from imagesafety.guard import GuardConfig
    from imagesafety.guard.efficiency import sample_efficiency

    rng = np.random.default_rng(1)
    X = rng.normal(size=(80, 8)).astype(np.float32)
    labels = (X[:, 0] > 0).astype(int)
    split = ["train"] * 40 + ["test"] * 40
    emb = Embeddings.from_arrays(X, labels, "synthetic", split=split)
    runs = sample_efficiency(emb, sizes=[8, 16], seeds=2, config=GuardConfig(epochs=20), progress=False)
    assert len(runs) == 4
    with pytest.raises(ValueError, match="cannot draw 64 labelled images from the training pool of 40"):
        sample_efficiency(emb, sizes=[8, 64], seeds=2, config=GuardConfig(epochs=20), progress=False)


def test_perspective_trainset_uses_the_train_split_only(tmp_path):
    from conftest import jpeg_bytes
    from imagesafety.perspective.trainset import build_trainset

    for split in ("train", "test"):
        for label in ("safe", "unsafe"):
            folder = tmp_path / "data" / split / label / "sexual"
            folder.mkdir(parents=True)
            for i in range(3):
                (folder / f"{i}.jpg").write_bytes(
                    jpeg_bytes((40 * i + (100 if split == "test" else 0), 20, 200 if label == "safe" else 20))
                )
    stats = build_trainset(tmp_path / "data", tmp_path / "ts", seed=0, balance=False)
    import json

    examples = json.loads((tmp_path / "ts" / "llava_train.json").read_text())
    assert examples and all(e["id"].startswith("train/") for e in examples)
    assert stats.splits["train_split"] == "train" and stats.splits["not_used"] == ["test"]
