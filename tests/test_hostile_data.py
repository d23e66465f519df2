"""Batch inputs written as the attack (or the accident): named pipes, huge sparse files, paths out of the dataset's
folder,
private URLs, BOM CSVs, numeric labels, null cells, undecodable file names, duplicate ids, a damaged cache, and settings
that cannot mean anything. Each becomes a clear error row or a one-line refusal, quickly."""

import json
import os
import signal
import sqlite3
import sys
import threading
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import MeanRedClassifier, jpeg_bytes
from imagesafety.bench.evaluate import evaluate
from imagesafety.cli import app
from imagesafety.data import DuplicateIdError, load_dataset


@contextmanager
def deadline(seconds: int):
    """Fail instead of hanging (a FIFO read blocks forever)."""

    def boom(*_):
        raise TimeoutError(f"took longer than {seconds}s")

    previous = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def rows_by_name(result):
    return {os.path.basename(str(r.image)): r for r in result.predictions.itertuples()}


@pytest.mark.skipif(sys.platform == "win32", reason="named pipes and sparse files are POSIX here")
def test_a_fifo_and_a_huge_sparse_file_become_error_rows_quickly(tmp_path):
    folder = tmp_path / "data" / "unsafe"
    folder.mkdir(parents=True)
    for i in range(3):
        (folder / f"ok{i}.jpg").write_bytes(jpeg_bytes((200, 0, 0)))
    os.mkfifo(folder / "pipe.jpg")
    with open(folder / "huge.jpg", "wb") as fh:
        fh.truncate(300 * 1024 * 1024)  # 300 MB on paper, nothing on disk
    with deadline(30):
        result = evaluate(
            MeanRedClassifier(), tmp_path / "data", None, n_boot=10, progress=False, cache=None, max_error_rate=0.9
        )
    rows = rows_by_name(result)
    assert "not a regular file" in rows["pipe.jpg"].error
    assert "exceeds the limit" in rows["huge.jpg"].error and "314572800" in rows["huge.jpg"].error
    assert all(pd.isna(rows[f"ok{i}.jpg"].error) for i in range(3))


