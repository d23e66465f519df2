"""Run by `torchrun --nproc_per_node 2` in test_hysac_distributed.py: a few light-mode steps, then each rank saves its
weights."""

import sys
from pathlib import Path

import numpy as np
import torch

from imagesafety.hysac.api import train_hysac
from imagesafety.hysac.data import QuadrupleEmbeddings
from imagesafety.hysac.train import HysacTrainConfig

out = Path(sys.argv[1])
rng = np.random.default_rng(0)  # the same data on every rank; each rank trains on its share of every batch
n, d = 64, 8
arrays = [rng.normal(size=(n, d)).astype(np.float32) * s for s in (0.3, 0.6, 0.9, 1.2)]
quads = QuadrupleEmbeddings(*arrays, split=np.array([None] * n, dtype=object), encoder="synthetic")
train_hysac(
    quads,
    out / "model",
    config=HysacTrainConfig(epochs=2, batch_size=16, val_fraction=0.0, patience=99),
    progress=False,
)
rank = torch.distributed.get_rank()
from imagesafety.hyperbolic.checkpoint import load_hysac  # noqa: E402

torch.distributed.barrier()
model, _ = load_hysac(out / "model")
state = torch.load(out / "model" / "checkpoint.pt", weights_only=False)["model"]
torch.save(state, out / f"rank{rank}.pt")
torch.distributed.destroy_process_group()
