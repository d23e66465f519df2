"""Training HySAC: one loop for light heads and LoRA, with checkpoints, resume, early stopping and NaN guards.

Under `torchrun` (WORLD_SIZE > 1) the model is wrapped in DistributedDataParallel and each rank
takes its share of every batch; gloo on CPU, NCCL on GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from imagesafety.distributed import distributed_context
from imagesafety.files import atomic_path, write_json
from imagesafety.hyperbolic.losses import LossWeights, hysac_loss

CHECKPOINT = "checkpoint.pt"


@dataclass
class HysacTrainConfig:
    """Training settings; the defaults are the authors' (loss weights, clamps before each forward pass, no weight
    decay on curvature, alphas and logit scale), except the light mode's learning rate."""

    mode: str = "light"  # light | lora
    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3  # the paper's LoRA runs use 1e-4
    weight_decay: float = 0.2
    val_fraction: float = 0.1  # used only when the data has no validation split
    train_split: str | None = None  # default: the data's `train` rows (all rows when it has no splits)
    val_split: str | None = None  # default: its `validation` rows, else a seeded fraction of the training rows
    patience: int = 5
    seed: int = 0
    curv_init: float = 1.0
    clamp: str = "authors"  # authors: before each forward pass; v1: this toolkit's first rule, after each step
    weights: LossWeights = field(default_factory=LossWeights)


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


def fit(
    model,
    batches: Callable[[np.ndarray], tuple],
    n_train: int,
    val_index: np.ndarray | None,
    config: HysacTrainConfig,
    out: Path,
    resume: bool = True,
    log: Callable[[dict], None] = lambda r: None,
) -> list[dict]:
    """Train `model` (a HyperbolicBase); `batches(indices)` returns the four hyperboloid embeddings of those rows."""
    rank, world = distributed_context()
    torch.manual_seed(config.seed)
    if config.clamp not in ("authors", "v1"):
        raise ValueError(f"clamp must be authors or v1, got {config.clamp!r}")
    optimiser = torch.optim.AdamW(model.parameter_groups(config.weight_decay), lr=config.lr)
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
            if config.clamp == "authors":
                model.clamp_parameters("authors")
            st, si, ut, ui = batches(mine) if world == 1 else _ddp_forward(wrapped, batches, mine)
            loss, _ = hysac_loss(st, si, ut, ui, model.curvature, model.logit_scale.exp(), config.weights)
            if not torch.isfinite(loss):
                raise TrainingDiverged(
                    f"loss became {loss.item()} in epoch {state['epoch'] + 1}; last good checkpoint kept in "
                    f"{checkpoint}"
                )
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            if config.clamp == "v1":
                model.clamp_parameters("v1")
            total += float(loss.detach()) * len(batch)
            count += len(batch)
        record = {"epoch": state["epoch"] + 1, "train_loss": total / max(count, 1), "curvature": model.curvature.item()}
        if val_index is not None and len(val_index) >= 2:
            model.eval()
            with torch.no_grad():
                val_loss, terms = loss_of(val_index)
            record["val_loss"] = float(val_loss)
            if not math.isfinite(record["val_loss"]):
                raise TrainingDiverged(
                    f"validation loss became {record['val_loss']}; last good checkpoint kept in {checkpoint}"
                )
            if record["val_loss"] < state["best"] - 1e-5:
                state["best"], state["waited"] = record["val_loss"], 0
                if rank == 0:
                    with atomic_path(out / "best.pt") as tmp:
                        torch.save(model.state_dict(), tmp)
            else:
                state["waited"] += 1
        state["epoch"] += 1
        state["history"].append(record)
        log(record)
        if rank == 0:  # write-then-rename: an interrupted save never corrupts the last checkpoint
            with atomic_path(checkpoint) as tmp:
                torch.save(
                    {
                        "model": model.state_dict(),
                        "optimiser": optimiser.state_dict(),
                        "state": state,
                        "config": asdict(config),
                    },
                    tmp,
                )
    if (out / "best.pt").is_file():
        model.load_state_dict(torch.load(out / "best.pt", map_location="cpu"))
    return state["history"]


def _ddp_forward(wrapped, batches, index):
    """Run the batch function through DDP's forward so gradients are all-reduced across ranks."""
    return wrapped(index, batches)


def light_batches(model, quads) -> Callable[[np.ndarray], tuple]:
    """Batch function for light mode: rows of cached embeddings through the heads."""
    tensors = {
        c: torch.from_numpy(np.ascontiguousarray(getattr(quads, c), dtype=np.float32))
        for c in ("safe_text", "safe_image", "unsafe_text", "unsafe_image")
    }

    def batches(index: np.ndarray):
        idx = torch.from_numpy(np.asarray(index, dtype=np.int64))
        return (
            model.encode_text(tensors["safe_text"][idx]),
            model.encode_image(tensors["safe_image"][idx]),
            model.encode_text(tensors["unsafe_text"][idx]),
            model.encode_image(tensors["unsafe_image"][idx]),
        )

    return batches


def write_history(out: Path, history: list[dict]) -> None:
    write_json(out / "history.json", history)
