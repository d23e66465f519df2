"""Numbers you can trust: a retrained model is never served from the cache, a run that failed says so, and the
cache says what it holds."""

import time

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import jpeg_bytes

torch = pytest.importorskip("torch")

runner = CliRunner()


def retrain_in_place(directory, seed):
    """Overwrite a saved tiny CLIP with new random weights (same config, same folder)."""
    from tiny_models import make_tiny_clip

    return make_tiny_clip(directory, seed=seed)


def test_a_model_retrained_in_place_gets_new_predictions_and_embeddings(tmp_path, red_folder):
    from imagesafety.bench.evaluate import evaluate
    from imagesafety.classifiers import load_classifier
    from imagesafety.run.embed import embed
    from imagesafety.store import PredictionCache

    model = retrain_in_place(tmp_path / "tinyclip", seed=0)
    cache = PredictionCache(tmp_path / "c.sqlite")
    spec = f"clip-zeroshot:hf:{model}"
    first = evaluate(load_classifier(spec, device="cpu"), red_folder, cache=cache, progress=False, n_boot=10)
    emb_first = embed(f"hf:{model}", red_folder, cache=cache, progress=False)
    retrain_in_place(model, seed=7)
    second = evaluate(load_classifier(spec, device="cpu"), red_folder, cache=cache, progress=False, n_boot=10)
    emb_second = embed(f"hf:{model}", red_folder, cache=cache, progress=False)
    assert second.stats.cached == 0 and second.stats.predicted == 12
    assert not np.allclose(first.predictions["score"], second.predictions["score"])
    assert emb_second.stats.cached == 0 and not np.allclose(emb_first.matrix, emb_second.matrix)
    assert first.metrics["classifier"]["config"]["weights"] != second.metrics["classifier"]["config"]["weights"]
    again = evaluate(load_classifier(spec, device="cpu"), red_folder, cache=cache, progress=False, n_boot=10)
    assert again.stats.cached == 12  # unchanged weights: served from the cache, as before


def test_a_guard_refuses_an_encoder_whose_weights_changed_and_a_retrained_guard_is_predicted_anew(tmp_path, red_folder):
    from imagesafety.bench.evaluate import evaluate
    from imagesafety.classifiers import load_classifier
    from imagesafety.guard import GuardConfig, train_guard
    from imagesafety.run.embed import embed
    from imagesafety.store import PredictionCache

    model = retrain_in_place(tmp_path / "tinyclip", seed=0)
    embed(f"hf:{model}", red_folder, tmp_path / "emb.parquet", cache=None, progress=False)
    train_guard(tmp_path / "emb.parquet", tmp_path / "guard", config=GuardConfig(epochs=5, val_fraction=0.25))
    cache = PredictionCache(tmp_path / "c.sqlite")
    first = evaluate(
        load_classifier(f"probe:{tmp_path / 'guard'}", device="cpu"), red_folder, cache=cache, progress=False, n_boot=10
    )
    train_guard(
        tmp_path / "emb.parquet", tmp_path / "guard", config=GuardConfig(epochs=5, val_fraction=0.25, seed=3, lr=0.1)
    )
    second = evaluate(
        load_classifier(f"probe:{tmp_path / 'guard'}", device="cpu"), red_folder, cache=cache, progress=False, n_boot=10
    )
    assert second.stats.cached == 0 and not np.allclose(first.predictions["score"], second.predictions["score"])
    retrain_in_place(model, seed=9)
    with pytest.raises(ValueError, match="its weights changed.*allow_encoder_change=true"):
        load_classifier(f"probe:{tmp_path / 'guard'}", device="cpu")
    assert load_classifier(f"probe:{tmp_path / 'guard'}", device="cpu", allow_encoder_change=True).card.encoder_identity


