"""From images to a deployed guard through the CLI: embed, guard train, eval with probe:DIR."""

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import write_red_folder
from imagesafety.classifiers.probe import load_guard
from imagesafety.cli import app
from imagesafety.guard.train import head_scores
from imagesafety.run.embed import read_embeddings

pytest.importorskip("torch")
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_embed_train_and_evaluate_the_guard(tmp_path, tiny_clip_dir):
    data = write_red_folder(tmp_path / "data", n_per_label=20)
    invoke(
        "embed",
        "--encoder",
        f"hf:{tiny_clip_dir}",
        "--dataset",
        data,
        "--out",
        tmp_path / "emb.parquet",
        "--device",
        "cpu",
        "-q",
    )
    output = invoke(
        "guard",
        "train",
        "--embeddings",
        tmp_path / "emb.parquet",
        "--out",
        tmp_path / "guard",
        "--target",
        "multilabel",
        "--val-fraction",
        "0.25",
        "--epochs",
        "50",
    )
    assert "saved to" in output and "sexual" in output
    head, card = load_guard(tmp_path / "guard")
    assert card.outputs == ["unsafe", "sexual", "violence"] and card.encoder == f"hf:{tiny_clip_dir}"

    invoke(
        "eval",
        "--classifier",
        f"probe:{tmp_path / 'guard'}",
        "--dataset",
        data,
        "--out",
        tmp_path / "eval",
        "--option",
        "device=cpu",
        "-q",
        "--bootstrap",
        "20",
    )
    preds = pd.read_parquet(tmp_path / "eval" / "predictions.parquet").set_index("id")
    emb = read_embeddings(tmp_path / "emb.parquet")
    expected = head_scores(head, emb.matrix)
    ids = emb.ok["id"].tolist()
    np.testing.assert_allclose(preds.loc[ids, "score"].to_numpy(), expected[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(preds.loc[ids, "score_violence"].to_numpy(), expected[:, 2], rtol=1e-5, atol=1e-6)
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["threshold"]["value"] == pytest.approx(card.thresholds["unsafe"])


def test_guard_errors_are_one_clear_line(tmp_path):
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "x.parquet")
    result = runner.invoke(app, ["guard", "train", "--embeddings", str(tmp_path / "x.parquet")])
    assert result.exit_code == 2 and "not an imagesafety embeddings file" in " ".join(result.output.split())
    result = runner.invoke(app, ["embed", "--encoder", "nonsense", "--dataset", str(tmp_path)])
    assert result.exit_code == 2 and "error:" in result.output
