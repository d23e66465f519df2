"""report.html: one self-contained page (inline CSS and images) of an evaluation."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
from collections.abc import Mapping
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from imagesafety.bench.metrics import METRICS
from imagesafety.bench.report.figures import f1_bars, roc_pr_curves
from imagesafety.files import write_atomic
from imagesafety.images import MAX_PIXELS, thumbnail_jpeg
from imagesafety.media import ViewInfo, view_picture
from imagesafety.records.metrics_document import Block, Estimate, MetricsDocument, UncoveredBlock
from imagesafety.taxonomy import category_label

if TYPE_CHECKING:
    from imagesafety.bench.evaluate import EvalResult
    from imagesafety.data import Dataset

MISTAKES_SHOWN = 8

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1100px;color:#222;
padding:0 1rem}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.85rem;margin:.5rem 0}
th,td{padding:.25rem .55rem;border-bottom:1px solid #eee;text-align:right}
th:first-child,td:first-child{text-align:left} th{background:#f6f6f6} .ci{color:#888;font-size:.75rem}
.note{color:#666;font-size:.85rem} .grid{display:flex;flex-wrap:wrap;gap:.8rem}
figure{margin:0;width:170px;font-size:.75rem;word-break:break-all}
figure img{max-width:160px;max-height:160px;display:block;border:1px solid #ccc}
.err{color:#a33} .plot{overflow-x:auto} .plot svg{margin-right:1rem}
"""


def _cell(metric: Estimate) -> str:
    if metric.value is None:
        return "<td>–</td>"
    lo, hi = metric.ci95
    ci = f"<br><span class=ci>[{lo:.3f}, {hi:.3f}]</span>" if lo is not None and hi is not None else ""
    return f"<td>{metric.value:.3f}{ci}</td>"


def metrics_table(groups: Mapping[str, Block], first_column: str) -> str:
    head = "".join(f"<th>{m.upper() if len(m) <= 5 else m}</th>" for m in METRICS)
    body = []
    for name, block in groups.items():
        if isinstance(block, UncoveredBlock):
            cells = "".join("<td class=note>-</td>" for _ in METRICS)
            body.append(
                f"<tr><td>{escape(name)} <span class=note>(not covered)</span></td>{cells}<td>{block.support}</td>"
                f"<td>{block.errors}</td></tr>"
            )
            continue
        cells = "".join(_cell(block.metric(m)) for m in METRICS)
        support = f"<td>{block.support} ({block.positives}/{block.negatives})</td><td>{block.errors}</td>"
        body.append(f"<tr><td>{escape(name)}</td>{cells}{support}</tr>")
    return (
        f"<table><tr><th>{escape(first_column)}</th>{head}<th>n (unsafe/safe)</th><th>errors</th></tr>"
        + "".join(body)
        + "</table>"
    )


def _thumb(data: bytes | None) -> str:
    if data is None:
        return "<div class=note>(image unavailable)</div>"
    return f'<img src="data:image/jpeg;base64,{base64.b64encode(data).decode()}" alt="">'


def load_thumbnails(rows: pd.DataFrame, dataset: Dataset | None) -> dict[str, bytes]:
    """Thumbnails of the given rows, read from the dataset through the run's one reading path."""
    from imagesafety.data.decoding import decoded_samples

    wanted = set(rows["id"])
    if dataset is None or not wanted:
        return {}
    found = []
    for sample in dataset:
        if sample.id in wanted:
            found.append(sample)
            if len(found) == len(wanted):
                break
    deciding = (
        {i: json.loads(v)["decided_by"] for i, v in zip(rows["id"], rows["views"]) if isinstance(v, str)}
        if "views" in rows
        else {}
    )
    thumbs = {
        item.sample.id: item.image
        for item in decoded_samples([s for s in found if s.id not in deciding], prepare=thumbnail_jpeg)
        if item.error is None
    }
    for sample in (
        s for s in found if s.id in deciding
    ):  # animations and videos: the frame that decided, on its background
        view = deciding[sample.id]
        with contextlib.suppress(Exception):
            picture = view_picture(
                sample.load_bytes(),
                ViewInfo(view["frame"], view["timestamp_s"], view["background"]),
                MAX_PIXELS,
                sample.id,
            )
            thumbs[sample.id] = thumbnail_jpeg(picture)
    return thumbs


def mistakes_section(rows: pd.DataFrame, dataset: Dataset | None) -> str:
    ok = rows[rows["error"].isna() & rows["label"].notna()]
    false_pos = (
        ok[(ok["label"] == 0) & (ok["decision"] == 1)].sort_values("score", ascending=False).head(MISTAKES_SHOWN)
    )
    false_neg = ok[(ok["label"] == 1) & (ok["decision"] == 0)].sort_values("score").head(MISTAKES_SHOWN)
    thumbs = load_thumbnails(pd.concat([false_pos, false_neg]), dataset)

    def gallery(part: pd.DataFrame, empty: str) -> str:
        if part.empty:
            return f"<p class=note>{empty}</p>"
        figs = [
            f"<figure>{_thumb(thumbs.get(r.id))}<figcaption>score "
            f"{r.score:.3f}<br>{escape(category_label(str(r.category)))}"
            f" · {escape(str(r.source))}<br><span class=note>{escape(str(r.id))}</span></figcaption></figure>"
            for r in part.itertuples()
        ]
        return "<div class=grid>" + "".join(figs) + "</div>"

    return (
        "<h2>Most confident mistakes</h2><h3>Safe images flagged unsafe (highest scores)</h3>"
        + gallery(false_pos, "No false positives.")
        + "<h3>Unsafe images passed as safe (lowest scores)</h3>"
        + gallery(false_neg, "No false negatives.")
    )


