"""`replay:`: a classifier that answers from recorded VLM responses instead of a model, so published VLM rows can be
reproduced without the models.

Two layouts are read:
- UnsafeBench's published responses (`yiting/unsafebench_vlm_responses`):
`{model}/prompt_{0,1,2}/{source}_{category}.json`,
  each a list of `{image_fname, response}`; the authors name an image `.../{split}/images/{row}.png` (its row in that
  split of `yiting/UnsafeBench`), so such a name matches the dataset row with that split and position;
- our own `predictions.parquet` (a finished run's folder or the file): the raw answers of each row, matched by id.
Responses are parsed with our answer parser and voted with the protocol's rule. A row with no recorded response is a
counted miss (an error row); responses that match no row are counted in the run's summary, never silently dropped.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from imagesafety import hub
from imagesafety.classifiers.base import Classifier, ModelFailure, Prediction
from imagesafety.classifiers.vlm.scoring import ProtocolScoring
from imagesafety.data.sample import Sample
from imagesafety.files import read_json
from imagesafety.identity import path_digest
from imagesafety.taxonomy import UNSAFEBENCH, load_taxonomy

PUBLISHED_REPO = "yiting/unsafebench_vlm_responses"
PROMPT_DIR = re.compile(r"^prompt_(\d+)$")
SPLIT_ROW = re.compile(r"(?:^|/)(train|test|validation)/images/(\d+)\.\w+$")
SOURCES = {"laion5b": "real", "lexica": "generated"}
NO_RESPONSE = "no recorded response for this image"


class ReplayError(ValueError):
    """A response folder or file that cannot be read as either layout."""


@dataclass
class Recorded:
    """The responses recorded for one image, by prompt index, with where they were found."""

    name: str
    answers: dict[int, str] = field(default_factory=dict)
    where: str = ""
    category: str | None = None  # from the file's name ({source}_{category}.json), when it says


def _response_text(value: Any) -> str:
    """A response as text (the authors keep a one-element list for some models)."""
    if isinstance(value, list):
        value = value[0] if value else ""
    return "" if value is None else str(value)


def _category_source(stem: str) -> tuple[str | None, str | None]:
    """`Laion5B_Self-harm` -> ("self_harm", "real")."""
    source, _, category = stem.partition("_")
    found = UNSAFEBENCH.find(category)
    return (found.key if found else None), SOURCES.get(source.lower())


def model_folders(root: Path) -> dict[str, Path]:
    """The model folders (those holding prompt_N folders) under `root`, including `root` itself."""
    if any(PROMPT_DIR.match(p.name) for p in root.iterdir() if p.is_dir()):
        return {root.name: root}
    return {
        p.name: p
        for p in sorted(root.iterdir())
        if p.is_dir() and any(PROMPT_DIR.match(q.name) for q in p.iterdir() if q.is_dir())
    }


def read_published(folder: Path) -> tuple[dict[str, Recorded], dict[str, int]]:
    """Every image's responses in one model folder of the published layout, and counts of what was read."""
    recorded: dict[str, Recorded] = {}
    counts = Counter()
    for prompt_dir in sorted(p for p in folder.iterdir() if p.is_dir() and PROMPT_DIR.match(p.name)):
        prompt = int(PROMPT_DIR.match(prompt_dir.name).group(1))
        for file in sorted(prompt_dir.glob("*.json")):
            items = read_json(file, ReplayError)
            if not isinstance(items, list):
                raise ReplayError(
                    f"{file}: expected a list of {{image_fname, response}}, found a {type(items).__name__}"
                )
            for i, item in enumerate(items):
                if not isinstance(item, dict) or "image_fname" not in item or "response" not in item:
                    raise ReplayError(f"{file} item {i}: expected {{image_fname, response}}, found {str(item)[:80]!r}")
                name = str(item["image_fname"])
                entry = recorded.setdefault(
                    name, Recorded(name, where=file.stem, category=_category_source(file.stem)[0])
                )
                if prompt in entry.answers:
                    counts["duplicates"] += 1
                    continue
                entry.answers[prompt] = _response_text(item["response"])
                counts["responses"] += 1
            counts["files"] += 1
    if not counts["files"]:
        raise ReplayError(
            f"{folder}: no prompt_N/*.json response files (expected "
            f"{{model}}/prompt_{{0,1,2}}/{{source}}_{{category}}.json)"
        )
    return recorded, dict(counts)


