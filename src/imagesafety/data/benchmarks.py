"""Loaders for published image-safety benchmarks: each reads the benchmark's own schema and maps its labels to Samples
(1 = unsafe) and its categories to a taxonomy (`imagesafety.taxonomy`: VLSU, VLGuard, SafeEditBench have their own).

Spec, source, and the schema read:
- `vlsu[:CSV]`: Apple's ml-vlsu `data/VLSU.csv` (image URLs); `uuid`, `web_path`, `image_grade` (safe / borderline /
  unsafe / not_sure), `image_category` (C1-C15)
- `unsafeconcepts[:ID_OR_FOLDER]`: `yiting/UnsafeConcepts` (gated); `image`, `category`, `unsafe_concept`; every image
  unsafe
- `safeeditbench[:ID_OR_FOLDER]`: `tyodd/SafeEditBench` (gated); `image`, `image_path`, `safety_label`, `policy_name`
  (L1-L5), `policy`
- `vlguard[:ID_OR_FOLDER]`: `ys-zong/VLGuard` (gated); `{split}.json` (`id`, `image`, `safe`, `harmful_category`,
  `harmful_subcategory`), images under `{split}/`

Only the image's own label is read: VLSU's borderline and not-sure image grades, and its text and joint grades, stay
in the metadata (a borderline image is unlabelled, so metrics leave it out and count it). SafeEditBench's `x.jpg`
(unsafe, from LlavaGuard-Bench) and `x_edited.jpg` (its safe edit) become a pair per policy level (`pair_id`,
`role` original / edited), so pair metrics and the explanation pair check run on it.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from imagesafety.data.huggingface import HuggingFaceDataset
from imagesafety.data.rows import row_to_sample
from imagesafety.data.sample import ReadPolicy, Sample, relative_root
from imagesafety.files import read_json

VLSU_CSV = "https://raw.githubusercontent.com/apple/ml-vlsu/main/data/VLSU.csv"
VLSU_IMAGE_LABELS = {"safe": 0, "unsafe": 1}  # borderline and not_sure: unlabelled
SAFEEDITBENCH_POLICIES = ("Policy L1", "Policy L2", "Policy L3", "Policy L4", "Policy L5")

Row = Mapping[str, Any]


def vlsu_row(row: Row) -> dict[str, Any]:
    """A VLSU CSV row in our schema: the image's own grade as its label, its category by code (C6 -> c6)."""
    grade = str(row.get("image_grade") or "").strip().lower()
    category = str(row.get("image_category") or row.get("combined_category") or "")
    return {
        "id": row.get("uuid"),
        "image": row.get("web_path"),
        "label": VLSU_IMAGE_LABELS.get(grade),
        "category": category.split(":", 1)[0].strip().lower() or None,
        "image_grade": grade,
        "text_grade": row.get("consensus_text_grade"),
        "combined_grade": row.get("consensus_combined_grade"),
        "combined_category": row.get("combined_category"),
        "prompt": row.get("prompt"),
    }


def unsafeconcepts_row(row: Row) -> dict[str, Any]:
    return {
        "image": row.get("image"),
        "label": 1,
        "category": row.get("category"),
        "unsafe_concept": row.get("unsafe_concept"),
    }


def safeeditbench_row(row: Row) -> dict[str, Any]:
    """One (image, policy) judgement; the image and its `_edited` twin share a pair id per policy level."""
    level = row.get("policy_name")
    level = SAFEEDITBENCH_POLICIES[level] if isinstance(level, int) else str(level)
    path = str(row.get("image_path") or "")
    stem = PurePosixPath(path).stem
    edited = stem.endswith("_edited")
    base = stem[: -len("_edited")] if edited else stem
    label = row.get("safety_label")
    return {
        "id": f"{path}@{level}",
        "image": row.get("image") or path,
        "label": label,
        "category": level,
        "pair_id": f"{base}@{level}",
        "role": "edited" if edited else "original",
        "image_path": path,
        "policy": row.get("policy"),
    }


def vlguard_row(row: Row) -> dict[str, Any]:
    safe = row.get("safe")
    return {
        "id": row.get("id"),
        "image": row.get("image"),
        "label": None if safe is None else int(not safe),
        "category": None if safe else row.get("harmful_category"),
        "harmful_subcategory": None if safe else row.get("harmful_subcategory"),
    }


class VlsuDataset:
    """VLSU's CSV, streamed; `web_path` is a URL (fetched through the guarded fetcher) or a path beside the CSV."""

    def __init__(self, source: str, policy: ReadPolicy | None = None, name: str = "vlsu"):
        self.source, self.name = source, name
        self.local = "://" not in source
        if self.local and not Path(source).is_file():
            raise ValueError(f"VLSU: {source}: no such CSV file (the published one is {VLSU_CSV})")
        base = Path(source).resolve().parent if self.local else None
        self.base_dir = base
        self.policy = policy if policy is not None else ReadPolicy(root=relative_root(base) if base else None)

    def lines(self) -> Iterator[str]:
        if self.local:
            with open(self.source, encoding="utf-8-sig", newline="") as fh:
                yield from fh
            return
        from imagesafety.net import FetchError, fetch_url

        try:
            text = fetch_url(self.source, max_bytes=256 << 20).decode("utf-8-sig")
        except FetchError as exc:
            raise ValueError(
                f"VLSU: {exc}; offline, download {VLSU_CSV} elsewhere and pass vlsu:PATH/TO/VLSU.csv"
            ) from None
        yield from text.splitlines(keepends=True)

    def __iter__(self) -> Iterator[Sample]:
        for line, row in enumerate(csv.DictReader(self.lines()), start=2):
            missing = [k for k in ("uuid", "web_path", "image_grade") if k not in row]
            if missing:
                raise ValueError(
                    f"VLSU {self.source} line {line}: no column {', '.join(missing)}; columns: {sorted(row)}"
                )
            yield row_to_sample(
                vlsu_row(row), line, f"{self.name}:{self.source}", base_dir=self.base_dir, policy=self.policy
            )


