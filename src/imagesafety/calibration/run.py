"""`calibrate`: fit per-category maps on a named split of a finished run (never `test` unless named), with reliability
diagrams and the expected calibration error before and after (calibration.json, calibration.html), and operating points
whose achieved rate is reported on a held-out split."""

from __future__ import annotations

from html import escape
from pathlib import Path

import numpy as np
import pandas as pd

from imagesafety.calibration.fit import UNSAFE, Calibration, fit_map, operating_threshold, rate, reliability
from imagesafety.records.metrics_document import load_metrics


def _columns(rows: pd.DataFrame) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per category key: (scores, labels). `unsafe`: the unsafe score on every labelled row; a category: its score, with
    label 1 for unsafe images of that category and 0 for safe images."""
    ok = rows[rows["error"].isna() & rows["label"].notna()]
    out = {UNSAFE: (ok["score"].to_numpy(float), ok["label"].to_numpy(int))}
    for column in sorted(
        c for c in ok.columns if c.startswith("score_")
    ):  # predictions.parquet: one score_<category> column each
        key = column[len("score_") :]
        mask = ((ok["label"] == 0) | (ok["category"] == key)) & ok[column].notna()
        if mask.sum() >= 2 and ok.loc[mask, "label"].nunique() == 2:
            out[key] = (ok.loc[mask, column].to_numpy(float), ok.loc[mask, "label"].to_numpy(int))
    return out


def calibrate(
    run: str | Path,
    split: str,
    method: str = "isotonic",
    out: str | Path | None = None,
    *,
    operating_point: str | None = None,
    holdout: str | None = None,
    bins: int = 10,
) -> Calibration:
    """Fit per-category maps on `split` of a finished run (predictions.parquet and metrics.json); `test` only if named
    as
    `split`. With `operating_point`, a threshold per category for that target, its achieved rate reported on
    `holdout`."""
    folder = Path(run)
    if not (folder / "predictions.parquet").is_file():
        raise ValueError(f"{folder}: no predictions.parquet (give a folder written by `imagesafety eval`)")
    classifier = load_metrics(folder / "metrics.json").classifier
    rows = pd.read_parquet(folder / "predictions.parquet")
    present = sorted(rows["split"].dropna().unique())
    if split not in present:
        raise ValueError(
            f"split {split!r} is not in {folder} (splits present: {', '.join(present) or 'none'}); calibration never "
            "fits on other splits"
        )
    if holdout is not None and holdout not in present:
        raise ValueError(f"held-out split {holdout!r} is not in {folder} (splits present: {', '.join(present)})")
    fit_cols = _columns(rows[rows["split"] == split])
    held = _columns(rows[rows["split"] == holdout]) if holdout else {}
    maps, report = {}, {}
    for key, (scores, labels) in fit_cols.items():
        if len(np.unique(labels)) < 2:
            continue
        m = fit_map(scores, labels, method)
        before, after = reliability(scores, labels, bins), reliability(m.apply(scores), labels, bins)
        entry = {"n": int(len(scores)), "before": before, "after": after}
        if operating_point:
            m.threshold, m.target = operating_threshold(m.apply(scores), labels, operating_point), operating_point
            kind = operating_point.partition(":")[0]
            entry["operating_point"] = {
                "target": operating_point,
                "threshold": m.threshold,
                "fit": rate(m.apply(scores), labels, m.threshold, kind),
            }
            if key in held:
                hs, hl = held[key]
                entry["operating_point"]["holdout"] = {"split": holdout, **rate(m.apply(hs), hl, m.threshold, kind)}
        if key in held:
            hs, hl = held[key]
            entry["holdout"] = {
                "split": holdout,
                "before": reliability(hs, hl, bins),
                "after": reliability(m.apply(hs), hl, bins),
            }
        maps[key], report[key] = m, entry
    if UNSAFE not in maps:
        raise ValueError(f"split {split!r} of {folder} has no labelled images of both classes to fit on")
    cal = Calibration(list(classifier.cache_key), split, maps, report)
    if out is not None:
        cal.save(out)
        write_calibration_report(cal, Path(out), classifier.name)
    return cal


def _curve_svg(before: dict, after: dict, size: int = 220) -> str:
    """A reliability diagram: the diagonal, the curve before (grey) and after (blue) calibration."""

    def path(curve: dict, colour: str) -> str:
        pts = " ".join(
            f"{20 + p * (size - 30):.1f},{size - 20 - t * (size - 30):.1f}"
            for p, t in zip(curve["prob_pred"], curve["prob_true"])
        )
        return f"<polyline points='{pts}' fill='none' stroke='{colour}' stroke-width='2'/>"

    return (
        f"<svg width='{size}' height='{size}' xmlns='http://www.w3.org/2000/svg'><rect x='20' y='10' "
        f"width='{size - 30}' "
        f"height='{size - 30}' fill='none' stroke='#ccc'/><line x1='20' y1='{size - 20}' x2='{size - 10}' y2='10' "
        "stroke='#bbb' "
        f"stroke-dasharray='4'/>{path(before, '#999')}{path(after, '#1f6fd1')}<text x='20' y='{size - 4}' "
        "font-size='10'>mean score</text>"
        f"<text x='{size - 80}' y='{size - 4}' font-size='10' fill='#1f6fd1'>after</text></svg>"
    )


def write_calibration_report(cal: Calibration, out: Path, name: str) -> Path:
    from imagesafety.files import write_atomic

    cards = []
    for key, entry in cal.report.items():
        op = entry.get("operating_point")
        op_text = ""
        if op:
            held = op.get("holdout")
            op_text = (
                f"<br>{escape(op['target'])}: threshold {op['threshold']:.4f}; on {escape(cal.split)} "
                f"{op['fit']['value']:.3f}"
                + (
                    f", held out ({escape(held['split'])}) {held['value']:.3f} [{held['ci95'][0]:.3f}, "
                    f"{held['ci95'][1]:.3f}]"
                    if held and held.get("ci95")
                    else ""
                )
            )
        cards.append(
            f"<figure>{_curve_svg(entry['before'], entry['after'])}<figcaption><b>{escape(key)}</b> ({entry['n']} "
            "images): "
            f"ECE {entry['before']['ece']:.3f} &rarr; {entry['after']['ece']:.3f}{op_text}</figcaption></figure>"
        )
    page = (
        "<!doctype html><meta charset=utf-8><title>calibration</title><style>body{font:14px system-ui;margin:24px}"
        ".grid{display:flex;flex-wrap:wrap;gap:18px}figure{margin:0;width:240px}figcaption{font-size:12px}</style>"
        f"<h1>Calibration of {escape(name)}</h1><p>{escape(cal.maps[UNSAFE].method)} maps fitted on split "
        f"{escape(cal.split)}; "
        "reliability diagrams before (grey) and after (blue), expected calibration error over 10 equal-width bins.</p>"
        f"<div class=grid>{''.join(cards)}</div>"
    )
    path = out / "calibration.html"
    write_atomic(path, page)
    return path