def read_predictions(path: Path) -> tuple[dict[str, Recorded], dict[str, int]]:
    """Recorded answers from one of our runs' predictions.parquet (rows with raw answers), by row id."""
    frame = pd.read_parquet(path, columns=["id", "raw"])
    recorded: dict[str, Recorded] = {}
    for row in frame.itertuples():
        raw = json.loads(row.raw) if isinstance(row.raw, str) else None
        if not isinstance(raw, dict) or not isinstance(raw.get("answers"), list):
            continue
        recorded[str(row.id)] = Recorded(
            str(row.id), dict(enumerate(_response_text(a) for a in raw["answers"])), path.name
        )
    if not recorded:
        raise ReplayError(
            f"{path}: no rows with recorded answers (a predictions.parquet of a VLM run has them in its raw column)"
        )
    return recorded, {"files": 1, "responses": sum(len(r.answers) for r in recorded.values())}


def locate(spec: str, model: str | None) -> tuple[Path, str]:
    """The folder or file of the responses and the model's name: a local path, or `hf:REPO[/MODEL]` from the Hub."""
    if spec.startswith("hf:"):
        parts = spec[3:].strip("/").split("/")
        repo, sub = "/".join(parts[:2]), "/".join(parts[2:]) or model
        patterns = [f"{sub}/*"] if sub else None
        root = Path(hub.snapshot(repo, "recorded responses", allow_patterns=patterns))
        return (root / sub if sub else root), (sub or repo)
    path = Path(spec).expanduser()
    if not path.exists():
        raise ReplayError(
            f"replay {spec!r}: no such file or folder (give a response folder, a predictions.parquet, "
            f"a run folder, or hf:{PUBLISHED_REPO}/MODEL)"
        )
    return path.resolve(), model or path.name


def load_recorded(path: Path, model: str | None) -> tuple[dict[str, Recorded], dict[str, int], str]:
    """The recorded responses at `path` (either layout), the read counts, and the model they belong to."""
    if path.is_file():
        return (*read_predictions(path), path.parent.name)
    if (path / "predictions.parquet").is_file():
        return (*read_predictions(path / "predictions.parquet"), path.name)
    models = model_folders(path)
    if model:
        if model not in models:
            raise ReplayError(f"{path}: no responses of model {model!r} (found: {', '.join(models) or 'none'})")
        models = {model: models[model]}
    if len(models) != 1:
        raise ReplayError(
            f"{path}: "
            + (
                "no prompt_N folders of responses"
                if not models
                else f"responses of several models ({', '.join(models)}): pick one with --option model=NAME"
            )
        )
    name, folder = next(iter(models.items()))
    return (*read_published(folder), name)


def response_keys(name: str) -> list[str]:
    """The keys a recorded image name can match: itself, a split row (the authors' naming), its file name."""
    normal = name.replace("\\", "/")
    keys = [f"name:{normal}"]
    found = SPLIT_ROW.search(normal)
    if found:
        keys.append(f"row:{found.group(1)}/{int(found.group(2))}")
    keys.append(f"file:{normal.rsplit('/', 1)[-1]}")
    return keys


def sample_keys(sample: Sample) -> list[str]:
    """The keys a dataset row offers, most specific first."""
    keys = [f"name:{sample.id}"]
    if isinstance(sample.image, (str, Path)) and not str(sample.image).startswith(("http://", "https://")):
        normal = str(sample.image).replace("\\", "/")
        keys.append(f"name:{normal}")
    if sample.split and sample.position is not None:
        keys.append(f"row:{sample.split}/{sample.position}")
    if isinstance(sample.image, (str, Path)):
        keys.append(f"file:{str(sample.image).replace(chr(92), '/').rsplit('/', 1)[-1]}")
    return keys


