"""The Ray engine against the local engine, row by row, on a local Ray cluster started in the test."""

import json
import threading
import time

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray")
from conftest import jpeg_bytes  # noqa: E402
from imagesafety.bench.evaluate import evaluate  # noqa: E402
from imagesafety.data.example import synthetic_image  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture
def jobs(monkeypatch):
    """The partitions of every Ray Data job `run_on_ray` starts, in order."""
    from imagesafety.run import ray_engine

    started = []
    run_job = ray_engine._run_job

    def counted_job(ray_module, records, pending, *args):
        started.append(sorted(pending))
        return run_job(ray_module, records, pending, *args)

    monkeypatch.setattr(ray_engine, "_run_job", counted_job)
    return started


def generated(root, n=24):
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("unsafe" if i % 2 else "safe") / ("sexual" if i % 3 else "violence")
        folder.mkdir(parents=True, exist_ok=True)
        synthetic_image(rng, size=96, warm=bool(i % 2)).save(folder / f"{i:03d}.jpg")
    (root / "unsafe" / "sexual" / "broken.jpg").write_bytes(jpeg_bytes()[:100])
    return root


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    a, b = a.set_index("id").sort_index(), b.set_index("id").sort_index()
    assert list(a.index) == list(b.index)
    np.testing.assert_allclose(a["score"].fillna(-1), b["score"].fillna(-1), atol=1e-5)
    assert a["decision"].fillna(-1).tolist() == b["decision"].fillna(-1).tolist()
    assert a["error"].notna().tolist() == b["error"].notna().tolist()
    assert a["label"].tolist() == b["label"].tolist() and a["sha256"].tolist() == b["sha256"].tolist()


def test_eval_on_ray_equals_local_and_resumes(cluster, tmp_path):
    data = generated(tmp_path / "d")
    local = evaluate("nudenet", data, tmp_path / "local", cache=None, progress=False, n_boot=50)
    remote = evaluate(
        "nudenet", data, tmp_path / "ray", cache=None, progress=False, n_boot=50, engine="ray", partition_size=10
    )
    same_rows(local.predictions, remote.predictions)
    for metric in ("f1", "accuracy", "auroc"):
        assert remote.metrics["overall"][metric]["value"] == pytest.approx(
            local.metrics["overall"][metric]["value"], abs=1e-9
        )
    assert remote.metrics["overall"]["errors"] == local.metrics["overall"]["errors"] == 1
    parts = sorted((tmp_path / "ray" / "ray-parts").glob("part-*.parquet"))
    assert len(parts) == 3
    parts[1].unlink()
    stamps = {p: p.stat().st_mtime_ns for p in (parts[0], parts[2])}
    again = evaluate(
        "nudenet", data, tmp_path / "ray", cache=None, progress=False, n_boot=50, engine="ray", partition_size=10
    )
    assert (
        all(p.stat().st_mtime_ns == t for p, t in stamps.items()) and parts[1].is_file()
    )  # only the missing part was redone
    same_rows(local.predictions, again.predictions)


def test_a_killed_worker_loses_nothing(cluster, tmp_path):
    import os
    import signal

    import psutil

    data = generated(tmp_path / "d", n=160)
    local = evaluate("nudenet", data, None, cache=None, progress=False, n_boot=20)
    killed = []

    def kill_one_actor():
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            for proc in psutil.process_iter(["pid", "cmdline"]):
                cmdline = " ".join(proc.info["cmdline"] or [])
                if "ModelActor" in cmdline and proc.pid != os.getpid():
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.append(proc.pid)
                    return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_actor)
    killer.start()
    remote = evaluate(
        "nudenet",
        data,
        tmp_path / "ray",
        cache=None,
        progress=False,
        n_boot=20,
        engine="ray",
        partition_size=1000,
        batch_size=4,
    )
    killer.join()
    assert killed, "no actor process was found to kill"
    same_rows(local.predictions, remote.predictions)


