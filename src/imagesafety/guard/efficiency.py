"""The sample-efficiency study: guard F1 against the number of labelled images, with and without pairs.

For each size n and seed: n labelled images are drawn (stratified) from the training pool; one guard
trains on them alone and one on them plus n counterfactual pair images (n/2 pairs); both are scored
on the same held-out test images. This is SafetyPairs' augmentation experiment, on any data.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from imagesafety.bench.metrics import weighted_metrics
from imagesafety.files import write_atomic, write_json
from imagesafety.guard.data import GuardData, check_compatible, guard_data
from imagesafety.guard.train import GuardConfig, fit_head, head_scores, pair_indices
from imagesafety.run.embed import Embeddings, read_embeddings
from imagesafety.run.progress import add_task, progress_bar
from imagesafety.splits import choose_splits, stratified_fraction


def stratified_draw(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices with both classes present, in proportion to the pool."""
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    n_pos = int(np.clip(round(n * len(pos) / len(labels)), 1, n - 1))
    if n_pos > len(pos) or n - n_pos > len(neg):
        raise ValueError(f"cannot draw {n} labelled images: the pool has {len(pos)} unsafe and {len(neg)} safe")
    return np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n - n_pos, replace=False)])


def draw_pairs(pairs: GuardData, n_images: int, rng: np.random.Generator) -> GuardData:
    """n_images // 2 complete pairs (both images of each)."""
    index = pair_indices(pairs)
    chosen = index[rng.choice(len(index), min(len(index), max(1, n_images // 2)), replace=False)]
    return pairs.subset(chosen.reshape(-1))


def check_sizes(pool: GuardData, sizes: list[int]) -> None:
    """Every requested size must be drawable from the pool (both classes present) before any training starts."""
    pos, neg = int((pool.labels == 1).sum()), int((pool.labels == 0).sum())
    for n in sizes:
        if n < 2:
            raise ValueError(f"--sizes: {n} is too small (a guard needs at least one safe and one unsafe image)")
        n_pos = int(np.clip(round(n * pos / max(len(pool), 1)), 1, n - 1))
        if n_pos > pos or n - n_pos > neg:
            raise ValueError(
                f"--sizes: cannot draw {n} labelled images from the training pool of {len(pool)} images "
                f"({pos} unsafe, {neg} safe); use sizes up to {len(pool)}"
            )


def sample_efficiency(
    embeddings: str | Path | Embeddings,
    pairs: str | Path | Embeddings | None = None,
    sizes: list[int] = (16, 32, 64, 128),
    seeds: int = 5,
    test_fraction: float = 0.3,
    config: GuardConfig | None = None,
    progress: bool = True,
    eval_split: str = "test",
) -> pd.DataFrame:
    """One row per (size, seed, with_pairs): F1, AUROC, precision, recall of the overall head on the `eval_split`
    rows (else a fixed hold-out of the training pool). Labelled images are drawn from the `config.train_split` rows;
    sizes, pools and pairs are checked before any training."""
    config = replace(
        config or GuardConfig(), val_fraction=0.0, calibrate="none", epochs=(config.epochs if config else 200)
    )
    if seeds < 1 or config.epochs < 1:
        raise ValueError("--seeds and --epochs must be at least 1")
    emb = read_embeddings(embeddings) if isinstance(embeddings, (str, Path)) else embeddings
    data = guard_data(emb, "binary")
    held_out = np.isin(data.split.astype(str), [eval_split])
    chosen = choose_splits(
        np.where(held_out, "", data.split.astype(object)) if held_out.any() else data.split,
        train_split=config.train_split,
        val_split=None,
        val_fraction=0.0,
        what=str(emb.path or "embeddings"),
    )
    pool_rows = chosen.train
    if held_out.any():
        test_rows = np.flatnonzero(held_out)
    else:
        test_rows = stratified_fraction(pool_rows, test_fraction, 12345, data.labels[pool_rows])
        pool_rows = np.setdiff1d(pool_rows, test_rows)
    pool, test = data.subset(pool_rows), data.subset(test_rows)
    if len(np.unique(test.labels)) < 2:
        raise ValueError(f"the evaluation rows ({len(test)}) need both safe and unsafe images")
    check_sizes(pool, list(sizes))
    pair_data = None
    if pairs is not None:
        pair_emb = read_embeddings(pairs) if isinstance(pairs, (str, Path)) else pairs
        check_compatible(emb, pair_emb, "pair embeddings")
        pair_data = guard_data(pair_emb, "binary")
        pair_data = pair_data.subset(np.flatnonzero(~np.isin(pair_data.split.astype(str), [eval_split])))
        if not len(pair_indices(pair_data)):
            raise ValueError("pair embeddings hold no complete pair (pair_id with one unsafe and one safe image)")
    variants = [False, True] if pair_data is not None else [False]
    rows = []
    with progress_bar(progress, unit="run") as bar:
        task = add_task(bar, "efficiency", total=len(sizes) * seeds * len(variants), unit="run")
        for n in sizes:
            for seed in range(seeds):
                rng = np.random.default_rng([seed, n])
                labelled = pool.subset(stratified_draw(pool.labels, n, rng))
                for with_pairs in variants:
                    train = labelled.concat(draw_pairs(pair_data, n, rng)) if with_pairs else labelled
                    head, _ = fit_head(train, None, replace(config, seed=seed))
                    s = head_scores(head, test.X)[:, 0]
                    m = weighted_metrics(test.labels, s, (s >= 0.5).astype(int), np.ones((1, len(test))))
                    rows.append(
                        {
                            "size": n,
                            "seed": seed,
                            "with_pairs": with_pairs,
                            "train_images": len(train),
                            **{k: float(m[k][0]) for k in ("f1", "auroc", "precision", "recall")},
                        }
                    )
                    bar.update(task, advance=1)
    return pd.DataFrame(rows)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation of F1 and AUROC per (size, with_pairs)."""
    return (
        runs.groupby(["size", "with_pairs"])
        .agg(
            f1_mean=("f1", "mean"),
            f1_std=("f1", "std"),
            auroc_mean=("auroc", "mean"),
            auroc_std=("auroc", "std"),
            seeds=("seed", "count"),
        )
        .reset_index()
    )


def write_efficiency_report(runs: pd.DataFrame, out_dir: str | Path) -> dict[str, Path]:
    """efficiency.csv (every run), efficiency.json (summary) and efficiency.html (table + plot)."""
    from html import escape

    from imagesafety.bench.report.charts import Series, line_chart

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarise(runs)
    write_atomic(out / "efficiency.csv", runs.to_csv(index=False))
    write_json(out / "efficiency.json", summary.to_dict(orient="records"))
    series = []
    for with_pairs, part in summary.groupby("with_pairs"):
        sd = part["f1_std"].fillna(0)
        series.append(
            Series(
                "with pairs" if with_pairs else "labelled images only",
                list(part["size"]),
                list(part["f1_mean"]),
                lower=list((part["f1_mean"] - sd).clip(0, 1)),
                upper=list((part["f1_mean"] + sd).clip(0, 1)),
            )
        )
    chart = line_chart(
        series,
        x_label="labelled training images",
        y_label="test F1 (mean ± sd over seeds)",
        x_log=True,
        x_ticks=[float(v) for v in summary["size"].unique()],
        x_format="{:.0f}",
        width=560,
    )
    rows = "".join(
        f"<tr><td>{r.size}</td><td>{'yes' if r.with_pairs else 'no'}</td><td>{r.f1_mean:.3f} ± "
        f"{0 if np.isnan(r.f1_std) else r.f1_std:.3f}</td>"
        f"<td>{r.auroc_mean:.3f}</td><td>{r.seeds}</td></tr>"
        for r in summary.itertuples()
    )
    html = (
        "<!doctype html><html><head><meta charset=utf-8><title>imagesafety · sample efficiency</title>"
        "<style>body{font-family:system-ui,sans-serif;max-width:900px;margin:2rem auto}table{border-collapse:collapse}"
        "td,th{padding:.25rem .6rem;border-bottom:1px solid #eee;text-align:right}</style></head><body>"
        "<h1>Sample efficiency of guard heads</h1>"
        f"<div>{chart}</div>"
        "<table><tr><th>labelled images</th><th>pairs</th><th>F1</th><th>AUROC</th><th>seeds</th></tr>"
        f"{rows}</table><p>{escape(str(len(runs)))} training runs; see efficiency.csv.</p></body></html>"
    )
    write_atomic(out / "efficiency.html", html)
    return {"csv": out / "efficiency.csv", "json": out / "efficiency.json", "html": out / "efficiency.html"}
