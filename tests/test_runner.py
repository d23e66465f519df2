"""The runner and its cache: zero model calls on re-run, resume after interruption, error rows."""

import gc
import json
import sys

import pytest

from conftest import MeanRedClassifier, jpeg_bytes
from imagesafety.bench.evaluate import evaluate
from imagesafety.data import load_dataset
from imagesafety.run.runner import RUN_GC_THRESHOLD, RunInterrupted, Runner, fewer_collections
from imagesafety.run.tasks import PredictionTask
from imagesafety.store import PredictionCache, StoreError


def test_second_identical_run_makes_zero_model_calls(red_folder, tmp_path):
    cache = PredictionCache(tmp_path / "c.sqlite")
    first = MeanRedClassifier()
    rows1 = Runner(PredictionTask(first, cache), batch_size=4, show_progress=False).run(load_dataset(red_folder))
    assert first.images_seen == 12
    second = MeanRedClassifier()
    runner = Runner(PredictionTask(second, cache), batch_size=4, show_progress=False)
    rows2 = runner.run(load_dataset(red_folder))
    assert second.calls == 0 and runner.stats.cached == 12 and runner.stats.predicted == 0
    assert rows1["score"].tolist() == rows2["score"].tolist()
    assert rows2["category_scores"].iloc[0] == {"sexual": rows2["score"].iloc[0]}


def test_config_change_is_a_different_cache_key(red_folder, tmp_path):
    cache = PredictionCache(tmp_path / "c.sqlite")
    Runner(PredictionTask(MeanRedClassifier(), cache), show_progress=False).run(load_dataset(red_folder))
    other = MeanRedClassifier(fail_on_green=True)
    Runner(PredictionTask(other, cache), show_progress=False).run(load_dataset(red_folder))
    assert other.images_seen == 12


class InterruptAfter(MeanRedClassifier):
    """Raises KeyboardInterrupt (Ctrl-C) on its n-th call."""

    def __init__(self, n):
        super().__init__()
        self.n = n

    def predict(self, images):
        if self.calls + 1 == self.n:
            self.calls += 1
            raise KeyboardInterrupt
        return super().predict(images)


def test_interrupted_run_resumes_without_redoing_finished_images(red_folder, tmp_path):
    cache = PredictionCache(tmp_path / "c.sqlite")
    interrupted = InterruptAfter(3)
    with pytest.raises(RunInterrupted) as stop:
        Runner(PredictionTask(interrupted, cache), batch_size=4, show_progress=False).run(load_dataset(red_folder))
    assert len(stop.value.rows) == 8 and interrupted.images_seen == 8
    resumed = MeanRedClassifier()
    runner = Runner(PredictionTask(resumed, cache), batch_size=4, show_progress=False)
    rows = runner.run(load_dataset(red_folder))
    assert resumed.images_seen == 4 and runner.stats.cached == 8 and len(rows) == 12


def test_broken_files_become_error_rows_and_the_run_goes_on(red_folder, tmp_path):
    bad = red_folder / "unsafe" / "sexual" / "real"
    (bad / "truncated.jpg").write_bytes(jpeg_bytes(size=(300, 300))[:500])
    (bad / "notes.txt").write_text("not an image")
    (bad / "empty.png").write_bytes(b"")
    result = evaluate(MeanRedClassifier(), red_folder, tmp_path / "out", n_boot=50, progress=False)
    rows = result.predictions.set_index("id")
    errors = rows[rows["error"].notna()]
    assert set(errors.index) == {
        "unsafe/sexual/real/truncated.jpg",
        "unsafe/sexual/real/notes.txt",
        "unsafe/sexual/real/empty.png",
    }
    assert "not a decodable image" in errors.loc["unsafe/sexual/real/truncated.jpg", "error"]
    assert result.metrics["overall"]["support"] == 12 and result.metrics["overall"]["errors"] == 3
    assert result.metrics["run"]["errors"] == 3
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Errors (3)" in html and "truncated.jpg" in html


