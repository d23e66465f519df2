"""The habits CI keeps: ruff's lint and format check over the code, and mypy over the records, contracts and registry
(the files `[tool.mypy]` in pyproject.toml lists)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CODE = ["src", "tests", "benchmarks"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module", autouse=True)
def tools():
    for module in ("ruff", "mypy"):
        if shutil.which(module) is None and run(module, "--version").returncode != 0:
            pytest.skip(f"{module} is not installed (pip install -e '.[dev]')")


def test_ruff_lint_is_clean():
    result = run("ruff", "check", *CODE)
    assert result.returncode == 0, result.stdout[-4000:]


def test_ruff_format_is_clean():
    result = run("ruff", "format", "--check", *CODE)
    assert result.returncode == 0, result.stdout[-4000:] + "\n(run: ruff format src tests benchmarks)"


def test_the_records_contracts_and_registry_type_check():
    result = run("mypy")
    assert result.returncode == 0, result.stdout[-4000:]
