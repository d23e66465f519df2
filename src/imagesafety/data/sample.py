"""The Sample record every loader yields, how its image may be read, and the Dataset protocol."""

from __future__ import annotations

import functools
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from imagesafety.images import ImageDecodeError

SAFE, UNSAFE = 0, 1
#: largest image file read from disk or a URL; larger files become error rows without being read
MAX_FILE_BYTES = 256 * 1024 * 1024
URL_TIMEOUT_S = 30


@dataclass(frozen=True)
class ReadPolicy:
    """How a sample's image may be read: paths must stay inside `root` (symlinks resolved; None: anywhere), files
    and URL bodies are read up to `max_bytes`, and URLs may reach private addresses only for `url_hosts`."""

    root: str | None = None
    max_bytes: int = MAX_FILE_BYTES
    url_hosts: tuple[str, ...] = ()


DEFAULT_POLICY = ReadPolicy()


@dataclass
class Sample:
    """One image with its labels; the image itself (path, bytes or URL) is read only when needed.

    `problem`, when set, is why the row has no usable image (a null cell, an undecodable file name): reading it
    raises, so the row becomes an error row that names it instead of stopping the run."""

    id: str
    image: str | Path | bytes
    label: int | None = None  # 1 = unsafe, 0 = safe, None = unknown
    category: str | None = None
    source: str | None = None  # "real", "generated" or another string
    split: str | None = None
    pair_id: str | None = None
    role: str | None = None  # "original" or "edited"
    metadata: dict[str, Any] = field(default_factory=dict)
    policy: ReadPolicy = DEFAULT_POLICY
    problem: str | None = None
    position: int | None = None  # the row's index in its file or split (how published responses name images)

    def load_bytes(self) -> bytes:
        """The encoded image bytes: the file (bounded, regular files only, inside the policy's root) or the URL
        (through the guarded fetcher)."""
        if self.problem:
            raise ImageDecodeError(f"{self.image_ref}: {self.problem}")
        ref = self.image
        if isinstance(ref, (bytes, bytearray, memoryview)):
            return bytes(ref)
        if isinstance(ref, str) and ref.startswith(("http://", "https://")):
            from imagesafety.net import FetchError, fetch_url

            try:
                return fetch_url(
                    ref,
                    allow_hosts=list(self.policy.url_hosts),
                    allow_private=True,
                    max_bytes=self.policy.max_bytes,
                    timeout_s=URL_TIMEOUT_S,
                )
            except FetchError as exc:
                raise ImageDecodeError(str(exc)) from None
        return read_image_file(ref, self.policy)

    @property
    def image_ref(self) -> str:
        """A printable reference to the image (path or URL; '<bytes>' for embedded images)."""
        return image_ref_of(self.image)

    def to_record(self) -> dict[str, Any]:
        """A flat, JSON/Arrow-friendly dict (the form engines ship samples in); inverse of `from_record`."""
        image = bytes(self.image) if isinstance(self.image, (bytes, bytearray, memoryview)) else str(self.image)
        return {
            "id": self.id,
            "image": image,
            "label": -1 if self.label is None else int(self.label),
            "category": self.category,
            "source": self.source,
            "split": self.split,
            "pair_id": self.pair_id,
            "role": self.role,
            "metadata": json.dumps(self.metadata, default=str),
            "policy": json.dumps(asdict(self.policy)),
            "problem": self.problem,
            "position": -1 if self.position is None else int(self.position),
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Sample:
        label = record["label"]
        policy = json.loads(record["policy"]) if record.get("policy") else {}
        return cls(
            record["id"],
            record["image"],
            None if label is None or int(label) < 0 else int(label),
            record["category"],
            record["source"],
            record["split"],
            record["pair_id"],
            record["role"],
            json.loads(record["metadata"] or "{}"),
            ReadPolicy(
                policy.get("root"), int(policy.get("max_bytes", MAX_FILE_BYTES)), tuple(policy.get("url_hosts", ()))
            ),
            record.get("problem"),
            None if record.get("position", -1) in (None, -1) else int(record["position"]),
        )


def image_ref_of(image: str | Path | bytes) -> str:
    """A printable reference to an image cell: its path or URL, '<bytes>' for embedded bytes."""
    return "<bytes>" if isinstance(image, (bytes, bytearray, memoryview)) else str(image)


def read_image_file(path: str | Path, policy: ReadPolicy = DEFAULT_POLICY) -> bytes:
    """A file's bytes, refusing (as ImageDecodeError) paths outside the policy's root, anything but a regular file
    (a named pipe would block forever), and files over the size limit, before reading them."""
    path = str(path)
    if policy.root is not None:
        real, root = os.path.realpath(path), os.path.realpath(policy.root)
        if os.path.commonpath([real, root]) != root:
            raise ImageDecodeError(
                f"{path}: outside the dataset's folder {policy.root} (pass --allow-outside-root to read it)"
            )
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read file: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ImageDecodeError(f"{path}: not a regular file")
        if info.st_size > policy.max_bytes:
            raise ImageDecodeError(
                f"{path}: {info.st_size} bytes exceeds the limit of {policy.max_bytes} for one image"
            )
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(policy.max_bytes + 1)
        if len(data) > policy.max_bytes:
            raise ImageDecodeError(f"{path}: more than {policy.max_bytes} bytes")
        return data
    except OSError as exc:
        raise ImageDecodeError(f"{path}: cannot read file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


@runtime_checkable
class Dataset(Protocol):
    """A re-iterable, lazily loaded collection of samples with a name."""

    name: str

    def __iter__(self) -> Iterator[Sample]: ...


def parse_label(value: Any, where: str) -> int | None:
    """0/1 from the many spellings datasets use ('Unsafe', 'safe', 1, '0', 1.0, '1.0', True, ...); None when missing."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    label = _label_of_text(str(value))
    if label == -1:
        raise ValueError(f"{where}: label {value!r} is not one of safe/unsafe/0/1")
    return label


@functools.lru_cache(maxsize=1024)  # a dataset's few label spellings, once per row
def _label_of_text(value: str) -> int | None:
    """0, 1, None (missing), or -1 (not a label)."""
    text = value.strip().lower()
    if text in ("", "none", "unknown", "nan", "null"):
        return None
    if text in ("unsafe", "nsfw", "true", "yes", "positive"):
        return UNSAFE
    if text in ("safe", "sfw", "false", "no", "negative"):
        return SAFE
    try:
        number = float(text)
    except ValueError:
        number = None
    return int(number) if number in (0.0, 1.0) else -1


SOURCE_ALIASES = {
    "laion5b": "real",
    "laion": "real",
    "lexica": "generated",
    "ai": "generated",
    "synthetic": "generated",
    "genai": "generated",
}


def normalise_source(value: Any) -> str | None:
    """'Laion5B' -> 'real', 'Lexica' -> 'generated' (UnsafeBench's names); other strings kept as given."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    return _source_of_text(str(value))


@functools.lru_cache(maxsize=1024)  # a dataset's few source names, once per row
def _source_of_text(value: str) -> str | None:
    text = value.strip()
    return SOURCE_ALIASES.get(text.lower().replace("-", "").replace(" ", ""), text) if text else None


def dataset_name(dataset: Any, default: str) -> str:
    """The dataset's name (every Dataset has one); `default` for plain iterables of samples."""
    return dataset.name if isinstance(dataset, Dataset) else default


def relative_root(path: Path) -> str:
    """The folder a dataset's relative paths are confined to."""
    return str(Path(path).resolve())


@runtime_checkable
class ResolvesPaths(Protocol):
    """Datasets whose relative image paths are resolved against a folder (manifests, Parquet files)."""

    base_dir: Path | None
