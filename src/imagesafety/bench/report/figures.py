"""The evaluation report's figures: F1 per category and source with intervals, and ROC / precision-recall curves
(overall and per source), as inline SVG."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from imagesafety.bench.metrics import curve_points
from imagesafety.bench.report.charts import SOURCE_COLOURS, Series, bar_chart, line_chart
from imagesafety.records.metrics_document import Block, Estimate, MetricBlock

MAX_CURVE_POINTS = 400


def f1_bars(by_category_source: Mapping[str, Mapping[str, Block]], labels: dict[str, str]) -> str | None:
    """Per-category F1 with 95% intervals, one bar per source side by side (uncovered categories left out)."""
    categories = [
        c for c in sorted(by_category_source) if any(isinstance(b, MetricBlock) for b in by_category_source[c].values())
    ]
    sources = sorted({s for c in categories for s in by_category_source[c]}, key=lambda s: (s not in SOURCE_COLOURS, s))
    if not categories:
        return None
    groups = []
    for source in sources:
        values, lows, highs = [], [], []
        for c in categories:
            block = by_category_source[c].get(source)
            f1 = block.f1 if isinstance(block, MetricBlock) else Estimate(value=None, ci95=(None, None))
            values.append(f1.value)
            lows.append(f1.ci95[0])
            highs.append(f1.ci95[1])
        groups.append((source, values, lows, highs))
    return bar_chart(
        [labels.get(c, c) for c in categories], groups, y_label="F1 (unsafe = positive)", legend_title="source"
    )


def _thin(xs, ys, limit: int = MAX_CURVE_POINTS):
    step = max(1, len(xs) // limit)
    keep = list(range(0, len(xs), step)) + ([len(xs) - 1] if (len(xs) - 1) % step else [])
    return [float(xs[i]) for i in keep], [float(ys[i]) for i in keep]


def roc_pr_curves(rows: pd.DataFrame) -> str | None:
    """ROC and precision-recall curves, overall and per source, side by side."""
    ok = rows[rows["error"].isna() & rows["label"].notna()]
    if ok["label"].nunique() < 2:
        return None
    groups = [("all", ok)] + [(str(s), part) for s, part in ok.groupby(ok["source"].fillna("unknown"))]
    roc, pr = [], []
    for name, part in groups:
        y = part["label"].astype(int)
        if y.nunique() < 2:
            continue
        points = curve_points(y, part["score"])
        style = {"colour": SOURCE_COLOURS.get(name), "markers": False, "width": 2.2 if name == "all" else 1.4}
        roc.append(Series(name, *_thin(points["fpr"], points["tpr"]), **style))
        pr.append(Series(name, *_thin(points["recall"], points["precision"]), step=True, **style))
    unit = [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    return line_chart(
        roc,
        x_label="false positive rate",
        y_label="true positive rate",
        title="ROC",
        x_ticks=unit,
        x_range=(0.0, 1.0),
        diagonal=True,
        legend_title="source",
    ) + line_chart(
        pr,
        x_label="recall",
        y_label="precision",
        title="Precision-recall",
        x_ticks=unit,
        x_range=(0.0, 1.0),
        legend_title="source",
    )
