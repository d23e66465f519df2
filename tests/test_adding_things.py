"""docs/architecture.md's "Adding things", followed as a newcomer would: a classifier, a dataset format, an encoder,
a corruption and an engine task, each written as its recipe says, registered from "another package" through its
entry-point group, and run through the command line or the Python API."""

import json
from importlib.metadata import EntryPoint

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from imagesafety import registry
from imagesafety.classifiers.base import Classifier, Prediction, decide
from imagesafety.cli import app
from imagesafety.data.rows import row_to_sample
from imagesafety.data.sample import ReadPolicy
from imagesafety.taxonomy import UNSAFEBENCH, Taxonomy

runner = CliRunner()


class Brightness(Classifier):
    """The recipe's classifier: unsafe score = mean brightness; covers Violence only."""

    name = "brightness"
    version = "1"
    taxonomy = Taxonomy("brightness", (UNSAFEBENCH.get("violence"),))
    covers = frozenset({"violence"})

    def __init__(self, gain: float = 1.0):
        self.threshold = 0.3
        self.config = {"gain": gain, "weights": "sha256:none (no weights)"}

    def predict_prepared(self, items: list[Image.Image]) -> list[Prediction]:
        scores = [
            min(1.0, float(np.asarray(i.convert("L"), dtype=np.float64).mean() / 255) * self.config["gain"])
            for i in items
        ]
        return [Prediction(s, decide(s, self.threshold), {"violence": s}) for s in scores]


def brightness_from_spec(arg, *, gain: float = 1.0):
    return Brightness(gain)


class LinesDataset:
    """The recipe's dataset format: a text file of `PATH LABEL` lines (label safe or unsafe)."""

    def __init__(self, path, policy):
        from pathlib import Path

        self.path, self.policy = Path(path), policy

    def __iter__(self):
        for i, line in enumerate(self.path.read_text().splitlines()):
            image, label = line.rsplit(" ", 1)
            yield row_to_sample(
                {"image": image, "label": label, "category": "violence"},
                i,
                self.path.stem,
                base_dir=self.path.parent,
                policy=self.policy,
            )


def lines_from_spec(path, *, policy: ReadPolicy | None = None):
    return LinesDataset(path, policy or ReadPolicy())


class Thumbnail:
    """The recipe's encoder: a 4x4 grey thumbnail as a 16-d embedding."""

    name, identity, embed_dim = "thumb", "sha256:thumb-v1", 16

    def prepare(self, image):
        return np.asarray(image.convert("L").resize((4, 4)), dtype=np.float32).ravel() / 255

    def encode_prepared(self, items):
        return np.stack(items).astype(np.float32)

    def encode_images(self, images):
        return self.encode_prepared([self.prepare(i) for i in images])


def thumb_from_spec(arg, *, device=None):
    return Thumbnail()


def darken(image, severity, rng):
    """The recipe's corruption: darker with severity (1-5)."""
    return Image.fromarray((np.asarray(image, dtype=np.float32) * (1 - 0.15 * severity)).astype(np.uint8))


class ExposureTask:
    """The recipe's task: each image's share of blown-out pixels (an analysis that runs like eval, locally or on Ray),
    cached nowhere, one column of its own."""

    concurrent = 1

    def __init__(self, frames, level: int):
        self.name, self.frames, self.level = "exposure", frames, level

    def lookup(self, shas):
        return {}

    def store(self, items):
        pass

    def prepare(self, item, image):
        return np.asarray(image.convert("L"))

    def compute(self, items):
        return [float((pixels >= self.level).mean()) for pixels in items]

    def combine(self, views, results):
        return max(results)

    def flags(self, result):
        return False

    def columns(self, rows):
        from imagesafety.run.tasks import row_results, sample_columns

        return {**sample_columns(rows), "blown_out": row_results(rows), "error": rows.errors}

    def frame(self, columns):
        from imagesafety.run.tasks import SAMPLE_COLUMNS, typed_frame

        return typed_frame(columns, (*SAMPLE_COLUMNS, "blown_out", "error"))


def exposure_task(arg, *, model, cache, frames, level: int = 250):
    return ExposureTask(frames, level)


