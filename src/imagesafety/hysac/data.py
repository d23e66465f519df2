"""Training quadruples (safe text, safe image, unsafe text, unsafe image), e.g. ViSU-Text captions with your images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from imagesafety.data.rows import image_ref
from imagesafety.data.sample import ReadPolicy, Sample
from imagesafety.run.engine import EngineOptions
from imagesafety.run.job import RunOptions, run_job
from imagesafety.run.tasks import ModelSpec

#: accepted column names -> canonical name (ViSU-Text calls the texts `safe` and `nsfw`)
ALIASES = {
    "safe": "safe_text",
    "nsfw": "unsafe_text",
    "nsfw_text": "unsafe_text",
    "unsafe": "unsafe_text",
    "nsfw_image": "unsafe_image",
    "safe_img": "safe_image",
    "unsafe_img": "unsafe_image",
}
COLUMNS = ("safe_text", "safe_image", "unsafe_text", "unsafe_image")


def read_quadruples(path: str | Path) -> pd.DataFrame:
    """A .jsonl, .csv or .parquet of quadruples; image cells are paths (relative to the file), bytes or base64."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: quadruple file not found")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix in (".jsonl", ".ndjson"):
        frame = pd.read_json(path, lines=True)
    elif suffix == ".csv":
        frame = pd.read_csv(path)
    else:
        raise ValueError(f"{path}: quadruples must be .jsonl, .csv or .parquet")
    frame = frame.rename(columns={k: v for k, v in ALIASES.items() if k in frame.columns and v not in frame.columns})
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: missing columns {missing}; need {list(COLUMNS)} (ViSU-Text's safe/nsfw name the texts)"
        )
    for i, row in frame.iterrows():
        for c in ("safe_text", "unsafe_text"):
            if not isinstance(row[c], str) or not row[c].strip():
                raise ValueError(f"{path} row {i + 1}: empty {c}")
    for c in ("safe_image", "unsafe_image"):
        frame[c] = [image_ref(v, f"{path} row {i + 1}", path.parent) for i, v in enumerate(frame[c])]
    if "split" not in frame.columns:
        frame["split"] = None
    frame = frame.reset_index(drop=True)
    frame.attrs["root"] = str(path.parent.resolve())  # image paths must stay inside the quadruple file's folder
    return frame


def image_sample(frame: pd.DataFrame, column: str, i: int, ref) -> Sample:
    """A quadruple's image as a Sample, read under the quadruple file's folder policy."""
    return Sample(f"{column}:{i}", ref, policy=ReadPolicy(root=frame.attrs.get("root")))


def load_visu_text(split: str = "train"):
    """ViSU-Text (`aimagelab/ViSU-Text`: safe, nsfw, tag) from the Hub; pair its rows with your own images."""
    try:
        import datasets
    except ImportError as exc:
        raise ImportError("ViSU-Text needs the 'hf' extra: pip install 'imagesafety[hf]'") from exc
    return datasets.load_dataset("aimagelab/ViSU-Text", split=split)


@dataclass
class QuadrupleEmbeddings:
    """Encoder embeddings of the four columns, (n, d) each, with the split of each row."""

    safe_text: np.ndarray
    safe_image: np.ndarray
    unsafe_text: np.ndarray
    unsafe_image: np.ndarray
    split: np.ndarray
    encoder: str
    encoder_identity: str | None = None
    image_sha256: np.ndarray | None = None  # (n, 2): the safe and the unsafe image of each row

    def __len__(self) -> int:
        return len(self.safe_text)

    def subset(self, index: np.ndarray) -> QuadrupleEmbeddings:
        hashes = None if self.image_sha256 is None else self.image_sha256[index]
        return QuadrupleEmbeddings(
            *(getattr(self, c)[index] for c in (*COLUMNS, "split")), self.encoder, self.encoder_identity, hashes
        )

    def check(self) -> None:
        for c in COLUMNS:
            if not np.isfinite(getattr(self, c)).all():
                raise ValueError(f"{c} embeddings contain NaN or Inf")


def embed_quadruples(
    frame: pd.DataFrame,
    encoder,
    cache=None,
    batch_size: int = 64,
    progress: bool = True,
    *,
    engine: EngineOptions = EngineOptions(),
    workers: int | None = None,
    remote: ModelSpec | None = None,
) -> QuadrupleEmbeddings:
    """Embed texts with the encoder and images through the engine (`run_job`: the cache, and Ray workers that build
    `remote`); rows with unreadable images are refused."""
    from imagesafety.data.decoding import batched

    def texts(column: str) -> np.ndarray:
        chunks = batched(frame[column].tolist(), batch_size)
        return np.concatenate([encoder.encode_texts(chunk) for chunk in chunks])

    hashes = {}

    def images(column: str) -> np.ndarray:
        samples = [image_sample(frame, column, i, ref) for i, ref in enumerate(frame[column])]
        options = RunOptions(cache, batch_size, workers, progress, engine)
        rows = run_job(encoder, samples, options=options, remote=remote, description=f"embed {column}").rows
        bad = rows[rows["error"].notna()]
        if len(bad):
            raise ValueError(
                f"{len(bad)} unreadable images in {column}, e.g. row {int(bad.index[0]) + 1}: {bad['error'].iloc[0]}"
            )
        hashes[column] = rows["sha256"].to_numpy(dtype=object)
        return np.stack(rows["embedding"].to_list())

    out = QuadrupleEmbeddings(
        texts("safe_text"),
        images("safe_image"),
        texts("unsafe_text"),
        images("unsafe_image"),
        frame["split"].to_numpy(dtype=object),
        encoder.name,
        encoder.identity,
        np.stack([hashes["safe_image"], hashes["unsafe_image"]], axis=1),
    )
    out.check()
    return out


def image_hashes(frame: pd.DataFrame, rows: np.ndarray) -> list[str]:
    """sha256 of the safe and unsafe images of the given rows (what a trained model's card lists)."""
    from imagesafety.images import sha256_bytes

    found = []
    for column in ("safe_image", "unsafe_image"):
        for i in np.asarray(rows, dtype=int):
            found.append(sha256_bytes(image_sample(frame, column, int(i), frame[column].iloc[i]).load_bytes()))
    return found
