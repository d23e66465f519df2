"""`train_hysac` and `calibrate_hysac`: the HySAC workflow as Python calls (the CLI wraps these).

Training uses the quadruples' training rows and validates on its validation rows (see `imagesafety.splits`);
`test` rows are never read unless named. The card records the splits, the content identity of the encoder
(light mode) or backbone (LoRA), the sha256 of every training image, and whether the learned order of
distances from the origin (safe text < safe image < unsafe text < unsafe image) holds, and by how much.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from imagesafety import hub
from imagesafety.bench.metrics import f1_optimal_threshold
from imagesafety.distributed import distributed_context, rank_device
from imagesafety.files import json_safe
from imagesafety.hyperbolic import lorentz as L
from imagesafety.hyperbolic.checkpoint import CARD, FORMAT, distance_bounds, save_hysac
from imagesafety.hyperbolic.model import HyperbolicHeads, LoraHyperbolicCLIP
from imagesafety.hysac.data import COLUMNS, QuadrupleEmbeddings, embed_quadruples, image_hashes, read_quadruples
from imagesafety.hysac.train import HysacTrainConfig, fit, light_batches, write_history
from imagesafety.model_card import TrainedModel, read_card, write_training_images
from imagesafety.records.cards import HysacCard
from imagesafety.run.job import RunOptions, run_job
from imagesafety.run.tasks import ModelSpec
from imagesafety.splits import choose_splits

DEFAULT_ENCODER = "ViT-L-14/openai"
#: the order HySAC learns, nearest the origin first: safe text, safe image, unsafe text, unsafe image
ORDER = ("S", "V", "U", "G")


def group_distances(model, quads_batches, index: np.ndarray) -> dict[str, np.ndarray]:
    with torch.no_grad():
        points = quads_batches(index)
        return {name: L.dist_to_origin(p, model.curvature).numpy() for name, p in zip(ORDER, points)}


def image_threshold(distances: dict[str, np.ndarray]) -> float:
    """F1-optimal distance threshold separating safe images (V) from unsafe images (G)."""
    d = np.concatenate([distances["V"], distances["G"]])
    y = np.r_[np.zeros(len(distances["V"])), np.ones(len(distances["G"]))]
    return f1_optimal_threshold(y, d)


def order_check(bounds: dict) -> dict:
    """Whether the mean distances from the origin keep S < V < U < G, and each adjacent gap (negative: violated)."""
    avg = {k: bounds[k]["avg"] for k in ORDER}
    gaps = {f"{a}<{b}": avg[b] - avg[a] for a, b in zip(ORDER, ORDER[1:])}
    return {"holds": all(g > 0 for g in gaps.values()), "averages": avg, "gaps": gaps}


def order_line(order: dict) -> str:
    """The order as a sentence that says whether it holds, and by how much where it does not."""
    avg = order["averages"]
    chain = " < ".join(f"{k} {avg[k]:.3f}" for k in ORDER)
    if order["holds"]:
        return (
            f"mean distance from the origin: {chain} (the order holds; smallest gap {min(order['gaps'].values()):.3f})"
        )
    broken = "; ".join(
        f"{pair.replace('<', ' < ')} fails by {-gap:.3f}" for pair, gap in order["gaps"].items() if gap <= 0
    )
    means = f"S {avg['S']:.3f}, V {avg['V']:.3f}, U {avg['U']:.3f}, G {avg['G']:.3f}"
    return f"mean distance from the origin: {means}: the order S < V < U < G does NOT hold ({broken})"


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
) -> TrainedModel:
    """Train a HySAC model on quadruples and save it (with distance bounds and a calibrated threshold) to `out`."""
    config = config or HysacTrainConfig(mode=mode)
    config.mode = mode
    if config.epochs < 1 or config.batch_size < 2:
        raise ValueError("epochs must be at least 1 and batch_size at least 2")
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
        splits = quads.split
        training_hashes = lambda rows: [] if quads.image_sha256 is None else quads.image_sha256[rows].ravel().tolist()
        card_extra = {
            "encoder": quads.encoder,
            "encoder_identity": quads.encoder_identity,
            "in_dim": int(quads.safe_text.shape[1]),
        }
    elif mode == "lora":
        frame = read_quadruples(data)
        ref = hub.resolve(backbone, "HySAC backbone")
        model = LoraHyperbolicCLIP(ref.location, curv_init=config.curv_init, device=device)
        batches = lora_batches(model, frame, device)
        splits = frame["split"].to_numpy(dtype=object)
        training_hashes = lambda rows: image_hashes(frame, rows)
        card_extra = {"backbone": ref.location, "backbone_identity": hub.identity_of(ref), "lora": None}
    else:
        raise ValueError(f"unknown mode {mode!r}: use light or lora")
    chosen = choose_splits(
        splits,
        train_split=config.train_split,
        val_split=config.val_split,
        val_fraction=config.val_fraction,
        seed=config.seed,
        what=str(data if not isinstance(data, QuadrupleEmbeddings) else "quadruples"),
    )
    if len(chosen.train) < 2:
        raise ValueError(f"HySAC needs at least 2 training quadruples, got {len(chosen.train)}")
    history = fit_rows(model, batches, chosen.train, chosen.val, config, out, resume, log)
    model.eval()
    calib_idx = chosen.val if len(chosen.val) >= 4 else chosen.train
    distances = group_distances(model, batches, calib_idx)
    bounds = distance_bounds(distances)
    card = {
        "mode": mode,
        "embed_dim": int(model.embed_dim),
        "curv_init": config.curv_init,
        "curvature": model.curvature.item(),
        "threshold": image_threshold(distances),
        "threshold_rule": "F1-optimal distance from the origin between safe and unsafe images of the "
        + ("validation" if len(chosen.val) >= 4 else "training")
        + " rows",
        "bounds": bounds,
        "order": order_check(bounds),
        "training": {**asdict(config), "splits": chosen.record, "epochs_run": len(history)},
        **card_extra,
    }
    if distributed_context()[0] == 0:  # under torchrun, one rank writes
        out.mkdir(parents=True, exist_ok=True)
        card["training"]["training_images"] = write_training_images(
            out, [h for h in training_hashes(chosen.train) if isinstance(h, str)]
        )
        save_hysac(out, model, card)
        write_history(out, history)
        return TrainedModel(read_card(out, CARD, HysacCard), out, history)
    return TrainedModel(HysacCard.model_validate(json_safe({"format": FORMAT, **card})), None, history)


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
    from imagesafety.hysac.data import image_sample
    from imagesafety.images import decode_image

    spec = model.pixel_spec

    def pixels(column: str, index: np.ndarray) -> torch.Tensor:
        arrays = [
            spec.prepare(decode_image(image_sample(frame, column, int(i), frame[column].iloc[i]).load_bytes()))
            for i in index
        ]
        return spec.normalize(spec.tensor(arrays, device))

    def batches(index: np.ndarray):
        index = np.asarray(index)
        rows = frame.iloc[index]
        return (
            model.encode_text(rows["safe_text"].tolist()),
            model.encode_image(pixels("safe_image", index)),
            model.encode_text(rows["unsafe_text"].tolist()),
            model.encode_image(pixels("unsafe_image", index)),
        )

    return batches


def calibrate_hysac(
    model_dir: str | Path,
    dataset,
    *,
    val_split: str | None = None,
    train_split: str | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    device: str = "cpu",
    progress: bool = True,
    options: RunOptions | None = None,
) -> HysacCard:
    """Recalibrate the image threshold (overall and per category) on the validation rows of a labelled image dataset
    (its `validation` split, else a seeded fraction of its training rows; never `test` unless named); updates
    hysac.json. The images run through the engine (`options`: no cache by default; Ray workers load the model from
    its folder)."""
    from imagesafety.data import dataset_name, load_dataset
    from imagesafety.hyperbolic.embedder import HysacEmbedder
    from imagesafety.model_card import write_card

    options = options or RunOptions(cache=None, progress=progress)

    embedder = HysacEmbedder(model_dir, device)
    data = load_dataset(dataset) if isinstance(dataset, (str, Path)) else dataset
    samples = [s for s in data if s.label is not None]
    chosen = choose_splits(
        [s.split for s in samples],
        train_split=train_split,
        val_split=val_split,
        val_fraction=val_fraction,
        seed=seed,
        strata=np.array([f"{s.category}|{s.label}" for s in samples], dtype=object),
        what=dataset_name(data, str(dataset)),
        need_train=False,
    )
    calibration = [samples[i] for i in chosen.val]
    if not calibration:
        raise ValueError(
            "calibration needs validation rows: give the data a validation split, --val-split, or a --val-fraction "
            "above 0"
        )
    rows = run_job(
        embedder,
        calibration,
        options=options,
        remote=ModelSpec("embed", f"hysac:{embedder.directory}", {"device": device}),
        description="calibrate",
    ).rows
    rows = rows[rows["error"].isna()]
    if rows.empty or rows["label"].nunique() < 2:
        raise ValueError("calibration needs readable safe and unsafe images among the validation rows")
    d = embedder.distance_to_origin(np.stack(rows["embedding"].to_list()))
    y = rows["label"].astype(int).to_numpy()
    card = embedder.card.to_json()
    card["threshold"] = f1_optimal_threshold(y, d)
    card["threshold_rule"] = (
        f"F1-optimal on {dataset_name(data, str(dataset))}, {chosen.record['validation_split']} ({len(y)} images)"
    )
    card["calibration"] = {"splits": chosen.record, "images": int(len(y))}
    per_category = {}
    for category, part in rows.assign(d=d, y=y).groupby(rows["category"].fillna("")):
        if category and part["y"].nunique() == 2:
            per_category[category] = f1_optimal_threshold(part["y"], part["d"])
    card["category_thresholds"] = per_category
    if (Path(model_dir) / CARD).is_file():
        card = write_card(
            model_dir, CARD, FORMAT, {k: v for k, v in card.items() if k != "format"}, card.get("weights_file")
        )
    return HysacCard.model_validate(json_safe(card))


__all__ = ["train_hysac", "calibrate_hysac", "order_line", "COLUMNS"]