def test_a_classifier_crash_on_one_image_costs_only_that_image(tmp_path):
    root = tmp_path / "d"
    (root / "safe").mkdir(parents=True)
    (root / "unsafe").mkdir()
    (root / "safe" / "green.jpg").write_bytes(jpeg_bytes((0, 255, 0)))
    for i in range(3):
        (root / "unsafe" / f"red{i}.jpg").write_bytes(jpeg_bytes((250, 0, 0)))
    clf = MeanRedClassifier(fail_on_green=True)
    rows = Runner(PredictionTask(clf, None), batch_size=4, show_progress=False).run(load_dataset(root)).set_index("id")
    assert "green images break this model" in rows.loc["safe/green.jpg", "error"]
    assert rows["error"].notna().sum() == 1 and rows["score"].notna().sum() == 3


def test_cache_stats_and_clear(red_folder, tmp_path):
    cache = PredictionCache(tmp_path / "c.sqlite")
    Runner(PredictionTask(MeanRedClassifier(), cache), show_progress=False).run(load_dataset(red_folder))
    assert [(s["classifier"], s["entries"]) for s in cache.stats()] == [("mean-red", 12)]
    kept = "SELECT COUNT(*) FROM batch_predictions"
    assert cache._connect().execute(kept).fetchone() == (1,)  # the 12 images in one batch of 16, kept whole
    assert cache.clear("other") == 0 and cache._connect().execute(kept).fetchone() == (1,)
    assert cache.clear("mean-red") == 12 and cache.stats() == [] and cache._connect().execute(kept).fetchone() == (0,)
    Runner(PredictionTask(MeanRedClassifier(), cache), show_progress=False).run(load_dataset(red_folder))
    assert cache.clear(older_than_s=3600) == 0 and cache._connect().execute(kept).fetchone() == (1,)
    assert cache.clear(older_than_s=0) == 12 and cache._connect().execute(kept).fetchone() == (0,)


def test_cache_reads_and_writes_many_rows_per_statement_and_read_back_exactly(tmp_path):
    """sqlite3 gives the interpreter lock away at every step: a statement per stored row, or a result row per hit,
    waited for the lock at every row whenever another thread was busy (a cold run spent a third of its time so)."""
    import sqlite3

    import numpy as np

    cache = PredictionCache(tmp_path / "c.sqlite")
    statements: list[str] = []
    cache._connect().set_trace_callback(statements.append)
    key = ("mean-red", "1", "abc")
    predictions = [
        (f"{i:064x}", {"unsafe_score": i / 7, "decision": i % 2, "raw": {"text": "a\tb\nc,d"}}) for i in range(2000)
    ]
    cache.put_many(key, predictions)
    inserts = [s for s in statements if s.startswith("INSERT OR REPLACE INTO keyed_predictions")]
    assert len(inserts) == 1  # 2,000 rows of 4 values: 8,000 parameters, under MAX_PARAMETERS
    statements.clear()
    wanted = [sha for sha, _ in predictions[::3]] + ["f" * 64]
    found = cache.get_many(key, wanted)
    assert found == {sha: p for sha, p in predictions[::3]}  # exact floats and strings with tabs and newlines
    assert len([s for s in statements if s.startswith("SELECT")]) == 1
    cache._connect().setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)  # SQLite before 3.32
    statements.clear()
    cache.put_many(key, predictions)
    assert len([s for s in statements if s.startswith("INSERT OR REPLACE INTO keyed_predictions")]) == 9  # 249 rows
    statements.clear()
    assert cache.get_many(key, [sha for sha, _ in predictions]) == dict(predictions)
    assert len([s for s in statements if s.startswith("SELECT")]) == 3  # 998 hashes and the key's number each
    vectors = {f"{i:064x}": np.random.default_rng(i).normal(size=5).astype(np.float32) for i in range(700)}
    cache.put_embeddings("enc@1", list(vectors.items()))
    back = cache.get_embeddings("enc@1", list(vectors))
    assert all(np.array_equal(back[sha], v) for sha, v in vectors.items()) and len(back) == 700
    back[next(iter(back))][0] = 1.0  # each a writable array of its own
    cache.put_attack_results("attack", [("a" * 64, {"flipped": True})])
    assert cache.get_attack_results("attack", ["a" * 64, "b" * 64]) == {"a" * 64: {"flipped": True}}
    odd = [("c" * 64, {"unsafe_score": float("nan"), "decision": 0}), ("d" * 64, {"unsafe_score": float("inf")})]
    cache.put_many(key, odd)  # json writes NaN and Infinity, which orjson refuses: read back by json
    back = cache.get_many(key, ["c" * 64, "d" * 64, predictions[0][0]])
    assert np.isnan(back["c" * 64]["unsafe_score"]) and back["d" * 64] == {"unsafe_score": float("inf")}
    assert back[predictions[0][0]] == predictions[0][1]


