"""What `imagesafety explain` writes: evidence.parquet (one row per image and classifier), the maps as float16 .npy
files at each image's size, and explain.html (overlays, flip regions, per-category faithfulness, agreement)."""

from __future__ import annotations

import base64
import io
import json
from html import escape
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from imagesafety.evidence.api import Evidence
from imagesafety.evidence.regions import remove
from imagesafety.files import write_atomic
from imagesafety.media import FramePolicy
from imagesafety.run.job import DataSelection, RunOptions
from imagesafety.taxonomy import slugify

SHOWN = 24


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def pair_check(
    heatmap: np.ndarray, unsafe: Image.Image, safe: Image.Image, tolerance: float = 8 / 255
) -> tuple[bool, float]:
    """Evidence on a pair's unsafe image against the pixels that differ from its safe counterpart (the ground truth):
    whether the map's peak falls inside them (the pointing game) and the share of the evidence above the median
    inside."""
    a = np.asarray(unsafe.convert("RGB"), dtype=np.float32) / 255
    b = np.asarray(safe.convert("RGB").resize(unsafe.size), dtype=np.float32) / 255
    inside = np.abs(a - b).max(axis=-1) > tolerance
    lifted = np.clip(heatmap - np.median(heatmap), 0, None)
    y, x = np.unravel_index(int(np.argmax(heatmap)), heatmap.shape)
    total = float(lifted.sum())
    return bool(inside[y, x]), float(lifted[inside].sum() / total) if total > 0 else 0.0


def pair_checks(samples, results: dict[str, list[Evidence]]) -> dict[tuple[str, str], tuple[bool, float]]:
    """(classifier, unsafe image id) -> the pair check, for every pair of the dataset (rows with pair_id and a
    label)."""
    from imagesafety.data.decoding import decoded_samples

    pairs: dict[str, dict[int, object]] = {}
    for s in samples:
        if s.pair_id and s.label is not None:
            pairs.setdefault(s.pair_id, {})[int(s.label)] = s
    whole = [p for p in pairs.values() if set(p) == {0, 1}]
    if not whole:
        return {}
    images = {
        item.sample.id: item.image
        for item in decoded_samples([s for p in whole for s in p.values()])
        if item.error is None
    }
    out = {}
    for name, evidence in results.items():
        by_id = {e.id: e for e in evidence if e.error is None and e.heatmap is not None}
        for p in whole:
            unsafe, safe = p[1], p[0]
            if unsafe.id in by_id and unsafe.id in images and safe.id in images:
                out[(name, unsafe.id)] = pair_check(by_id[unsafe.id].heatmap, images[unsafe.id], images[safe.id])
    return out


def write_evidence(
    out_dir: Path,
    results: dict[str, list[Evidence]],
    categories: dict[str, str | None],
    pairs: dict[tuple[str, str], tuple[bool, float]] | None = None,
) -> pd.DataFrame:
    """evidence.parquet and the maps; returns the table."""
    rows = []
    for name, evidence in results.items():
        folder = out_dir / "heatmaps" / slugify(name)
        folder.mkdir(parents=True, exist_ok=True)
        for i, ev in enumerate(evidence):
            path = None
            if ev.heatmap is not None:
                path = folder / f"{i:06d}.npy"
                np.save(path, ev.heatmap.astype(np.float16))
            record = ev.record()
            hit, mass = (pairs or {}).get((name, ev.id), (None, None))
            rows.append(
                {
                    **record,
                    "classifier": name,
                    "image_category": categories.get(ev.id),
                    "heatmap": str(path) if path else None,
                    "boxes": json.dumps(record["boxes"]),
                    "flip_box": json.dumps(record["flip_box"]) if record["flip_box"] else None,
                    "pair_pointing_hit": hit,
                    "pair_mass_inside": mass,
                }
            )
    table = pd.DataFrame(rows)
    table.to_parquet(out_dir / "evidence.parquet", index=False)
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per classifier and image category: median flip fraction, share flipping within 25% of the area, and the
    deletion / insertion AUCs beside the random map's."""
    ok = table[table["error"].isna()]

    def block(part: pd.DataFrame) -> pd.Series:
        flipped = part["flip_fraction"].dropna()
        return pd.Series(
            {
                "images": len(part),
                "median_flip_fraction": float(flipped.median()) if len(flipped) else None,
                "flips_within_25pct": float((part["flip_fraction"].fillna(2) <= 0.25).mean()),
                "deletion_auc": part["deletion_auc"].mean(),
                "random_deletion_auc": part["random_deletion_auc"].mean(),
                "insertion_auc": part["insertion_auc"].mean(),
                "random_insertion_auc": part["random_insertion_auc"].mean(),
                "pairs": int(part["pair_mass_inside"].notna().sum()),
                "pair_pointing_game": part["pair_pointing_hit"].dropna().astype(float).mean()
                if part["pair_pointing_hit"].notna().any()
                else None,
                "pair_mass_inside": part["pair_mass_inside"].mean() if part["pair_mass_inside"].notna().any() else None,
            }
        )

    groups = ok.assign(image_category=ok["image_category"].fillna("all")).groupby(["classifier", "image_category"])
    return groups.apply(block, include_groups=False).reset_index()


