"""LoRA fine-tuning of a local vision-language model on a PerspectiveVision training set (peft + transformers).

The loss covers only the answer tokens ("safe" / "unsafe: Category"); the prompt and image tokens are
masked. Examples go one at a time with gradient accumulation, which works for every processor;
real runs want a GPU, or several under `torchrun` / `accelerate launch` (DDP). The adapter is saved
with peft and loads with `vlm:hf/BASE --option adapter=OUT`.
"""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

from imagesafety import hub
from imagesafety.data.sample import read_image_file
from imagesafety.distributed import distributed_context, rank_device
from imagesafety.files import json_safe, read_json, write_json
from imagesafety.identity import path_digest
from imagesafety.images import decode_image
from imagesafety.model_card import TrainedModel, write_card
from imagesafety.records.cards import LoraCard

IGNORE = -100
CARD_FILE, CARD_FORMAT = "perspective.json", "imagesafety-lora/1"
#: LoRA on the language model's attention projections (LLaVA-style module names).
TARGET_MODULES = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"


def _messages(example: dict) -> tuple[list[dict], str]:
    prompt = example["conversations"][0]["value"].replace("<image>\n", "").replace("<image>", "")
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}], example[
        "conversations"
    ][1]["value"]


def encode_example(processor, example: dict, root: Path):
    """(inputs with labels) for one example: labels are -100 except on the answer tokens."""
    image = decode_image(read_image_file(root / example["image"]), name=example["image"])
    messages, answer = _messages(example)
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    eos = processor.tokenizer.eos_token or ""
    full = processor(images=[image], text=[f"{prompt} {answer}{eos}"], return_tensors="pt")
    prompt_len = processor(images=[image], text=[prompt], return_tensors="pt")["input_ids"].shape[1]
    labels = full["input_ids"].clone()
    labels[:, :prompt_len] = IGNORE
    if "attention_mask" in full:
        labels[full["attention_mask"] == 0] = IGNORE
    full["labels"] = labels
    return full


def load_lora_model(
    base_model: str, device: str, *, lora_r: int = 16, lora_alpha: int = 32, target_modules: str = TARGET_MODULES
):
    """(peft model with fresh LoRA adapters, processor) for a transformers VLM id or folder."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(base_model)
        model = AutoModelForImageTextToText.from_pretrained(base_model).to(device)
    except OSError as exc:
        raise ValueError(f"cannot load vision-language model {base_model!r}: {exc}") from exc
    return get_peft_model(
        model, LoraConfig(r=lora_r, lora_alpha=lora_alpha, target_modules=target_modules, lora_dropout=0.05)
    ), processor


def rank_schedule(n_examples: int, epochs: int, seed: int, rank: int = 0, world: int = 1) -> list[tuple[int, int]]:
    """(epoch, example index) in training order for this rank: every epoch one shuffle shared by all ranks, padded
    to a multiple of the world size (as torch's DistributedSampler does) so all ranks take equally many steps."""
    rng = random.Random(seed)
    schedule = []
    for epoch in range(epochs):
        order = list(range(n_examples))
        rng.shuffle(order)
        order += order[: (-len(order)) % world]
        schedule += [(epoch, i) for i in order[rank::world]]
    return schedule


def fine_tune(
    model,
    processor,
    examples: list[dict],
    root: Path,
    *,
    epochs: int = 1,
    max_steps: int | None = None,
    lr: float = 2e-4,
    accumulation: int = 8,
    seed: int = 0,
    device: str = "cpu",
    log=lambda record: None,
) -> tuple[list[dict], int]:
    """(this rank's loss history, optimiser steps): gradient accumulation over single examples; under torchrun the
    model is data-parallel (DDP), each rank taking its share of every epoch and gradients averaged at each step."""
    import torch

    rank, world = distributed_context()
    wrapped = model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[torch.device(device).index] if device.startswith("cuda") else None
        )
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    schedule = rank_schedule(len(examples), epochs, seed, rank, world)
    history, step = [], 0
    model.train()
    for j, (epoch, i) in enumerate(schedule):
        inputs = encode_example(processor, examples[i], root).to(device)
        syncs = (j + 1) % accumulation == 0 or j == len(schedule) - 1  # DDP all-reduces gradients only before a step
        with contextlib.nullcontext() if syncs or world == 1 else wrapped.no_sync():
            loss = wrapped(**inputs).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at step {step} (rank {rank}); lower the learning rate"
                )
            (loss / accumulation).backward()
        history.append({"epoch": epoch + 1, "example": examples[i]["id"], "loss": loss.item(), "rank": rank})
        if syncs:
            optimiser.step()
            optimiser.zero_grad()
            step += 1
            if rank == 0:  # one progress line per step, not one per process
                log(history[-1] | {"step": step})
            if max_steps is not None and step >= max_steps:
                break
    return history, step


def train_perspective(
    trainset: str | Path,
    base_model: str,
    out: str | Path,
    *,
    epochs: int = 1,
    max_steps: int | None = None,
    lr: float = 2e-4,
    accumulation: int = 8,
    lora_r: int = 16,
    lora_alpha: int = 32,
    target_modules: str = TARGET_MODULES,
    seed: int = 0,
    device: str | None = None,
    log=lambda record: None,
) -> TrainedModel:
    """LoRA fine-tune `base_model` on a trainset folder and save the adapter to `out` (one process, or torchrun /
    accelerate launch with several: then `accumulation` examples per rank make one step)."""
    import torch

    root = Path(trainset)
    manifest = root / "llava_train.json"
    if not manifest.is_file():
        raise ValueError(f"{root}: no llava_train.json (make it with `imagesafety perspective build-trainset`)")
    examples = read_json(manifest)
    if not examples:
        raise ValueError(f"{manifest}: no examples")
    rank, world = distributed_context()
    device = rank_device(device)
    ref = hub.resolve(base_model, "base model")
    torch.manual_seed(seed)  # the same LoRA initialisation on every rank
    model, processor = load_lora_model(
        ref.location, device, lora_r=lora_r, lora_alpha=lora_alpha, target_modules=target_modules
    )
    history, step = fine_tune(
        model,
        processor,
        examples,
        root,
        epochs=epochs,
        max_steps=max_steps,
        lr=lr,
        accumulation=accumulation,
        seed=seed,
        device=device,
        log=log,
    )
    if world > 1:
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, history)
        history = sorted((r for h in gathered for r in h), key=lambda r: (r["epoch"], r["rank"]))
    card = {
        "base_model": ref.location,
        "base_model_identity": hub.identity_of(ref),
        "trainset": str(root.resolve()),
        "trainset_sha256": path_digest(manifest),
        "examples": len(examples),
        "steps": step,
        "epochs": epochs,
        "lora": {"r": lora_r, "alpha": lora_alpha, "target_modules": target_modules},
        "lr": lr,
        "accumulation": accumulation,
        "world_size": world,
        "examples_per_step": accumulation * world,
    }
    if rank == 0:
        out = Path(out)
        model.save_pretrained(out)
        processor.save_pretrained(out)
        weights = "adapter_model.safetensors" if (out / "adapter_model.safetensors").is_file() else None
        card = write_card(out, CARD_FILE, CARD_FORMAT, card, weights)
        write_json(out / "history.json", history)
    if world > 1:
        torch.distributed.barrier()  # the adapter is on disk before any rank returns
    record = LoraCard.model_validate(json_safe({"format": CARD_FORMAT, **card}))
    return TrainedModel(record, Path(out) if rank == 0 else None, history)