def pairs_section(metrics: MetricsDocument, rows: pd.DataFrame, dataset) -> str:
    """Pair accuracy and flip sensitivity, and pairs side by side with both scores."""
    from imagesafety.bench.pair_metrics import pair_table

    pm = metrics.pairs
    if pm is None:
        return ""
    head = (
        "<tr><th>category</th><th>pairs</th><th>pair accuracy</th><th>flip sensitivity</th><th>mean score gap</th></tr>"
    )
    body = "".join(
        f"<tr><td>{escape(category_label(c))}</td><td>{b.pairs}</td><td>{b.pair_accuracy:.3f}</td>"
        f"<td>{b.flip_sensitivity:.3f}</td><td>{b.mean_score_gap:+.3f}</td></tr>"
        for c, b in [("all pairs", pm.overall), *pm.by_category.items()]
    )
    table = pair_table(rows).head(MISTAKES_SHOWN)
    ids = list(table["unsafe_id"]) + list(table["safe_id"])
    thumbs = load_thumbnails(rows[rows["id"].isin(ids)], dataset)
    figs = "".join(
        f"<figure style='width:340px'>{_thumb(thumbs.get(r.safe_id))}{_thumb(thumbs.get(r.unsafe_id))}"
        f"<figcaption>{escape(str(r.pair_id))} · safe {r.safe_score:.3f} → unsafe "
        f"{r.unsafe_score:.3f}</figcaption></figure>"
        for r in table.itertuples()
    )
    return (
        "<h2>Counterfactual pairs</h2><p class=note>Pair accuracy: both images of a pair right. Flip sensitivity: the "
        "unsafe "
        f"image scores higher than its safe counterpart.</p><table>{head}{body}</table><div class=grid>{figs}</div>"
    )


def coverage_note(m: MetricsDocument) -> str:
    """Which categories the classifier covers, and the rule the figures follow."""
    cov = m.coverage
    covers = "all categories" if cov.covers == "all" else ", ".join(category_label(c) for c in cov.covers)
    uncovered = (
        f" Not covered here: {escape(', '.join(category_label(c) for c in cov.uncovered))}; {escape(cov.rule)}."
        if cov.uncovered
        else ""
    )
    return f"<p class=note>{escape(m.classifier.name)} covers {escape(covers)}.{uncovered}</p>"


def errors_section(rows: pd.DataFrame) -> str:
    errors = rows[rows["error"].notna()]
    if errors.empty:
        return "<h2>Errors</h2><p class=note>Every image was read and scored.</p>"
    items = "".join(
        f"<tr><td>{escape(str(r.id))}</td><td class=err>{escape(str(r.error))}</td></tr>"
        for r in errors.head(200).itertuples()
    )
    more = f"<p class=note>… and {len(errors) - 200} more (see predictions.parquet).</p>" if len(errors) > 200 else ""
    return (
        f"<h2>Errors ({len(errors)})</h2><p class=note>These images were left out of every metric.</p>"
        f"<table><tr><th>image</th><th>error</th></tr>{items}</table>{more}"
    )


def write_html_report(result: EvalResult, path: Path, dataset: Dataset | None = None) -> Path:
    m, rows = result.document, result.predictions
    labels = {c: category_label(c) for c in m.by_category}
    by_category = {labels[c]: b for c, b in m.by_category.items()}
    by_cat_src = {f"{labels.get(c, c)} / {s}": b for c, per in m.by_category_source.items() for s, b in per.items()}
    bars = f1_bars(m.by_category_source, labels)
    curves = roc_pr_curves(rows)
    run, threshold, name = m.run, m.threshold, m.classifier.name
    parts = [
        f"<!doctype html><html><head><meta charset=utf-8><title>imagesafety · {escape(name)} on "
        f"{escape(m.dataset)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>{escape(name)} on {escape(m.dataset)}</h1>",
        f"<p class=note>classifier version {escape(m.classifier.version)} · threshold {threshold.value:.4g} "
        f"({escape(threshold.source)})"
        f" · {run.images} images ({run.cached} from cache, {run.predicted} predicted, {run.errors} errors)"
        f" · {run.images_per_second:.1f} img/s · imagesafety {escape(m.imagesafety_version)}"
        f" · {dt.datetime.fromtimestamp(run.started).strftime('%Y-%m-%d %H:%M')}</p>",
        "<p class=note>Unsafe is the positive class. Brackets: bootstrap 95% intervals "
        f"({m.bootstrap.resamples} resamples). Images that failed are left out of the metrics and listed "
        "below.</p>",
        coverage_note(m),
        "".join(f"<p class=err><b>Warning:</b> {escape(w)}</p>" for w in m.warnings),
        "<h2>Overall</h2>" + metrics_table({"all images": m.overall}, ""),
        "<h2>F1 per category, real vs generated</h2>"
        + (f"<div class=plot>{bars}</div>" if bars else "<p class=note>No categories.</p>"),
        "<h2>By category</h2>" + metrics_table(by_category, "category"),
        "<h2>By source</h2>" + metrics_table(m.by_source, "source"),
        "<h2>By category and source</h2>" + metrics_table(by_cat_src, "category / source"),
        "<h2>ROC and precision-recall</h2>"
        + (f"<div class=plot>{curves}</div>" if curves else "<p class=note>Needs both safe and unsafe images.</p>"),
        pairs_section(m, rows, dataset),
        mistakes_section(rows, dataset),
        errors_section(rows),
        "</body></html>",
    ]
    return write_atomic(path, "\n".join(parts))
