"""NudeNet eval on generated images: the local engine vs Ray with 2 CPUs, and the projected cluster throughput.

    python benchmarks/engine_scaling.py [--quick]

Both engines run the same job (same images, no cache) in this run; Ray's time includes starting its
actors. The projection multiplies the measured per-actor rate by the actor count of a cluster
(printed for 8 nodes x 8 CPU actors), which assumes the cluster reads its images as fast.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="400 images")
    args = parser.parse_args()
    n = 400 if args.quick else args.images

    import ray

    from imagesafety.bench.evaluate import evaluate
    from imagesafety.data.example import synthetic_image

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        rng = np.random.default_rng(0)
        for i in range(n):
            folder = root / ("unsafe" if i % 2 else "safe")
            folder.mkdir(parents=True, exist_ok=True)
            synthetic_image(rng, size=384, warm=bool(i % 2)).save(folder / f"{i:05d}.jpg", quality=90)
        start = time.perf_counter()
        local = evaluate("nudenet", root, None, cache=None, progress=False, n_boot=0)
        t_local = time.perf_counter() - start
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        start = time.perf_counter()
        remote = evaluate(
            "nudenet",
            root,
            None,
            cache=None,
            progress=False,
            n_boot=0,
            engine="ray",  # no reports, as local
            batch_size=16,
        )  # default partitions of 1,000, in one Ray Data job
        t_ray = time.perf_counter() - start
        ray.shutdown()
    assert len(remote.predictions) == len(local.predictions) == n
    actors = 1  # the engine's default here: one actor per 2 CPUs
    per_actor = n / t_ray / actors
    print(f"{n} images: local {n / t_local:.1f} img/s · Ray (2 CPUs, {actors} actor) {n / t_ray:.1f} img/s")
    print(
        f"projected cluster throughput: {per_actor * 64:.0f} img/s with 64 actors (8 nodes x 8 CPUs), from "
        f"{per_actor:.1f} img/s per actor"
    )
    print(f"figure ray_vs_local_time {t_ray / t_local:.2f} target <= 1.3")


if __name__ == "__main__":
    main()
