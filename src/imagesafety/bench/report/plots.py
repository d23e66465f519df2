"""Figures for the HTML report, rendered by matplotlib to inline PNG data URLs."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

SOURCE_COLOURS = {"real": "#3b6fb6", "generated": "#d9822b"}


def to_data_url(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def log_ticks(ax, values, fmt: str = "{:g}") -> None:
    """A log x axis labelled at exactly the measured values (no overlapping minor labels), slanted when crowded."""
    from matplotlib.ticker import NullFormatter, NullLocator

    values = sorted(set(values))
    ax.set_xscale("log")
    ax.set_xticks(values, [fmt.format(v) for v in values], rotation=30 if len(values) > 4 else 0, ha="right" if len(values) > 4 else "center")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())


def outside_legend(ax, **kwargs) -> None:
    """The legend beside the axes, where it cannot cover a line."""
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, frameon=False, **kwargs)


def f1_bars(by_category_source: dict[str, dict[str, dict]], labels: dict[str, str]) -> str | None:
    """Per-category F1 with 95% intervals, one bar per source side by side."""
    categories = sorted(by_category_source)
    sources = sorted({s for per in by_category_source.values() for s in per}, key=lambda s: (s not in SOURCE_COLOURS, s))
    if not categories:
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.9 * len(categories) + 2), 3.6))
    width = 0.8 / max(1, len(sources))
    x = np.arange(len(categories))
    for i, source in enumerate(sources):
        values, lows, highs = [], [], []
        for c in categories:
            f1 = by_category_source[c].get(source, {}).get("f1", {})
            v = f1.get("value")
            lo, hi = f1.get("ci95", [None, None])
            values.append(np.nan if v is None else v)
            lows.append(0 if v is None or lo is None else v - lo)
            highs.append(0 if v is None or hi is None else hi - v)
        ax.bar(x + (i - (len(sources) - 1) / 2) * width, values, width, yerr=[lows, highs], capsize=2,
               label=source, color=SOURCE_COLOURS.get(source))
    ax.set_xticks(x, [labels.get(c, c) for c in categories], rotation=30, ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1 (unsafe = positive)")
    ax.legend(title="source", fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return to_data_url(fig)


def roc_pr_curves(rows: pd.DataFrame) -> str | None:
    """ROC and precision-recall curves, overall and per source."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    ok = rows[rows["error"].isna() & rows["label"].notna()]
    if ok["label"].nunique() < 2:
        return None
    fig, (roc_ax, pr_ax) = plt.subplots(1, 2, figsize=(9, 3.8))
    groups = [("all", ok)] + [(str(s), part) for s, part in ok.groupby(ok["source"].fillna("unknown"))]
    for name, part in groups:
        y, s = part["label"].astype(int), part["score"]
        if y.nunique() < 2:
            continue
        fpr, tpr, _ = roc_curve(y, s)
        precision, recall, _ = precision_recall_curve(y, s)
        style = {"color": SOURCE_COLOURS.get(name, "#333333"), "lw": 2 if name == "all" else 1.3}
        roc_ax.plot(fpr, tpr, label=name, **style)
        pr_ax.step(recall, precision, where="post", label=name, **style)
    roc_ax.plot([0, 1], [0, 1], ls=":", color="grey")
    roc_ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr_ax.set(xlabel="recall", ylabel="precision", title="Precision-recall", ylim=(0, 1.02))
    for ax in (roc_ax, pr_ax):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return to_data_url(fig)
