"""The paper cuts a new user meets, one test per message: each mistake is one line on stderr with exit code 2 and no
traceback; long jobs say how big they are and name their bars."""

import io
import json

from rich.console import Console
from typer.testing import CliRunner

from imagesafety import registry
from imagesafety.cli import app

runner = CliRunner()


def one_line_error(result, words: str) -> None:
    text = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert words in text, result.output
    assert "Traceback" not in result.output and result.output.count("error:") == 1


def test_install_hints_keep_their_extra(monkeypatch):
    monkeypatch.setattr(registry.Entry, "missing_modules", lambda self: ["open_clip"] if self.name == "q16" else [])
    listing = runner.invoke(app, ["models", "--kind", "classifier"])
    q16_lines = listing.output[listing.output.index("│ q16") : listing.output.index("│ multiheaded")].splitlines()
    needs = "".join(
        line.split("│")[-2].strip() for line in q16_lines if line.count("│") >= 5
    )  # the last column, unwrapped
    assert needs.replace("install'", "install '") == "pip install 'imagesafety[openclip]'"
    result = runner.invoke(app, ["eval", "-c", "q16", "-d", "."])
    one_line_error(result, "classifier 'q16' needs open_clip: pip install 'imagesafety[openclip]'")


def test_a_missing_module_names_its_extra(monkeypatch):
    import imagesafety.bench.evaluate as evaluate_module

    def no_torch(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'torch'", name="torch")

    monkeypatch.setattr(evaluate_module, "evaluate", no_torch)
    one_line_error(runner.invoke(app, ["eval", "-c", "nudenet", "-d", "."]), "pip install 'imagesafety[clip]'")


def test_an_option_typo_gets_a_suggestion(red_folder):
    result = runner.invoke(
        app, ["eval", "-c", "nudenet", "-d", str(red_folder), "--option", "lables=FEMALE_BREAST_EXPOSED"]
    )
    one_line_error(result, "classifier 'nudenet' has no option 'lables'; did you mean 'labels'?")


def test_serve_threshold_needs_a_category():
    one_line_error(
        runner.invoke(app, ["serve", "--threshold", "0.6", "--no-auth"]), "--threshold takes key=value, got '0.6'"
    )


def test_unknown_categories_list_the_ones_present(red_folder, tmp_path):
    result = runner.invoke(
        app, ["eval", "-c", "nudenet", "-d", str(red_folder), "--categories", "nudity", "-o", str(tmp_path / "o")]
    )
    one_line_error(result, "no images to evaluate: the filters left nothing (categories present: sexual, violence")


def test_a_mistyped_local_folder_is_not_sent_to_the_hub(red_folder):
    result = runner.invoke(app, ["eval", "-c", "clip-zeroshot:hf:./models/tiny-clp", "-d", str(red_folder)])
    one_line_error(result, "'./models/tiny-clp': no such file or folder")


def test_a_hub_id_offline_fails_at_once(red_folder, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = time.perf_counter()
    result = runner.invoke(app, ["eval", "-c", "clip-zeroshot:hf:some-org/not-cached-model", "-d", str(red_folder)])
    one_line_error(result, "not in the local cache while HF_HUB_OFFLINE is set")
    assert time.perf_counter() - started < 10


def test_long_jobs_announce_their_size_and_name_their_bars(red_folder, tmp_path, monkeypatch):
    import imagesafety.run.progress as progress

    screen = io.StringIO()
    monkeypatch.setattr(
        progress, "stderr_console", lambda: Console(file=screen, force_terminal=True, width=200, color_system=None)
    )
    result = runner.invoke(
        app,
        [
            "robustness",
            "-c",
            "nudenet",
            "-d",
            str(red_folder),
            "-o",
            str(tmp_path / "out"),
            "--attacks",
            "square",
            "--eps",
            "0.05",
            "--k",
            "2",
            "--steps",
            "3",
            "--corruptions",
            "jpeg",
            "--severity",
            "3",
            "--cache",
            str(tmp_path / "c.sqlite"),
        ],
    )
    assert result.exit_code == 0, result.output
    shown = screen.getvalue()
    assert "square: 2 images x 5 eps values (up to 3 queries each)" in shown
    assert "square eps=0.05" in shown and "square eps=0.025" in shown and "jpeg severity 3" in shown
    assert "eval nudenet" not in shown.split("clean nudenet")[-1].split("jpeg severity 3")[0].replace("clean", "")


def test_guard_efficiency_checks_its_pool_before_training(tmp_path, tiny_clip_dir, red_folder):
    emb = tmp_path / "emb.parquet"
    assert (
        runner.invoke(
            app, ["embed", "--encoder", f"hf:{tiny_clip_dir}", "--dataset", str(red_folder), "--out", str(emb), "-q"]
        ).exit_code
        == 0
    )
    result = runner.invoke(
        app,
        [
            "guard",
            "efficiency",
            "-e",
            str(emb),
            "--sizes",
            "8,500",
            "--eval-split",
            "none",
            "-o",
            str(tmp_path / "eff"),
            "-q",
        ],
    )
    one_line_error(result, "500")
    assert not (tmp_path / "eff").exists()


def test_serve_says_where_its_audit_log_is(tmp_path, monkeypatch):
    import imagesafety.serve.app as served

    said = []
    monkeypatch.setattr(
        served,
        "create_app",
        lambda config: type(
            "App", (), {"state": type("S", (), {"imagesafety": type("Svc", (), {"audit_url": "sqlite:///X"})()})()}
        )(),
    )
    monkeypatch.setattr("uvicorn.run", lambda *a, **k: None)
    served.serve(served.ServeConfig(auth=False), say=said.append)
    assert said[0] == "audit log: sqlite:///X" and said[1].startswith("WARNING: serving WITHOUT authentication")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    from imagesafety.serve.config import default_audit_url

    assert default_audit_url() == f"sqlite:///{tmp_path / 'data' / 'imagesafety' / 'audit.sqlite'}"


def test_a_relative_encoder_folder_is_stored_absolute(tmp_path, tiny_clip_dir, red_folder, monkeypatch):
    import shutil

    shutil.copytree(tiny_clip_dir, tmp_path / "tinyclip")
    monkeypatch.chdir(tmp_path)
    emb = tmp_path / "emb.parquet"
    assert (
        runner.invoke(
            app, ["embed", "--encoder", "hf:tinyclip", "--dataset", str(red_folder), "--out", str(emb), "-q"]
        ).exit_code
        == 0
    )
    trained = runner.invoke(app, ["guard", "train", "-e", str(emb), "-o", str(tmp_path / "guard")])
    assert trained.exit_code == 0, trained.output
    card = json.loads((tmp_path / "guard" / "guard.json").read_text())
    assert card["encoder"] == f"hf:{tmp_path / 'tinyclip'}"


def test_a_reader_that_leaves_early_is_no_error():
    """`imagesafety schema metrics | head`: when the pipe closes under a command, it stops without an error line."""
    import typer
    from typer.testing import CliRunner

    from imagesafety.cli.common import OneLineErrors

    app = typer.Typer(cls=OneLineErrors)

    @app.command()
    def talk() -> None:
        raise BrokenPipeError(32, "Broken pipe")

    @app.command()
    def other() -> None:
        pass

    result = CliRunner().invoke(app, ["talk"])
    assert result.exit_code == 1 and "error" not in result.output.lower(), result.output