def test_evaluating_a_guard_on_its_own_training_images_warns_with_the_count(tmp_path, red_folder):
    from imagesafety.bench.evaluate import evaluate
    from imagesafety.classifiers import load_classifier
    from imagesafety.guard import GuardConfig, train_guard
    from imagesafety.run.embed import embed

    model = retrain_in_place(tmp_path / "tinyclip", seed=0)
    embed(f"hf:{model}", red_folder, tmp_path / "emb.parquet", cache=None, progress=False)
    result = train_guard(tmp_path / "emb.parquet", tmp_path / "guard", config=GuardConfig(epochs=5, val_fraction=0.25))
    trained = len(result.training_images)
    report = evaluate(
        load_classifier(f"probe:{tmp_path / 'guard'}", device="cpu"),
        red_folder,
        tmp_path / "out",
        cache=None,
        progress=False,
        n_boot=10,
    )
    assert report.warnings == [
        f"{trained} of the 12 evaluated images were used to train probe:guard: these figures overstate it "
        "(evaluate on held-out images, e.g. --split test)"
    ]
    assert "were used to train" in (tmp_path / "out" / "report.html").read_text()


def test_a_manifest_whose_paths_are_all_wrong_fails_and_names_files_and_the_folder(tmp_path):
    from imagesafety.cli import app

    data = tmp_path / "images"
    data.mkdir()
    for i in range(3):
        (data / f"{i}.jpg").write_bytes(jpeg_bytes())
    manifest = tmp_path / "lists" / "manifest.csv"
    manifest.parent.mkdir()
    manifest.write_text(
        "path,label\n" + "".join(f"images/{i}.jpg,{i % 2}\n" for i in range(3))
    )  # relative to the wrong folder
    result = runner.invoke(app, ["eval", "-c", "nudenet", "-d", str(manifest), "-o", str(tmp_path / "out"), "-q"])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "every image failed; relative paths were resolved against" in text and str(manifest.parent.resolve()) in text
    assert "lists/images/0.jpg: cannot read file" in text


def test_error_rows_are_listed_by_file_and_a_high_error_rate_fails(tmp_path, red_folder):
    from imagesafety.cli import app

    bad = red_folder / "unsafe" / "sexual" / "real"
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    result = runner.invoke(
        app, ["eval", "-c", "nudenet", "-d", str(red_folder), "-o", str(tmp_path / "o"), "-q", "--bootstrap", "10"]
    )
    assert result.exit_code == 0, result.output
    assert "error: " in result.output and "broken.jpg: not a decodable image" in " ".join(result.output.split())
    for i in range(20):
        (bad / f"broken{i}.jpg").write_bytes(b"junk")
    failed = runner.invoke(
        app, ["eval", "-c", "nudenet", "-d", str(red_folder), "-o", str(tmp_path / "o2"), "-q", "--bootstrap", "10"]
    )
    assert failed.exit_code == 2 and "21 of 33 images failed (more than --max-error-rate 0.5)" in " ".join(
        failed.output.split()
    )


def test_cache_info_shows_identity_last_use_and_output_folder_and_clear_by_age(tmp_path, red_folder):
    from imagesafety.cli import app
    from imagesafety.store import PredictionCache

    cache = tmp_path / "c.sqlite"
    for out, extra in (("a", []), ("b", ["--option", "labels=BUTTOCKS_EXPOSED"])):
        result = runner.invoke(
            app,
            [
                "eval",
                "-c",
                "nudenet",
                "-d",
                str(red_folder),
                "-o",
                str(tmp_path / out),
                "--cache",
                str(cache),
                "-q",
                "--bootstrap",
                "10",
                *extra,
            ],
        )
        assert result.exit_code == 0, result.output
    rows = PredictionCache(cache).stats()
    assert len(rows) == 2 and all(r["identity"].startswith("sha256:") for r in rows)
    assert {r["last_out"] for r in rows} == {str((tmp_path / "a").resolve()), str((tmp_path / "b").resolve())}
    info = " ".join(runner.invoke(app, ["cache", "info", "--cache", str(cache)], env={"COLUMNS": "250"}).output.split())
    assert (
        "labels=['BUTTOCKS_EXPOSED']" in info and rows[0]["identity"][:19] in info
    )  # the settings that tell rows apart
    assert "deleted 0 " in runner.invoke(app, ["cache", "clear", "--cache", str(cache), "--older-than", "1d"]).output
    time.sleep(1.1)
    assert "deleted 24 " in runner.invoke(app, ["cache", "clear", "--cache", str(cache), "--older-than", "1s"]).output
    assert PredictionCache(cache).stats() == []
