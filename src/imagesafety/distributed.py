"""Multi-process training launched by `torchrun` or `accelerate launch`: both set WORLD_SIZE, RANK and LOCAL_RANK."""

from __future__ import annotations

import os


def distributed_context() -> tuple[int, int]:
    """(rank, world size), initialising the process group (NCCL on GPUs, gloo on CPU) when launched with several
    processes."""
    import torch

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if world > 1:
        return torch.distributed.get_rank(), world
    return 0, 1


def rank_device(device: str | None = None) -> str:
    """The device this process trains on: its own GPU (LOCAL_RANK) for `cuda` or by default where GPUs exist, else
    `device` or the CPU."""
    import torch

    own_gpu = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    if device == "cuda":
        return own_gpu
    if device:
        return device
    return own_gpu if torch.cuda.is_available() else "cpu"
