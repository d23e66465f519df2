"""A pair-generation folder: every attempt (`candidates.jsonl`, appended as it happens, so a re-run skips finished
plans), reviewers' decisions (`reviews.jsonl`), the images, and the pair table every command reads as a dataset
(`pairs.parquet`: the original and the edited image of each kept pair, rewritten atomically)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from PIL import Image

from imagesafety.files import atomic_path
from imagesafety.records.pairs import PairCandidate, parse_candidate

TABLE_COLUMNS = [
    "id",
    "path",
    "label",
    "role",
    "pair_id",
    "category",
    "instruction",
    "editor",
    "seed",
    "source",
    "source_image",
    "scores",
    "review",
]
DECISIONS = ("accepted", "rejected")


class PairStore:
    """The files of one `pairs generate` output folder."""

    def __init__(self, out: str | Path):
        self.out = Path(out)
        self.images = self.out / "images"
        self.log_path = self.out / "candidates.jsonl"
        self.reviews_path = self.out / "reviews.jsonl"
        self.table_path = self.out / "pairs.parquet"

    def create(self) -> PairStore:
        self.images.mkdir(parents=True, exist_ok=True)
        return self

    def candidates(self) -> list[PairCandidate]:
        """Every attempt so far, in order (a line cut short by a crash is ignored; a line that is not a candidate is
        an error naming the file, the line and the field)."""
        found = []
        lines = self.log_path.read_text(encoding="utf-8").splitlines() if self.log_path.is_file() else []
        for number, line in enumerate(lines, 1):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            found.append(parse_candidate(data, f"{self.log_path}:{number}"))
        return found

    def attempts(self) -> dict[tuple[str, str], list[PairCandidate]]:
        """Attempts by (image sha256, category): what a re-run skips."""
        done: dict[tuple[str, str], list[PairCandidate]] = {}
        for c in self.candidates():
            done.setdefault((c.image_sha256, c.category), []).append(c)
        return done

    @contextmanager
    def log(self) -> Iterator:
        """Append attempts one line at a time, flushed, so a crash keeps everything written."""
        with self.log_path.open("a", encoding="utf-8") as fh:

            def append(candidate: PairCandidate) -> None:
                fh.write(json.dumps(candidate.line(), default=float) + "\n")
                fh.flush()

            yield append

    def save_pair(self, sha: str, pair_id: str, original: Image.Image, edited: Image.Image) -> tuple[str, str]:
        """Write a kept pair's images; returns their paths relative to the folder."""
        original_path, edited_path = self.images / f"{sha[:16]}.png", self.images / f"{pair_id}-edited.png"
        for image, path in ((original, original_path), (edited, edited_path)):
            if not path.exists():
                with atomic_path(path) as tmp:
                    image.save(tmp, format="PNG")
        return str(original_path.relative_to(self.out)), str(edited_path.relative_to(self.out))

    def save_preview(self, name: str, image: Image.Image, side: int = 320) -> str:
        """A small JPEG of an image the gallery shows but no pair keeps (a rejected edit, or its original); its path."""
        path = self.images / "previews" / f"{name}.jpg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            preview = image.convert("RGB")
            preview.thumbnail((side, side))
            with atomic_path(path) as tmp:
                preview.save(tmp, format="JPEG", quality=85)
        return str(path.relative_to(self.out))

    def reviews(self) -> dict[str, str]:
        reviews: dict[str, str] = {}
        for line in self.reviews_path.read_text(encoding="utf-8").splitlines() if self.reviews_path.is_file() else []:
            r = json.loads(line)
            reviews[r["pair_id"]] = r["decision"]
        return reviews

    def record_review(self, pair_id: str, decision: str, reviewer: str | None = None) -> None:
        """Append a decision and rewrite the pair table with it."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be {' or '.join(DECISIONS)}")
        if pair_id not in {c.pair_id for c in self.candidates()}:
            raise ValueError(f"unknown pair {pair_id!r}")
        with self.reviews_path.open("a", encoding="utf-8") as fh:
            fh.write(
                json.dumps({"pair_id": pair_id, "decision": decision, "reviewer": reviewer, "time": time.time()}) + "\n"
            )
        self.write_table()

    def write_table(self) -> Path:
        """pairs.parquet from the attempts: the original and the edited image of every kept candidate."""
        reviews = self.reviews()
        rows = []
        for c in self.candidates():
            if not c.kept or c.pair_id is None:
                continue
            common = {
                "pair_id": c.pair_id,
                "category": c.category,
                "instruction": c.instruction,
                "editor": c.editor,
                "seed": c.seed,
                "source": c.source,
                "source_image": c.source_image,
                "scores": json.dumps(c.scores, default=float),
                "review": reviews.get(c.pair_id),
            }
            rows.append(
                {
                    "id": f"{c.pair_id}:original",
                    "path": c.original,
                    "label": c.source_label,
                    "role": "original",
                    **common,
                }
            )
            rows.append(
                {
                    "id": f"{c.pair_id}:edited",
                    "path": c.edited,
                    "label": c.target_label,
                    "role": "edited",
                    **common,
                }
            )
        with atomic_path(self.table_path) as tmp:
            pd.DataFrame(rows, columns=TABLE_COLUMNS).to_parquet(tmp, index=False)
        return self.table_path