def test_cache_written_before_model_numbers_keeps_its_entries(tmp_path):
    """A cache file of the earlier layout (one `predictions` table keyed by four texts) is moved over when opened:
    every entry found under its key, none under another, the old table gone, and `cache info` counting them."""
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE predictions (classifier TEXT NOT NULL, version TEXT NOT NULL, config_hash TEXT NOT NULL, "
            "image_sha256 TEXT NOT NULL, prediction TEXT NOT NULL, created REAL NOT NULL, "
            "PRIMARY KEY (classifier, version, config_hash, image_sha256))"
        )
        rows = [
            ("a", "1", "h", f"{i:064x}", json.dumps({"unsafe_score": i / 10, "decision": 0}), 1.0) for i in range(5)
        ]
        rows += [("b", "2", "h", f"{i:064x}", json.dumps({"unsafe_score": 0.9, "decision": 1}), 2.0) for i in range(3)]
        db.executemany("INSERT INTO predictions VALUES (?, ?, ?, ?, ?, ?)", rows)
    cache = PredictionCache(path)
    shas = [f"{i:064x}" for i in range(6)]
    assert cache.get_many(("a", "1", "h"), shas) == {
        f"{i:064x}": {"unsafe_score": i / 10, "decision": 0} for i in range(5)
    }
    assert set(cache.get_many(("b", "2", "h"), shas)) == set(shas[:3]) and cache.get_many(("a", "1", "x"), shas) == {}
    assert sorted((s["classifier"], s["entries"]) for s in cache.stats()) == [("a", 5), ("b", 3)]
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT name FROM sqlite_master WHERE name = 'predictions'").fetchall() == []
    assert PredictionCache(path).get_many(("b", "2", "h"), shas[:1]) == {shas[0]: {"unsafe_score": 0.9, "decision": 1}}


def files_of_every_kind(root):
    """Stills (opaque, transparent, rotated, large, a polyglot), an animation and a broken file: a folder dataset."""
    import io

    from PIL import Image

    from planted import animation_bytes

    folder = root / "unsafe" / "sexual"
    folder.mkdir(parents=True)
    (folder / "opaque.png").write_bytes(jpeg_bytes())
    clear = Image.new("RGBA", (32, 32), (255, 0, 0, 255))
    clear.paste((0, 0, 0, 0), (0, 0, 16, 32))
    clear.save(folder / "transparent.png")
    rotated = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 20), (200, 10, 10)).save(rotated, format="JPEG", exif=exif)
    (folder / "rotated.jpg").write_bytes(rotated.getvalue())
    (folder / "polyglot.png").write_bytes(animation_bytes("PNG") + b"<script>alert(1)</script>" * 4)
    (folder / "animated.gif").write_bytes(animation_bytes("GIF"))
    Image.new("RGB", (1100, 1000), (90, 0, 0)).save(folder / "large.png")  # over MAX_STILL_PIXELS: the threads'
    (folder / "broken.jpg").write_bytes(jpeg_bytes()[:100])
    return root


