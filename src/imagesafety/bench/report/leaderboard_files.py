"""Leaderboard files: leaderboard.html (one self-contained page: a heat-map per source with the interval on hover, and
per-source bars), leaderboard.csv (the paper's layout: one row per classifier and source), leaderboard_cells.csv (every
cell with its interval and the published value), and Markdown / LaTeX tables to paste into a paper."""

from __future__ import annotations

import datetime as dt
import math
from html import escape
from pathlib import Path

import pandas as pd

from imagesafety.bench.leaderboard import OVERALL, SOURCES, Leaderboard
from imagesafety.files import atomic_path, write_atomic
from imagesafety.taxonomy import category_label

SOURCE_TITLES = {"real": "Real images", "generated": "AI-generated images", "both": "Both sources"}
NOT_COVERED, UNDEFINED = "-", "n/a"
SUMMARY_METRICS = ("precision", "recall", "fpr", "auroc")


def _label(category: str) -> str:
    return "Overall" if category == OVERALL else category_label(category)


def _f1_text(f1: float | None, covered: bool, digits: int = 3) -> str:
    if not covered:
        return NOT_COVERED
    return UNDEFINED if f1 is None or (isinstance(f1, float) and math.isnan(f1)) else f"{f1:.{digits}f}"


def _cell(board: Leaderboard, classifier: str, source: str, category: str) -> pd.Series:
    c = board.cells
    return c[(c["classifier"] == classifier) & (c["source"] == source) & (c["category"] == category)].iloc[0]


def _number(x) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def wide_csv(board: Leaderboard) -> pd.DataFrame:
    """One row per (classifier, source): each category's F1 ('-' not covered, 'n/a' undefined), then the summary."""
    rows = []
    columns = [*board.categories, OVERALL]
    for run in board.runs:
        for source in SOURCES:
            row = {"classifier": run.name, "source": source}
            for category in columns:
                cell = _cell(board, run.name, source, category)
                f1 = _number(cell["f1"])
                row[category] = NOT_COVERED if not cell["covered"] else (UNDEFINED if f1 is None else repr(f1))
            s = board.summary[(board.summary["classifier"] == run.name) & (board.summary["source"] == source)].iloc[0]
            for m in (*SUMMARY_METRICS, "images_per_second", "cost"):
                value = _number(s[m])
                row[m] = "" if value is None else repr(value)
            rows.append(row)
    return pd.DataFrame(rows)


def markdown(board: Leaderboard) -> str:
    columns = [*board.categories, OVERALL]
    parts = [f"# Leaderboard\n\nF1 with unsafe as the positive class. {' '.join(board.notes)}\n"]
    if board.published:
        parts.append("Cells read `measured (published)`.\n")
    for source in SOURCES:
        parts.append(f"## {SOURCE_TITLES[source]}\n")
        parts.append("| Classifier | " + " | ".join(_label(c) for c in columns) + " |")
        parts.append("|---|" + "---|" * len(columns))
        for run in board.runs:
            cells = []
            for category in columns:
                cell = _cell(board, run.name, source, category)
                text = _f1_text(_number(cell["f1"]), bool(cell["covered"]))
                if board.published and _number(cell["published_f1"]) is not None and cell["covered"]:
                    text += f" ({cell['published_f1']:.3f})"
                cells.append(text)
            parts.append(f"| {run.name} | " + " | ".join(cells) + " |")
        parts.append("")
    parts.append("## Summary (covered categories)\n")
    parts.append("| Classifier | Source | Precision | Recall | FPR | AUROC | images/s | cost |")
    parts.append("|---|---|---|---|---|---|---|---|")
    for s in board.summary.itertuples():
        vals = [_f1_text(_number(getattr(s, m)), True) for m in SUMMARY_METRICS]
        speed = "" if _number(s.images_per_second) is None else f"{s.images_per_second:.1f}"
        cost = "" if _number(s.cost) is None else f"${s.cost:.4f}"
        parts.append(f"| {s.classifier} | {s.source} | " + " | ".join(vals) + f" | {speed} | {cost} |")
    return "\n".join(parts) + "\n"


