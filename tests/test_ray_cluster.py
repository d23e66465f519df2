"""The Ray engine on a cluster started as users start one (`ray start --head`), with the driver joining by address."""

import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray")
from imagesafety.bench.evaluate import evaluate  # noqa: E402
from imagesafety.data.example import synthetic_image  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def running_cluster() -> str | None:
    """The address of a cluster this machine runs, as `--address auto` finds it (Ray's current-cluster file), if it
    answers."""
    marker = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
    address = marker.read_text().strip() if marker.is_file() else ""
    host, _, port = address.rpartition(":")
    if not port.isdigit():
        return None
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return address
    except OSError:
        return None


@pytest.fixture(scope="module")
def head():
    """A one-node cluster from the `ray` command line, stopped afterwards; skipped (never stopped) when this machine
    already runs a cluster of someone's, which `--address auto` would join instead."""
    binary = Path(sys.executable).parent / "ray"
    port = free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    if running_cluster():
        pytest.skip(
            f"a Ray cluster already runs on this machine ({running_cluster()}); this test starts and stops its own"
        )
    started = subprocess.run(
        [
            str(binary),
            "start",
            "--head",
            f"--port={port}",
            "--num-cpus=2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    if started.returncode != 0:
        pytest.fail(f"ray start --head failed:\n{started.stdout[-2000:]}\n{started.stderr[-2000:]}")
    try:
        yield port
    finally:
        ray.shutdown()
        subprocess.run([str(binary), "stop", "--force"], capture_output=True, env=env, timeout=120)


def test_eval_on_a_started_cluster_equals_the_local_engine(head, tmp_path):
    rng = np.random.default_rng(1)
    for i in range(12):
        folder = tmp_path / "data" / ("unsafe" if i % 2 else "safe") / "sexual"
        folder.mkdir(parents=True, exist_ok=True)
        synthetic_image(rng, size=80, warm=bool(i % 2)).save(folder / f"{i:02d}.jpg")
    local = evaluate("nudenet", tmp_path / "data", None, cache=None, progress=False, n_boot=20)
    ray.shutdown()
    remote = evaluate(
        "nudenet",
        tmp_path / "data",
        tmp_path / "out",
        cache=None,
        progress=False,
        n_boot=20,
        engine="ray",
        address="auto",
        partition_size=5,
    )
    assert ray.is_initialized() and ray.get_runtime_context().gcs_address.endswith(f":{head}")  # joined, not started
    a, b = local.predictions.set_index("id").sort_index(), remote.predictions.set_index("id").sort_index()
    assert list(a.index) == list(b.index) and len(a) == 12
    np.testing.assert_allclose(a["score"], b["score"], atol=1e-5)
    assert len(list((tmp_path / "out" / "ray-parts").glob("part-*.parquet"))) == 3


def test_an_unreachable_cluster_fails_in_one_line_naming_it(tmp_path):
    ray.shutdown()
    (tmp_path / "d" / "safe").mkdir(parents=True)
    synthetic_image(np.random.default_rng(0), size=64).save(tmp_path / "d" / "safe" / "a.jpg")
    port = free_port()
    with pytest.raises(ValueError, match=f"no Ray cluster answers at 127.0.0.1:{port}") as info:
        evaluate(
            "nudenet",
            tmp_path / "d",
            None,
            cache=None,
            progress=False,
            n_boot=10,
            engine="ray",
            address=f"127.0.0.1:{port}",
        )
    assert "\n" not in str(info.value)