def test_stills_decoded_in_worker_processes_give_the_threads_rows(tmp_path, monkeypatch):
    """Once a run is long (here: at once), stills are decoded in worker processes: every row, error and view report
    equals the threads' own, and a worker that dies hands its batches back to the threads."""
    import subprocess

    from imagesafety.run import runner as runner_module
    from imagesafety.run import still_processes

    data = files_of_every_kind(tmp_path / "d")

    def rows(processes: int | None):
        chosen = {} if processes is None else {"processes": processes}  # None: the default (the variable's)
        runner = Runner(PredictionTask(MeanRedClassifier()), batch_size=4, show_progress=False, **chosen)
        out = runner.run(load_dataset(data)).set_index("id").sort_index()
        return out[["sha256", "score", "error", "views"]].astype(str)

    threads = rows(0)
    assert threads["error"].str.contains("broken.jpg").any() and threads["error"].str.contains("follow the end").any()
    assert threads["views"].str.contains("white").any() and threads["views"].str.contains("animation").any()
    started = []
    popen = subprocess.Popen
    monkeypatch.setattr(runner_module, "PROCESSES_AFTER", 0)
    monkeypatch.setattr(still_processes.subprocess, "Popen", lambda *a, **k: started.append(a[0]) or popen(*a, **k))
    assert rows(1).equals(threads) and started and started[0][-1] == "imagesafety.run.still_processes"
    started.clear()
    monkeypatch.setenv("IMAGESAFETY_DECODE_PROCESSES", "0")  # the switch for every command
    assert rows(None).equals(threads) and not started
    monkeypatch.setenv("IMAGESAFETY_DECODE_PROCESSES", "two")
    with pytest.raises(ValueError, match="IMAGESAFETY_DECODE_PROCESSES='two': give a number of processes, 0 for none"):
        rows(None)
    monkeypatch.delenv("IMAGESAFETY_DECODE_PROCESSES")
    dead = [sys.executable, "-c", "import sys; sys.exit(3)"]  # a worker that dies before answering
    monkeypatch.setattr(still_processes.subprocess, "Popen", lambda args, **k: popen(dead, **k))
    assert rows(1).equals(threads)


class CountingCache(PredictionCache):
    """Counts the writes (commits) of predictions, and may fail them as a damaged file would."""

    def __init__(self, path, fail: bool = False):
        super().__init__(path)
        self.writes: list[int] = []
        self.fail = fail

    def put_many(self, key, items):
        items = list(items)
        if self.fail:
            raise StoreError(f"{self.path}: the prediction cache cannot be used (disk I/O error)")
        self.writes.append(len(items))
        super().put_many(key, items)


def test_new_results_are_committed_together_and_all_of_them_are_kept(red_folder, tmp_path):
    cache = CountingCache(tmp_path / "c.sqlite")
    Runner(PredictionTask(MeanRedClassifier(), cache), batch_size=2, show_progress=False).run(load_dataset(red_folder))
    assert sum(cache.writes) == 12 and len(cache.writes) < 6  # six batches, fewer commits (a commit per second)
    again = MeanRedClassifier()
    Runner(PredictionTask(again, cache), batch_size=2, show_progress=False).run(load_dataset(red_folder))
    assert again.calls == 0


def test_a_cache_that_fails_while_storing_fails_the_run_with_its_message(red_folder, tmp_path):
    cache = CountingCache(tmp_path / "c.sqlite", fail=True)
    runner = Runner(PredictionTask(MeanRedClassifier(), cache), batch_size=2, show_progress=False)
    with pytest.raises(StoreError, match="c.sqlite: the prediction cache cannot be used"):
        runner.run(load_dataset(red_folder))