def test_paths_outside_the_dataset_folder_are_refused_unless_allowed(tmp_path):
    (tmp_path / "secret.jpg").write_bytes(jpeg_bytes((250, 0, 0)))
    data = tmp_path / "data"
    data.mkdir()
    (data / "in.jpg").write_bytes(jpeg_bytes((250, 0, 0)))
    (data / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    rows = [
        {"path": "in.jpg", "label": 1},
        {"path": "../secret.jpg", "label": 1},
        {"path": str(tmp_path / "secret.jpg"), "label": 1},
        {"path": "link.jpg", "label": 1},
    ]
    (data / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = evaluate(
        MeanRedClassifier(), data / "m.jsonl", None, n_boot=10, progress=False, cache=None, max_error_rate=0.9
    )
    errors = result.predictions["error"].tolist()
    assert pd.isna(errors[0]) and all("outside the dataset's folder" in e for e in errors[1:]), errors
    allowed = evaluate(
        MeanRedClassifier(),
        load_dataset(data / "m.jsonl", allow_outside_root=True),
        None,
        n_boot=10,
        progress=False,
        cache=None,
    )
    assert allowed.predictions["error"].isna().all()


class Hits(BaseHTTPRequestHandler):
    count = 0

    def do_GET(self):
        Hits.count += 1
        self.send_response(302)
        self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_url_rows_go_through_the_guarded_fetcher(tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/x.jpg"
    (tmp_path / "m.jsonl").write_text(
        json.dumps({"path": url, "label": 1}) + "\n" + json.dumps({"path": "a.jpg", "label": 0}) + "\n"
    )
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    try:
        refused = evaluate(
            MeanRedClassifier(), tmp_path / "m.jsonl", None, n_boot=10, progress=False, cache=None, max_error_rate=0.9
        )
        assert "private, loopback" in refused.predictions["error"][0] and Hits.count == 0
        allowed = evaluate(
            MeanRedClassifier(),
            load_dataset(tmp_path / "m.jsonl", url_hosts=["127.0.0.1"]),
            None,
            n_boot=10,
            progress=False,
            cache=None,
            max_error_rate=0.9,
        )
        assert "HTTP 302 (redirects are not followed)" in allowed.predictions["error"][0] and Hits.count == 1
    finally:
        server.shutdown()


def test_bom_csv_numeric_labels_null_cells_and_bad_names(tmp_path):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(jpeg_bytes((220, 0, 0)))
    (tmp_path / "m.csv").write_bytes("\ufeffpath,label,category\na.jpg,1.0,sexual\nb.jpg,0.0,sexual\n".encode("utf-8"))
    samples = list(load_dataset(tmp_path / "m.csv"))
    assert [s.label for s in samples] == [1, 0] and samples[0].category == "sexual"
    (tmp_path / "two.csv").write_text("path,label\na.jpg,2\n")
    with pytest.raises(ValueError, match=r"two.csv row 2: label '2' is not one of safe/unsafe/0/1"):
        list(load_dataset(tmp_path / "two.csv"))
    frame = pd.DataFrame({"image": [{"bytes": jpeg_bytes(), "path": None}, None], "label": [1, 0]})
    frame.to_parquet(tmp_path / "p.parquet")
    result = evaluate(
        MeanRedClassifier(), tmp_path / "p.parquet", None, n_boot=10, progress=False, cache=None, max_error_rate=0.9
    )
    assert (
        pd.isna(result.predictions["error"][0]) and "row 1: the image cell is empty" in result.predictions["error"][1]
    )
    folder = tmp_path / "folder" / "unsafe"
    folder.mkdir(parents=True)
    (folder / "fine.jpg").write_bytes(jpeg_bytes())
    with open(os.path.join(os.fsencode(folder), b"bad\xff.jpg"), "wb") as fh:
        fh.write(jpeg_bytes())
    result = evaluate(
        MeanRedClassifier(), tmp_path / "folder", None, n_boot=10, progress=False, cache=None, max_error_rate=0.9
    )
    bad = result.predictions[result.predictions["error"].notna()]
    assert len(bad) == 1 and "not valid UTF-8" in bad["error"].iloc[0] and "bad" in bad["error"].iloc[0]


def test_duplicate_ids_are_an_error_naming_them(tmp_path):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes())
    (tmp_path / "m.jsonl").write_text(
        "".join(json.dumps({"path": "a.jpg", "label": 1, "id": i}) + "\n" for i in ("x", "y", "x"))
    )
    with pytest.raises(DuplicateIdError, match="'x'"):
        evaluate(MeanRedClassifier(), tmp_path / "m.jsonl", None, n_boot=10, progress=False, cache=None)


def test_a_damaged_cache_fails_the_run_in_one_line(tmp_path):
    from imagesafety.store import StoreError

    data = tmp_path / "data" / "unsafe"
    data.mkdir(parents=True)
    for i in range(200):
        (data / f"{i}.jpg").write_bytes(jpeg_bytes((i, 0, 0), quality=60 + i % 30))
    cache = tmp_path / "cache.sqlite"
    evaluate(MeanRedClassifier(), tmp_path / "data", None, n_boot=10, progress=False, cache=cache)
    with sqlite3.connect(cache) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    raw = bytearray(cache.read_bytes())
    middle = len(raw) // 2
    raw[middle : middle + 8192] = os.urandom(8192)  # a page in the middle overwritten
    cache.write_bytes(bytes(raw))
    with pytest.raises(StoreError, match="damaged"):
        evaluate(MeanRedClassifier(), tmp_path / "data", None, n_boot=10, progress=False, cache=cache)
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["eval", "-c", "nudenet", "-d", str(tmp_path / "data"), "--cache", str(cache), "-q", "-o", str(tmp_path / "o")],
    )
    assert result.exit_code == 2 and "damaged" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, words",
    [
        (["hysac", "search", "--k", "0"], "--k"),
        (["guard", "train", "--epochs", "0"], "--epochs"),
        (["robustness", "-c", "nudenet", "-d", "x", "--k", "0"], "--k"),
    ],
)
def test_impossible_settings_are_refused(args, words):
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and words in result.output and "Traceback" not in result.output


def test_embedding_an_empty_dataset_fails(tmp_path):
    (tmp_path / "empty" / "safe").mkdir(parents=True)
    result = CliRunner().invoke(
        app,
        ["embed", "--encoder", "nsfwjs", "--dataset", str(tmp_path / "empty"), "--out", str(tmp_path / "e.parquet")],
    )
    assert result.exit_code != 0 and "Traceback" not in result.output
