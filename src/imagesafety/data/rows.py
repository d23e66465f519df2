"""One adapter from a table row (Parquet, Hugging Face) to a Sample, for every schema we read.

Schemas: UnsafeBench (`image`, `safety_label` Safe/Unsafe, `category`, `source` Laion5B/Lexica, `text`),
its external sets (`image` as a base64 string, `label` 0/1, `index`), and the generic one
(`image` or `path`, `label`, `category`, `source`, optional `id`, `split`, `pair_id`, `role`).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
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
    if isinstance(value, Mapping):
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


def first_present(row: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str | None, Any]:
    for name in names:
        if name in row and row[name] is not None:
            return name, row[name]
    return None, None


def row_to_sample(
    row: Mapping[str, Any],
    position: int,
    dataset: str,
    split: str | None = None,
    base_dir: Path | None = None,
    policy: ReadPolicy = DEFAULT_POLICY,
) -> Sample:
    """A Sample from one row; errors name the dataset and row. A row without a usable image cell becomes a sample
    with a `problem` (an error row in results) rather than stopping the run; a row without any image column, or
    with a label that is not safe/unsafe, is an error."""
    where = f"{dataset} row {position}"
    if not any(name in row for name in IMAGE_COLUMNS):
        raise ValueError(
            f"{where}: no image column (expected one of {', '.join(IMAGE_COLUMNS)}); columns: {sorted(row)}"
        )
    image_col, image_value = first_present(row, IMAGE_COLUMNS)
    label_col, label_value = first_present(row, LABEL_COLUMNS)
    _, id_value = first_present(row, ID_COLUMNS)
    category = row.get("category")
    metadata = {k: v for k, v in row.items() if k not in KNOWN_COLUMNS and _is_plain(v)}
    problem, image = None, b""
    if image_col is None:
        problem = "the image cell is empty"
    else:
        try:
            image = image_ref(image_value, where, base_dir)
        except ValueError as exc:
            problem = str(exc)
    return Sample(
        id=str(id_value) if id_value is not None else f"{dataset}:{split or 'all'}:{position}",
        image=image if problem is None else where,
        label=parse_label(label_value, where) if label_col else None,
        category=slugify(str(category)) if category not in (None, "") else None,
        source=normalise_source(row.get("source")),
        split=str(row["split"]) if row.get("split") not in (None, "") else split,
        pair_id=str(row["pair_id"]) if row.get("pair_id") not in (None, "") else None,
        role=str(row["role"]) if row.get("role") not in (None, "") else None,
        metadata=metadata,
        policy=policy,
        problem=problem,
        position=position,
    )


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
