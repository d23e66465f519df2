"""HySAC evaluation: Recall@K in the paper's retrieval settings, safe share for unsafe queries, classification."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from imagesafety.hyperbolic import lorentz as L
from imagesafety.hyperbolic.index import LorentzIndex
from imagesafety.hyperbolic.redirect import redirect
from imagesafety.run.job import RunOptions
from imagesafety.run.tasks import ModelSpec

KS = (1, 10, 20)


def recall_at_k(rows: np.ndarray, targets: np.ndarray, ks=KS) -> dict[str, float]:
    return {f"R@{k}": float((rows[:, :k] == targets[:, None]).any(axis=1).mean() * 100) for k in ks}


def retrieval_report(
    points: dict[str, np.ndarray], curvature: float, threshold: float, model_id: str = "eval", redirect_steps: int = 10
) -> dict:
    """`points` holds hyperboloid embeddings S (safe text), V (safe image), U (unsafe text), G (unsafe image) (row i of
    each belongs together)."""
    n = len(points["S"])
    k = min(max(KS), n)
    safe_gallery = LorentzIndex.build(points["V"], curvature, model_id, labels=np.zeros(n))
    unsafe_gallery = LorentzIndex.build(points["G"], curvature, model_id, labels=np.ones(n))
    mixed = LorentzIndex.build(
        np.r_[points["V"], points["G"]], curvature, model_id, labels=np.r_[np.zeros(n), np.ones(n)]
    )
    rows_idx = np.arange(n)
    report = {}
    _, r = safe_gallery.search(points["S"], k)
    report["safe text -> safe images"] = recall_at_k(r, rows_idx)
    _, r = unsafe_gallery.search(points["U"], k)
    report["unsafe text -> unsafe images"] = recall_at_k(r, rows_idx)
    _, r = mixed.search(points["S"], k)
    report["safe text -> mixed gallery (safe target)"] = recall_at_k(r, rows_idx)
    _, r = mixed.search(points["U"], k)
    report["unsafe text -> mixed gallery (safe target)"] = recall_at_k(r, rows_idx) | {
        "safe share %": float((r < n).mean() * 100)
    }
    redirected = [redirect(q, mixed, k=k, steps=redirect_steps) for q in points["U"]]
    r = np.stack([red.rows for red in redirected])
    report["unsafe text, redirected -> mixed gallery (safe target)"] = recall_at_k(r, rows_idx) | {
        "safe share %": float((r < n).mean() * 100),
        "mean fraction walked": float(np.mean([red.fraction for red in redirected])),
    }
    d_safe = L.dist_to_origin(torch.from_numpy(points["V"]), curvature).numpy()
    d_unsafe = L.dist_to_origin(torch.from_numpy(points["G"]), curvature).numpy()
    fp, fn = float((d_safe >= threshold).mean()), float((d_unsafe < threshold).mean())
    report["classification"] = {
        "accuracy %": (1 - (fp + fn) / 2) * 100,
        "FPR %": fp * 100,
        "FNR %": fn * 100,
        "threshold": threshold,
    }
    return report


def evaluate_hysac(
    model: str | Path,
    data: str | Path,
    out: str | Path,
    *,
    split: str | None = None,
    device: str = "cpu",
    options: RunOptions | None = None,
):
    """(report, path of hysac_metrics.json, quadruples evaluated) for a model on a quadruple file (one split of it).
    The images run through the engine (`options`: no cache by default; on Ray, workers load the model from its
    folder)."""
    from pathlib import Path

    from imagesafety.files import write_json
    from imagesafety.hyperbolic.embedder import HysacEmbedder
    from imagesafety.hysac.data import embed_quadruples, read_quadruples

    embedder = HysacEmbedder(model, device)
    if embedder.card.threshold is None:
        raise ValueError(f"{model}: no distance threshold; run `imagesafety hysac calibrate` first")
    frame = read_quadruples(data)
    if split:
        present = sorted({s for s in frame["split"].dropna()})
        frame = frame[frame["split"] == split].reset_index(drop=True)
        if frame.empty:
            raise ValueError(
                f"{data}: no quadruples in split {split!r} (splits present: {', '.join(present) or 'none'})"
            )
    if len(frame) < 2:
        raise ValueError(f"{data}: retrieval needs at least 2 quadruples, got {len(frame)}")
    run = options or RunOptions(cache=None, batch_size=64)
    points = embed_quadruples(
        frame,
        embedder,
        run.cache,
        run.batch_size or 64,
        run.progress,
        engine=run.engine,
        workers=run.workers,
        remote=ModelSpec("embed", f"hysac:{embedder.directory}", {"device": device}),
    )
    report = retrieval_report(
        {"S": points.safe_text, "V": points.safe_image, "U": points.unsafe_text, "G": points.unsafe_image},
        embedder.curvature,
        float(embedder.card.threshold),
        embedder.model_id,
    )
    return report, write_json(Path(out) / "hysac_metrics.json", report), len(frame)