def test_garbage_is_collected_less_often_during_a_run_and_as_before_after(red_folder, tmp_path):
    seen = []

    class Watching(MeanRedClassifier):
        def predict(self, images):
            seen.append(gc.get_threshold()[0])
            return super().predict(images)

    before = gc.get_threshold()
    Runner(PredictionTask(Watching(), None), show_progress=False).run(load_dataset(red_folder))
    assert seen and set(seen) == {RUN_GC_THRESHOLD} and gc.get_threshold() == before


def test_overlapping_runs_restore_the_threshold_when_the_last_one_ends():
    before = gc.get_threshold()
    first, second = fewer_collections(), fewer_collections()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first run ends while the second goes on
    assert gc.get_threshold()[0] == RUN_GC_THRESHOLD
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before


class PaidRedClassifier(MeanRedClassifier):
    """MeanRed with a usage on every prediction (as answer-giving models have)."""

    name = "paid-red"

    def predict(self, images):
        from imagesafety.classifiers.base import Usage

        out = super().predict(images)
        for p in out:
            p.usage = Usage(3, 1, 0.25)
        return out


def test_a_cached_rerun_gives_the_first_runs_rows_exactly(red_folder, tmp_path):
    """Rows made from the cache's JSON (no Prediction per row) equal the rows of the run that computed them: scores,
    decisions, category scores, raw answers, an animation's views report and usage; an entry cached before usage was
    a field (it sat in the raw answer) reads as that usage."""
    import pandas as pd

    from planted import animation_bytes

    (red_folder / "unsafe" / "sexual" / "moving.gif").write_bytes(animation_bytes("gif"))
    cache = PredictionCache(tmp_path / "c.sqlite")
    first = Runner(PredictionTask(PaidRedClassifier(), cache), batch_size=4, show_progress=False)
    rows1 = first.run(load_dataset(red_folder))
    again = PaidRedClassifier()
    second = Runner(PredictionTask(again, cache), batch_size=4, show_progress=False)
    rows2 = second.run(load_dataset(red_folder))
    assert again.calls == 0 and second.stats.cached == 13
    pd.testing.assert_frame_equal(rows1, rows2)
    assert json.loads(rows2["raw"].iloc[0]) == {"mean_red": rows2["score"].iloc[0]}
    moving = rows2.set_index("id").loc["unsafe/sexual/moving.gif"]
    assert json.loads(moving["views"])["sampling"]["kind"] == "animation"
    assert json.loads(moving["usage"])["prompt_tokens"] == 3 * len(
        json.loads(moving["views"])["sampling"]["frames_read"]
    )
    earlier = PredictionCache(tmp_path / "earlier.sqlite")  # written by a version that kept usage in the raw answer
    task = PredictionTask(PaidRedClassifier(), earlier)
    sha = rows2["sha256"].iloc[0]
    old = {"unsafe_score": 0.5, "decision": 1, "category_scores": {"sexual": 1}, "raw": {"usage": {"cost": 2}}}
    earlier.put_many(task.key, [(sha, old)])
    row = Runner(task, batch_size=4, show_progress=False).run(load_dataset(red_folder)).iloc[0]
    assert json.loads(row["usage"]) == {"prompt_tokens": 0, "completion_tokens": 0, "cost": 2.0}
    assert row["category_scores"] == {"sexual": 1.0} and isinstance(row["category_scores"]["sexual"], float)


def test_lookups_asked_for_while_one_runs_are_answered_by_one_lookup():
    """The batches queued while the cache works are looked up together (fewer, larger statements); a failing look-up
    fails every batch it answered."""
    import threading

    from imagesafety.run.lookups import Lookups

    calls: list[list[str]] = []
    first_started, release = threading.Event(), threading.Event()

    def lookup(shas):
        calls.append(list(shas))
        if len(calls) == 1:
            first_started.set()
            release.wait(5)
        if "bad" in shas:
            raise StoreError("broken cache")
        return {sha: sha.upper() for sha in shas}

    with Lookups(lookup) as lookups:
        a = lookups.submit(["a"])
        first_started.wait(5)
        b, c = lookups.submit(["b"]), lookups.submit(["c", "d"])
        release.set()
        assert a.result(5)["a"] == "A" and b.result(5)["b"] == "B" and c.result(5)["d"] == "D"
        assert calls == [["a"], ["b", "c", "d"]]
        bad, after = lookups.submit(["bad"]), None
        with pytest.raises(StoreError, match="broken cache"):
            bad.result(5)
        after = lookups.submit(["e"])
        assert after.result(5) == {"e": "E"}