class ReplayClassifier(ProtocolScoring, Classifier):
    """Answers each dataset row with the responses recorded for it, parsed and voted as the protocol says."""

    version = "1"

    def __init__(
        self,
        spec: str,
        model: str | None = None,
        protocol: str = "unsafebench",
        taxonomy: str = "unsafebench",
        unsure: str = "unsafe",
        threshold: float = 0.5,
    ):
        if not spec:
            raise ReplayError(
                f"replay needs the responses: replay:PATH (a response folder, run folder or predictions.parquet) "
                f"or replay:hf:{PUBLISHED_REPO}/MODEL"
            )
        self.setup_scoring(protocol, load_taxonomy(taxonomy), unsure, threshold)
        path, _ = locate(spec, model)
        self.recorded, self.read_counts, self.model = load_recorded(path, model)
        self.index = self._index()
        self.name = f"replay:{self.model}"
        self.weights = path_digest(path)
        self.config = {
            "weights": self.weights,
            "model": self.model,
            "protocol": self.protocol.name,
            "prompts": self.protocol.fingerprint(self.taxonomy),
            "unsure": unsure,
            "taxonomy": self.taxonomy.keys,
        }

    def _index(self) -> dict[str, str | None]:
        """key -> recorded name; a key two recorded images share maps to None (ambiguous, never matched)."""
        index: dict[str, str | None] = {}
        for name in self.recorded:
            for key in response_keys(name):
                index[key] = None if key in index and index[key] != name else name
        return index

    def match(self, sample: Sample) -> Recorded | None:
        for key in sample_keys(sample):
            name = self.index.get(key)
            if name is not None:
                return self.recorded[name]
        return None

    def prepare_sample(self, sample: Sample, image: Image.Image) -> Recorded:
        return self.match(sample) or Recorded("")  # an empty record: a counted miss

    def predict_prepared(self, items: list[Recorded]) -> list[Prediction | ModelFailure]:
        out: list[Prediction | ModelFailure] = []
        for entry in items:
            if not entry.answers:
                out.append(ModelFailure(f"{self.name}: {NO_RESPONSE}"))
                continue
            answers = [
                {"text": entry.answers[i], "prompt_tokens": 0, "completion_tokens": 0} for i in sorted(entry.answers)
            ]
            result = self.score_answers(answers)
            if isinstance(result, Prediction):
                result.raw = {
                    **result.raw,
                    "replayed": entry.name,
                    "prompts": sorted(entry.answers),
                    "recorded_in": entry.where,
                    "recorded_category": entry.category,
                }
            out.append(result)
        return out

    def run_summary(self, rows: pd.DataFrame) -> dict[str, Any]:
        """How the recorded responses met the evaluated rows: matched, rows without a response, responses unused, and
        rows whose response was recorded under another category (a sign the rows are not in the authors' order)."""
        used: set[str] = set()
        matched = mismatched = 0
        for raw, category in zip(rows["raw"], rows["category"]):
            replay = json.loads(raw) if isinstance(raw, str) else {}
            if replay.get("replayed") is None:
                continue
            used.add(replay["replayed"])
            matched += 1
            recorded = replay.get("recorded_category")
            mismatched += bool(recorded and isinstance(category, str) and category != recorded)
        misses = int(rows["error"].fillna("").str.endswith(NO_RESPONSE).sum())
        unused = [name for name in self.recorded if name not in used]
        return {
            "recorded_images": len(self.recorded),
            **self.read_counts,
            "matched_rows": matched,
            "rows_without_response": misses,
            "responses_matching_no_row": len(unused),
            "unmatched_examples": unused[:5],
            "category_mismatches": mismatched,
        }


def from_spec(
    arg: str | None,
    *,
    model: str | None = None,
    protocol: str = "unsafebench",
    taxonomy: str = "unsafebench",
    unsure: str = "unsafe",
    threshold: float = 0.5,
) -> ReplayClassifier:
    return ReplayClassifier(arg or "", model, protocol, taxonomy, unsure, threshold)
