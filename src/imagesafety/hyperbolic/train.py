"""Training HySAC: one loop for light heads and LoRA, with checkpoints, resume, early stopping and NaN guards.

Under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel and each rank
takes its share of every batch; gloo on CPU, NCCL on GPUs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from imagesafety.distributed import distributed_context
from imagesafety.hyperbolic.losses import LossWeights, hysac_loss

CHECKPOINT = "checkpoint.pt"


@dataclass
class HysacTrainConfig:
    mode: str = "light"  # light | lora
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3  # the paper's LoRA runs use 1e-4
    weight_decay: float = 0.2
    val_fraction: float = 0.1
    patience: int = 5
    seed: int = 0
    curv_init: float = 1.0
    weights: LossWeights = field(default_factory=LossWeights)


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def split_indices(n: int, splits: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    own = np.isin(splits.astype(str), ("validation", "val"))
    if own.any() and not own.all():
        return np.flatnonzero(~own), np.flatnonzero(own)
    order = np.random.default_rng(seed).permutation(n)
    n_val = int(round(n * fraction)) if n * fraction >= 2 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def fit(model, batches: Callable[[np.ndarray], tuple], n_train: int, val_index: np.ndarray | None,
        config: HysacTrainConfig, out: Path, resume: bool = True, log: Callable[[dict], None] = lambda r: None) -> list[dict]:
    """Train `model` (a HyperbolicBase); `batches(indices)` returns the four hyperboloid embeddings of those rows."""
    rank, world = distributed_context()
    torch.manual_seed(config.seed)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    wrapped = model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(model)
    out.mkdir(parents=True, exist_ok=True)
    state = {"epoch": 0, "best": math.inf, "waited": 0, "history": []}
    checkpoint = out / CHECKPOINT
    if resume and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        optimiser.load_state_dict(saved["optimiser"])
        state = saved["state"]

    def loss_of(index: np.ndarray) -> tuple[torch.Tensor, dict]:
        st, si, ut, ui = batches(index)
        return hysac_loss(st, si, ut, ui, model.curvature, model.logit_scale.exp(), config.weights)

    rng = np.random.default_rng([config.seed, state["epoch"]])
    while state["epoch"] < config.epochs and state["waited"] < config.patience:
        model.train()
        order = rng.permutation(n_train)
        total, count = 0.0, 0
        for start in range(0, n_train, config.batch_size):
            batch = order[start : start + config.batch_size]
            if len(batch) < 2:
                continue
            mine = batch[rank::world] if world > 1 else batch
            st, si, ut, ui = batches(mine) if world == 1 else _ddp_forward(wrapped, batches, mine)
            loss, _ = hysac_loss(st, si, ut, ui, model.curvature, model.logit_scale.exp(), config.weights)
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"loss became {loss.item()} in epoch {state['epoch'] + 1}; last good checkpoint kept in {checkpoint}")
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            model.clamp_parameters()
            total += float(loss.detach()) * len(batch)
            count += len(batch)
        record = {"epoch": state["epoch"] + 1, "train_loss": total / max(count, 1), "curvature": model.curvature.item()}
        if val_index is not None and len(val_index) >= 2:
            model.eval()
            with torch.no_grad():
                val_loss, terms = loss_of(val_index)
            record["val_loss"] = float(val_loss)
            if not math.isfinite(record["val_loss"]):
                raise TrainingDiverged(f"validation loss became {record['val_loss']}; last good checkpoint kept in {checkpoint}")
            if record["val_loss"] < state["best"] - 1e-5:
                state["best"], state["waited"] = record["val_loss"], 0
                if rank == 0:
                    torch.save(model.state_dict(), out / "best.pt")
            else:
                state["waited"] += 1
        state["epoch"] += 1
        state["history"].append(record)
        log(record)
        if rank == 0:  # write-then-rename: an interrupted save never corrupts the last checkpoint
            tmp = checkpoint.with_suffix(".tmp")
            torch.save({"model": model.state_dict(), "optimiser": optimiser.state_dict(), "state": state,
                        "config": asdict(config)}, tmp)
            tmp.replace(checkpoint)
    if (out / "best.pt").is_file():
        model.load_state_dict(torch.load(out / "best.pt", map_location="cpu"))
    return state["history"]


def _ddp_forward(wrapped, batches, index):
    """Run the batch function through DDP's forward so gradients are all-reduced across ranks."""
    return wrapped(index, batches)


def light_batches(model, quads) -> Callable[[np.ndarray], tuple]:
    """Batch function for light mode: rows of cached embeddings through the heads."""
    tensors = {c: torch.from_numpy(np.ascontiguousarray(getattr(quads, c), dtype=np.float32))
               for c in ("safe_text", "safe_image", "unsafe_text", "unsafe_image")}

    def batches(index: np.ndarray):
        idx = torch.from_numpy(np.asarray(index, dtype=np.int64))
        return (model.encode_text(tensors["safe_text"][idx]), model.encode_image(tensors["safe_image"][idx]),
                model.encode_text(tensors["unsafe_text"][idx]), model.encode_image(tensors["unsafe_image"][idx]))

    return batches


def write_history(out: Path, history: list[dict]) -> None:
    (out / "history.json").write_text(json.dumps(history, indent=1), encoding="utf-8")