def agreement(table: pd.DataFrame) -> pd.DataFrame:
    """For every pair of classifiers: the IoU of their top evidence boxes per image, averaged."""
    ok = table[table["error"].isna()]
    top = {(r.classifier, r.id): json.loads(r.boxes)[0] for r in ok.itertuples() if json.loads(r.boxes)}
    rows = []
    for a, b in combinations(sorted(ok["classifier"].unique()), 2):
        ious = [box_iou(top[(a, i)], top[(b, i)]) for (c, i) in top if c == a and (b, i) in top]
        rows.append(
            {
                "classifier_a": a,
                "classifier_b": b,
                "images": len(ious),
                "mean_top_box_iou": float(np.mean(ious)) if ious else None,
            }
        )
    return pd.DataFrame(rows)


def _png(img: Image.Image, side: int = 260) -> str:
    img = img.copy()
    img.thumbnail((side, side))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}" alt="">'


def overlay(image: Image.Image, ev: Evidence) -> Image.Image:
    """The image with the map in red over it, the top boxes in yellow and the flip region in cyan."""
    heat = np.clip(ev.heatmap - np.median(ev.heatmap), 0, None)
    heat = heat / heat.max() if heat.max() > 0 else heat
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    red = np.zeros_like(base)
    red[..., 0] = 255
    out = Image.fromarray((base * (1 - 0.6 * heat[..., None]) + red * 0.6 * heat[..., None]).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    for box in ev.boxes:
        draw.rectangle(box[:4], outline=(255, 220, 0), width=max(1, image.width // 150))
    if ev.flip_box:
        draw.rectangle(ev.flip_box[:4], outline=(0, 220, 255), width=max(1, image.width // 150))
    return out


def write_html(
    out_dir: Path, table: pd.DataFrame, images: dict[str, Image.Image], results: dict[str, list[Evidence]]
) -> Path:
    summ, agree = summary(table), agreement(table)
    summ = summ.drop(
        columns=[c for c in ("pairs", "pair_pointing_game", "pair_mass_inside") if not summ["pairs"].any()]
    )

    def fmt(v):
        if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v.is_integer() and abs(v) > 1):
            return str(int(v))
        return (
            "-"
            if v is None or (isinstance(v, float) and np.isnan(v))
            else (f"{v:.3f}" if isinstance(v, float) else escape(str(v)))
        )

    head = "".join(f"<th>{escape(c)}</th>" for c in summ.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>" for row in summ.itertuples(index=False)
    )
    parts = [
        "<h2>Faithfulness by category</h2><p class=note>Deletion AUC: the score as the most salient pixels are removed "
        "(lower than the random map's: the evidence beats chance). Insertion AUC: the score as they are put back "
        "(higher is better). "
        "Flip fraction: the smallest share of the image whose removal flips the decision. On a pair dataset, the "
        "pointing game "
        "(the map's peak inside the pixels that differ from the safe counterpart) and the share of evidence inside "
        "them.</p>",
        f"<div class=scroll><table><tr>{head}</tr>{body}</table></div>",
    ]
    if not agree.empty:
        parts.append(
            "<h2>Do the classifiers look at the same thing?</h2><table><tr><th>a</th><th>b</th><th>images</th>"
            "<th>mean IoU of top boxes</th></tr>"
            + "".join(
                f"<tr><td>{escape(r.classifier_a)}</td><td>{escape(r.classifier_b)}</td><td>{r.images}</td>"
                f"<td>{fmt(r.mean_top_box_iou)}</td></tr>"
                for r in agree.itertuples()
            )
            + "</table>"
        )
    for name, evidence in results.items():
        figs = []
        for ev in [e for e in evidence if e.error is None][:SHOWN]:
            image = images[ev.id]
            after = ""
            if ev.flip_box:
                mask = np.zeros((image.height, image.width), dtype=bool)
                x0, y0, x1, y1 = (int(round(v)) for v in ev.flip_box[:4])
                mask[y0:y1, x0:x1] = True
                edited = remove(np.asarray(image.convert("RGB"), dtype=np.float32) / 255, mask, ev.flip_fill)
                after = (
                    f"<div>{_png(Image.fromarray((edited * 255).round().astype(np.uint8)))}<br>flip region removed "
                    f"({escape(ev.flip_fill)}): "
                    f"score {fmt(ev.score_after_flip)}</div>"
                )
            flip = (
                "not flagged (nothing to flip)"
                if not ev.decision
                else f"flips at {ev.flip_fraction:.1%} of the area"
                if ev.flip_fraction is not None
                else "no flip within the area budget"
            )
            figs.append(
                f"<figure><div class=pair><div>{_png(overlay(image, ev))}<br>score {fmt(ev.score)}</div>{after}</div>"
                f"<figcaption>{escape(ev.id)} · {escape(ev.method)} · {flip} · deletion {fmt(ev.deletion_auc)} "
                f"(random {fmt(ev.random_deletion_auc)})</figcaption></figure>"
            )
        errors = sum(e.error is not None for e in evidence)
        parts.append(
            f"<h2>{escape(name)}</h2><p class=note>{len(evidence)} images, {errors} errors; red: evidence, yellow: top "
            "regions, cyan: the smallest region whose removal flips the decision.</p><div "
            f"class=grid>{''.join(figs)}</div>"
        )
    page = (
        "<!doctype html><meta charset=utf-8><title>imagesafety explain</title><style>body{font:14px "
        "system-ui;margin:24px;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}.note{color:#666}"
        ".grid{display:flex;flex-wrap:wrap;gap:16px}figure{margin:0;max-width:560px}.pair{display:flex;gap:8px}"
        "figcaption{color:#444;font-size:12px}.scroll{overflow-x:auto}</style><h1>What makes these images unsafe</h1>"
        + "".join(parts)
    )
    path = out_dir / "explain.html"
    write_atomic(path, page)
    return path


def run_explain(
    classifiers: list,
    dataset,
    out_dir: str | Path,
    *,
    method: str = "auto",
    category: str | None = None,
    data: DataSelection | None = None,
    run: RunOptions | None = None,
    frames: FramePolicy | None = None,
    classifier_options: dict | None = None,
    **settings,
) -> tuple[pd.DataFrame, Path]:
    """Evidence of every classifier on a dataset's images: evidence.parquet, the maps and explain.html under `out_dir`
    (each image's evidence cached there as it is computed, so an interrupted run resumes). Classifiers given as spec
    strings can run on Ray (`run.engine`)."""
    from imagesafety import registry
    from imagesafety.data import select_samples
    from imagesafety.evidence.api import resolve_method
    from imagesafety.evidence.task import explain

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    data = data or DataSelection()
    opened = data.open(dataset)
    samples = list(
        select_samples(opened, data.categories, data.sources, [data.split] if data.split else None, data.limit)
    )
    if not samples:
        raise ValueError("no images to explain: the filters left nothing")
    labels = {s.id: s.category for s in samples}
    results: dict[str, list[Evidence]] = {}
    built = {
        (spec if isinstance(spec, str) else spec.name): (
            spec,
            registry.build("classifier", spec, **(classifier_options or {})) if isinstance(spec, str) else spec,
        )
        for spec in classifiers
    }
    for _, clf in built.values():  # every mistake (a spec, a method the classifier cannot do) before any work
        resolve_method(clf, method)
    for name, (spec, clf) in built.items():
        results[name] = explain(
            clf,
            samples,
            method=method,
            category=category,
            out_dir=out,
            classifier_options=classifier_options,
            spec=spec if isinstance(spec, str) else None,
            run=run,
            frames=frames,
            **settings,
        )
    if all(e.error is not None for evidence in results.values() for e in evidence):
        first = next(e.error for evidence in results.values() for e in evidence)
        raise ValueError(f"every image failed; the first: {first}")
    table = write_evidence(out, results, labels, pair_checks(samples, results))
    shown = {e.id for evidence in results.values() for e in evidence[:SHOWN] if e.error is None}
    from imagesafety.data.decoding import decoded_samples

    images = {
        item.sample.id: item.image
        for item in decoded_samples([s for s in samples if s.id in shown])
        if item.error is None
    }
    return table, write_html(
        out, table, images, {k: [e for e in v if e.id in images or e.error] for k, v in results.items()}
    )
