"""One adapter from a table row (Parquet, Hugging Face) to a Sample, for every schema we read.

Schemas: UnsafeBench (`image`, `safety_label` Safe/Unsafe, `category`, `source` Laion5B/Lexica, `text`),
its external sets (`image` as a base64 string, `label` 0/1, `index`), and the generic one
(`image` or `path`, `label`, `category`, `source`, optional `id`, `split`, `pair_id`, `role`).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from imagesafety.data.batch import SampleBatch
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
    """A Sample from one row (see `columns_to_batch`)."""
    return columns_to_batch({k: [v] for k, v in row.items()}, position, dataset, split, base_dir, policy).sample(0)


def columns_to_batch(
    columns: Mapping[str, Sequence[Any]],
    first: int,
    dataset: str,
    split: str | None = None,
    base_dir: Path | None = None,
    policy: ReadPolicy = DEFAULT_POLICY,
) -> SampleBatch:
    """A batch of samples from rows given as columns (row `first` onwards); errors name the dataset and row. Each
    cell is taken from the first of its candidate columns that holds a value in that row. A row without a usable
    image cell becomes a sample with a `problem` (an error row in results) rather than stopping the run; a batch
    without any image column, or a label that is not safe/unsafe, is an error. Column by column, each distinct label,
    category and source parsed once (a dict or a parse per row cost more than reading a small image)."""
    if not any(name in columns for name in IMAGE_COLUMNS):
        raise ValueError(
            f"{dataset} row {first}: no image column (expected one of {', '.join(IMAGE_COLUMNS)}); columns: "
            f"{sorted(columns)}"
        )
    cells = _coalesce([columns[c] for c in IMAGE_COLUMNS if c in columns])
    n = len(cells)
    none = [None] * n
    labels = _coalesce([columns[c] for c in LABEL_COLUMNS if c in columns]) or none
    ids = _coalesce([columns[c] for c in ID_COLUMNS if c in columns]) or none
    extra = [(name, values) for name, values in columns.items() if name not in KNOWN_COLUMNS]
    images, problems = _images(cells, first, dataset, base_dir)
    positions = list(range(first, first + n))
    return SampleBatch(
        [str(v) if v is not None else f"{dataset}:{split or 'all'}:{p}" for v, p in zip(ids, positions)],
        images,
        _per_value(labels, lambda v: parse_label(v, f"{dataset} row {first + labels.index(v)}")),
        _per_value(columns.get("category", none), _category_slug),
        _per_value(columns.get("source", none), normalise_source),
        _texts(columns.get("split"), n, split),
        _texts(columns.get("pair_id"), n, None),
        _texts(columns.get("role"), n, None),
        [{name: values[i] for name, values in extra if _is_plain(values[i])} for i in range(n)]
        if extra
        else [{} for _ in range(n)],
        [policy] * n,
        problems,
        positions,
    )


def _coalesce(columns: list[Sequence[Any]]) -> list[Any]:
    """Each row's value from the first of `columns` that holds one (None where none does; [] for no columns)."""
    if not columns:
        return []
    merged = list(columns[0])
    for values in columns[1:]:
        merged = [a if a is not None else b for a, b in zip(merged, values)]
    return merged


def _images(cells: list[Any], first: int, dataset: str, base_dir: Path | None) -> tuple[list[Any], list[str | None]]:
    """Each row's image (bytes or a path/URL; for a row without a usable cell, where it is) and its problem."""
    if all(type(cell) is bytes for cell in cells):  # embedded images: nothing to convert
        return cells, [None] * len(cells)
    images: list[Any] = []
    problems: list[str | None] = []
    for i, cell in enumerate(cells):
        where = f"{dataset} row {first + i}"
        try:
            if cell is None:
                raise ValueError("the image cell is empty")
            images.append(image_ref(cell, where, base_dir))
            problems.append(None)
        except ValueError as exc:
            images.append(where)
            problems.append(str(exc))
    return images, problems


def _per_value(values: Sequence[Any], parse: Callable[[Any], Any]) -> list[Any]:
    """`parse` of every value, each distinct value parsed once (every value parsed when some cannot be hashed)."""
    try:
        parsed = {value: parse(value) for value in set(values)}
    except TypeError:
        return [parse(value) for value in values]
    return [parsed[value] for value in values]


def _texts(values: Sequence[Any] | None, n: int, default: str | None) -> list[str | None]:
    """A text column's values as strings, `default` where a row (or the whole batch) has none."""
    if values is None:
        return [default] * n
    return [str(v) if v not in (None, "") else default for v in values]


def _category_slug(value: Any) -> str | None:
    return slugify(str(value)) if value not in (None, "") else None


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
