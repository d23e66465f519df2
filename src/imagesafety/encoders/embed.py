"""`embed`: image (and text) embeddings of a dataset, cached per (encoder, image sha256), saved as Parquet or NumPy.

The output carries its provenance (encoder, dimension, dataset) in the file's metadata, so guard
training can refuse embeddings from another encoder before it starts.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from imagesafety.bench.runner import Prepared, Runner, RunStats, default_workers, sample_columns
from imagesafety.data import Dataset, load_dataset, select_samples
from imagesafety.encoders.base import Encoder
from imagesafety.store import PredictionCache

METADATA_KEY = b"imagesafety"
EMBEDDINGS_FORMAT = "imagesafety-embeddings/1"


class EmbeddingTask:
    """Image embeddings of one encoder, cached under (encoder id, image sha256)."""

    def __init__(self, encoder: Encoder, cache: PredictionCache | None = None):
        self.encoder = encoder
        self.cache = cache
        self.name = encoder.name

    def lookup(self, sha256: str) -> np.ndarray | None:
        return self.cache.get_embedding(self.name, sha256) if self.cache is not None else None

    def store(self, items: list[tuple[str, np.ndarray]]) -> None:
        if self.cache is not None:
            self.cache.put_embeddings(self.name, items)

    def prepare(self, image: Image.Image) -> Any:
        pixels = getattr(self.encoder, "prepare_pixels", None)
        return pixels(image) if pixels else image

    def compute(self, items: list[Any]) -> list[np.ndarray]:
        embed_prepared = getattr(self.encoder, "encode_prepared", None)
        vectors = embed_prepared(items) if embed_prepared else self.encoder.encode_images(items)
        return list(np.asarray(vectors, dtype=np.float32))

    def row(self, p: Prepared) -> dict:
        text = p.sample.metadata.get("text")
        return {**sample_columns(p), "text": text if isinstance(text, str) else None,
                "embedding": p.result if p.error is None else None, "error": p.error}

    def frame(self, rows: list[dict]) -> pd.DataFrame:
        frame = pd.DataFrame(rows, columns=list(self.row(Prepared(_empty_sample())).keys()))
        frame["label"] = frame["label"].astype("Int64")
        return frame


def _empty_sample():
    from imagesafety.data.sample import Sample

    return Sample("", b"")


@dataclass
class Embeddings:
    """An embeddings table: per-image columns, the (n, d) matrix of rows without errors, and provenance."""

    frame: pd.DataFrame
    metadata: dict[str, Any]
    text: np.ndarray | None = None
    stats: RunStats | None = None
    path: Path | None = field(default=None)

    @classmethod
    def from_arrays(cls, X: np.ndarray, labels, encoder: str, **columns: Any) -> Embeddings:
        """An in-memory table from a matrix and labels (other columns: category, source, split, pair_id, role, id)."""
        X = np.asarray(X, dtype=np.float32)
        n = len(X)
        frame = pd.DataFrame({
            "id": columns.get("id", [str(i) for i in range(n)]),
            "label": pd.array(labels, dtype="Int64"),
            **{c: columns.get(c, [None] * n) for c in ("category", "source", "split", "pair_id", "role")},
            "embedding": list(X),
            "error": [None] * n,
        })
        return cls(frame, {"format": EMBEDDINGS_FORMAT, "encoder": encoder, "embed_dim": int(X.shape[1]), "normalized": False})

    @property
    def ok(self) -> pd.DataFrame:
        return self.frame[self.frame["error"].isna()]

    @property
    def matrix(self) -> np.ndarray:
        ok = self.ok
        return np.stack(ok["embedding"].to_list()).astype(np.float32) if len(ok) else np.zeros((0, self.dim), np.float32)

    @property
    def encoder(self) -> str:
        return self.metadata["encoder"]

    @property
    def dim(self) -> int:
        return int(self.metadata["embed_dim"])


def embed(
    encoder: str | Encoder,
    dataset: str | Path | Dataset,
    out: str | Path | None = None,
    *,
    text: bool = False,
    split: str | None = None,
    categories: list[str] | None = None,
    sources: list[str] | None = None,
    limit: int | None = None,
    cache: PredictionCache | str | Path | None = "default",
    batch_size: int = 32,
    workers: int | None = None,
    device: str | None = None,
    progress: bool = True,
    engine: str = "local",
    address: str | None = None,
    partition_size: int = 1000,
) -> Embeddings:
    """Embed every image of `dataset` (and its captions, with `text`) and optionally write `out` (.parquet or .npz)."""
    from imagesafety.bench.evaluate import open_cache
    from imagesafety.encoders import load_encoder

    enc = load_encoder(encoder, device) if isinstance(encoder, str) else encoder
    data = load_dataset(dataset, splits=[split] if split else None) if isinstance(dataset, (str, Path)) else dataset
    samples = select_samples(data, categories, sources, [split] if split else None, limit)
    runner = Runner(EmbeddingTask(enc, open_cache(cache)), batch_size=batch_size, workers=workers or default_workers(), show_progress=progress)
    if engine == "ray":
        if not isinstance(encoder, str):
            raise ValueError("--engine ray builds the encoder on each worker: give it as a spec string")
        import tempfile

        from imagesafety.bench.engines.ray_engine import run_on_ray

        parts = Path(str(out) + ".ray-parts") if out is not None else Path(tempfile.mkdtemp(prefix="imagesafety-ray-"))
        frame = run_on_ray("embed", encoder, {"device": device}, samples, parts, address=address, batch_size=batch_size,
                           partition_size=partition_size, progress=progress)
        frame["text"] = frame["text"].where(frame["text"].notna(), None)
    else:
        frame = runner.run(samples, description="embed")
    metadata = {
        "format": EMBEDDINGS_FORMAT, "encoder": enc.name, "embed_dim": int(enc.embed_dim), "normalized": True,
        "dataset": getattr(data, "name", str(dataset)), "images": int(len(frame)), "errors": int(frame["error"].notna().sum()),
    }
    result = Embeddings(frame, metadata, stats=runner.stats)
    if text:
        captions = frame["text"].fillna("").tolist()
        if not any(captions):
            raise ValueError("--text: this dataset has no 'text' column to embed")
        vectors = [enc.encode_texts(captions[i : i + batch_size]) for i in range(0, len(captions), batch_size)]
        result.frame["text_embedding"] = list(np.concatenate(vectors).astype(np.float32))
    if out is not None:
        result.path = write_embeddings(result, Path(out))
    return result


def write_embeddings(emb: Embeddings, path: Path) -> Path:
    """Parquet (fixed-size float32 list columns, provenance in the schema metadata) or .npz (arrays + metadata JSON)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame = emb.frame.drop(columns=[c for c in ("embedding", "text_embedding") if c in emb.frame])
    if path.suffix == ".npz":
        ok = emb.frame["error"].isna().to_numpy()
        arrays = {"embedding": np.stack([v if v is not None else np.full(emb.dim, np.nan, np.float32) for v in emb.frame["embedding"]]),
                  "ok": ok, "metadata": np.array(json.dumps(emb.metadata))}
        for column in frame.columns:
            arrays[column] = np.array([str(v) for v in frame[column]], dtype=str)
        np.savez(path, **arrays)
        return path
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for column in ("embedding", "text_embedding"):
        if column in emb.frame:
            values = [None if v is None else np.asarray(v, np.float32) for v in emb.frame[column]]
            flat = pa.array([None if v is None else v.tolist() for v in values], type=pa.list_(pa.float32(), emb.dim))
            table = table.append_column(column, flat)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: json.dumps(emb.metadata).encode()})
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
    return path


