"""Local datasets honour `--streaming`: folders, manifests and Parquet are read as the run goes (nothing listed, counted
or read ahead), and a run over a dataset several times larger than a memory limit stays under it."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from imagesafety.data import load_dataset
from imagesafety.run.job import known_total

SIDE = 600  # a 600x600 RGB BMP is about 1 MB on disk and in memory: the images cannot compress away
IMAGES = 360
LIMIT_MB = 160


def bmp(rng: np.random.Generator) -> bytes:
    import io

    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(buffer, format="BMP")
    return buffer.getvalue()


def write_dataset(root: Path, fmt: str, n: int) -> Path:
    """`n` distinct ~1 MB images as a folder, a manifest beside its files, or Parquet with the bytes embedded."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    if fmt == "parquet":
        for part in range(3):
            rows = [
                {"id": f"{part}-{i}", "image": bmp(rng), "label": i % 2, "category": "sexual" if i % 2 else None}
                for i in range(n // 3)
            ]
            pq.write_table(pa.Table.from_pylist(rows), root / f"part-{part}.parquet", row_group_size=16)
        return root
    lines = []
    for i in range(n):
        folder = root / ("unsafe/sexual" if i % 2 else "safe")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:05d}.bmp").write_bytes(bmp(rng))
        lines.append({"path": f"{folder.relative_to(root)}/{i:05d}.bmp", "label": i % 2})
    if fmt == "manifest":
        (root / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        return root / "manifest.jsonl"
    return root


RUN = textwrap.dedent(
    """
    import json, resource, sys
    sys.path.insert(0, sys.argv[3])
    from conftest import MeanRedClassifier
    from imagesafety.bench.evaluate import evaluate

    def peak_mb():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    before = peak_mb()
    result = evaluate(
        MeanRedClassifier(), sys.argv[1], sys.argv[2], cache=None, progress=False, n_boot=0, streaming=True,
        batch_size=4, workers=1,
    )
    print(json.dumps({"images": result.metrics["overall"]["support"], "growth_mb": peak_mb() - before}))
    """
)


@pytest.mark.parametrize("fmt", ["folder", "manifest", "parquet"])
def test_a_streamed_run_stays_under_a_memory_limit_far_below_the_dataset(tmp_path, fmt):
    """A whole `eval --streaming` (reading, decoding, predicting, metrics, reports) over ~360 MB of images grows the
    process's peak memory by less than 160 MB: memory is bounded by batches and row groups, not by the dataset."""
    data = write_dataset(tmp_path / "data", fmt, IMAGES)
    size_mb = sum(p.stat().st_size for p in tmp_path.joinpath("data").rglob("*") if p.is_file()) / 2**20
    assert size_mb > 2 * LIMIT_MB
    tests = Path(__file__).parent
    done = subprocess.run(
        [sys.executable, "-c", RUN, str(data), str(tmp_path / "run"), str(tests)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    assert measured["images"] == IMAGES // 3 * 3 if fmt == "parquet" else IMAGES
    assert measured["growth_mb"] < LIMIT_MB, f"{fmt}: peak grew {measured['growth_mb']:.0f} MB over {size_mb:.0f} MB"


@pytest.mark.parametrize("fmt", ["folder", "manifest", "parquet"])
def test_streaming_reads_the_same_rows_without_a_length(tmp_path, fmt):
    data = write_dataset(tmp_path / "data", fmt, 6)
    whole, streamed = load_dataset(data), load_dataset(data, streaming=True)
    assert [(s.id, s.label) for s in streamed] == [(s.id, s.label) for s in whole] and len(whole) == 6
    with pytest.raises(TypeError, match="no known length"):
        len(streamed)
    assert known_total(streamed, None, False) is None and known_total(whole, 4, False) == 4


def test_a_format_that_cannot_stream_is_refused_in_one_line(tmp_path):
    root = tmp_path / "sw"
    (root / "real" / "C1").mkdir(parents=True)
    (root / "real" / "C1" / "a_benchmark.json").write_text("[]")
    with pytest.raises(ValueError, match="a safewatch dataset cannot be streamed"):
        load_dataset(f"safewatch:{root}", streaming=True)
