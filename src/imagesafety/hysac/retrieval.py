"""HySAC retrieval as API calls: index a gallery with a model, and search it by text or image, optionally
redirected toward safe content (the CLI's `hysac index` / `hysac search` are thin shells over these)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from imagesafety.data.sample import read_image_file
from imagesafety.hyperbolic.checkpoint import released_rescale
from imagesafety.hyperbolic.embedder import HysacEmbedder
from imagesafety.hyperbolic.index import LorentzIndex
from imagesafety.hyperbolic.redirect import redirect
from imagesafety.images import decode_image
from imagesafety.run.engine import EngineOptions
from imagesafety.run.job import DataSelection, RunOptions, run_job
from imagesafety.run.tasks import ModelSpec
from imagesafety.store import USE_DEFAULT_CACHE


@dataclass
class IndexSummary:
    path: Path
    indexed: int
    unreadable: int
    kind: str


def build_index(
    model: str | Path,
    gallery: str | Path,
    out: str | Path,
    *,
    kind: str = "exact",
    device: str = "cpu",
    cache=USE_DEFAULT_CACHE,
    progress: bool = True,
    batch_size: int | None = None,
    workers: int | None = None,
    engine: EngineOptions | str = "local",
    split: str | None = None,
    categories: list[str] | None = None,
    sources: list[str] | None = None,
    limit: int | None = None,
    streaming: bool = False,
    allow_outside_root: bool = False,
    url_hosts: list[str] | None = None,
) -> IndexSummary:
    """Embed a gallery with a HySAC model (through the engine: local, or Ray workers that load the model from its
    folder) and save a Lorentz-distance FAISS index (labels, if any, mark unsafe results; unlabelled images are
    labelled by the model's threshold)."""
    selection = DataSelection(split, categories, sources, limit, streaming, allow_outside_root, list(url_hosts or []))
    embedder = HysacEmbedder(model, device)
    rows = run_job(
        embedder,
        gallery,
        selection,
        RunOptions(
            cache,
            batch_size or 16,
            workers,
            progress,
            engine if isinstance(engine, EngineOptions) else EngineOptions(engine),
        ),
        remote=ModelSpec("embed", f"hysac:{embedder.directory}", {"device": device}),
        description="index",
    ).rows
    ok = rows[rows["error"].isna()]
    if ok.empty:
        raise ValueError(f"{gallery}: no readable images to index ({len(rows)} failed)")
    points = np.stack(ok["embedding"].to_list())
    threshold = embedder.card.threshold
    guessed = (
        (embedder.distance_to_origin(points) >= threshold).astype(int)
        if threshold is not None
        else np.full(len(ok), -1)
    )
    labels = np.where(ok["label"].isna(), guessed, ok["label"].fillna(-1).astype(int))
    index = LorentzIndex.build(
        points, embedder.curvature, embedder.model_id, ids=ok["image"].tolist(), labels=labels, kind=kind
    )
    return IndexSummary(index.save(out), len(ok), len(rows) - len(ok), kind)


@dataclass
class SearchResult:
    results: list[dict]
    moved: float = 0.0
    fraction: float = 0.0
    redirected: bool = False
    reached_safe: bool = True  # with redirection: whether the walk found safe enough results before the origin
    notes: list[str] = field(default_factory=list)


def search(
    query: str | None = None,
    *,
    image: str | Path | None = None,
    index: str | Path,
    model: str | Path,
    k: int = 10,
    redirect_query: bool = False,
    rescale: bool = False,
    device: str = "cpu",
) -> SearchResult:
    """The k nearest gallery images for a text or an image query."""
    if (query is None) == (image is None):
        raise ValueError("give a text query or an image (one of them)")
    if query is not None and not query.strip():
        raise ValueError("empty query")
    if k < 1:
        raise ValueError(f"--k must be at least 1, got {k}")
    embedder = HysacEmbedder(model, device)
    gallery = LorentzIndex.load(index)
    point = (
        embedder.encode_texts([query])
        if query is not None
        else embedder.encode_images([decode_image(read_image_file(image), name=str(image))])
    )
    out = SearchResult([], redirected=redirect_query)
    if redirect_query:
        red = redirect(point[0], gallery, k=k)
        distances, rows = red.distances[None], red.rows[None]
        out.moved, out.fraction, out.reached_safe = red.moved, red.fraction, red.reached_safe
        if not red.reached_safe:
            out.notes.append(
                f"redirection walked all the way to the origin and {red.safe_share:.0%} of the results are safe: "
                "the gallery has no safe neighbourhood for this query"
            )
    else:
        if rescale:
            point = released_rescale(torch.from_numpy(point), embedder.card.bounds, embedder.curvature).numpy()
        distances, rows = gallery.search(point, k, curvature=embedder.curvature, model_id=embedder.model_id)
    out.results = [
        {
            "rank": i + 1,
            "id": gallery.ids[r],
            "distance": float(d),
            "unsafe": None if gallery.labels is None or gallery.labels[r] < 0 else int(gallery.labels[r]),
        }
        for i, (d, r) in enumerate(zip(distances[0], rows[0]))
        if r >= 0
    ]
    return out
