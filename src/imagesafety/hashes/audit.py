"""`audit`: what a dataset holds that inflates or muddies every number measured on it: exact duplicates (sha256),
near-duplicates (PDQ within ThreatExchange's distance) within and across splits, near-duplicate groups whose labels or
categories disagree, counts per split x category x source, and unreadable files."""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from imagesafety.hashes.compute import DEFAULT_THRESHOLD, MIN_QUALITY, pdq
from imagesafety.images import thumbnail_jpeg


class _Groups:
    """Union-find over row numbers."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def join(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)

    def groups(self) -> list[list[int]]:
        found: dict[int, list[int]] = defaultdict(list)
        for i in range(len(self.parent)):
            found[self.find(i)].append(i)
        return [g for g in found.values() if len(g) > 1]


def audit(
    dataset, out_dir: str | Path | None = None, *, threshold: int = DEFAULT_THRESHOLD["pdq"], thumbnails: int = 40
) -> dict[str, Any]:
    """The audit of `dataset` (a path, spec or Dataset); with `out_dir`, audit.json and audit.html written there."""
    import faiss

    from imagesafety.data import load_dataset
    from imagesafety.data.decoding import decoded_samples
    from imagesafety.files import write_atomic, write_json

    data = load_dataset(dataset) if isinstance(dataset, (str, Path)) else dataset
    rows: list[dict[str, Any]] = []
    hashes: list[np.ndarray] = []
    unreadable = []
    for item in decoded_samples(data, prepare=lambda image: (pdq(image), thumbnail_jpeg(image, 96))):
        s = item.sample
        if item.error is not None:
            unreadable.append({"id": s.id, "error": item.error})
            continue
        h, thumb = item.image
        rows.append(
            {
                "id": s.id,
                "sha256": item.sha256,
                "label": s.label,
                "category": s.category,
                "source": s.source,
                "split": s.split,
                "quality": h.quality,
                "thumb": thumb,
            }
        )
        hashes.append(h.bits)
    n = len(rows)
    exact: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        exact[r["sha256"]].append(i)
    exact_groups = [g for g in exact.values() if len(g) > 1]
    near = _Groups(n)
    for g in exact_groups:
        for i in g[1:]:
            near.join(g[0], i)
    reliable = [i for i in range(n) if rows[i]["quality"] >= MIN_QUALITY["pdq"]]
    near_pairs = []
    if len(reliable) > 1:
        packed = np.ascontiguousarray(np.stack([hashes[i] for i in reliable]))
        index = faiss.IndexBinaryFlat(256)
        index.add(packed)
        lims, distances, found = index.range_search(packed, threshold + 1)
        for q in range(len(reliable)):
            for d, j in zip(distances[lims[q] : lims[q + 1]], found[lims[q] : lims[q + 1]]):
                a, b = reliable[q], reliable[int(j)]
                if a < b and rows[a]["sha256"] != rows[b]["sha256"]:
                    near.join(a, b)
                    near_pairs.append((a, b, int(d)))
    groups = near.groups()
    ids = lambda g: [rows[i]["id"] for i in g]  # noqa: E731
    across = [ids(g) for g in groups if len({rows[i]["split"] for i in g}) > 1]
    within_pairs = [(a, b) for a, b, _ in near_pairs if rows[a]["split"] == rows[b]["split"]]
    within = _Groups(n)
    for a, b in within_pairs:
        within.join(a, b)
    conflicts = [
        ids(g)
        for g in groups
        if len({rows[i]["label"] for i in g}) > 1 or len({rows[i]["category"] for i in g if rows[i]["label"] == 1}) > 1
    ]
    counts = Counter((r["split"] or "-", r["category"] or "-", r["source"] or "-") for r in rows)
    report = {
        "images": n,
        "unreadable": unreadable,
        "threshold": threshold,
        "algorithm": "pdq",
        "unhashable": [r["id"] for r in rows if r["quality"] < MIN_QUALITY["pdq"]],
        "exact_duplicates": [ids(g) for g in exact_groups],
        "near_duplicates_across_splits": across,
        "near_duplicates_within_splits": [ids(g) for g in within.groups()],
        "label_conflicts": conflicts,
        "counts": [{"split": k[0], "category": k[1], "source": k[2], "images": v} for k, v in sorted(counts.items())],
    }
    report["summary"] = {
        k: len(report[k])
        for k in (
            "exact_duplicates",
            "near_duplicates_across_splits",
            "near_duplicates_within_splits",
            "label_conflicts",
            "unreadable",
            "unhashable",
        )
    }
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "audit.json", report)
        by_id = {r["id"]: r for r in rows}
        write_atomic(out / "audit.html", _html(report, by_id, thumbnails))
    return report


def _html(report: dict, rows: dict[str, dict], limit: int) -> str:
    def group_figs(groups: list[list[str]]) -> str:
        if not groups:
            return "<p class=note>None.</p>"
        out = []
        for g in groups[:limit]:
            figs = "".join(
                f"<figure><img src='data:image/jpeg;base64,{base64.b64encode(rows[i]['thumb']).decode()}' "
                "alt=''><figcaption>"
                f"{escape(i)}<br>split {escape(str(rows[i]['split']))} · label {rows[i]['label']} · "
                f"{escape(str(rows[i]['category']))}"
                "</figcaption></figure>"
                for i in g
            )
            out.append(f"<div class=group>{figs}</div>")
        more = (
            f"<p class=note>and {len(groups) - limit} more groups (all in audit.json)</p>"
            if len(groups) > limit
            else ""
        )
        return "".join(out) + more

    s = report["summary"]
    counts = "".join(
        f"<tr><td>{escape(c['split'])}</td><td>{escape(c['category'])}</td><td>{escape(c['source'])}</td><td>{c['images']}</td></tr>"
        for c in report["counts"]
    )
    sections = [
        ("Near-duplicates across splits (leakage)", "near_duplicates_across_splits"),
        ("Label conflicts", "label_conflicts"),
        ("Exact duplicates", "exact_duplicates"),
        ("Near-duplicates within a split", "near_duplicates_within_splits"),
    ]
    body = "".join(f"<h2>{escape(title)} ({s[key]})</h2>{group_figs(report[key])}" for title, key in sections)
    unreadable = "".join(f"<li>{escape(u['id'])}: {escape(u['error'])}</li>" for u in report["unreadable"])
    return (
        "<!doctype html><meta charset=utf-8><title>dataset audit</title><style>body{font:14px system-ui;margin:24px}"
        ".group{display:flex;gap:8px;margin:8px 0;padding:8px;border:1px solid "
        "#ddd;flex-wrap:wrap}figure{margin:0;width:120px}"
        "figcaption{font-size:11px;color:#444;word-break:break-all}.note{color:#666}td,th{border:1px solid "
        "#ccc;padding:2px 8px}"
        "table{border-collapse:collapse}</style>"
        f"<h1>Dataset audit</h1><p>{report['images']} images read; PDQ near-duplicates at distance &le; "
        f"{report['threshold']} "
        f"(hashes of quality &lt; 50 not matched: {s['unhashable']}); {s['unreadable']} unreadable.</p>{body}"
        f"<h2>Counts</h2><table><tr><th>split</th><th>category</th><th>source</th><th>images</th></tr>{counts}</table>"
        + (f"<h2>Unreadable</h2><ul>{unreadable}</ul>" if unreadable else "")
    )