def test_embed_on_ray_equals_local(cluster, tmp_path, tiny_clip_dir):
    from imagesafety.run.embed import embed

    data = generated(tmp_path / "d", n=12)
    local = embed(f"hf:{tiny_clip_dir}", data, tmp_path / "l.parquet", cache=None, progress=False, device="cpu")
    remote = embed(
        f"hf:{tiny_clip_dir}",
        data,
        tmp_path / "r.parquet",
        cache=None,
        progress=False,
        device="cpu",
        engine="ray",
        partition_size=5,
    )
    a, b = local.frame.set_index("id").sort_index(), remote.frame.set_index("id").sort_index()
    assert list(a.index) == list(b.index)
    for x, y in zip(a["embedding"], b["embedding"]):
        assert (x is None) == (y is None)
        if x is not None:
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_robustness_clean_evaluation_on_ray(cluster, tmp_path):
    from imagesafety.bench.robustness.run import robustness

    data = generated(tmp_path / "d", n=6)
    result = robustness(
        "nudenet",
        data,
        tmp_path / "out",
        attacks=["square"],
        eps=0.05,
        k=1,
        steps=3,
        eps_curve=False,
        cache=None,
        progress=False,
        n_boot=10,
        engine="ray",
    )
    assert result.metrics["protocol"]["attacked"] == 1
    assert list((tmp_path / "out" / "clean" / "ray-parts").glob("part-*.parquet"))


def test_one_ray_job_writes_many_partitions_and_later_jobs_continue(cluster, tmp_path, jobs):
    from imagesafety.data import load_dataset
    from imagesafety.run import ray_engine
    from imagesafety.run.tasks import ModelSpec

    data = generated(tmp_path / "d")  # 25 images
    local = evaluate("nudenet", data, None, cache=None, progress=False, n_boot=0)
    samples = list(load_dataset(data))
    rows = ray_engine.run_on_ray(
        ModelSpec("predict", "nudenet"),
        samples,
        tmp_path / "parts",
        partition_size=4,
        samples_per_job=10,
        progress=False,
    )
    assert jobs == [[0, 1, 2], [3, 4, 5], [6]]
    parts = sorted((tmp_path / "parts").glob("part-*.parquet"))
    assert [p.name for p in parts] == [f"part-{i:05d}.parquet" for i in range(7)]  # 3 jobs: partitions 0-2, 3-5 and 6
    assert [len(pd.read_parquet(p)) for p in parts] == [4] * 6 + [1]
    assert not list((tmp_path / "parts").glob("*.tmp"))
    same_rows(local.predictions, rows.assign(decision=rows["classifier_decision"]))


def test_cpus_per_actor_sets_how_many_actors_share_the_cluster(cluster, tmp_path, monkeypatch):
    """Two CPUs per actor (the default: room for a model runtime's threads) is one actor on the 2-CPU test cluster;
    one CPU per actor, as a near-free model wants, is two; the rows are the local engine's either way."""
    from imagesafety.run import ray_engine
    from imagesafety.run.engine import EngineOptions

    seen = []
    run_job = ray_engine._run_job

    def recorded(ray_module, records, pending, parts_dir, map_options, advance):
        seen.append((map_options["concurrency"], map_options["num_cpus"]))
        return run_job(ray_module, records, pending, parts_dir, map_options, advance)

    monkeypatch.setattr(ray_engine, "_run_job", recorded)
    data = generated(tmp_path / "d", n=8)
    local = evaluate("nudenet", data, None, cache=None, progress=False, n_boot=0)
    for cpus, out in ((2, "two"), (1, "one")):
        engine = EngineOptions("ray", partition_size=4, cpus_per_actor=cpus)
        on_ray = evaluate("nudenet", data, tmp_path / out, cache=None, progress=False, n_boot=0, engine=engine)
        same_rows(local.predictions, on_ray.predictions)
    assert seen == [(1, 2), (2, 1)]
    with pytest.raises(ValueError, match="--cpus-per-actor must be above 0, got 0"):
        EngineOptions("ray", cpus_per_actor=0)


def test_jobs_are_cut_by_the_image_bytes_the_driver_holds(cluster, tmp_path, jobs):
    """Embedded images count against `bytes_per_job`: the driver holds whole partitions up to about that many bytes,
    however few samples they are, and the rows are those of the local engine."""
    from imagesafety.data import load_dataset
    from imagesafety.data.sample import Sample
    from imagesafety.run import ray_engine
    from imagesafety.run.tasks import ModelSpec

    files = [s for s in load_dataset(generated(tmp_path / "d", n=8)) if not s.id.endswith("broken.jpg")]
    samples = [Sample(s.id, s.load_bytes(), s.label, s.category) for s in files]
    size = max(len(s.image) for s in samples)
    rows = ray_engine.run_on_ray(
        ModelSpec("predict", "nudenet"),
        samples,
        tmp_path / "parts",
        partition_size=2,
        bytes_per_job=int(2.5 * size),
        progress=False,
    )
    assert jobs == [[0, 1], [2, 3]]  # two partitions of two images pass 2.5 images' bytes
    local = evaluate("nudenet", samples, None, cache=None, progress=False, n_boot=0)
    same_rows(local.predictions, rows.assign(decision=rows["classifier_decision"]))


