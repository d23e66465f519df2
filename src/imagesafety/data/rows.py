"""One adapter from a table row (Parquet, Hugging Face) to a Sample, for every schema we read.

Schemas: UnsafeBench (`image`, `safety_label` Safe/Unsafe, `category`, `source` Laion5B/Lexica, `text`),
its external sets (`image` as a base64 string, `label` 0/1, `index`), and the generic one
(`image` or `path`, `label`, `category`, `source`, optional `id`, `split`, `pair_id`, `role`).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from imagesafety.data.sample import DEFAULT_POLICY, ReadPolicy, Sample, normalise_source, parse_label
from imagesafety.taxonomy import slugify

IMAGE_COLUMNS = ("image", "img", "path", "image_path", "file", "filename")
LABEL_COLUMNS = ("label", "safety_label", "unsafe", "is_unsafe")
ID_COLUMNS = ("id", "index", "image_id", "sample_id")
MAX_PATH_CHARS = 1024
KNOWN_COLUMNS = {*IMAGE_COLUMNS, *LABEL_COLUMNS, *ID_COLUMNS, "category", "source", "split", "pair_id", "role"}


def image_ref(value: Any, where: str, base_dir: Path | None = None) -> str | bytes:
    """Bytes or a path/URL from an image cell: raw bytes, {bytes, path} structs, base64 strings, paths, PIL images."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, dict) or isinstance(value, Mapping):  # a dict first: the ABC check costs a small image's read
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            return image_ref(str(value["path"]), where, base_dir)
        raise ValueError(f"{where}: image cell has neither bytes nor path")
    if hasattr(value, "save") and hasattr(value, "mode"):  # a decoded PIL image
        buf = io.BytesIO()
        value.save(buf, format="PNG")
        return buf.getvalue()
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("data:") and "," in text:
            text = text.split(",", 1)[1]
        elif len(text) <= MAX_PATH_CHARS and decoded_base64_image(text) is None:  # a path or URL
            is_relative = "://" not in text and not Path(text).is_absolute()
            return str(base_dir / text) if base_dir is not None and is_relative else text
        try:
            return base64.b64decode(text, validate=False)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"{where}: image string is neither a path nor base64 ({exc})") from exc
    raise ValueError(f"{where}: unsupported image cell of type {type(value).__name__}")


IMAGE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"RIFF", b"BM", b"II*\x00", b"MM\x00*")


def decoded_base64_image(text: str) -> bytes | None:
    """The bytes if `text` is base64 of a known image format, else None (short base64 vs a path)."""
    if "." in text or len(text) % 4:
        return None
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data if data.startswith(IMAGE_MAGIC) else None


def row_to_sample(
    row: Mapping[str, Any],
    position: int,
    dataset: str,
    split: str | None = None,
    base_dir: Path | None = None,
    policy: ReadPolicy = DEFAULT_POLICY,
) -> Sample:
    """A Sample from one row (see `columns_to_samples`)."""
    return columns_to_samples({k: [v] for k, v in row.items()}, position, dataset, split, base_dir, policy)[0]


def columns_to_samples(
    columns: Mapping[str, Sequence[Any]],
    first: int,
    dataset: str,
    split: str | None = None,
    base_dir: Path | None = None,
    policy: ReadPolicy = DEFAULT_POLICY,
) -> list[Sample]:
    """Samples from a batch of rows given as columns (row `first` onwards); errors name the dataset and row. Each
    cell is taken from the first of its candidate columns that holds a value in that row. A row without a usable
    image cell becomes a sample with a `problem` (an error row in results) rather than stopping the run; a batch
    without any image column, or a label that is not safe/unsafe, is an error. Column by column (a dict per row cost
    more than reading a small image); each label, category and source spelling is parsed once (their parsers are
    memoised)."""
    if not any(name in columns for name in IMAGE_COLUMNS):
        raise ValueError(
            f"{dataset} row {first}: no image column (expected one of {', '.join(IMAGE_COLUMNS)}); columns: "
            f"{sorted(columns)}"
        )
    images = [columns[c] for c in IMAGE_COLUMNS if c in columns]
    labels = [columns[c] for c in LABEL_COLUMNS if c in columns]
    ids = [columns[c] for c in ID_COLUMNS if c in columns]
    extra = [(name, values) for name, values in columns.items() if name not in KNOWN_COLUMNS]
    none = [None] * len(images[0])
    categories, sources = columns.get("category", none), columns.get("source", none)
    splits, pairs, roles = columns.get("split", none), columns.get("pair_id", none), columns.get("role", none)
    out = []
    for i in range(len(images[0])):
        position = first + i
        where = f"{dataset} row {position}"
        image_value = _first(images, i)
        problem, image = None, b""
        if image_value is None:
            problem = "the image cell is empty"
        else:
            try:
                image = image_ref(image_value, where, base_dir)
            except ValueError as exc:
                problem = str(exc)
        label_value = _first(labels, i)
        id_value = _first(ids, i)
        out.append(
            Sample(
                str(id_value) if id_value is not None else f"{dataset}:{split or 'all'}:{position}",
                image if problem is None else where,
                parse_label(label_value, where),
                _category_slug(categories[i]),
                normalise_source(sources[i]),
                str(splits[i]) if splits[i] not in (None, "") else split,
                str(pairs[i]) if pairs[i] not in (None, "") else None,
                str(roles[i]) if roles[i] not in (None, "") else None,
                {name: values[i] for name, values in extra if _is_plain(values[i])} if extra else {},
                policy,
                problem,
                position,
            )
        )
    return out


def _category_slug(value: Any) -> str | None:
    return slugify(str(value)) if value not in (None, "") else None


def _first(columns: list[Sequence[Any]], i: int) -> Any:
    """Row i's value in the first of `columns` that holds one (None if none does)."""
    for values in columns:
        if values[i] is not None:
            return values[i]
    return None


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