def test_batches_kept_whole_are_looked_up_whole_and_the_others_image_by_image():
    """A batch found by its digest comes back whole, in order; one not found, one kept with another length, and one
    without a digest are looked up together image by image, and nothing else is."""
    import threading

    from imagesafety.run.lookups import Lookups

    calls: list[list[str]] = []
    kept = {"d1": ["x1", "x2"], "d3": ["only one"]}
    hold = threading.Event()

    def whole(digests):
        hold.wait(5)  # the four batches queue up meanwhile
        return {d: kept[d] for d in digests if d in kept}

    def lookup(shas):
        calls.append(list(shas))
        return {sha: sha.upper() for sha in shas}

    with Lookups(lookup, whole) as lookups:
        futures = [
            lookups.submit(["a", "b"], "d1"),
            lookups.submit(["c"], "d2"),
            lookups.submit(["e", "f"], "d3"),
            lookups.submit(["g"]),
        ]
        hold.set()
        answers = [f.result(5) for f in futures]
    assert answers[0] == {"a": "x1", "b": "x2"}
    assert all(answer == {"c": "C", "e": "E", "f": "F", "g": "G"} for answer in answers[1:])
    assert calls == [["c", "e", "f", "g"]]


def test_read_ahead_holds_at_most_its_weight_ahead():
    """With a weight, the reading thread stops where the items waiting would weigh more than `most` (one item always
    passes); without, only the count bounds it."""
    import threading
    import time

    from imagesafety.data.decoding import read_ahead

    produced: list[int] = []

    def items():
        for i in range(10):
            produced.append(i)
            yield i

    out = read_ahead(items(), 100, threading.Event(), weight=lambda i: 40, most=100)
    assert next(out) == 0
    deadline = time.monotonic() + 5
    while len(produced) < 4 and time.monotonic() < deadline:  # however slow the machine, wait until it is held back
        time.sleep(0.01)
    time.sleep(0.3)
    assert len(produced) == 4  # 0 taken, 1 and 2 waiting (80), 3 read and held back
    assert list(out) == list(range(1, 10))
    heavy = read_ahead(iter([1, 2]), 100, threading.Event(), weight=lambda i: 10**9, most=100)
    assert list(heavy) == [1, 2]


def test_a_cached_run_over_parquet_builds_no_sample_per_row(tmp_path, monkeypatch):
    """Rows read as columns stay columns when the cache answers them: a cold run builds a Sample for each row it
    decodes, its re-run none (and gives the same rows)."""
    import pandas as pd

    from imagesafety.data.batch import SampleBatch

    built = []
    real = SampleBatch.sample
    monkeypatch.setattr(SampleBatch, "sample", lambda self, i: built.append(i) or real(self, i))
    pd.DataFrame(
        {"image": [jpeg_bytes((i * 20, 0, 0)) for i in range(10)], "label": [i % 2 for i in range(10)]}
    ).to_parquet(tmp_path / "rows.parquet")
    cache = PredictionCache(tmp_path / "c.sqlite")
    first = Runner(PredictionTask(MeanRedClassifier(), cache), batch_size=4, show_progress=False)
    rows1 = first.run(load_dataset(tmp_path / "rows.parquet"))
    assert len(built) == 10 and first.stats.predicted == 10
    built.clear()
    second = Runner(PredictionTask(MeanRedClassifier(), cache), batch_size=4, show_progress=False)
    rows2 = second.run(load_dataset(tmp_path / "rows.parquet"))
    assert built == [] and second.stats.cached == 10
    pd.testing.assert_frame_equal(rows1, rows2)


