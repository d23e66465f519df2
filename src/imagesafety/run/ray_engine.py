"""The Ray engine: the same per-image work as the local Runner, in Ray Data `map_batches` actors.

Samples are cut into fixed partitions (in dataset order). The partitions not yet written go through
Ray Data jobs of many partitions each (reading and decoding inside the actors, one model load per actor
per job, GPU actors when asked); each partition is written as `part-NNNNN.parquet` by rename as soon
as all its rows are back, so a finished partition is never redone and never half-written. Actors are
restarted and their batches retried when a worker dies. Rows have exactly the local engine's schema,
so metrics and reports are the same code.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from itertools import islice
from pathlib import Path

import pandas as pd

from imagesafety.data.sample import Sample
from imagesafety.files import atomic_path
from imagesafety.media import FramePolicy
from imagesafety.run.progress import add_task, progress_bar
from imagesafety.run.runner import Runner
from imagesafety.run.tasks import JSON_COLUMNS, VECTOR_COLUMNS, ModelSpec, build_task


def _require_ray():
    try:
        import ray
    except ImportError as exc:
        raise ImportError("--engine ray needs Ray: pip install 'imagesafety[ray]'") from exc
    return ray


#: Ray hands each actor this many model batches at a time, so the actor's decoding thread works ahead of the model.
MODEL_BATCHES_PER_TASK = 8


class ModelActor:
    """One task (and its model) per actor, built from its spec; each batch of rows goes through the local Runner (same
    decoding, errors and rows), which decodes the next model batch on its own thread while the model computes this
    one."""

    def __init__(self, model: ModelSpec, batch_size: int = 16, decode_workers: int = 1, frames: dict | None = None):
        task = build_task(model, None, FramePolicy(**frames) if frames else FramePolicy())
        # no processes of its own: an actor is one, and Ray places one per share of the node's CPUs
        self.runner = Runner(task, batch_size=batch_size, workers=decode_workers, show_progress=False, processes=0)

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        samples = [Sample.from_record(r) for r in batch.to_dict("records")]
        rows = self.runner.run(samples)
        rows.insert(0, "index", batch["index"].to_numpy())
        rows.insert(1, "partition", batch["partition"].to_numpy())
        for column in JSON_COLUMNS:
            if column in rows:
                rows[column] = rows[column].map(json.dumps)
        for column in VECTOR_COLUMNS:
            if column in rows:
                rows[column] = rows[column].map(lambda v: None if v is None else [float(x) for x in v])
        rows["label"] = rows["label"].astype("float64")
        return rows


def check_reachable(address: str | None, timeout_s: float = 5.0) -> None:
    """A cluster address given as HOST:PORT must answer a TCP connection, else one line naming it (instead of Ray's
    minute of retries). `auto`, `local`, None and `ray://` client addresses are left to Ray."""
    import socket

    if not address or address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(
            f"--address {address}: give the head node as HOST:PORT (as `ray start --head` prints), or auto"
        )
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            return
    except OSError as exc:
        raise ValueError(
            f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with `ray start --head` "
            "and pass the address it prints, or --address auto on a node of the cluster"
        ) from None


def run_on_ray(
    model: ModelSpec,
    samples: Iterable[Sample],
    parts_dir: str | Path,
    *,
    frames: FramePolicy | None = None,
    address: str | None = None,
    batch_size: int = 16,
    num_actors: int | None = None,
    num_gpus: float = 0,
    partition_size: int = 1000,
    cpus_per_actor: float = 2,
    samples_per_job: int = 100_000,
    bytes_per_job: int = 512 << 20,
    progress: bool = True,
) -> pd.DataFrame:
    """Rows for every sample (local engine schema), computed on a Ray cluster and written partition by partition.

    The partitions not yet written go through Ray Data in jobs of about `samples_per_job` samples (fewer when their
    embedded image bytes pass `bytes_per_job`; a job is whole partitions): the actors load their model once per job
    (not once per partition), and the driver holds one job's records at a time.
    """
    ray = _require_ray()
    if not ray.is_initialized():
        check_reachable(address)
        try:
            ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
        except (ConnectionError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ValueError(
                f"cannot join the Ray cluster at {address}: {first}. A cluster from `ray start --head` uses token "
                "authentication by default: on a node of the cluster pass --address auto, elsewhere set "
                "RAY_AUTH_MODE=token with the cluster's token (RAY_AUTH_TOKEN)"
            ) from None
    import logging

    logging.getLogger("ray.data").setLevel(logging.WARNING)  # our own progress bar reports progress
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    parts_dir = Path(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    # model runtimes (ONNX, torch) use several threads: one actor per `cpus_per_actor` CPUs (or per GPU share)
    resources = ray.cluster_resources()
    actors = num_actors or max(
        1, int(resources.get("GPU", 0) // num_gpus if num_gpus else resources.get("CPU", 1) // cpus_per_actor)
    )
    # the local engine's split of a 2-CPU share: one decoding thread beside the model's own threads
    actor_kwargs = {
        "model": model,
        "batch_size": batch_size,
        "decode_workers": max(1, int(cpus_per_actor) - 1),
        "frames": (frames or FramePolicy()).key(),
    }
    map_options = dict(
        fn_constructor_kwargs=actor_kwargs,
        batch_size=batch_size * MODEL_BATCHES_PER_TASK,
        batch_format="pandas",
        concurrency=actors,
        num_gpus=num_gpus or None,
        num_cpus=min(cpus_per_actor, resources.get("CPU", 1)),
        max_restarts=-1,
        max_task_retries=-1,
    )  # a dead worker is restarted and its batches retried
    written: list[Path] = []
    records: list[dict] = []
    held = 0  # embedded image bytes in `records`
    pending: dict[int, int] = {}  # partition number -> its sample count, for the job being gathered
    start = 0
    with progress_bar(progress) as bar:
        task = add_task(bar, f"{model.kind} {model.spec} on ray")

        def advance(n: int) -> None:
            bar.update(task, advance=n)

        it = iter(samples)
        while chunk := list(islice(it, partition_size)):
            number = len(written)
            written.append(parts_dir / f"part-{number:05d}.parquet")
            if written[-1].is_file():
                advance(len(chunk))
            else:
                pending[number] = len(chunk)
                records += [s.to_record() | {"index": start + i, "partition": number} for i, s in enumerate(chunk)]
                held += sum(len(s.image) for s in chunk if isinstance(s.image, bytes))
            start += len(chunk)
            if len(records) >= samples_per_job or held >= bytes_per_job:
                _run_job(ray, records, pending, parts_dir, map_options, advance)
                records, pending, held = [], {}, 0
        if records:
            _run_job(ray, records, pending, parts_dir, map_options, advance)
    if not written:
        return pd.DataFrame()
    rows = (
        pd.concat([pd.read_parquet(p) for p in written], ignore_index=True).sort_values("index").drop(columns=["index"])
    )
    rows = rows.reset_index(drop=True)
    for column in JSON_COLUMNS:
        if column in rows:
            rows[column] = rows[column].map(lambda v: json.loads(v) if isinstance(v, str) else {})
    # Ray hands back Arrow-backed columns: make them the local engine's numpy-backed dtypes
    for column in ("label", "classifier_decision"):
        if column in rows:
            rows[column] = rows[column].astype("Float64").astype("Int64")
    if "score" in rows:
        rows["score"] = rows["score"].astype("Float64").astype("float64")
    typed = {"label", "classifier_decision", "score", *JSON_COLUMNS, *VECTOR_COLUMNS}
    for column in (c for c in rows.columns if c not in typed):  # text, bytes: plain objects, None where missing
        rows[column] = rows[column].astype(object).where(rows[column].notna(), None)
    for column in VECTOR_COLUMNS:
        if column in rows:
            import numpy as np

            rows[column] = pd.Series(
                [None if v is None else np.asarray(v, dtype=np.float32) for v in rows[column].tolist()],
                index=rows.index,
                dtype=object,
            )
    return rows


def _run_job(ray, records: list[dict], pending: dict[int, int], parts_dir: Path, map_options: dict, advance) -> None:
    """One Ray Data job over these records; each partition is written as soon as all its rows are back."""
    ds = ray.data.from_items(records).map_batches(ModelActor, **map_options)
    arrived: dict[int, list[pd.DataFrame]] = {number: [] for number in pending}
    counts = dict.fromkeys(pending, 0)
    for block in ds.iter_batches(batch_size=None, batch_format="pandas"):
        advance(len(block))
        for number, rows in block.groupby("partition", sort=False):
            number = int(number)
            arrived[number].append(rows)
            counts[number] += len(rows)
            if counts[number] >= pending[number]:
                frame = pd.concat(arrived.pop(number)).drop_duplicates("index").sort_values("index")
                if len(frame) != pending[number]:
                    raise RuntimeError(f"partition {number}: {len(frame)} rows came back for {pending[number]} samples")
                _write_partition(frame.drop(columns=["partition"]), parts_dir / f"part-{number:05d}.parquet")
    if arrived:
        raise RuntimeError(f"partitions {sorted(arrived)}: the Ray job ended before all their rows came back")


def _write_partition(frame: pd.DataFrame, path: Path) -> None:
    """Write-then-rename, so a partition file is whole or absent."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:  # without pandas' dtype metadata: Ray's Arrow-backed dtypes would not read back
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None), tmp)