def test_hysac_index_on_ray_equals_local(cluster, tmp_path, tiny_clip_dir):
    """Ray workers load the HySAC model from its folder (`hysac:DIR`) and embed the gallery as the local engine does:
    the two indexes answer the same query with the same images at the same distances."""
    from imagesafety.encoders import load_encoder
    from imagesafety.hyperbolic.embedder import HysacEmbedder
    from imagesafety.hyperbolic.index import LorentzIndex
    from imagesafety.hysac.api import train_hysac
    from imagesafety.hysac.data import embed_quadruples, read_quadruples
    from imagesafety.hysac.retrieval import build_index
    from imagesafety.hysac.train import HysacTrainConfig
    from test_hysac_train import write_quadruples

    encoder = load_encoder(f"hf:{tiny_clip_dir}", "cpu")
    embedded = embed_quadruples(read_quadruples(write_quadruples(tmp_path / "q", n=12)), encoder, progress=False)
    train_hysac(embedded, tmp_path / "model", config=HysacTrainConfig(epochs=2, batch_size=8), progress=False)
    gallery = generated(tmp_path / "gallery", n=10)
    build_index(tmp_path / "model", gallery, tmp_path / "local", cache=None, progress=False)
    build_index(tmp_path / "model", gallery, tmp_path / "ray", cache=None, progress=False, engine="ray")
    local, remote = LorentzIndex.load(tmp_path / "local"), LorentzIndex.load(tmp_path / "ray")
    assert sorted(local.ids) == sorted(remote.ids) and len(local.ids) > 0
    query = HysacEmbedder(tmp_path / "model").encode_texts(["a calm lake"])
    (d_local, r_local), (d_remote, r_remote) = local.search(query, k=5), remote.search(query, k=5)
    assert [local.ids[i] for i in r_local[0]] == [remote.ids[i] for i in r_remote[0]]
    np.testing.assert_allclose(d_local, d_remote, rtol=1e-5, atol=1e-6)


def test_hysac_eval_and_calibrate_run_on_ray_as_locally(cluster, tmp_path, tiny_clip_dir, monkeypatch):
    """`hysac eval` and `hysac calibrate` go through `run_job`: on Ray, workers load the model from its folder and
    the report and the threshold equal the local engine's."""
    from imagesafety.run import ray_engine

    ray_runs = []
    real_run_on_ray = ray_engine.run_on_ray
    monkeypatch.setattr(
        ray_engine, "run_on_ray", lambda *a, **k: ray_runs.append(a[0].spec) or real_run_on_ray(*a, **k)
    )
    from imagesafety.encoders import load_encoder
    from imagesafety.hysac.api import calibrate_hysac, train_hysac
    from imagesafety.hysac.data import embed_quadruples, read_quadruples
    from imagesafety.hysac.scoring import evaluate_hysac
    from imagesafety.hysac.train import HysacTrainConfig
    from imagesafety.run.engine import EngineOptions
    from imagesafety.run.job import RunOptions
    from test_hysac_train import write_quadruples

    quads = write_quadruples(tmp_path / "q", n=12)
    encoder = load_encoder(f"hf:{tiny_clip_dir}", "cpu")
    embedded = embed_quadruples(read_quadruples(quads), encoder, progress=False)
    train_hysac(embedded, tmp_path / "model", config=HysacTrainConfig(epochs=2, batch_size=8), progress=False)
    local = RunOptions(cache=None, progress=False)
    on_ray = RunOptions(cache=None, progress=False, engine=EngineOptions("ray", partition_size=5))
    report_local = evaluate_hysac(tmp_path / "model", quads, tmp_path / "l", options=local)[0]
    report_ray = evaluate_hysac(tmp_path / "model", quads, tmp_path / "r", options=on_ray)[0]
    assert ray_runs == [f"hysac:{(tmp_path / 'model').resolve()}"] * 2  # the safe and the unsafe images
    assert report_ray.keys() == report_local.keys()
    for setting, values in report_local.items():
        assert report_ray[setting] == pytest.approx(values, abs=1e-6)
    gallery = generated(tmp_path / "gallery", n=10)
    threshold_local = calibrate_hysac(tmp_path / "model", gallery, val_fraction=0.5, options=local).threshold
    threshold_ray = calibrate_hysac(tmp_path / "model", gallery, val_fraction=0.5, options=on_ray).threshold
    assert threshold_ray == pytest.approx(threshold_local, abs=1e-6) and len(ray_runs) == 3


