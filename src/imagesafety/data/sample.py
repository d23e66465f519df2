"""The Sample record every loader yields, and the Dataset protocol."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from imagesafety.images import ImageDecodeError, read_image_bytes

SAFE, UNSAFE = 0, 1

URL_TIMEOUT_S = 30


@dataclass
class Sample:
    """One image with its labels; the image itself (path, bytes or URL) is read only when needed."""

    id: str
    image: str | Path | bytes
    label: int | None = None  # 1 = unsafe, 0 = safe, None = unknown
    category: str | None = None
    source: str | None = None  # "real", "generated" or another string
    split: str | None = None
    pair_id: str | None = None
    role: str | None = None  # "original" or "edited"
    metadata: dict[str, Any] = field(default_factory=dict)

    def load_bytes(self) -> bytes:
        """The encoded image bytes (reads the file or fetches the URL)."""
        ref = self.image
        if isinstance(ref, str) and ref.startswith(("http://", "https://")):
            try:
                with urllib.request.urlopen(ref, timeout=URL_TIMEOUT_S) as resp:  # noqa: S310 - user-provided dataset URL
                    return resp.read()
            except OSError as exc:
                raise ImageDecodeError(f"{ref}: cannot fetch: {exc}") from exc
        return read_image_bytes(ref)

    @property
    def image_ref(self) -> str:
        """A printable reference to the image (path or URL; '<bytes>' for embedded images)."""
        return "<bytes>" if isinstance(self.image, (bytes, bytearray)) else str(self.image)


@runtime_checkable
class Dataset(Protocol):
    """A re-iterable, lazily loaded collection of samples."""

    name: str

    def __iter__(self) -> Iterator[Sample]: ...


def parse_label(value: Any, where: str) -> int | None:
    """0/1 from the many spellings datasets use ('Unsafe', 'safe', 1, '0', True, ...); None when missing."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    text = str(value).strip().lower()
    if text in ("", "none", "unknown", "nan"):
        return None
    if text in ("1", "unsafe", "nsfw", "true", "yes", "positive"):
        return UNSAFE
    if text in ("0", "safe", "sfw", "false", "no", "negative"):
        return SAFE
    raise ValueError(f"{where}: label {value!r} is not one of safe/unsafe/0/1")


SOURCE_ALIASES = {"laion5b": "real", "laion": "real", "lexica": "generated", "ai": "generated", "synthetic": "generated"}


def normalise_source(value: Any) -> str | None:
    """'Laion5B' -> 'real', 'Lexica' -> 'generated' (UnsafeBench's names); other strings kept as given."""
    if value is None or (isinstance(value, float) and value != value) or str(value).strip() == "":
        return None
    text = str(value).strip()
    return SOURCE_ALIASES.get(text.lower().replace("-", "").replace(" ", ""), text)
