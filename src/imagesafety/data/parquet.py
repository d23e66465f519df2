"""Parquet datasets with embedded image bytes (or paths), read file by file and row group by row group, a few rows at
a time, so memory is bounded by a row group whatever the dataset's size (the dataset scanner's read-ahead is not:
it held 1.3 GB reading 900 MB of 1 MB images)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from imagesafety.data.batch import SampleBatch
from imagesafety.data.rows import columns_to_batch
from imagesafety.data.sample import ReadPolicy, Sample, relative_root

#: rows converted to Python at a time: about this many bytes of a row group, within [16, 4096] rows
READ_BATCH_BYTES = 8 << 20
#: bytes read from storage per request (the reader streams column chunks instead of buffering whole row groups)
READ_BUFFER_BYTES = 1 << 20


class ParquetDataset:
    """One Parquet file, a folder of them, or a remote path pyarrow understands (s3://, gs://)."""

    def __init__(
        self, path: str | Path, name: str | None = None, policy: ReadPolicy | None = None, streaming: bool = False
    ):
        self.path = str(path)
        self.streaming = streaming
        self.name = name or Path(self.path.rstrip("/")).stem
        local = Path(self.path)
        source = (
            sorted(str(p) for p in local.rglob("*.parquet")) if local.is_dir() else self.path
        )  # skip non-Parquet files
        try:
            self.table = pads.dataset(source, format="parquet")
        except (OSError, ValueError) as exc:
            raise ValueError(f"{self.path}: cannot open as Parquet ({exc})") from exc
        self.base_dir = (local if local.is_dir() else local.parent).resolve() if local.exists() else None
        self.policy = (
            policy if policy is not None else ReadPolicy(root=relative_root(self.base_dir) if self.base_dir else None)
        )

    def __iter__(self) -> Iterator[Sample]:
        for batch in self.batches():
            yield from batch.samples()

    def batches(self) -> Iterator[SampleBatch]:
        """The rows as columns, a read batch at a time (no Sample per row)."""
        position = 0
        for file in self.table.files:
            with self.table.filesystem.open_input_file(file) as source:
                reader = pq.ParquetFile(source, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
                for batch in reader.iter_batches(batch_size=batch_rows(reader.metadata)):
                    columns = {name: python_values(batch.column(name)) for name in batch.schema.names}
                    yield columns_to_batch(columns, position, self.name, base_dir=self.base_dir, policy=self.policy)
                    position += batch.num_rows

    def __len__(self) -> int:
        """Rows, from the files' footers; a streamed dataset has no length (nothing is read ahead of the run)."""
        if self.streaming:
            raise TypeError("a streamed dataset has no known length")
        return self.table.count_rows()


def python_values(column: pa.Array) -> list:
    """A column as Python values; an image struct `{bytes, path}` whose every row has bytes as the bytes alone (a
    dict per row cost as much as hashing a small image); any other column, or a struct with a row without bytes,
    as it is."""
    kind = column.type
    if pa.types.is_struct(kind) and kind.get_field_index("bytes") >= 0 and column.null_count == 0:
        data = column.field("bytes").to_pylist()
        if all(data):
            return data
    return column.to_pylist()


def batch_rows(metadata: pq.FileMetaData) -> int:
    """Rows per conversion for a file: small batches of large images (memory), large batches of small ones (speed)."""
    rows = sum(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
    size = sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))
    per_row = size / rows if rows else 1
    return int(min(4096, max(16, READ_BATCH_BYTES // max(per_row, 1))))


def from_spec(path: str, *, streaming: bool = False, policy: ReadPolicy | None = None) -> ParquetDataset:
    return ParquetDataset(path, policy=policy, streaming=streaming)
