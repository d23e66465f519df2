"""Hash banks: hashes of known images with a label and a free-form source per entry (never the images), searched with
FAISS binary indexes (exact `IndexBinaryFlat` by default; `hnsw` / `ivf` as options).

A bank is a folder: `bank.json` (format, version, algorithms, threshold per algorithm, index kind, entry count),
`hashes-ALGORITHM.npy` (N x bytes, packed bits) and `entries.parquet` (id, label, source). It loads in well under a
second for a million entries. A query matches the nearest entry within the bank's threshold under any of its
algorithms; hashes below the algorithm's minimum quality are unhashable and never matched.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from imagesafety.hashes.compute import ALGORITHMS, BITS, DEFAULT_THRESHOLD, MIN_QUALITY, ImageHash

FORMAT, VERSION = "imagesafety-hash-bank", 1
INDEXES = ("flat", "hnsw", "ivf")


class BankError(ValueError):
    """A bank that cannot be used as asked: damaged, or built with other settings (named in the message)."""


@dataclass
class Match:
    """The nearest bank entry within the threshold: its row, id, label, source, distance and the algorithm that
    matched."""

    entry: int
    id: str
    label: str
    source: str
    distance: int
    algorithm: str


@dataclass
class HashBank:
    """Hashes (one array per algorithm, rows aligned with `ids`/`labels`/`sources`) and how they are matched."""

    algorithms: tuple[str, ...]
    thresholds: dict[str, int]
    hashes: dict[str, np.ndarray]
    ids: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    index_kind: str = "flat"
    path: Path | None = None
    _indexes: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for algorithm in self.algorithms:
            if algorithm not in ALGORITHMS:
                raise BankError(f"unknown hash algorithm {algorithm!r}; algorithms: {', '.join(ALGORITHMS)}")
        if self.index_kind not in INDEXES:
            raise BankError(f"unknown index {self.index_kind!r}; indexes: {', '.join(INDEXES)}")

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def empty(
        cls, algorithms: tuple[str, ...], thresholds: dict[str, int] | None = None, index_kind: str = "flat"
    ) -> HashBank:
        thresholds = {a: int((thresholds or {}).get(a, DEFAULT_THRESHOLD[a])) for a in algorithms}
        return cls(
            tuple(algorithms),
            thresholds,
            {a: np.zeros((0, BITS[a] // 8), np.uint8) for a in algorithms},
            index_kind=index_kind,
        )

    def add(self, rows: list[tuple[str, str, str, dict[str, ImageHash]]]) -> None:
        """Entries (id, label, source, hash per algorithm); an entry without a label is refused."""
        for entry_id, label, _, _ in rows:
            if label is None or not str(label).strip():
                raise BankError(f"{entry_id}: a bank entry needs a label (its category); none given (use --label)")
        if not rows:
            return
        for algorithm in self.algorithms:
            self.hashes[algorithm] = np.vstack(
                [self.hashes[algorithm], np.stack([h[algorithm].bits for *_, h in rows])]
            )
        self.ids += [str(r[0]) for r in rows]
        self.labels += [str(r[1]) for r in rows]
        self.sources += [str(r[2]) for r in rows]
        self._indexes.clear()

    def remove(self, ids: set[str]) -> int:
        keep = [i for i, entry_id in enumerate(self.ids) if entry_id not in ids]
        removed = len(self.ids) - len(keep)
        for algorithm in self.algorithms:
            self.hashes[algorithm] = self.hashes[algorithm][keep]
        self.ids, self.labels, self.sources = (
            [column[i] for i in keep] for column in (self.ids, self.labels, self.sources)
        )
        self._indexes.clear()
        return removed

    def index(self, algorithm: str):
        """The FAISS binary index over one algorithm's hashes (built on first use)."""
        if algorithm not in self._indexes:
            import faiss

            bits, data = BITS[algorithm], self.hashes[algorithm]
            if self.index_kind == "hnsw":
                index = faiss.IndexBinaryHNSW(bits, 16)
            elif self.index_kind == "ivf" and len(data) >= 64:
                nlist = max(1, int(np.sqrt(len(data))))
                index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(bits), bits, nlist)
                index.train(data)
                index.nprobe = max(1, nlist // 8)
            else:
                index = faiss.IndexBinaryFlat(bits)
            if len(data):
                index.add(np.ascontiguousarray(data))
            self._indexes[algorithm] = index
        return self._indexes[algorithm]

    def search(self, algorithm: str, queries: np.ndarray, k: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """(distances, rows) of the k nearest entries of each packed query (rows -1 where the bank has fewer)."""
        if not len(self):
            return np.full((len(queries), k), 1 << 30), np.full((len(queries), k), -1)
        return self.index(algorithm).search(np.ascontiguousarray(queries, dtype=np.uint8), k)

    def match(self, hashes: dict[str, list[ImageHash]]) -> Match | None:
        """The nearest entry within the threshold over the given hashes (several per algorithm: dihedral variants);
        unreliable hashes (low quality) are never matched on."""
        best: Match | None = None
        for algorithm in self.algorithms:
            usable = [h for h in hashes.get(algorithm, []) if h.quality >= MIN_QUALITY[algorithm]]
            if not usable:
                continue
            distances, rows = self.search(algorithm, np.stack([h.bits for h in usable]))
            for d, row in zip(distances[:, 0], rows[:, 0]):
                if row >= 0 and d <= self.thresholds[algorithm] and (best is None or d < best.distance):
                    best = Match(int(row), self.ids[row], self.labels[row], self.sources[row], int(d), algorithm)
        return best

    def save(self, path: str | Path) -> Path:
        import pandas as pd

        from imagesafety.files import atomic_path, write_json

        folder = Path(path)
        folder.mkdir(parents=True, exist_ok=True)
        for algorithm in self.algorithms:
            with atomic_path(folder / f"hashes-{algorithm}.npy") as tmp:
                with open(tmp, "wb") as fh:
                    np.save(fh, self.hashes[algorithm])
        with atomic_path(folder / "entries.parquet") as tmp:
            pd.DataFrame({"id": self.ids, "label": self.labels, "source": self.sources}).to_parquet(tmp, index=False)
        write_json(
            folder / "bank.json",
            {
                "format": FORMAT,
                "version": VERSION,
                "algorithms": list(self.algorithms),
                "thresholds": self.thresholds,
                "min_quality": {a: MIN_QUALITY[a] for a in self.algorithms},
                "index": self.index_kind,
                "entries": len(self),
                "saved": time.time(),
            },
        )
        self.path = folder
        return folder


def load_bank(
    path: str | Path, *, algorithm: str | None = None, threshold: int | None = None, index: str | None = None
) -> HashBank:
    """A bank from its folder; asking for another algorithm or threshold than it was built with is refused (rebuild
    it)."""
    import pyarrow.parquet as pq

    folder = Path(path)
    meta_file = folder / "bank.json"
    if not meta_file.is_file():
        raise BankError(f"{folder}: not a hash bank (no bank.json; build one with `imagesafety hashes build`)")
    try:
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != FORMAT:
            raise BankError(f"{meta_file}: not an imagesafety hash bank (format {meta.get('format')!r})")
        if meta.get("version") != VERSION:
            raise BankError(
                f"{meta_file}: hash bank format version {meta.get('version')!r}; this imagesafety reads version "
                f"{VERSION}"
            )
        algorithms = tuple(meta["algorithms"])
        hashes = {a: np.load(folder / f"hashes-{a}.npy", allow_pickle=False) for a in algorithms}
        table = pq.read_table(folder / "entries.parquet", columns=["id", "label", "source"])
    except BankError:
        raise
    except Exception as exc:
        raise BankError(f"{folder}: damaged hash bank ({type(exc).__name__}: {exc})") from None
    count = int(meta["entries"])
    for a, data in hashes.items():
        if data.shape != (count, BITS[a] // 8) or data.dtype != np.uint8:
            raise BankError(
                f"{folder / f'hashes-{a}.npy'}: damaged hash bank (shape {data.shape}, expected ({count}, "
                f"{BITS[a] // 8}))"
            )
    if table.num_rows != count:
        raise BankError(
            f"{folder / 'entries.parquet'}: damaged hash bank ({table.num_rows} entries, bank.json says {count})"
        )
    if algorithm is not None and algorithm not in ("both", *algorithms):
        raise BankError(
            f"{folder}: the bank was built with {', '.join(algorithms)}, not {algorithm}; build another bank for "
            f"{algorithm}"
        )
    thresholds = {a: int(t) for a, t in meta["thresholds"].items()}
    if threshold is not None and any(t != threshold for t in thresholds.values()):
        raise BankError(
            f"{folder}: the bank was built with threshold {thresholds}, not {threshold}; rebuild it with --threshold "
            f"{threshold}"
        )
    return HashBank(
        algorithms,
        thresholds,
        hashes,
        table.column("id").to_pylist(),
        table.column("label").to_pylist(),
        table.column("source").to_pylist(),
        index or meta.get("index", "flat"),
        folder,
    )