def _tex(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$")):
        text = text.replace(a, b)
    return text


def latex(board: Leaderboard) -> str:
    columns = [*board.categories, OVERALL]
    out = [
        "% imagesafety leaderboard: F1 (unsafe = positive); -- = category not covered",
        "% needs \\usepackage{booktabs}",
    ]
    for source in SOURCES:
        out += [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            f"\\caption{{F1 on {SOURCE_TITLES[source].lower()}.}}",
            r"\begin{tabular}{l" + "c" * len(columns) + "}",
            r"\toprule",
            "Classifier & " + " & ".join(_tex(_label(c)) for c in columns) + r" \\",
            r"\midrule",
        ]
        for run in board.runs:
            cells = []
            for category in columns:
                cell = _cell(board, run.name, source, category)
                text = _f1_text(_number(cell["f1"]), bool(cell["covered"]))
                text = "--" if text == NOT_COVERED else text
                if board.published and _number(cell["published_f1"]) is not None and cell["covered"]:
                    text += f" ({cell['published_f1']:.3f})"
                cells.append(text)
            out.append(_tex(run.name) + " & " + " & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1250px;color:#222;
padding:0 1rem}
h1{font-size:1.5rem} h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
table{border-collapse:collapse;font-size:.8rem;margin:.5rem 0}
th,td{padding:.3rem .45rem;border:1px solid #fff;text-align:center}
th{background:#f2f2f2;font-weight:600} td.name,th.name{text-align:left;white-space:nowrap}
td.nc{color:#999;background:#fafafa}
.pub{display:block;color:#555;font-size:.68rem} .note{color:#666;font-size:.85rem} .legend{font-size:.75rem;color:#555}
.neg{color:#a33} .pos{color:#276}
"""


def _colour(f1: float) -> str:
    """Red (0) through yellow to green (1), light enough to read black text on."""
    return f"hsl({120 * max(0.0, min(1.0, f1)):.0f},65%,{78 + 8 * (1 - abs(f1 - 0.5) * 2):.0f}%)"


def _heat_cell(cell: pd.Series, published: bool) -> str:
    f1 = _number(cell["f1"])
    if not cell["covered"]:
        return "<td class=nc title='not covered: the classifier was not built for this category'>-</td>"
    if f1 is None:
        return f"<td class=nc title='undefined (n={int(cell['support'])}: no unsafe images, or none flagged)'>n/a</td>"
    lo, hi = _number(cell["f1_lo"]), _number(cell["f1_hi"])
    tip = f"F1 {f1:.3f}" + (f", 95% CI [{lo:.3f}, {hi:.3f}]" if lo is not None else "") + f", n={int(cell['support'])}"
    extra = ""
    paper = _number(cell["published_f1"])
    if published and paper is not None:
        diff = f1 - paper
        tip += f", published {paper:.3f} ({diff:+.3f})"
        extra = (
            f"<span class=pub>paper {paper:.3f} <span class={'pos' if diff >= 0 else 'neg'}>{diff:+.3f}</span></span>"
        )
    return f"<td style='background:{_colour(f1)}' title='{escape(tip)}'>{f1:.3f}{extra}</td>"


def _bars_svg(board: Leaderboard) -> str:
    """Overall F1 per classifier, one bar per source."""
    colours = {"real": "#4e79a7", "generated": "#f28e2b", "both": "#59a14f"}
    label_w, bar_h, gap, width = 230, 11, 10, 420
    rows = []
    y = 24
    for run in board.runs:
        rows.append(
            f"<text x='{label_w - 8}' y='{y + 1.5 * bar_h + 3}' text-anchor='end' "
            f"font-size='12'>{escape(run.name)}</text>"
        )
        for i, source in enumerate(SOURCES):
            f1 = _number(_cell(board, run.name, source, OVERALL)["f1"])
            top = y + i * bar_h
            if f1 is None:
                rows.append(f"<text x='{label_w + 4}' y='{top + bar_h - 2}' font-size='10' fill='#888'>n/a</text>")
                continue
            rows.append(
                f"<rect x='{label_w}' y='{top}' width='{f1 * width:.1f}' height='{bar_h - 1}' fill='{colours[source]}'>"
                f"<title>{escape(run.name)} {source}: F1 {f1:.3f}</title></rect>"
                f"<text x='{label_w + f1 * width + 4:.1f}' y='{top + bar_h - 2}' font-size='10'>{f1:.3f}</text>"
            )
        y += 3 * bar_h + gap
    ticks = "".join(
        f"<line x1='{label_w + t * width}' x2='{label_w + t * width}' y1='18' y2='{y}' stroke='#ddd'/>"
        f"<text x='{label_w + t * width}' y='{y + 14}' font-size='10' text-anchor='middle'>{t:.1f}</text>"
        for t in (0, 0.2, 0.4, 0.6, 0.8, 1)
    )
    legend = "".join(
        f"<rect x='{label_w + 150 * i}' y='2' width='12' height='10' fill='{colours[s]}'/>"
        f"<text x='{label_w + 150 * i + 16}' y='11' font-size='11'>{SOURCE_TITLES[s]}</text>"
        for i, s in enumerate(SOURCES)
    )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + width + 60}' height='{y + 22}' role='img' "
        f"aria-label='overall F1 per classifier and source'>{legend}{ticks}{''.join(rows)}</svg>"
    )


def _pareto_svg(board: Leaderboard) -> str:
    """Scatter plots of F1 against seconds per image and against cost per 1,000 images, the Pareto front ringed."""
    both = board.summary[board.summary["source"] == "both"]
    points = [
        (
            r.classifier,
            float(r.f1),
            1.0 / float(r.images_per_second),
            None if _number(r.cost) is None else 1000 * float(r.cost) / max(1, int(r.support)),
        )
        for r in both.itertuples()
        if _number(r.f1) is not None and _number(r.images_per_second)
    ]
    if len(points) < 2:
        return ""
    charts = []
    for label, idx in (("seconds per image", 2), ("cost per 1,000 images ($)", 3)):
        pts = [(p[0], p[1], p[idx]) for p in points if p[idx] is not None]
        if len(pts) < 2:
            continue
        xs, width, height = [x for _, _, x in pts], 560, 280
        lo, hi = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
        front = {n for n, f, x in pts if not any((f2 >= f and x2 <= x) and (f2 > f or x2 < x) for _, f2, x2 in pts)}
        dots = []
        for n, f, x in pts:
            cx, cy = 60 + (x - lo) / (hi - lo) * (width - 200), height - 40 - f * (height - 70)
            ring = f"<circle cx='{cx:.1f}' cy='{cy:.1f}' r='8' fill='none' stroke='#1f6fd1'/>" if n in front else ""
            dots.append(
                f"{ring}<circle cx='{cx:.1f}' cy='{cy:.1f}' r='4' fill='#333'><title>{escape(n)}: F1 {f:.3f}, "
                f"{x:.4g}</title></circle>"
                f"<text x='{cx + 9:.1f}' y='{cy + 4:.1f}' font-size='11'>{escape(n)}</text>"
            )
        axis_y, right = height - 40, width - 140
        charts.append(
            f"<svg width='{width}' height='{height}' xmlns='http://www.w3.org/2000/svg'><line x1='50' "
            f"y1='{axis_y + 10}' "
            f"x2='{right}' y2='{axis_y + 10}' stroke='#999'/><line x1='50' y1='20' x2='50' y2='{axis_y + 10}' "
            "stroke='#999'/>"
            f"<text x='{(50 + right) / 2 - 40}' y='{height - 6}' font-size='11'>{escape(label)}</text>"
            f"<text x='8' y='34' font-size='10'>F1 1</text><text x='8' y='{axis_y + 4}' font-size='10'>F1 0</text>"
            f"<text x='52' y='{height - 18}' font-size='10'>{lo:.3g}</text><text x='{right - 30}' y='{height - 18}' "
            f"font-size='10'>{hi:.3g}</text>" + "".join(dots) + "</svg>"
        )
    return "".join(charts)


def html(board: Leaderboard) -> str:
    columns = [*board.categories, OVERALL]
    parts = [
        "<!doctype html><html><head><meta charset=utf-8><title>imagesafety "
        f"leaderboard</title><style>{CSS}</style></head><body>",
        "<h1>Leaderboard</h1>",
        f"<p class=note>F1 with unsafe as the positive class; hover a cell for its 95% interval and support. "
        f"{escape(' '.join(board.notes))} Generated {dt.datetime.now():%Y-%m-%d %H:%M}.</p>",
    ]
    for source in SOURCES:
        head = "".join(f"<th>{escape(_label(c))}</th>" for c in columns)
        body = []
        for run in board.runs:
            cells = "".join(_heat_cell(_cell(board, run.name, source, c), bool(board.published)) for c in columns)
            body.append(f"<tr><td class=name>{escape(run.name)}</td>{cells}</tr>")
        parts.append(
            f"<h2>{SOURCE_TITLES[source]}</h2><table><tr><th "
            f"class=name>Classifier</th>{head}</tr>{''.join(body)}</table>"
        )
    parts.append("<h2>Overall F1 by source</h2>" + _bars_svg(board))
    pareto = _pareto_svg(board)
    if pareto:
        parts.append(
            "<h2>F1 against cost</h2><p class=note>Overall F1 (both sources) against seconds per image and, where the "
            "classifiers report a price, cost per 1,000 images; ringed points are on the Pareto front (no other "
            "classifier is both better and cheaper).</p>" + pareto
        )
    rows = []
    for s in board.summary.itertuples():
        vals = "".join(f"<td>{_f1_text(_number(getattr(s, m)), True)}</td>" for m in SUMMARY_METRICS)
        speed = "" if _number(s.images_per_second) is None else f"{s.images_per_second:.1f}"
        cost = "" if _number(s.cost) is None else f"${s.cost:.4f}"
        rows.append(
            f"<tr><td class=name>{escape(s.classifier)}</td><td>{s.source}</td><td>{int(s.support)}</td>{vals}"
            f"<td>{speed}</td><td>{cost}</td><td>{int(s.errors)}</td></tr>"
        )
    parts.append(
        "<h2>Precision, recall, false-positive rate, speed and cost (covered categories)</h2>"
        "<table><tr><th "
        "class=name>Classifier</th><th>Source</th><th>n</th><th>Precision</th><th>Recall</th><th>FPR</th>"
        f"<th>AUROC</th><th>images/s</th><th>cost</th><th>errors</th></tr>{''.join(rows)}</table>"
    )
    if not board.pairs.empty:
        rows = []
        for p in board.pairs.itertuples():
            mark = "<b>significant</b>" if p.significant else "not significant"
            rows.append(
                f"<tr><td class=name>{escape(p.classifier_a)} vs "
                f"{escape(p.classifier_b)}</td><td>{escape(_label(p.category))}</td>"
                f"<td>{escape(p.source)}</td><td>{p.n}</td><td>{p.f1_diff:+.3f} [{p.f1_diff_low:+.3f}, "
                f"{p.f1_diff_high:+.3f}]</td>"
                f"<td>{p.mcnemar_p:.3g}</td><td>{p.holm_p:.3g}</td><td>{mark}</td></tr>"
            )
        parts.append(
            "<h2>Which differences are real (paired on the same images)</h2><p class=note>McNemar's exact test on the "
            "two "
            "classifiers' decisions, Holm-corrected across every row; the F1 difference with a paired bootstrap 95% "
            "interval.</p>"
            "<table><tr><th class=name>Pair</th><th>Category</th><th>Source</th><th>n</th><th>F1 a - b</th><th>McNemar "
            "p</th>"
            f"<th>Holm p</th><th></th></tr>{''.join(rows)}</table>"
        )
    runs = "".join(f"<li>{escape(r.name)}: {escape(str(r.folder))}</li>" for r in board.runs)
    parts.append(f"<h2>Runs</h2><ul class=note>{runs}</ul></body></html>")
    return "".join(parts)


def write_leaderboard(board: Leaderboard, out_dir: str | Path) -> dict[str, Path]:
    """Write every leaderboard file into `out_dir` and return their paths by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "html": out / "leaderboard.html",
        "csv": out / "leaderboard.csv",
        "cells": out / "leaderboard_cells.csv",
        "markdown": out / "leaderboard.md",
        "latex": out / "leaderboard.tex",
    }
    with atomic_path(files["csv"]) as tmp:
        wide_csv(board).to_csv(tmp, index=False)
    with atomic_path(files["cells"]) as tmp:
        board.cells.to_csv(tmp, index=False)
    if not board.pairs.empty:
        files["pairs"] = out / "leaderboard_pairs.csv"
        with atomic_path(files["pairs"]) as tmp:
            board.pairs.to_csv(tmp, index=False)
    write_atomic(files["markdown"], markdown(board).encode())
    write_atomic(files["latex"], latex(board).encode())
    write_atomic(files["html"], html(board).encode())
    return files