def test_explain_on_ray_equals_local(cluster, tmp_path, monkeypatch):
    """`explain` runs through `run_job`: on Ray each worker builds the classifier and the explanation task from their
    specs, and the evidence (score, regions, map, faithfulness) equals the local engine's."""
    from imagesafety.data import load_dataset
    from imagesafety.evidence import explain
    from imagesafety.run import ray_engine
    from imagesafety.run.engine import EngineOptions
    from imagesafety.run.job import RunOptions

    ray_runs = []
    real_run_on_ray = ray_engine.run_on_ray
    monkeypatch.setattr(ray_engine, "run_on_ray", lambda *a, **k: ray_runs.append(a[0]) or real_run_on_ray(*a, **k))
    samples = list(load_dataset(generated(tmp_path / "d", n=4)))
    settings = dict(method="occlusion", work_side=32, window=8, stride=8, steps=2)
    local = explain("nudenet", samples, **settings)
    on_ray = RunOptions(progress=False, engine=EngineOptions("ray", partition_size=2))
    remote = explain("nudenet", samples, out_dir=tmp_path / "out", run=on_ray, **settings)
    assert [(s.kind, s.spec) for s in ray_runs] == [("explain", "nudenet")]
    assert len(list((tmp_path / "out" / "ray-parts").rglob("part-*.parquet"))) == 3  # 5 samples, 2 per partition
    assert [e.id for e in remote] == [e.id for e in local] == [s.id for s in samples]
    for a, b in zip(local, remote):
        assert (a.error is None) == (b.error is None)
        if a.error is None:
            assert b.score == pytest.approx(a.score, abs=1e-6)
            np.testing.assert_allclose(np.array(b.boxes), np.array(a.boxes), atol=1e-4)
            np.testing.assert_allclose(b.heatmap, a.heatmap, atol=1e-5)
            assert b.deletion_auc == pytest.approx(a.deletion_auc, abs=1e-6)
    assert sum(e.error is not None for e in remote) == 1  # the broken file stays an error row


def test_pairs_generate_on_ray_equals_local(cluster, tmp_path, monkeypatch):
    """`pairs generate` runs through `run_job`: Ray workers build the editor and judge from the PairSettings, write
    the images into the shared output folder, and the driver logs every attempt once: the same candidates and pair
    table as a local run, and a re-run on Ray adds nothing."""
    from imagesafety.classifiers import load_classifier
    from imagesafety.pairs.generate import generate_pairs
    from imagesafety.pairs.store import PairStore
    from imagesafety.pairs.task import PairSettings
    from imagesafety.run import ray_engine
    from imagesafety.run.engine import EngineOptions
    from imagesafety.run.job import RunOptions

    ray_runs = []
    real_run_on_ray = ray_engine.run_on_ray
    monkeypatch.setattr(ray_engine, "run_on_ray", lambda *a, **k: ray_runs.append(a[0]) or real_run_on_ray(*a, **k))
    data = generated(tmp_path / "d", n=6)
    settings = PairSettings(editor="mask-composite", seeds=2)
    editor, _, _, _ = settings.build()
    judge = load_classifier("nudenet")
    local = generate_pairs(data, tmp_path / "local", editor, judge, seeds=2, progress=False)
    on_ray = RunOptions(progress=False, engine=EngineOptions("ray", partition_size=3))
    remote = generate_pairs(
        data, tmp_path / "ray", editor, judge, seeds=2, progress=False, run=on_ray, remote=("nudenet", settings)
    )
    assert [(s.kind, s.spec) for s in ray_runs] == [("pairs", "nudenet")]
    assert (remote.plans, remote.kept, remote.rejected, remote.skipped) == (
        local.plans,
        local.kept,
        local.rejected,
        local.skipped,
    )
    assert local.plans > 0 and local.skipped == 1

    def lines(folder):
        return sorted(json.dumps(c.line(), sort_keys=True) for c in PairStore(folder).candidates())

    assert lines(tmp_path / "ray") == lines(tmp_path / "local") and len(lines(tmp_path / "local")) > 0
    again = generate_pairs(
        data, tmp_path / "ray", editor, judge, seeds=2, progress=False, run=on_ray, remote=("nudenet", settings)
    )
    assert lines(tmp_path / "ray") == lines(tmp_path / "local") and again.plans == local.plans
