"""Several classifiers in one run and the leaderboard across them: its numbers read back from leaderboard.csv equal each
run's metrics.json, uncovered cells are "-", the published figures sit beside, and `imagesafety leaderboard` rebuilds
the same files from finished runs without running a model."""

import json
import re
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import MeanRedClassifier, write_red_folder
from imagesafety import registry
from imagesafety.bench.many import ManyRunsFailed, evaluate_many, split_options
from imagesafety.bench.published import COLUMNS, UNSAFEBENCH_F1, published_f1
from imagesafety.cli import app

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "reference.md"


class SexualOnly(MeanRedClassifier):
    """Covers Sexual only, and calls itself nudenet so the published row applies."""

    name = "nudenet"
    covers = frozenset({"sexual"})


class Inverted(MeanRedClassifier):
    name = "inverted"

    def predict(self, images):
        preds = super().predict(images)
        for p in preds:
            p.unsafe_score = 1 - p.unsafe_score
            p.decision = int(p.unsafe_score >= self.threshold)
        return preds


def red_factory(arg, *, fail_on_green=False):
    return MeanRedClassifier(fail_on_green)


def inverted_factory(arg, *, fail_on_green=False):
    return Inverted(fail_on_green)


@pytest.fixture
def plugins(monkeypatch):
    eps = [
        EntryPoint(name="red", value="test_leaderboard:red_factory", group="imagesafety.classifiers"),
        EntryPoint(name="inverted", value="test_leaderboard:inverted_factory", group="imagesafety.classifiers"),
    ]
    monkeypatch.setattr(registry, "entry_points", lambda group=None: eps if group == "imagesafety.classifiers" else [])
    registry._plugins.cache_clear()
    yield
    registry._plugins.cache_clear()


def metric(metrics, source, category):
    """The run's own F1 for a leaderboard cell, read straight from metrics.json."""
    if category == "overall":
        block = metrics["overall"] if source == "both" else metrics["by_source"][source]
    elif source == "both":
        block = metrics["by_category"][category]
    else:
        block = metrics["by_category_source"][category][source]
    return None if block.get("covered") is False else block["f1"]["value"]


def test_leaderboard_numbers_equal_each_runs_metrics(tmp_path):
    data = write_red_folder(tmp_path / "data", n_per_label=12)
    many = evaluate_many(
        [MeanRedClassifier(), SexualOnly(), Inverted()],
        data,
        tmp_path / "board",
        n_boot=20,
        progress=False,
        compare_published="unsafebench",
    )
    assert set(many.results) == {"mean-red", "nudenet", "inverted"}
    board = pd.read_csv(tmp_path / "board" / "leaderboard.csv", dtype=str, keep_default_na=False)
    assert len(board) == 3 * 3
    for name, folder in (("mean-red", "mean-red"), ("nudenet", "nudenet"), ("inverted", "inverted")):
        metrics = json.loads((tmp_path / "board" / folder / "metrics.json").read_text())
        for row in board[board["classifier"] == name].itertuples():
            for category in ("sexual", "violence", "overall"):
                expected = metric(metrics, row.source, category)
                cell = getattr(row, category)
                if expected is None:
                    assert cell == "-", (name, row.source, category, cell)
                else:
                    assert float(cell) == pytest.approx(expected, abs=1e-12)
            assert float(row.precision) == pytest.approx(metric_any(metrics, row.source, "precision"))
    sexual_only = board[board["classifier"] == "nudenet"]
    assert (sexual_only["violence"] == "-").all() and (sexual_only["sexual"] != "-").all()
    cells = pd.read_csv(tmp_path / "board" / "leaderboard_cells.csv")
    real_sexual = cells[(cells.classifier == "nudenet") & (cells.source == "real") & (cells.category == "sexual")].iloc[
        0
    ]
    assert real_sexual.published_f1 == 0.650 and real_sexual.difference == pytest.approx(real_sexual.f1 - 0.650)
    md = (tmp_path / "board" / "leaderboard.md").read_text()
    assert re.search(r"\| nudenet \| - \| \d\.\d{3} \(0\.650\) \| \d\.\d{3} \|", md)
    tex = (tmp_path / "board" / "leaderboard.tex").read_text()
    assert r"\begin{tabular}" in tex and "--" in tex
    page = (tmp_path / "board" / "leaderboard.html").read_text()
    assert (
        page.count("<table>") == 5 and "<svg" in page and "95% CI" in page and "paper 0.650" in page
    )  # 3 sources, summary, pairs
    assert "Which differences are real" in page


