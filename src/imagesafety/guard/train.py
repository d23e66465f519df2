"""Train a guard head (linear or MLP) on embeddings: class-weighted, early-stopped, thresholds calibrated.

Output 0 is the overall unsafe head; with `target="multilabel"` one more output per category learns
only from that category's images (UnsafeBench labels each image with respect to its own category).
Counterfactual pairs can join the training set, with an optional pair-consistency loss that pushes
the two images of a pair to opposite sides of the boundary.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from imagesafety.bench.metrics import f1_optimal_threshold, threshold_at_fpr, weighted_metrics
from imagesafety.classifiers.probe import CARD_FILE, CARD_FORMAT, build_head, save_guard
from imagesafety.files import json_safe, write_json
from imagesafety.guard.data import GuardData, check_compatible, check_trainable, guard_data
from imagesafety.identity import file_digest
from imagesafety.model_card import TrainedModel, read_card, write_training_hashes, write_training_images
from imagesafety.records.cards import GuardCard
from imagesafety.run.embed import Embeddings, read_embeddings
from imagesafety.splits import choose_splits
from imagesafety.taxonomy import Taxonomy, load_taxonomy


@dataclass
class GuardConfig:
    """Training settings; all of them are recorded in the guard's card."""

    head: str = "linear"
    target: str = "binary"
    hidden: int = 256
    epochs: int = 300
    batch_size: int = 1024
    lr: float = 1e-2
    weight_decay: float = 1e-4
    val_fraction: float = 0.2  # used only when the data has no validation split
    train_split: str | None = None  # default: the data's `train` rows (all rows when it has no splits)
    val_split: str | None = None  # default: its `validation` rows, else a seeded fraction of the training rows
    patience: int = 20
    calibrate: str = "f1"  # "f1", "fpr:0.05", or "none" (0.5)
    pair_weight: float = 0.0
    seed: int = 0
    solver: str = "auto"  # auto: L-BFGS for a linear head without the pair loss (a convex problem), else AdamW


@dataclass
class GuardResult(TrainedModel):
    """A trained guard: the trainers' result, with the head itself and the sha256 of its training images."""

    card: GuardCard
    head: Any = None
    training_images: list[str] = field(default_factory=list)


def pair_indices(data: GuardData) -> np.ndarray:
    """(m, 2) rows of (unsafe index, safe index) for pairs whose two images have opposite labels."""
    rows = []
    by_pair: dict[str, list[int]] = {}
    for i, pid in enumerate(data.pair_id):
        if isinstance(pid, str) and pid:
            by_pair.setdefault(pid, []).append(i)
    for members in by_pair.values():
        unsafe = [i for i in members if data.labels[i] == 1]
        safe = [i for i in members if data.labels[i] == 0]
        if unsafe and safe:
            rows.append((unsafe[0], safe[0]))
    return np.array(rows, dtype=int).reshape(-1, 2)


