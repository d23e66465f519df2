"""LoRA fine-tuning of a local vision-language model on a PerspectiveVision training set (peft + transformers).

The loss covers only the answer tokens ("safe" / "unsafe: Category"); the prompt and image tokens are
masked. Examples go one at a time with gradient accumulation, which works for every processor;
real runs want a GPU. The adapter is saved with peft and loads with `vlm:hf/BASE --option adapter=OUT`.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from imagesafety.images import decode_image, read_image_bytes

IGNORE = -100


def _messages(example: dict) -> tuple[list[dict], str]:
    prompt = example["conversations"][0]["value"].replace("<image>\n", "").replace("<image>", "")
    return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}], example["conversations"][1]["value"]


def encode_example(processor, example: dict, root: Path):
    """(inputs with labels) for one example: labels are -100 except on the answer tokens."""
    image = decode_image(read_image_bytes(root / example["image"]), name=example["image"])
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


def train_perspective(trainset: str | Path, base_model: str, out: str | Path, *, epochs: int = 1, max_steps: int | None = None,
                      lr: float = 2e-4, accumulation: int = 8, lora_r: int = 16, lora_alpha: int = 32,
                      target_modules: str = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)", seed: int = 0,
                      device: str | None = None, log=lambda record: None) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText, AutoProcessor

    root = Path(trainset)
    manifest = root / "llava_train.json"
    if not manifest.is_file():
        raise ValueError(f"{root}: no llava_train.json (make it with `imagesafety perspective build-trainset`)")
    examples = json.loads(manifest.read_text(encoding="utf-8"))
    if not examples:
        raise ValueError(f"{manifest}: no examples")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(seed)
    processor = AutoProcessor.from_pretrained(base_model)
    model = AutoModelForImageTextToText.from_pretrained(base_model).to(device)
    model = get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=lora_alpha, target_modules=target_modules, lora_dropout=0.05))
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    rng = random.Random(seed)
    history, step, micro = [], 0, 0
    model.train()
    for epoch in range(epochs):
        order = list(range(len(examples)))
        rng.shuffle(order)
        for i in order:
            inputs = encode_example(processor, examples[i], root).to(device)
            loss = model(**inputs).loss
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower the learning rate")
            (loss / accumulation).backward()
            micro += 1
            history.append({"epoch": epoch + 1, "example": examples[i]["id"], "loss": loss.item()})
            if micro % accumulation == 0:
                optimiser.step()
                optimiser.zero_grad()
                step += 1
                log(history[-1] | {"step": step})
                if max_steps is not None and step >= max_steps:
                    break
        if max_steps is not None and step >= max_steps:
            break
    if micro % accumulation:
        optimiser.step()
        optimiser.zero_grad()
    out = Path(out)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    card = {"base_model": base_model, "trainset": str(root), "examples": len(examples), "steps": step, "epochs": epochs,
            "lora": {"r": lora_r, "alpha": lora_alpha, "target_modules": target_modules}, "lr": lr, "accumulation": accumulation}
    (out / "perspective.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    (out / "history.json").write_text(json.dumps(history), encoding="utf-8")
    return card
