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

from imagesafety.data import Dataset, dataset_name
from imagesafety.data.decoding import batched
from imagesafety.encoders import load_encoder
from imagesafety.encoders.base import Encoder, TextEncoder
from imagesafety.files import atomic_path
from imagesafety.media import FramePolicy
from imagesafety.run.engine import EngineOptions
from imagesafety.run.job import DataSelection, RunOptions, run_job
from imagesafety.run.runner import RunStats
from imagesafety.run.tasks import ModelSpec
from imagesafety.store import USE_DEFAULT_CACHE, PredictionCache

METADATA_KEY = b"imagesafety"
EMBEDDINGS_FORMAT = "imagesafety-embeddings/1"


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
        frame = pd.DataFrame(
            {
                "id": columns.get("id", [str(i) for i in range(n)]),
                "label": pd.array(labels, dtype="Int64"),
                **{c: columns.get(c, [None] * n) for c in ("category", "source", "split", "pair_id", "role")},
                "embedding": list(X),
                "error": [None] * n,
            }
        )
        return cls(
            frame, {"format": EMBEDDINGS_FORMAT, "encoder": encoder, "embed_dim": int(X.shape[1]), "normalized": False}
        )

    @property
    def ok(self) -> pd.DataFrame:
        return self.frame[self.frame["error"].isna()]

    @property
    def matrix(self) -> np.ndarray:
        ok = self.ok
        return (
            np.stack(ok["embedding"].to_list()).astype(np.float32) if len(ok) else np.zeros((0, self.dim), np.float32)
        )

    @property
    def encoder(self) -> str:
        if "encoder" not in self.metadata:
            raise ValueError(
                f"{self.path or 'embeddings'}: its metadata names no encoder; make it with `imagesafety embed`"
            )
        return self.metadata["encoder"]

    @property
    def encoder_identity(self) -> str | None:
        """The content identity of the encoder's weights (files from before identities were recorded have none)."""
        return self.metadata.get("encoder_identity")

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
    cache: PredictionCache | str | Path | None = USE_DEFAULT_CACHE,
    batch_size: int | None = 32,
    workers: int | None = None,
    device: str | None = None,
    progress: bool = True,
    engine: EngineOptions | str = "local",
    address: str | None = None,
    partition_size: int = 1000,
    allow_outside_root: bool = False,
    frames: FramePolicy | None = None,
    streaming: bool = False,
    url_hosts: list[str] | None = None,
) -> Embeddings:
    """Embed every image of `dataset` (and its captions, with `text`) and optionally write `out` (.parquet or .npz).
    An animation's or video's embedding is the mean of its frames' (and backgrounds') embeddings under `frames`."""
    enc = load_encoder(encoder, device) if isinstance(encoder, str) else encoder
    selection = DataSelection(split, categories, sources, limit, streaming, allow_outside_root, list(url_hosts or []))
    batch_size = batch_size or 32
    engine = (
        engine if isinstance(engine, EngineOptions) else EngineOptions(engine, address, partition_size=partition_size)
    )
    job = run_job(
        enc,
        dataset,
        selection,
        RunOptions(cache, batch_size, workers, progress, engine),
        remote=ModelSpec("embed", encoder, {"device": device}) if isinstance(encoder, str) else None,
        frames=frames,
        parts_dir=Path(str(out) + ".ray-parts") if out is not None else None,
        description=f"embed {enc.name}",
    )
    frame, stats, data = job.rows, job.stats, job.dataset
    if frame.empty:
        raise ValueError(
            f"no images to embed in {dataset_name(data, str(dataset))}: check the dataset and "
            "--split/--categories/--sources"
        )
    if engine.engine == "ray":
        frame["text"] = frame["text"].where(frame["text"].notna(), None)
    if int(frame["error"].notna().sum()) == len(frame):
        first = frame["error"].dropna().iloc[0]
        raise ValueError(f"every image failed ({len(frame)} of {len(frame)}); the first: {first}")
    metadata = {
        "format": EMBEDDINGS_FORMAT,
        "encoder": enc.name,
        "encoder_identity": enc.identity,
        "embed_dim": int(enc.embed_dim),
        "normalized": True,
        "dataset": dataset_name(data, str(dataset)),
        "images": int(len(frame)),
        "errors": int(frame["error"].notna().sum()),
    }
    result = Embeddings(frame, metadata, stats=stats)
    if text:
        if not isinstance(enc, TextEncoder):
            raise ValueError(f"--text: encoder {enc.name} has no text tower")
        captions = frame["text"].fillna("").tolist()
        if not any(captions):
            raise ValueError("--text: this dataset has no 'text' column to embed")
        vectors = [enc.encode_texts(chunk) for chunk in batched(captions, batch_size)]
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
        arrays = {
            "embedding": np.stack(
                [v if v is not None else np.full(emb.dim, np.nan, np.float32) for v in emb.frame["embedding"]]
            ),
            "ok": ok,
            "metadata": np.array(json.dumps(emb.metadata)),
        }
        for column in frame.columns:
            arrays[column] = np.array([str(v) for v in frame[column]], dtype=str)
        with atomic_path(path) as tmp:
            with tmp.open("wb") as fh:
                np.savez(fh, **arrays)
        return path
    table = pa.Table.from_pandas(frame, preserve_index=False)
    for column in ("embedding", "text_embedding"):
        if column in emb.frame:
            values = [None if v is None else np.asarray(v, np.float32) for v in emb.frame[column]]
            flat = pa.array([None if v is None else v.tolist() for v in values], type=pa.list_(pa.float32(), emb.dim))
            table = table.append_column(column, flat)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), METADATA_KEY: json.dumps(emb.metadata).encode()}
    )
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
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
        raise ValueError(
            f"{path}: not an imagesafety embeddings file (no '{METADATA_KEY.decode()}' metadata); make it with "
            "`imagesafety embed`"
        )
    metadata = json.loads(raw)
    frame = table.to_pandas()
    for column in ("embedding", "text_embedding"):
        if column in frame:
            frame[column] = [None if v is None else np.asarray(v, np.float32) for v in frame[column]]
    frame["label"] = frame["label"].astype("Int64")
    return Embeddings(frame, metadata, path=path)
