"""Run by `torchrun --nproc_per_node 2` in test_perspective.py: `train_perspective` data-parallel, then each rank saves
its LoRA weights."""

import sys
from pathlib import Path

import torch

import imagesafety.perspective.train as perspective

trainset, base, out = (Path(a) for a in sys.argv[1:4])
trained = {}
fine_tune = perspective.fine_tune


def fine_tune_keeping_the_model(model, *args, **kwargs):
    trained["model"] = model
    return fine_tune(model, *args, **kwargs)


perspective.fine_tune = fine_tune_keeping_the_model
card = perspective.train_perspective(
    trainset, str(base), out / "lora", epochs=2, lr=5e-3, accumulation=2, lora_r=4, device="cpu"
).card
rank = torch.distributed.get_rank()
lora = {name: p.detach().clone() for name, p in trained["model"].named_parameters() if p.requires_grad}
torch.save({"card": card, "lora": lora}, out / f"rank{rank}.pt")
torch.distributed.destroy_process_group()
