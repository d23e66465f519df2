"""Overhead of `evaluate` over the classifier alone, and the speed-up of a fully cached re-run.

    python benchmarks/eval_overhead.py [--images 400] [--quick]

Both ratios are measured in this one run on the same generated JPEGs with NudeNet:
- eval_overhead_ratio = wall time of the prediction pass of `evaluate` (reading, hashing, decoding,
  cache writes, inference) / time of `classifier.predict` alone on the already decoded images, same batches;
- cached_rerun_speedup = first prediction pass / a second pass where every prediction comes from the cache.
Metrics and report writing are excluded from both (they do not grow with the model's cost).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from imagesafety.bench.runner import Runner, default_workers
from imagesafety.classifiers.registry import load_classifier
from imagesafety.data import load_dataset
from imagesafety.data.example import synthetic_image
from imagesafety.images import decode_image
from imagesafety.store import PredictionCache


def write_images(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("unsafe" if i % 2 else "safe")
        folder.mkdir(parents=True, exist_ok=True)
        synthetic_image(rng, size=size, warm=bool(i % 2)).save(folder / f"{i:05d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--size", type=int, default=512, help="side of the generated JPEGs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions; the best of each counts")
    parser.add_argument("--quick", action="store_true", help="120 images, 2 repetitions")
    args = parser.parse_args()
    n = 120 if args.quick else args.images
    if args.quick:
        args.repeats = 2

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_images(root, n, args.size)
        clf = load_classifier("nudenet")
        dataset = load_dataset(root)
        decoded = [decode_image(s.load_bytes()) for s in dataset]
        clf.predict(decoded[: args.batch_size])  # warm-up: session initialisation

        def classifier_alone() -> float:
            start = time.perf_counter()
            for i in range(0, n, args.batch_size):
                clf.predict(decoded[i : i + args.batch_size])
            return time.perf_counter() - start

        def eval_pass(cache: PredictionCache, expect_cached: bool) -> float:
            runner = Runner.for_classifier(clf, cache, batch_size=args.batch_size, workers=args.workers, show_progress=False)
            start = time.perf_counter()
            runner.run(load_dataset(root))
            elapsed = time.perf_counter() - start
            assert (runner.stats.cached, runner.stats.predicted) == ((n, 0) if expect_cached else (0, n))
            return elapsed

        # interleaved repetitions, best of each: the machine is shared and noisy
        alone, first, cached = [], [], []
        for rep in range(args.repeats):
            alone.append(classifier_alone())
            cache = PredictionCache(Path(tmp) / f"cache-{rep}.sqlite")
            first.append(eval_pass(cache, expect_cached=False))
            cached.append(eval_pass(cache, expect_cached=True))
        alone, first, cached = min(alone), min(first), min(cached)

    print(f"images {n} ({args.size}px JPEG) · classifier alone {alone:.2f}s ({n / alone:.1f} img/s) · "
          f"eval {first:.2f}s · cached re-run {cached:.3f}s")
    print(f"figure eval_overhead_ratio {first / alone:.3f} target <= 1.10")
    print(f"figure cached_rerun_speedup {first / cached:.1f} target >= 50")


if __name__ == "__main__":
    main()