PLUGINS = {
    "imagesafety.tasks": [EntryPoint("exposure", "test_adding_things:exposure_task", "imagesafety.tasks")],
    "imagesafety.classifiers": [
        EntryPoint("brightness", "test_adding_things:brightness_from_spec", "imagesafety.classifiers")
    ],
    "imagesafety.datasets": [EntryPoint("lines", "test_adding_things:lines_from_spec", "imagesafety.datasets")],
    "imagesafety.encoders": [EntryPoint("thumb", "test_adding_things:thumb_from_spec", "imagesafety.encoders")],
    "imagesafety.corruptions": [EntryPoint("darken", "test_adding_things:darken", "imagesafety.corruptions")],
}


@pytest.fixture
def plugins(monkeypatch):
    monkeypatch.setattr(registry, "entry_points", lambda group=None: PLUGINS.get(group, []))
    registry._plugins.cache_clear()
    yield
    registry._plugins.cache_clear()


def test_a_classifier_from_another_package_runs_through_eval(plugins, red_folder, tmp_path):
    result = runner.invoke(
        app,
        [
            "eval",
            "-c",
            "brightness",
            "-d",
            str(red_folder),
            "-o",
            str(tmp_path / "run"),
            "--option",
            "gain=2",
            "--no-cache",
            "-q",
            "--bootstrap",
            "20",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["classifier"]["name"] == "brightness" and metrics["classifier"]["config"]["gain"] == 2
    assert metrics["coverage"]["covers"] == ["violence"] and metrics["by_category"]["sexual"]["covered"] is False
    unknown = runner.invoke(app, ["eval", "-c", "brightness", "-d", str(red_folder), "--option", "gian=2"])
    assert unknown.exit_code == 2 and "did you mean 'gain'" in unknown.output


def test_a_dataset_format_from_another_package_loads_and_evaluates(plugins, red_folder, tmp_path):
    from imagesafety import evaluate
    from imagesafety.data import load_dataset

    images = sorted(red_folder.rglob("*.jpg"))
    listing = red_folder / "list.txt"
    listing.write_text("\n".join(f"{p.relative_to(red_folder)} {p.parts[-4]}" for p in images))
    samples = list(load_dataset(f"lines:{listing}"))
    assert len(samples) == len(images) and {s.label for s in samples} == {0, 1}
    result = evaluate(Brightness(), f"lines:{listing}", cache=None, progress=False, n_boot=10)
    assert result.document.overall.support == len(images) and result.document.coverage.uncovered == []
    with pytest.raises(ValueError, match="a lines dataset cannot be streamed"):
        load_dataset(f"lines:{listing}", streaming=True)  # the recipe's format takes no streaming: refused


def test_an_encoder_from_another_package_embeds(plugins, red_folder, tmp_path):
    from imagesafety.run.embed import embed

    result = embed("thumb", red_folder, tmp_path / "emb.parquet", cache=None, progress=False)
    assert result.dim == 16 and result.encoder == "thumb" and (tmp_path / "emb.parquet").is_file()


def test_a_corruption_from_another_package_appears_in_robustness(plugins, red_folder, tmp_path):
    result = runner.invoke(
        app,
        [
            "robustness",
            "-c",
            "brightness",
            "-d",
            str(red_folder),
            "-o",
            str(tmp_path / "r"),
            "--attacks",
            "",
            "--corruptions",
            "darken",
            "--severity",
            "1,5",
            "--k",
            "2",
            "--no-cache",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "robustness.json").read_text())
    assert set(report["corruptions"]["darken"]) == {"1", "5"}


def test_a_task_from_another_package_runs_through_run_job(plugins, red_folder):
    """The task recipe: registered under `imagesafety.tasks`, built by `run_job` from a ModelSpec with its settings
    (as Ray workers build it), its rows the shared sample columns plus its own; an unknown setting is refused."""
    from imagesafety.data import load_dataset
    from imagesafety.run.job import RunOptions, run_job
    from imagesafety.run.tasks import ModelSpec

    job = run_job(ModelSpec("exposure", "-", settings={"level": 128}), red_folder, options=RunOptions(progress=False))
    expected = {
        s.id: float((np.asarray(Image.open(s.image).convert("L")) >= 128).mean()) for s in load_dataset(red_folder)
    }
    assert dict(zip(job.rows["id"], job.rows["blown_out"])) == pytest.approx(expected)
    assert list(job.rows.columns[:9]) == [
        "id",
        "label",
        "category",
        "source",
        "split",
        "pair_id",
        "role",
        "image",
        "sha256",
    ]
    with pytest.raises(ValueError, match="has no option 'levle'"):
        run_job(ModelSpec("exposure", "-", settings={"levle": 1}), red_folder, options=RunOptions(progress=False))
