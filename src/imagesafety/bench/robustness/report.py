"""robustness.json and robustness.html: RA table, eps curves, corruption drops, clean/adversarial examples."""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table
from rich.text import Text

from imagesafety.bench.report.files import write_metrics_json
from imagesafety.bench.report.html import CSS
from imagesafety.files import atomic_path, write_atomic
from imagesafety.records.robustness_document import AttackOutcome, CorruptionFigures, RobustnessDocument
from imagesafety.taxonomy import category_label


def _png(array_chw: np.ndarray, size: int = 160) -> str:
    img = Image.fromarray((np.clip(array_chw.transpose(1, 2, 0), 0, 1) * 255).round().astype(np.uint8))
    if max(img.size) < size:  # small model inputs: enlarge with visible pixels
        scale = size // max(img.size)
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def eps_curve_plot(curves: dict) -> str | None:
    """Attack success against eps (log axis, labelled at the measured eps values), as inline SVG."""
    from imagesafety.bench.report.charts import Series, line_chart

    series, measured = [], []
    for name, curve in curves.items():
        points = sorted((float(e), v) for e, v in curve.items() if v is not None)
        if points:
            series.append(Series(name, [p[0] for p in points], [p[1] for p in points]))
            measured += [p[0] for p in points]
    if not series:
        return None
    return line_chart(
        series,
        x_label="eps (L-inf, [0, 1] pixel units)",
        y_label="attack success rate",
        x_log=True,
        x_ticks=measured,
        x_format="{:.3g}",
        y_range=(0.0, 1.0),
        legend_title="attack",
        width=520,
    )


def _figure(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def write_robustness_report(result, out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    m = result.document
    files = {"robustness": write_metrics_json(m.to_json(), out_dir / "robustness.json")}
    if not result.attack_rows.empty:
        with atomic_path(out_dir / "attacks.parquet") as tmp:
            result.attack_rows.to_parquet(tmp, index=False)
        files["attacks"] = out_dir / "attacks.parquet"
    p = m.protocol
    ra_rows = []
    for name, outcome in m.attacks.items():
        if not isinstance(outcome, AttackOutcome):
            ra_rows.append(
                f"<tr><td>{escape(name)}</td><td>–</td><td>0</td><td>–</td><td>–</td><td>–</td><td></td><td></td></tr>"
            )
            continue
        overall = outcome.overall
        cats = ", ".join(f"{escape(category_label(c))} {b.robust_accuracy:.2f}" for c, b in outcome.by_category.items())
        srcs = ", ".join(f"{escape(s)} {b.robust_accuracy:.2f}" for s, b in outcome.by_source.items())
        ra_rows.append(
            f"<tr><td>{escape(name)}</td><td>{overall.robust_accuracy:.3f}</td><td>{overall.attacked}</td>"
            f"<td>{overall.mean_linf:.4f}</td><td>{overall.mean_l2:.3f}</td>"
            f"<td>{overall.mean_mse:.2e}</td><td>{cats}</td><td>{srcs}</td></tr>"
        )
    severities = sorted({s for per in m.corruptions.values() for s in per}, key=int)

    def corruption_cell(v: CorruptionFigures | None) -> str:
        if v is None or v.accuracy is None:
            return "<td>–</td>"
        drop = f" <span class=ci>({0.0 - v.accuracy_drop + 0.0:+.3f})</span>" if v.accuracy_drop is not None else ""
        return f"<td>{v.accuracy:.3f}{drop}</td>"

    corruption_rows = "".join(
        f"<tr><td>{escape(name)}</td>" + "".join(corruption_cell(per.get(sev)) for sev in severities) + "</tr>"
        for name, per in m.corruptions.items()
    )
    examples = "".join(
        f"<figure><img src='{_png(ex['clean'])}' alt=''><img src='{_png(ex['adv'])}' alt=''>"
        f"<img src='{_png(np.clip(0.5 + 10 * (ex['adv'] - ex['clean']), 0, 1))}' alt=''>"
        f"<figcaption>{escape(ex['attack'])} · {'unsafe' if ex['label'] else 'safe'} · "
        f"{escape(str(ex['id']))}</figcaption></figure>"
        for ex in result.examples[:12]
    )
    curve = eps_curve_plot(m.eps_curves)
    html = "\n".join(
        [
            "<!doctype html><html><head><meta charset=utf-8><title>imagesafety robustness · "
            f"{escape(m.classifier.name)}</title>",
            f"<style>{CSS} figure{{width:520px}} figure "
            f"img{{display:inline-block;margin-right:4px}}</style></head><body>",
            f"<h1>Robustness of {escape(m.classifier.name)} on {escape(m.dataset)}</h1>",
            f"<p class=note>Clean accuracy {_figure(m.clean.accuracy)}, F1 "
            f"{'n/a (no unsafe images)' if m.clean.f1 is None else format(m.clean.f1, '.3f')}. "
            f"Attacked {p.attacked} images the classifier got right (K = {p.k}, seed {p.seed}; "
            f"{p.excluded_misclassified} misclassified images excluded). "
            f"eps = {p.eps_pixel_units:.4g} in [0, 1] pixel units = {p.eps_normalized_units:.4g} in "
            "normalised-input units. "
            f"Robust accuracy RA = 1 - attack success rate; success means {escape(p.success)}.</p>",
            "<h2>Robust accuracy</h2><table><tr><th>attack</th><th>RA</th><th>attacked</th><th>mean L-inf</th><th>mean "
            "L2</th><th>mean MSE</th>"
            "<th>by category</th><th>by source</th></tr>" + "".join(ra_rows) + "</table>",
            "<h2>Attack success against eps</h2>"
            + (f"<div class=plot>{curve}</div>" if curve else "<p class=note>No eps curves.</p>"),
            "<h2>Corruptions: accuracy (change from clean) by severity</h2>"
            + (
                "<table><tr><th>corruption</th>"
                + "".join(f"<th>severity {s}</th>" for s in severities)
                + f"</tr>{corruption_rows}</table>"
                if corruption_rows
                else "<p class=note>No corruptions requested.</p>"
            ),
            "<h2>Examples: clean, adversarial, difference x10</h2><div class=grid>"
            + (examples or "<p class=note>None.</p>")
            + "</div>",
            "</body></html>",
        ]
    )
    files["html"] = write_atomic(out_dir / "robustness.html", html)
    return files


def print_robustness_summary(m: RobustnessDocument, files: dict | None = None, console: Console | None = None) -> None:
    """Robust accuracy per attack, accuracy per corruption and severity, and the files written."""
    console = console or Console()
    table = Table(
        title=Text(
            f"robust accuracy of {m.classifier.name} (eps {m.protocol.eps_pixel_units:.4g} pixel units, "
            f"{m.protocol.attacked} images; clean accuracy {_figure(m.clean.accuracy)})"
        )
    )
    for column in ("attack", "RA", "mean L-inf", "mean L2"):
        table.add_column(column, justify="right")
    for name, outcome in m.attacks.items():
        if isinstance(outcome, AttackOutcome):
            o = outcome.overall
            table.add_row(name, f"{o.robust_accuracy:.3f}", f"{o.mean_linf:.4f}", f"{o.mean_l2:.3f}")
        else:
            table.add_row(name, "–", "–", "–")
    console.print(table)
    for name, per in m.corruptions.items():
        shown = " · ".join(f"s{s} acc {v.accuracy:.3f}" for s, v in per.items() if v.accuracy is not None)
        console.print(Text(f"{name}: {shown}"))
    for kind, path in (files or {}).items():
        console.print(Text(f"  {kind}: {path}"))