def fit_head(train: GuardData, val: GuardData | None, config: GuardConfig):
    """Minibatch AdamW on masked, class-weighted BCE (+ pair consistency), best epoch kept; or, for a linear head
    without
    the pair loss, full-batch L-BFGS on the same loss plus an L2 penalty (`weight_decay`): the convex problem solved
    directly, as scikit-learn's logistic regression does. Returns (head, history)."""
    import torch
    from torch import nn

    if config.solver not in ("auto", "lbfgs", "adamw"):
        raise ValueError(f"solver must be auto, lbfgs or adamw, got {config.solver!r}")
    if config.solver == "lbfgs" or (config.solver == "auto" and config.head == "linear" and config.pair_weight == 0):
        return fit_linear_lbfgs(train, val, config)
    torch.manual_seed(config.seed)
    mean, std = train.X.mean(axis=0), train.X.std(axis=0) + 1e-6
    head = build_head(config.head, train.X.shape[1], len(train.outputs), config.hidden)
    X = torch.from_numpy((train.X - mean) / std)
    targets, mask = (torch.from_numpy(a) for a in train.targets())
    positives = (targets * mask).sum(0)
    negatives = mask.sum(0) - positives
    pos_weight = (negatives / positives.clamp_min(1)).clamp(0.01, 100)
    bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
    pairs = torch.from_numpy(pair_indices(train)) if config.pair_weight > 0 else torch.zeros((0, 2), dtype=torch.long)
    if val is not None and len(val):
        Xv = torch.from_numpy((val.X - mean) / std)
        tv, mv = (torch.from_numpy(a) for a in val.targets())
    optimiser = torch.optim.AdamW(head.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    generator = torch.Generator().manual_seed(config.seed)
    best, best_state, waited, history = float("inf"), None, 0, []

    def masked_loss(logits, t, m):
        return (bce(logits, t) * m).sum() / m.sum().clamp_min(1)

    for epoch in range(config.epochs):
        head.train()
        order = torch.randperm(len(X), generator=generator)
        total = 0.0
        for start in range(0, len(X), config.batch_size):
            idx = order[start : start + config.batch_size]
            loss = masked_loss(head(X[idx]), targets[idx], mask[idx])
            if len(pairs):
                z = head(X[pairs.reshape(-1)])[:, 0].view(-1, 2)  # (unsafe, safe) overall logits
                loss = loss + config.pair_weight * (torch.relu(1 - z[:, 0]) + torch.relu(1 + z[:, 1])).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
        record = {"epoch": epoch + 1, "train_loss": total / len(X)}
        if val is not None and len(val):
            head.eval()
            with torch.no_grad():
                record["val_loss"] = float(masked_loss(head(Xv), tv, mv))
            if record["val_loss"] < best - 1e-5:
                best, waited = record["val_loss"], 0
                best_state = {k: v.clone() for k, v in head.state_dict().items()}
            else:
                waited += 1
        history.append(record)
        if not np.isfinite(record["train_loss"]):
            raise FloatingPointError(
                f"guard training diverged at epoch {epoch + 1} (loss {record['train_loss']}); lower the learning rate"
            )
        if val is not None and len(val) and waited >= config.patience:
            break
    if best_state is not None:
        head.load_state_dict(best_state)
    fold_standardisation(head, mean, std)
    return head.eval(), history


def fit_linear_lbfgs(train: GuardData, val: GuardData | None, config: GuardConfig, max_iter: int = 500):
    """A linear head by full-batch L-BFGS on the masked, class-weighted BCE plus weight_decay x |W|^2."""
    import torch
    from torch import nn

    if config.head != "linear":
        raise ValueError("the L-BFGS solver trains linear heads (use solver=adamw for an MLP)")
    torch.manual_seed(config.seed)
    mean, std = train.X.mean(axis=0), train.X.std(axis=0) + 1e-6
    head = build_head("linear", train.X.shape[1], len(train.outputs), config.hidden)
    X = torch.from_numpy((train.X - mean) / std)
    targets, mask = (torch.from_numpy(a) for a in train.targets())
    positives = (targets * mask).sum(0)
    pos_weight = ((mask.sum(0) - positives) / positives.clamp_min(1)).clamp(0.01, 100)
    bce = nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")

    def loss_of(features, t, m):
        return (bce(head(features), t) * m).sum() / m.sum().clamp_min(1)

    optimiser = torch.optim.LBFGS(
        head.parameters(),
        lr=1.0,
        max_iter=max_iter,
        tolerance_grad=1e-7,
        tolerance_change=1e-10,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure():
        optimiser.zero_grad()
        loss = loss_of(X, targets, mask) + config.weight_decay * head.weight.pow(2).sum()
        loss.backward()
        return loss

    optimiser.step(closure)
    with torch.no_grad():
        record = {
            "epoch": 1,
            "solver": "lbfgs",
            "iterations": int(optimiser.state[optimiser._params[0]]["n_iter"]),
            "train_loss": float(loss_of(X, targets, mask)),
        }
        if val is not None and len(val):
            tv, mv = (torch.from_numpy(a) for a in val.targets())
            record["val_loss"] = float(loss_of(torch.from_numpy((val.X - mean) / std), tv, mv))
    if not np.isfinite(record["train_loss"]):
        raise FloatingPointError("guard training diverged (non-finite loss)")
    fold_standardisation(head, mean, std)
    return head.eval(), [record]


def fold_standardisation(head, mean: np.ndarray, std: np.ndarray) -> None:
    """Rewrite the first layer so the head takes raw embeddings: W x' + b with x' = (x - mean) / std."""
    import torch

    first = head if isinstance(head, torch.nn.Linear) else head[0]
    with torch.no_grad():
        w = first.weight / torch.from_numpy(std)
        first.bias -= (w * torch.from_numpy(mean)).sum(dim=1)
        first.weight.copy_(w)


def head_scores(head, X: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.sigmoid(head(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32)))).numpy()


def calibrate_thresholds(head, data: GuardData, rule: str) -> tuple[dict[str, float], dict[str, str]]:
    """Per-output thresholds on `data` by `rule` (f1, fpr:X, none); outputs lacking both classes keep 0.5."""
    scores = head_scores(head, data.X)
    targets, mask = data.targets()
    thresholds, notes = {}, {}
    for j, name in enumerate(data.outputs):
        y, s = targets[mask[:, j], j].astype(int), scores[mask[:, j], j]
        if rule == "none" or len(np.unique(y)) < 2:
            thresholds[name] = 0.5
            notes[name] = "default 0.5" if rule == "none" else "default 0.5 (calibration data lacks a class)"
        elif rule == "f1":
            thresholds[name], notes[name] = f1_optimal_threshold(y, s), "F1-optimal on validation"
        elif rule.startswith("fpr:"):
            target = float(rule.split(":", 1)[1])
            thresholds[name], notes[name] = (
                threshold_at_fpr(y, s, target),
                f"false-positive rate <= {target} on validation",
            )
        else:
            raise ValueError(f"unknown calibration {rule!r}: use f1, fpr:RATE or none")
    return thresholds, notes


def evaluate_head(head, data: GuardData, thresholds: dict[str, float]) -> dict[str, dict]:
    """Point metrics per output on `data` at the given thresholds."""
    scores = head_scores(head, data.X)
    targets, mask = data.targets()
    out = {}
    for j, name in enumerate(data.outputs):
        y, s = targets[mask[:, j], j].astype(int), scores[mask[:, j], j]
        if not len(y):
            continue
        m = weighted_metrics(y, s, (s >= thresholds[name]).astype(int), np.ones((1, len(y))))
        out[name] = {k: (None if np.isnan(v[0]) else float(v[0])) for k, v in m.items()} | {"support": int(len(y))}
    return out


def train_guard(
    embeddings: str | Path | Embeddings,
    out: str | Path | None = None,
    *,
    pairs: str | Path | Embeddings | None = None,
    taxonomy: str | Taxonomy | None = None,
    config: GuardConfig | None = None,
    name: str | None = None,
) -> GuardResult:
    """Train, calibrate and (with `out`) save a guard that `probe:OUT` loads. Training rows are the embeddings'
    `config.train_split` rows, validation (early stopping and thresholds) its `config.val_split` rows; no other
    split, `test` included, is read."""
    config = config or GuardConfig()
    if config.epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {config.epochs}")
    emb = read_embeddings(embeddings) if isinstance(embeddings, (str, Path)) else embeddings
    tax = load_taxonomy(taxonomy) if taxonomy is not None else None
    data = guard_data(emb, config.target, tax)
    chosen = choose_splits(
        data.split,
        train_split=config.train_split,
        val_split=config.val_split,
        val_fraction=config.val_fraction,
        seed=config.seed,
        strata=np.char.add(data.categories.astype(str), data.labels.astype(str)),
        what=str(emb.path or "embeddings"),
    )
    train, val = data.subset(chosen.train), data.subset(chosen.val)
    if pairs is not None:
        pair_emb = read_embeddings(pairs) if isinstance(pairs, (str, Path)) else pairs
        check_compatible(emb, pair_emb, "pair embeddings")
        pair_data = guard_data(pair_emb, config.target, tax, outputs=data.outputs)
        pair_data = pair_data.subset(
            np.flatnonzero(~np.isin(pair_data.split.astype(str), ("test",)))
        )  # never a test pair
        if not len(pair_indices(pair_data)):
            raise ValueError(
                "pair embeddings hold no complete pair (pair_id with one unsafe and one safe image) outside the test "
                "split"
            )
        train = train.concat(pair_data)
    check_trainable(train, "training data")
    started = time.perf_counter()
    head, history = fit_head(train, val if len(val) else None, config)
    calibration = val if len(val) and config.calibrate != "none" else train
    thresholds, notes = calibrate_thresholds(head, calibration, config.calibrate)
    metrics = {"validation": evaluate_head(head, val, thresholds)} if len(val) else {}
    metrics["train"] = evaluate_head(head, train, thresholds)
    categories = list(data.outputs[1:])
    card = {
        "name": name or (Path(out).name if out else "guard"),
        "encoder": emb.encoder,
        "encoder_identity": emb.encoder_identity,
        "head": config.head,
        "hidden": config.hidden,
        "embed_dim": emb.dim,
        "outputs": data.outputs,
        "thresholds": thresholds,
        "threshold_rule": notes,
        "taxonomy": (
            tax.to_dict() if tax else {"name": "guard", "categories": [{"key": c, "name": c} for c in categories]}
        ),
        "training": {
            "config": asdict(config),
            "data_sha256": embeddings_hash(emb),
            "splits": chosen.record,
            "images": {"train": int(len(train)), "validation": int(len(val))},
            "pairs": int(len(pair_indices(train))),
            "epochs_run": len(history),
            "seconds": round(time.perf_counter() - started, 3),
        },
        "metrics": metrics,
    }
    record = GuardCard.model_validate(json_safe({"format": CARD_FORMAT, **card}))
    result = GuardResult(card=record, head=head, history=history)
    result.training_images = sorted({s for s in train.sha256 if isinstance(s, str)})
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        card["training"]["training_images"] = write_training_images(out, result.training_images)
        frame = emb.frame
        refs = (
            frame.loc[frame["sha256"].isin(set(result.training_images)), "image"]
            if {"sha256", "image"} <= set(frame)
            else []
        )
        card["training"]["training_hashes"] = write_training_hashes(out, list(refs))
        result.path = save_guard(out, head, card)
        result.card = read_card(out, CARD_FILE, GuardCard)
        write_json(out / "history.json", history)
    return result


def embeddings_hash(emb: Embeddings) -> str:
    """sha256 of the embeddings file (or of the matrix, for in-memory tables)."""
    if emb.path is not None and Path(emb.path).is_file():
        return file_digest(emb.path)
    return hashlib.sha256(np.ascontiguousarray(emb.matrix).tobytes()).hexdigest()