def read_embeddings(path: str | Path) -> Embeddings:
    """An embeddings file written by `embed` (Parquet or .npz), with clear errors for other files."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: embeddings file not found")
    if path.suffix == ".npz":
        arrays = np.load(path, allow_pickle=False)
        metadata = json.loads(str(arrays["metadata"]))
        columns = [k for k in arrays.files if k not in ("embedding", "ok", "metadata")]
        frame = pd.DataFrame({c: arrays[c] for c in columns}).replace({"None": None, "nan": None, "<NA>": None})
        frame["label"] = pd.to_numeric(frame["label"]).astype("Int64")
        frame["embedding"] = [v if ok else None for v, ok in zip(arrays["embedding"], arrays["ok"])]
        frame["error"] = frame["error"].where(~arrays["ok"], None)
        return Embeddings(frame, metadata, path=path)
    table = pq.read_table(path)
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError(f"{path}: not an imagesafety embeddings file (no '{METADATA_KEY.decode()}' metadata); make it with `imagesafety embed`")
    metadata = json.loads(raw)
    frame = table.to_pandas()
    for column in ("embedding", "text_embedding"):
        if column in frame:
            frame[column] = [None if v is None else np.asarray(v, np.float32) for v in frame[column]]
    frame["label"] = frame["label"].astype("Int64")
    return Embeddings(frame, metadata, path=path)
