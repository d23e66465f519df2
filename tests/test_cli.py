"""The command line end to end: example data, eval with NudeNet, files read back, errors by message."""

import json
import re

import pandas as pd
import pytest
from sklearn import metrics as sk
from typer.testing import CliRunner

from conftest import MeanRedClassifier
from imagesafety.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    result = invoke("example-data", root / "data", "--per-group", 2)
    assert result.exit_code == 0, result.output
    result = invoke(
        "eval",
        "--classifier",
        "nudenet",
        "--dataset",
        root / "data",
        "--out",
        root / "out",
        "--cache",
        root / "cache.sqlite",
        "--bootstrap",
        200,
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    return root, result.output


def test_eval_writes_metrics_predictions_and_report(example_run):
    root, output = example_run
    assert "nudenet on data" in output and "1 errors" in output
    metrics = json.loads((root / "out" / "metrics.json").read_text())
    preds = pd.read_parquet(root / "out" / "predictions.parquet")
    assert len(preds) == 2 * 3 * 2 * 2 + 1
    assert {"id", "label", "category", "source", "score", "decision", "score_sexual", "error"} <= set(preds.columns)
    broken = preds[preds["error"].notna()]
    assert broken["id"].tolist() == ["unsafe/sexual/real/truncated-on-purpose.jpg"]
    ok = preds[preds["error"].isna()]
    assert (ok["decision"] == (ok["score"] >= 0.25).astype(int)).all()
    # NudeNet covers Sexual only: overall and per-source figures count its rows alone, the other categories are marked
    covered = ok[ok["category"] == "sexual"]
    assert metrics["overall"]["accuracy"]["value"] == pytest.approx(
        sk.accuracy_score(covered["label"], covered["decision"])
    )
    assert metrics["overall"]["auroc"]["value"] == pytest.approx(sk.roc_auc_score(covered["label"], covered["score"]))
    gen = covered[covered["source"] == "generated"]
    assert metrics["by_source"]["generated"]["auprc"]["value"] == pytest.approx(
        sk.average_precision_score(gen["label"], gen["score"])
    )
    assert set(metrics["by_category"]) == {"sexual", "violence", "hate"}
    assert metrics["by_category"]["hate"] == {"covered": False, "support": 8, "errors": 0}
    assert metrics["by_category_source"]["hate"]["real"]["support"] == 4
    assert metrics["coverage"]["covers"] == ["sexual"] and metrics["coverage"]["uncovered"] == ["hate", "violence"]
    assert metrics["threshold"] == {"value": 0.25, "source": "classifier default"}


def test_report_html_is_self_contained(example_run):
    root, _ = example_run
    html = (root / "out" / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", html)
    assert html.count("<svg ") == 3 and "data:image/png" not in html  # F1 bars, ROC, PR as inline SVG
    assert "data:image/jpeg;base64," in html  # mistake thumbnails
    assert "truncated-on-purpose.jpg" in html


def test_cached_rerun_calls_no_model_and_cache_commands(example_run):
    root, _ = example_run
    result = invoke(
        "eval",
        "-c",
        "nudenet",
        "-d",
        root / "data",
        "-o",
        root / "out2",
        "--cache",
        root / "cache.sqlite",
        "-q",
        "--bootstrap",
        50,
    )
    assert "0 predicted, 24 from cache" in result.output
    info = invoke("cache", "info", "--cache", root / "cache.sqlite")
    assert "nudenet" in info.output and "24" in info.output
    cleared = invoke("cache", "clear", "--cache", root / "cache.sqlite", "--classifier", "nudenet")
    assert "deleted 24 cached predictions" in cleared.output


def test_threshold_and_calibration(tmp_path, red_folder, monkeypatch):
    from imagesafety.bench.evaluate import evaluate

    fixed = evaluate(MeanRedClassifier(), red_folder, threshold=0.9, n_boot=20, progress=False)
    assert fixed.metrics["threshold"]["source"] == "user"
    assert (fixed.predictions["decision"] == (fixed.predictions["score"] >= 0.9).astype(int)).all()
    # split the folder into train/test and calibrate on train
    for split in ("train", "test"):
        (tmp_path / "split" / split).mkdir(parents=True)
    import shutil

    shutil.copytree(red_folder, tmp_path / "split" / "train", dirs_exist_ok=True)
    shutil.copytree(red_folder, tmp_path / "split" / "test", dirs_exist_ok=True)
    calibrated = evaluate(MeanRedClassifier(), tmp_path / "split", calibrate="train", n_boot=20, progress=False)
    assert set(calibrated.predictions["split"]) == {"test"}
    train = calibrated.metrics["threshold"]
    assert train["source"].startswith("F1-optimal on split 'train'")
    assert calibrated.metrics["overall"]["f1"]["value"] >= fixed.metrics["overall"]["f1"]["value"]
    with pytest.raises(ValueError, match="either a threshold or a calibration split"):
        evaluate(MeanRedClassifier(), red_folder, threshold=0.5, calibrate="train")


def test_filters_limit_categories_and_sources(red_folder):
    from imagesafety.bench.evaluate import evaluate

    result = evaluate(
        MeanRedClassifier(), red_folder, categories=["violence"], sources=["real"], n_boot=10, progress=False
    )
    assert set(result.predictions["category"]) == {"violence"} and set(result.predictions["source"]) == {"real"}
    assert len(evaluate(MeanRedClassifier(), red_folder, limit=5, n_boot=10, progress=False).predictions) == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["-c", "nosuch", "-d", "."], "unknown classifier 'nosuch'; registered:"),
        (["-c", "nudenet", "-d", "no/such/thing"], "dataset 'no/such/thing' not found"),
        (["-c", "nudenet", "-d", ".", "--option", "oops"], "--option takes key=value"),
    ],
)
def test_bad_input_gets_one_clear_line(args, message):
    result = runner.invoke(app, ["eval", *args])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


def test_models_and_datasets_listings():
    models = invoke("models").output
    for name in ("nudenet", "clip-zeroshot", "probe"):
        assert name in models
    datasets = invoke("datasets").output
    for name in ("folder", "manifest", "parquet", "hf", "unsafebench", "yiting/UnsafeBench"):
        assert name in datasets
