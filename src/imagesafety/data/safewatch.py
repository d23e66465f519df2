"""`safewatch:FOLDER`: SafeWatch-Bench (Virtue-AI-HUB/SafeWatch-Bench, gated, videos) in the layout its authors'
evaluation reads (BillChan226/SafeWatch, `eval_benchmark.py` and `metrics/eval_guardrail.py`):

    FOLDER/real/C1/<subcategory>_benchmark*.json   (and FOLDER/genai/..., either subset alone also works)

each JSON a list of `{"video_path": ..., "labels": [1..6]}`: the labels are category numbers (1 -> C1 ...), an
empty list is benign; the file's name before `_benchmark` is the subcategory, its folder the category. Subsets
become sources (`real`, `generated`), categories the `safewatch` taxonomy's C1-C6. A video is read as video
(sampled at `--fps`); a relative `video_path` is looked up under the subset, the folder and the folder's parent,
then by its last three parts (category/subcategory/file) under the subset.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from imagesafety.data.rows import row_to_sample
from imagesafety.data.sample import ReadPolicy, Sample, relative_root
from imagesafety.files import read_json

#: subset folder -> source
SUBSETS = {"real": "real", "genai": "generated"}
CATEGORY_CODES = tuple(f"C{i}" for i in range(1, 7))


class SafeWatchDataset:
    def __init__(self, location: str, policy: ReadPolicy | None = None):
        root = Path(location)
        if not root.is_dir():
            raise ValueError(
                f"SafeWatch-Bench: {location}: no such folder. It is gated (Virtue-AI-HUB/SafeWatch-Bench): accept "
                "its terms, download it, and pass safewatch:FOLDER holding real/ and/or genai/"
            )
        self.root, self.name = root, f"safewatch:{location}"
        if root.name in SUBSETS:
            self.subsets = [root]
        else:
            self.subsets = [root / name for name in SUBSETS if (root / name).is_dir()]
        self.files = [path for subset in self.subsets for path in sorted(subset.glob("C*/*.json"))]
        if not self.files:
            raise ValueError(
                f"SafeWatch-Bench: {root} has no C1..C6/*.json under real/ or genai/ (the authors' layout)"
            )
        self.policy = policy if policy is not None else ReadPolicy(root=relative_root(root.resolve()))

    def video(self, subset: Path, video_path: str) -> str:
        path = Path(video_path)
        if path.is_absolute():
            return str(path)
        candidates = [base / path for base in (subset, self.root, self.root.parent)]
        candidates.append(subset.joinpath(*path.parts[-3:]))
        return str(next((c for c in candidates if c.is_file()), candidates[0]).resolve())

    def __iter__(self) -> Iterator[Sample]:
        for path in self.files:
            subset, category = path.parent.parent, path.parent.name
            items = read_json(path)
            if not isinstance(items, list):
                raise ValueError(f"SafeWatch-Bench: {path} must hold a JSON list of items")
            for position, item in enumerate(items):
                yield row_to_sample(
                    self.row(item, path, position, subset, category),
                    position,
                    f"safewatch {path.relative_to(self.root)}",
                    base_dir=None,
                    policy=self.policy,
                )

    def row(self, item: Any, path: Path, position: int, subset: Path, category: str) -> dict[str, Any]:
        where = f"SafeWatch-Bench {path} item {position}"
        if not isinstance(item, dict) or not isinstance(item.get("video_path"), str):
            raise ValueError(f"{where}: each item needs a video_path")
        labels = item.get("labels", [])
        if not isinstance(labels, list) or not all(isinstance(n, int) and 1 <= n <= 6 for n in labels):
            raise ValueError(f"{where}: labels must be a list of category numbers 1-6, got {labels!r}")
        codes = sorted({f"C{n}" for n in labels})
        return {
            "id": f"{path.relative_to(self.root).as_posix()}:{item['video_path']}",  # a video may sit in two files
            "image": self.video(subset, item["video_path"]),
            "label": int(bool(codes)),
            "category": (category if category in codes else codes[0]).lower() if codes else None,
            "source": SUBSETS.get(subset.name, subset.name),
            "labels": ",".join(codes),
            "subcategory": path.name.split("_benchmark")[0].lower(),
            "folder_category": category,
        }


def from_spec(path: str | None = None, *, policy: ReadPolicy | None = None) -> SafeWatchDataset:
    """`safewatch:FOLDER` (a downloaded copy of the gated SafeWatch-Bench: real/ and/or genai/)."""
    if not path:
        raise ValueError(
            "SafeWatch-Bench is gated and video-sized: download Virtue-AI-HUB/SafeWatch-Bench and pass safewatch:FOLDER"
        )
    return SafeWatchDataset(path, policy)
