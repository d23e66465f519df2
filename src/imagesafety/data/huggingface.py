"""Hugging Face `datasets`: UnsafeBench (`yiting/UnsafeBench`), its external sets, and any dataset in our schemas.

The spec is a hub id (`yiting/UnsafeBench`, gated: log in with `huggingface-cli login` or set HF_TOKEN)
or a local folder of data files in the same schema, for air-gapped use.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from imagesafety.data.rows import row_to_sample
from imagesafety.data.sample import ReadPolicy, Sample
from imagesafety.hub import apply_offline_mode


def _require_datasets():
    try:
        import datasets
    except ImportError as exc:
        raise ImportError("Hugging Face datasets need the 'hf' extra: pip install 'imagesafety[hf]'") from exc
    return datasets


class HuggingFaceDataset:
    """Rows of a Hugging Face dataset, all splits unless `splits` names some; streamed when `streaming`; `row_map`
    turns a benchmark's own row schema into ours first."""

    def __init__(
        self,
        path: str,
        config: str | None = None,
        splits: list[str] | None = None,
        streaming: bool = False,
        name: str | None = None,
        policy: ReadPolicy | None = None,
        row_map: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None,
    ):
        self.path = path
        self.config = config
        self.splits = splits
        self.streaming = streaming
        self.name = name or path.rstrip("/").split("/")[-1]
        self.policy = policy if policy is not None else ReadPolicy()
        self._loaded: dict[str, Any] | None = None
        self.row_map = row_map

    def load(self) -> dict[str, Any]:
        """The split name -> `datasets` dataset mapping, with image columns left undecoded (we hash the bytes)."""
        if self._loaded is None:
            datasets = _require_datasets()
            apply_offline_mode()
            try:
                loaded = datasets.load_dataset(self.path, self.config, streaming=self.streaming)
            except Exception as exc:
                raise ValueError(
                    f"cannot load Hugging Face dataset {self.path!r}: {exc}. "
                    "Gated datasets such as yiting/UnsafeBench need `huggingface-cli login` (or HF_TOKEN) "
                    "after accepting their terms; offline, pass a local folder of its data files."
                ) from exc
            wanted = self.splits or list(loaded.keys())
            missing = [s for s in wanted if s not in loaded]
            if missing:
                raise ValueError(f"{self.path}: no split {missing}; available: {list(loaded.keys())}")
            self._loaded = {s: _undecoded(loaded[s], datasets) for s in wanted}
        return self._loaded

    def __iter__(self) -> Iterator[Sample]:
        for split, ds in self.load().items():
            for position, row in enumerate(ds):
                row = self.row_map(row) if self.row_map is not None else row
                yield row_to_sample(row, position, f"{self.name}[{split}]", split=split, policy=self.policy)

    def __len__(self) -> int:
        if self.streaming:
            raise TypeError("streaming datasets have no known length")
        return sum(len(ds) for ds in self.load().values())


def _undecoded(ds: Any, datasets: Any) -> Any:
    for column, feature in (ds.features or {}).items():
        if isinstance(feature, datasets.Image):
            ds = ds.cast_column(column, datasets.Image(decode=False))
    return ds


def from_spec(
    path: str, *, splits: list[str] | None = None, streaming: bool = False, policy: ReadPolicy | None = None
) -> HuggingFaceDataset:
    """`hf:ID[:CONFIG]` (a hub id or a local folder of the dataset's data files)."""
    ident, _, config = path.partition(":")
    return HuggingFaceDataset(ident, config or None, splits=splits, streaming=streaming, policy=policy)