class VlguardDataset:
    """VLGuard as published: `train.json` / `test.json` beside `train/` / `test/` image folders (the unzipped archives),
    from a local folder or downloaded from the Hub (`ys-zong/VLGuard`, gated) into the cache."""

    SPLITS = ("train", "test")

    def __init__(self, location: str, splits: list[str] | None = None, policy: ReadPolicy | None = None):
        wanted = list(splits or self.SPLITS)
        unknown = [s for s in wanted if s not in self.SPLITS]
        if unknown:
            raise ValueError(f"VLGuard: no split {unknown}; splits: {', '.join(self.SPLITS)}")
        self.root = Path(location) if Path(location).is_dir() else vlguard_from_hub(location, wanted)
        self.splits = [s for s in wanted if (self.root / f"{s}.json").is_file()]
        if not self.splits:
            raise ValueError(f"VLGuard: {self.root} has none of {', '.join(f'{s}.json' for s in wanted)}")
        self.policy = policy if policy is not None else ReadPolicy(root=relative_root(self.root.resolve()))

    def __iter__(self) -> Iterator[Sample]:
        for split in self.splits:
            path = self.root / f"{split}.json"
            items = read_json(path)
            if not isinstance(items, list):
                raise ValueError(f"VLGuard: {path} must hold a JSON list of items")
            for position, item in enumerate(items):
                yield row_to_sample(
                    vlguard_row(item),
                    position,
                    f"vlguard[{split}]",
                    split=split,
                    base_dir=(self.root / split).resolve(),
                    policy=self.policy,
                )


def vlguard_from_hub(repo: str, splits: list[str]) -> Path:
    """`{split}.json` and `{split}.zip` of the Hub repository (cached, or downloaded once), the images unpacked into
    the cache once."""
    import zipfile

    from imagesafety.hub import ModelReferenceError, snapshot
    from imagesafety.store import default_cache_path

    try:
        folder = Path(
            snapshot(repo, "VLGuard", allow_patterns=[f"{s}.{ext}" for s in splits for ext in ("json", "zip")])
        )
    except (ModelReferenceError, ImportError) as exc:
        raise ValueError(
            f"cannot load VLGuard from {repo!r}: {exc}. It is gated: accept its terms and "
            "`huggingface-cli login`; offline, pass a folder with train.json/test.json and the unzipped "
            "train/ and test/ folders"
        ) from None
    root = default_cache_path().parent / "datasets" / repo.replace("/", "__")
    for split in splits:
        target = root / split
        if not target.is_dir():
            partial = root / f".{split}.partial"
            with zipfile.ZipFile(folder / f"{split}.zip") as zf:
                zf.extractall(partial)
            (partial / split if (partial / split).is_dir() else partial).rename(target)
        (root / f"{split}.json").write_bytes((folder / f"{split}.json").read_bytes())
    return root


def _hub(default: str, mapping: Callable[[Row], dict[str, Any]], name: str):
    def from_spec(
        path: str | None = None,
        *,
        splits: list[str] | None = None,
        streaming: bool = False,
        policy: ReadPolicy | None = None,
    ) -> HuggingFaceDataset:
        return HuggingFaceDataset(
            path or default, None, splits=splits, streaming=streaming, name=name, policy=policy, row_map=mapping
        )

    from_spec.__doc__ = f"`{name}` ({default} on the Hub) or `{name}:FOLDER` (a local copy of its data files)."
    return from_spec


unsafeconcepts_from_spec = _hub("yiting/UnsafeConcepts", unsafeconcepts_row, "unsafeconcepts")
safeeditbench_from_spec = _hub("tyodd/SafeEditBench", safeeditbench_row, "safeeditbench")


def vlsu_from_spec(
    path: str | None = None,
    *,
    splits: list[str] | None = None,
    streaming: bool = False,
    policy: ReadPolicy | None = None,
) -> VlsuDataset:
    """`vlsu` (the published CSV, fetched) or `vlsu:PATH/TO/VLSU.csv`."""
    return VlsuDataset(path or VLSU_CSV, policy)


def vlguard_from_spec(
    path: str | None = None,
    *,
    splits: list[str] | None = None,
    streaming: bool = False,
    policy: ReadPolicy | None = None,
) -> VlguardDataset:
    """`vlguard` (ys-zong/VLGuard on the Hub) or `vlguard:FOLDER` (train.json, test.json and the unzipped images)."""
    return VlguardDataset(path or "ys-zong/VLGuard", splits, policy)
