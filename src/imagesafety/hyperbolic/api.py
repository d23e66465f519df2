"""`train_hysac` and `calibrate_hysac`: the HySAC workflow as Python calls (the CLI wraps these)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from imagesafety.bench.metrics import f1_optimal_threshold
from imagesafety.distributed import distributed_context, rank_device
from imagesafety.hyperbolic import lorentz as L
from imagesafety.hyperbolic.checkpoint import distance_bounds, save_hysac
from imagesafety.hyperbolic.data import COLUMNS, QuadrupleEmbeddings, embed_quadruples, read_quadruples
from imagesafety.hyperbolic.model import HyperbolicHeads, LoraHyperbolicCLIP
from imagesafety.hyperbolic.train import HysacTrainConfig, fit, light_batches, split_indices, write_history

DEFAULT_ENCODER = "ViT-L-14/openai"


def group_distances(model, quads_batches, index: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        points = quads_batches(index)
        return {name: L.dist_to_origin(p, model.curvature).numpy() for name, p in zip(("S", "V", "S_unsafe", "V_unsafe"), points)}


def image_threshold(distances: dict[str, np.ndarray]) -> float:
    """F1-optimal distance threshold separating safe images (V) from unsafe images (V_unsafe)."""
    d = np.concatenate([distances["V"], distances["V_unsafe"]])
    y = np.r_[np.zeros(len(distances["V"])), np.ones(len(distances["V_unsafe"]))]
    return f1_optimal_threshold(y, d)


def train_hysac(
    data: str | Path | QuadrupleEmbeddings,
    out: str | Path,
    *,
    mode: str = "light",
    encoder: str | object = DEFAULT_ENCODER,
    backbone: str = "openai/clip-vit-large-patch14",
    config: HysacTrainConfig | None = None,
    cache=None,
    device: str = "cpu",
    resume: bool = True,
    progress: bool = True,
    log=lambda record: None,
) -> dict:
    """Train a HySAC model on quadruples and save it (with distance bounds and a calibrated threshold) to `out`."""
    config = config or HysacTrainConfig(mode=mode)
    config.mode = mode
    device = rank_device(device)  # under torchrun, `cuda` means this rank's own GPU
    out = Path(out)
    if mode == "light":
        if isinstance(data, QuadrupleEmbeddings):
            quads = data
        else:
            from imagesafety.encoders import load_encoder

            enc = load_encoder(encoder, device) if isinstance(encoder, str) else encoder
            quads = embed_quadruples(read_quadruples(data), enc, cache, progress=progress)
        quads.check()
        model = HyperbolicHeads(quads.safe_text.shape[1], curv_init=config.curv_init)
        batches = light_batches(model, quads)
        n, splits = len(quads), quads.split
        card_extra = {"encoder": quads.encoder, "in_dim": int(quads.safe_text.shape[1])}
    elif mode == "lora":
        frame = read_quadruples(data)
        model = LoraHyperbolicCLIP(backbone, curv_init=config.curv_init, device=device)
        batches = lora_batches(model, frame, device)
        n, splits = len(frame), frame["split"].to_numpy(dtype=object)
        card_extra = {"backbone": backbone, "lora": None}
    else:
        raise ValueError(f"unknown mode {mode!r}: use light or lora")
    train_idx, val_idx = split_indices(n, splits, config.val_fraction, config.seed)
    history = fit_rows(model, batches, train_idx, val_idx, config, out, resume, log)
    model.eval()
    calib_idx = val_idx if len(val_idx) >= 4 else train_idx
    distances = group_distances(model, batches, calib_idx)
    card = {
        "mode": mode, "embed_dim": int(getattr(model, "embed_dim", 0)), "curv_init": config.curv_init,
        "curvature": model.curvature.item(), "threshold": image_threshold(distances),
        "threshold_rule": "F1-optimal distance from the origin between safe and unsafe images of the " + ("validation" if len(val_idx) >= 4 else "training") + " rows",
        "bounds": distance_bounds(distances), "training": {**asdict(config), "rows": {"train": int(len(train_idx)), "validation": int(len(val_idx))},
                                                            "epochs_run": len(history)},
        **card_extra,
    }
    if distributed_context()[0] == 0:  # under torchrun, one rank writes
        save_hysac(out, model, card)
        write_history(out, history)
    return card


def fit_rows(model, batches, train_idx, val_idx, config, out, resume, log):
    """fit() over the train rows, validating on the val rows (fit numbers rows 0..n_train-1, then the val rows)."""
    n_train = len(train_idx)
    combined = np.concatenate([train_idx, val_idx])

    def mapped(index):
        return batches(combined[np.asarray(index)])

    val = np.arange(n_train, n_train + len(val_idx)) if len(val_idx) >= 2 else None
    return fit(model, mapped, n_train, val, config, out, resume, log)


def lora_batches(model: LoraHyperbolicCLIP, frame, device: str):
    """Batch function for LoRA mode: decode and resize the batch's images, tokenise its texts."""
    from imagesafety.data.sample import Sample
    from imagesafety.images import decode_image

    spec = model.pixel_spec

    def pixels(refs) -> torch.Tensor:
        arrays = [spec.prepare(decode_image(Sample("", r).load_bytes())) for r in refs]
        return spec.normalize(spec.tensor(arrays, device))

    def batches(index: np.ndarray):
        rows = frame.iloc[np.asarray(index)]
        return (model.encode_text(rows["safe_text"].tolist()), model.encode_image(pixels(rows["safe_image"])),
                model.encode_text(rows["unsafe_text"].tolist()), model.encode_image(pixels(rows["unsafe_image"])))

    return batches


def calibrate_hysac(model_dir: str | Path, dataset, split: str | None = None, device: str = "cpu", progress: bool = True) -> dict:
    """Recalibrate the image threshold (overall and per category) on a labelled image dataset; updates hysac.json."""
    from imagesafety.data import dataset_name, load_dataset, select_samples
    from imagesafety.hyperbolic.checkpoint import CARD, FORMAT
    from imagesafety.hyperbolic.embedder import HysacEmbedder
    from imagesafety.model_card import write_card
    from imagesafety.run.runner import Runner
    from imagesafety.run.tasks import EmbeddingTask

    embedder = HysacEmbedder(model_dir, device)
    data = load_dataset(dataset, splits=[split] if split else None) if isinstance(dataset, (str, Path)) else dataset
    rows = Runner(EmbeddingTask(embedder), show_progress=progress).run(select_samples(data, splits=[split] if split else None), description="calibrate")
    rows = rows[rows["error"].isna() & rows["label"].notna()]
    if rows.empty:
        raise ValueError("calibration needs labelled images")
    d = embedder.distance_to_origin(np.stack(rows["embedding"].to_list()))
    y = rows["label"].astype(int).to_numpy()
    card = embedder.card
    card["threshold"] = f1_optimal_threshold(y, d)
    card["threshold_rule"] = f"F1-optimal on {dataset_name(data, str(dataset))}" + (f" split {split!r}" if split else "") + f" ({len(y)} images)"
    per_category = {}
    for category, part in rows.assign(d=d, y=y).groupby(rows["category"].fillna("")):
        if category and part["y"].nunique() == 2:
            per_category[category] = f1_optimal_threshold(part["y"], part["d"])
    card["category_thresholds"] = per_category
    if (Path(model_dir) / CARD).is_file():
        card = write_card(model_dir, CARD, FORMAT, {k: v for k, v in card.items() if k not in ("format", "backbone_identity")},
                          card.get("weights_file"))
    return card


__all__ = ["train_hysac", "calibrate_hysac", "COLUMNS"]