def test_take_waiting_takes_what_is_queued_up_to_a_size_and_stops_at_the_sentinel():
    import queue

    from imagesafety.queues import take_waiting

    waiting: queue.SimpleQueue = queue.SimpleQueue()
    for item in ([1, 2], [3], [4, 5, 6], None, [7]):
        waiting.put(item)
    assert take_waiting(waiting, len, 3) == ([[1, 2], [3]], False)  # 3 reached: [4, 5, 6] waits
    assert take_waiting(waiting, len, 100) == ([[4, 5, 6]], True)  # the sentinel ends it; [7] is never taken
    assert waiting.get_nowait() == [7]


def test_typed_frame_gives_the_dtypes_pandas_infers():
    """Texts are made by Arrow in one call: the frame equals the one pandas builds from the same lists (texts with
    missing values, a column of only None, one with a number among texts, dicts), dtypes included."""
    import pandas as pd

    from imagesafety.run.tasks import PREDICTION_COLUMNS, typed_frame

    n = 6
    columns = {name: [None] * n for name in PREDICTION_COLUMNS}
    columns |= {
        "id": [f"r{i}" for i in range(n)],
        "label": [0, 1, None, 1, 0, 1],
        "category": ["sexual", None, "hate", "hate", None, "sexual"],
        "image": ["<bytes>", "a.png", 3, "b.png", "c.png", "d.png"],  # a number among texts: object, as pandas has it
        "sha256": [f"{i:064x}" for i in range(n)],
        "score": [0.5, None, 0.25, 1.0, 0.0, 0.75],
        "classifier_decision": [1, None, 0, 1, 0, 1],
        "category_scores": [{}, {"hate": 0.5}, {}, {}, {}, {}],
        "error": [None, "boom", None, None, None, None],
    }
    frame = typed_frame(columns, PREDICTION_COLUMNS)
    expected = pd.DataFrame(
        {
            **columns,
            "label": pd.array(columns["label"], dtype="Int64"),
            "score": pd.array(columns["score"], dtype="float64"),
            "classifier_decision": pd.array(columns["classifier_decision"], dtype="Int64"),
        },
        columns=list(PREDICTION_COLUMNS),
    )
    pd.testing.assert_frame_equal(frame, expected)
    assert frame["category"].isna().tolist() == [False, True, False, False, True, False]
    assert frame["split"].dtype == object and frame["image"].dtype == object


