"""A counterfactual pair candidate as a typed record: one line of a `pairs generate` folder's candidates.jsonl (every
attempt, kept or rejected, with why)."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from imagesafety.records.base import Record, json_schema, one_line


class CandidateError(ValueError):
    """A candidates.jsonl line that is not a pair candidate."""


class PairCandidate(Record):
    """One edit attempt: the source image and plan, the editor and seed, the verifier's verdict and scores, and the
    files it kept (a kept pair's images, or a rejected edit's previews)."""

    image_sha256: str
    sample_id: str | None = None
    source_image: str | None = None
    category: str
    seed: int
    instruction: str
    planner: str | None = None
    editor: str
    source_label: int
    target_label: int
    source_category: str | None = None
    source: str | None = None
    kept: bool = False
    reasons: list[str] = []
    scores: dict[str, Any] = {}
    pair_id: str | None = None
    original: str | None = None
    edited: str | None = None
    original_preview: str | None = None
    edited_preview: str | None = None

    def line(self) -> dict[str, Any]:
        """What candidates.jsonl holds of it (the fields it was given, in their order)."""
        return self.model_dump(exclude_unset=True)


def parse_candidate(data: Any, source: str) -> PairCandidate:
    try:
        return PairCandidate.model_validate(data)
    except ValidationError as exc:
        raise CandidateError(f"{source}: {one_line(exc)}") from None


def pair_candidate_schema() -> dict[str, Any]:
    """The JSON Schema of one candidates.jsonl line."""
    return json_schema(PairCandidate)
