"""The remaining commands as a user types them: robustness, perspective build-trainset, serve."""

import json
import os
import signal
import subprocess
import sys

import httpx
from typer.testing import CliRunner

from imagesafety.cli import app

runner = CliRunner()


def test_robustness_command(red_folder, tmp_path):
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
            "--no-eps-curve",
            "--corruptions",
            "jpeg",
            "--severity",
            "1,5",
            "--cache",
            str(tmp_path / "c.sqlite"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "robustness.json").read_text())
    assert metrics["protocol"]["attacked"] == 2 and set(metrics["corruptions"]["jpeg"]) == {"1", "5"}
    refused = runner.invoke(app, ["robustness", "-c", "nudenet", "-d", str(red_folder), "--attacks", "pgd"])
    assert refused.exit_code == 2 and "--attacks square" in " ".join(refused.output.split())


def test_perspective_build_trainset_command(red_folder, tmp_path):
    result = runner.invoke(app, ["perspective", "build-trainset", "-d", str(red_folder), "-o", str(tmp_path / "ts")])
    assert result.exit_code == 0, result.output
    assert "negative samples" in result.output and (tmp_path / "ts" / "llava_train.json").is_file()


def test_serve_command_starts_answers_and_stops(tmp_path):
    from serve_helpers import free_port, wait_until_ready

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imagesafety.cli",
            "serve",
            "--classifier",
            "nudenet",
            "--port",
            str(port),
            "--api-key",
            "k1",
            "--audit-url",
            f"sqlite:///{tmp_path / 'audit.sqlite'}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        wait_until_ready(f"http://127.0.0.1:{port}", process=proc)
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
        models = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": "Bearer k1"}).json()
        assert [m["id"] for m in models["data"]] == ["nudenet"]
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
    assert proc.returncode == 0