def test_a_rerun_of_the_same_batches_reads_each_whole(tmp_path):
    """A run keeps each complete batch it computed together: its re-run reads them by batch (no look-up by image) and
    gives the same rows; a batch with a changed image, a batch holding a broken image, and batches cut another way are
    looked up image by image and still give the right rows (and the last, found image by image, are not kept)."""
    import re

    import pandas as pd

    HASH = r"'[0-9a-f]{64}'"
    images = [jpeg_bytes((i * 20, 0, 0)) for i in range(10)]
    pd.DataFrame({"image": images, "label": [i % 2 for i in range(10)]}).to_parquet(tmp_path / "rows.parquet")
    cache = PredictionCache(tmp_path / "c.sqlite")
    statements: list[str] = []

    def run(path, batch_size=4):
        statements.clear()
        classifier = MeanRedClassifier()
        runner = Runner(PredictionTask(classifier, cache), batch_size=batch_size, show_progress=False)
        cache._local.conn = None  # a new connection for the look-up thread to trace
        real_connect = cache._connect

        def traced():
            conn = real_connect()
            conn.set_trace_callback(statements.append)
            return conn

        cache._connect = traced
        try:
            rows = runner.run(load_dataset(path))
        finally:
            del cache._connect
        by_image = [s for s in statements if s.startswith("SELECT") and "FROM keyed_predictions" in s]
        by_batch = [s for s in statements if s.startswith("SELECT") and "FROM batch_predictions" in s]
        run.writes = [s for s in statements if s.startswith("INSERT")]
        return rows, classifier.images_seen, by_image, by_batch

    rows1, seen, _, _ = run(tmp_path / "rows.parquet")
    assert seen == 10
    with cache._guard():
        assert cache._connect().execute("SELECT COUNT(*) FROM batch_predictions").fetchone() == (3,)  # 4 + 4 + 2
    rows2, seen, by_image, by_batch = run(tmp_path / "rows.parquet")
    assert seen == 0 and by_image == [] and len(by_batch) >= 1 and run.writes == []  # nothing to keep again
    pd.testing.assert_frame_equal(rows1, rows2)

    changed = images[:5] + [jpeg_bytes((255, 0, 0))] + images[6:]  # the second batch: rows 4-7
    pd.DataFrame({"image": changed, "label": [i % 2 for i in range(10)]}).to_parquet(tmp_path / "changed.parquet")
    rows3, seen, by_image, _ = run(tmp_path / "changed.parquet")
    assert seen == 1 and len(by_image) == 1 and len(re.findall(HASH, by_image[0])) == 4  # the second batch's
    scores, before = rows3["score"].tolist(), rows1["score"].tolist()
    assert scores[:5] + scores[6:] == before[:5] + before[6:] and scores[5] > 0.95 > before[5]

    rows4, seen, by_image, _ = run(tmp_path / "rows.parquet", batch_size=3)
    assert seen == 0 and len(by_image) >= 1 and run.writes == []  # found image by image: not kept whole again
    pd.testing.assert_frame_equal(rows1, rows4)

    broken = images[:8] + [jpeg_bytes((0, 0, 255)), b"not an image"]  # the last batch: one new image, one broken
    pd.DataFrame({"image": broken, "label": [i % 2 for i in range(10)]}).to_parquet(tmp_path / "broken.parquet")
    assert run(tmp_path / "broken.parquet")[1] == 1
    rows5, seen, by_image, _ = run(tmp_path / "broken.parquet")
    assert seen == 0 and len(by_image) == 1 and len(re.findall(HASH, by_image[0])) == 2  # the last, never kept
    assert rows5["error"].notna().tolist() == [False] * 9 + [True]


def test_the_writer_stores_whole_batches_after_their_results_and_only_where_asked(monkeypatch):
    """A batch to keep whole is stored with its new results, after them (on the same clock: a second); a writer
    without a place for batches refuses one."""
    import time

    import imagesafety.run.runner as runner_module
    from imagesafety.run.runner import ResultWriter

    stored: list = []
    monkeypatch.setattr(runner_module, "STORE_SECONDS", 0.05)
    writer = ResultWriter(lambda items: stored.append(("items", items)), lambda b: stored.append(("batches", b)))
    writer.add([("s1", {"unsafe_score": 0.5})], ("d1", [{"unsafe_score": 0.5}]))
    time.sleep(0.1)
    writer.add([("s2", {"unsafe_score": 0.25})], ("d2", [{"unsafe_score": 0.25}]))
    deadline = time.monotonic() + 5
    while len(stored) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert stored == [
        ("items", [("s1", {"unsafe_score": 0.5}), ("s2", {"unsafe_score": 0.25})]),
        ("batches", [("d1", [{"unsafe_score": 0.5}]), ("d2", [{"unsafe_score": 0.25}])]),
    ]
    writer.add([("s3", {"unsafe_score": 1.0})])
    writer.close()
    assert stored[-1] == ("items", [("s3", {"unsafe_score": 1.0})])
    alone = ResultWriter(lambda items: stored.append(("items", items)), lambda b: stored.append(("batches", b)))
    alone.add([], ("d3", [{"unsafe_score": 0.75}]))
    alone.close()  # a batch without new results is still stored
    assert stored[-1] == ("batches", [("d3", [{"unsafe_score": 0.75}])])
    with pytest.raises(TypeError, match="keeps no whole batches"):
        ResultWriter(lambda items: None).add([], ("d", []))