def metric_any(metrics, source, name):
    block = metrics["overall"] if source == "both" else metrics["by_source"][source]
    return block[name]["value"]


def test_cli_compares_several_classifiers_and_rebuilds_the_leaderboard(tmp_path, plugins):
    runner = CliRunner()
    data = write_red_folder(tmp_path / "data", n_per_label=8)
    result = runner.invoke(
        app,
        [
            "eval",
            "-c",
            "red",
            "-c",
            "inverted",
            "-d",
            str(data),
            "-o",
            str(tmp_path / "board"),
            "--bootstrap",
            "20",
            "-q",
            "--no-cache",
            "--option",
            "inverted.fail_on_green=false",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "F1, both sources" in result.output and (tmp_path / "board" / "red" / "metrics.json").is_file()
    first = (tmp_path / "board" / "leaderboard.csv").read_text()
    (tmp_path / "board" / "leaderboard.csv").unlink()
    again = runner.invoke(app, ["leaderboard", str(tmp_path / "board")])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "board" / "leaderboard.csv").read_text() == first
    separate = runner.invoke(
        app,
        [
            "leaderboard",
            str(tmp_path / "board" / "red"),
            str(tmp_path / "board" / "inverted"),
            "--out",
            str(tmp_path / "elsewhere"),
        ],
    )
    assert separate.exit_code == 0 and (tmp_path / "elsewhere" / "leaderboard.csv").read_text() == first
    missing = runner.invoke(app, ["leaderboard", str(tmp_path / "data")])
    assert (
        missing.exit_code == 2
        and "neither a run folder (with metrics.json) nor a folder of run folders" in missing.output
    )


def test_options_go_to_the_classifiers_that_take_them(plugins):
    per = split_options(["red", "nudenet"], {"fail_on_green": True, "nudenet.threshold": 0.3})
    assert per == {"red": {"fail_on_green": True}, "nudenet": {"threshold": 0.3}}
    with pytest.raises(
        registry.OptionError, match="no classifier among red, nudenet takes option 'treshold'; did you mean 'threshold'"
    ):
        split_options(["red", "nudenet"], {"treshold": 0.3})


def test_a_failed_run_leaves_the_others_and_their_leaderboard(tmp_path):
    data = tmp_path / "data"
    write_red_folder(data, n_per_label=4)
    green = MeanRedClassifier(fail_on_green=True)
    green.name = "green-fails"
    from conftest import jpeg_bytes

    for f in data.rglob("*.jpg"):  # every image green: this classifier fails on all of them
        f.write_bytes(jpeg_bytes((int(f.stat().st_size) % 200, 250, 40)))
    with pytest.raises(
        ManyRunsFailed,
        match=r"1 of 2 runs failed \(the 1 others were written, with the leaderboard\): green-fails: every image "
        r"failed",
    ) as caught:
        evaluate_many([MeanRedClassifier(), green], data, tmp_path / "board", n_boot=10, progress=False)
    assert (tmp_path / "board" / "leaderboard.csv").is_file() and set(caught.value.result.results) == {"mean-red"}


def test_published_tables_match_the_reference_facts():
    """The transcribed tables equal docs/reference.md's (parsed here independently), cell by cell."""
    text = REFERENCE.read_text()
    heads = {
        "real": "**Real-world (LAION-5B)**",
        "generated": "**AI-generated (Lexica)**",
        "both": "**Overall (both sources pooled)**",
    }
    for source, head in heads.items():
        block = text.split(head)[1].split("\n\n**")[0]
        rows = [line for line in block.splitlines() if line.startswith("| ") and not line.startswith("| Clf")]
        assert len(rows) == len(UNSAFEBENCH_F1[source]) == 8
        for line in rows:
            cells = [c.strip().replace("*", "") for c in line.strip("|").split("|")]
            expected = [None if c == "-" else float(c) for c in cells[1:]]
            assert list(UNSAFEBENCH_F1[source][cells[0]]) == expected, (source, cells[0])
    assert published_f1("unsafebench", "replay:gpt-4v")["both"]["overall"] == 0.709
    assert published_f1("unsafebench", "laion-nsfw:h14") is None
    assert len(COLUMNS) == 12 and np.isclose(published_f1("unsafebench", "q16")["real"]["hate"], 0.641)
