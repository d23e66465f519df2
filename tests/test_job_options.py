"""One description of "which images" and "how to run" for every command that runs the engine: eval, robustness
and embed take the same data and run options (declared once in cli/common.py), and each option does there what it
does in eval."""

import json
import os
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from imagesafety.cli import app
from imagesafety.cli.common import DATA_SELECTION_OPTIONS, RUN_OPTIONS

runner = CliRunner()
ENGINE_COMMANDS = ("eval", "robustness", "embed", "explain", "pairs generate", "hysac index")
IMAGE_COMMANDS = ENGINE_COMMANDS


def options_of(command: str) -> set[str]:
    import typer.main

    click_command = typer.main.get_command(app)
    for word in command.split():
        click_command = click_command.commands[word]
    return {p.name for p in click_command.params}


@pytest.mark.parametrize("command", IMAGE_COMMANDS)
def test_every_command_that_reads_images_takes_the_shared_options(command):
    engine = command in ENGINE_COMMANDS
    shared = {p.name for p in DATA_SELECTION_OPTIONS} | ({p.name for p in RUN_OPTIONS} if engine else set())
    assert shared <= options_of(command), sorted(shared - options_of(command))


@pytest.mark.parametrize("command", ["hysac eval", "hysac calibrate"])
def test_commands_reading_their_own_files_take_the_run_options(command):
    assert {p.name for p in RUN_OPTIONS} <= options_of(command)


def test_a_planted_command_without_the_group_is_seen():
    """The check above can fail: a command declared without the groups lacks them."""
    assert {p.name for p in RUN_OPTIONS} - options_of("datasets audit")


def cached_rows(path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("select count(*) from keyed_predictions").fetchone()[0]


def test_robustness_honours_the_options_it_used_to_lack(red_folder, tmp_path):
    """--no-cache writes nothing, --workers and --limit apply, and dataset rows outside its folder are refused
    without --allow-outside-root (more than half the images fail: the run fails) and read with it."""
    images = sorted(red_folder.rglob("*.jpg"))[:8]
    rows = []
    for i, image in enumerate(images):  # five of the eight rows name files outside the dataset's folder
        path = image if i % 3 == 0 else (tmp_path / f"elsewhere-{i}.jpg")
        if path != image:
            path.write_bytes(image.read_bytes())
        rows.append({"image": str(path), "label": int("unsafe" in image.parts)})
    manifest = red_folder / "rows.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    base = [
        "robustness",
        "-c",
        "nudenet",
        "-d",
        str(manifest),
        "--attacks",
        "",
        "--corruptions",
        "jpeg",
        "--severity",
        "1",
        "--k",
        "1",
        "-q",
    ]
    refused = runner.invoke(app, [*base, "-o", str(tmp_path / "a"), "--cache", str(tmp_path / "other.sqlite")])
    assert refused.exit_code != 0 and "outside" in " ".join(refused.output.split())
    done = runner.invoke(
        app, [*base, "-o", str(tmp_path / "b"), "--no-cache", "--allow-outside-root", "--workers", "1", "--limit", "5"]
    )
    assert done.exit_code == 0, done.output
    report = json.loads((tmp_path / "b" / "robustness.json").read_text())
    assert report["corruptions"]["jpeg"]["1"]["accuracy"] is not None
    default_cache = Path(os.environ["IMAGESAFETY_CACHE"])  # conftest gives each test its own
    assert not default_cache.exists() or cached_rows(default_cache) == 0
    kept = runner.invoke(app, [*base, "-o", str(tmp_path / "c"), "--allow-outside-root", "--limit", "5"])
    assert kept.exit_code == 0 and cached_rows(default_cache) > 0  # the check above can fail: the cache is written


def test_streaming_a_folder_runs_eval_with_the_same_predictions(red_folder, tmp_path):
    """`--streaming` on a folder: the same rows and metrics, read as the run goes (no total known up front)."""
    base = ["eval", "-c", "nudenet", "-d", str(red_folder), "--no-cache", "-q"]
    whole = runner.invoke(app, [*base, "-o", str(tmp_path / "a")])
    streamed = runner.invoke(app, [*base, "-o", str(tmp_path / "b"), "--streaming"])
    assert whole.exit_code == 0 and streamed.exit_code == 0, streamed.output
    a, b = (json.loads((tmp_path / d / "metrics.json").read_text())["overall"] for d in ("a", "b"))
    assert a["support"] == b["support"] > 0 and a["f1"] == b["f1"]
    rows = [pd.read_parquet(tmp_path / d / "predictions.parquet") for d in ("a", "b")]
    assert len(rows[0]) == 12 and rows[0]["score"].tolist() == rows[1]["score"].tolist()
