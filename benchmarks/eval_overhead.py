"""`evaluate` against the classifier alone, against NudeNet's own batch loop, and a cached re-run.

    python benchmarks/eval_overhead.py [--images 300] [--process-images 1000] [--quick]

Every figure is a ratio of two things measured in this run, on the same generated JPEGs, with NudeNet:
- eval_overhead_ratio = the prediction pass of `evaluate` (reading, hashing, decoding, cache writes, inference)
  / `classifier.predict` alone on the already decoded images, same batches (best of interleaved runs; target <= 1.05);
- eval_vs_nudedetector = a `NudeDetector().detect_batch(paths)` process (the peer a user would otherwise run)
  / our whole `imagesafety eval` process on the same files, metrics and reports included, cache off, on
  --process-images images (at least 1,000 by default, so start-up is amortised as in a user's run; target >= 1.3);
  printed beside it, the share of our process spent outside the model (wall time minus the model's seconds that
  metrics.json records);
- cached_rerun_speedup = a first `imagesafety eval` process / the same command again, every prediction cached
  (whole processes, start-up included, on the same --process-images images; target >= 5).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import timed
from imagesafety.classifiers import load_classifier
from imagesafety.data import load_dataset
from imagesafety.data.decoding import default_workers
from imagesafety.data.example import synthetic_image
from imagesafety.images import decode_image
from imagesafety.run.runner import Runner
from imagesafety.run.tasks import PredictionTask
from imagesafety.store import PredictionCache

PEER = """
import sys
from pathlib import Path
from nudenet import NudeDetector
paths = sorted(str(p) for p in Path(sys.argv[1]).rglob("*.jpg"))
detections = NudeDetector().detect_batch(paths, batch_size=int(sys.argv[2]))
assert len(detections) == len(paths)
"""


def write_images(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        folder = root / ("unsafe" if i % 2 else "safe")
        folder.mkdir(parents=True, exist_ok=True)
        synthetic_image(rng, size=size, warm=bool(i % 2)).save(folder / f"{i:05d}.jpg", quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--size", type=int, default=512, help="side of the generated JPEGs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repetitions; the best of each counts")
    parser.add_argument("--process-images", type=int, default=1000, help="images for the whole-process figures")
    parser.add_argument("--quick", action="store_true", help="120 images (300 for the processes), 2 repetitions")
    args = parser.parse_args()
    n = 120 if args.quick else args.images
    if args.quick:
        args.repeats, args.process_images = 2, 300

    with tempfile.TemporaryDirectory() as tmp:
        root, processed = Path(tmp) / "data", Path(tmp) / "processes"
        write_images(root, n, args.size)
        write_images(processed, args.process_images, args.size)
        clf = load_classifier("nudenet")
        decoded = [decode_image(s.load_bytes()) for s in load_dataset(root)]
        clf.predict(decoded[: args.batch_size])  # warm-up: session initialisation

        def classifier_alone() -> float:
            start = time.perf_counter()
            for i in range(0, n, args.batch_size):
                clf.predict(decoded[i : i + args.batch_size])
            return time.perf_counter() - start

        def eval_pass(cache: PredictionCache) -> float:
            runner = Runner(
                PredictionTask(clf, cache), batch_size=args.batch_size, workers=args.workers, show_progress=False
            )
            start = time.perf_counter()
            runner.run(load_dataset(root))
            elapsed = time.perf_counter() - start
            assert (runner.stats.cached, runner.stats.predicted) == (0, n)
            return elapsed

        alone, first = [], []
        for rep in range(args.repeats):  # interleaved, best of each: the machine is shared and noisy
            alone.append(classifier_alone())
            first.append(eval_pass(PredictionCache(Path(tmp) / f"cache-{rep}.sqlite")))
        alone, first = min(alone), min(first)

        command = [
            sys.executable,
            "-m",
            "imagesafety",
            "eval",
            "-c",
            "nudenet",
            "-d",
            str(processed),
            "-q",
            "--batch-size",
            str(args.batch_size),
        ]
        ours, peer, cold, warm, outside = [], [], [], [], []
        for rep in range(max(2, args.repeats // 2)):
            peer.append(timed([sys.executable, "-c", PEER, str(processed), str(args.batch_size)]))
            ours.append(timed(command + ["-o", str(Path(tmp) / f"nc-{rep}"), "--no-cache"]))
            run = json.loads((Path(tmp) / f"nc-{rep}" / "metrics.json").read_text())["run"]
            outside.append(1 - run["model_seconds"] / ours[-1])
            cache = Path(tmp) / f"proc-{rep}.sqlite"
            cold.append(timed(command + ["-o", str(Path(tmp) / f"p-{rep}"), "--cache", str(cache)]))
            warm.append(timed(command + ["-o", str(Path(tmp) / f"p-{rep}"), "--cache", str(cache)]))
        share_outside = outside[int(np.argmin(ours))]
        ours, peer, cold, warm = min(ours), min(peer), min(cold), min(warm)

    print(
        f"images {n} ({args.size}px JPEG) · classifier alone {alone:.2f}s ({n / alone:.1f} img/s) · eval pass "
        f"{first:.2f}s"
    )
    print(
        f"processes on {args.process_images} images: NudeDetector.detect_batch {peer:.2f}s · imagesafety eval "
        f"{ours:.2f}s ({100 * share_outside:.0f}% of it outside the model) · first run {cold:.2f}s · cached re-run "
        f"{warm:.2f}s"
    )
    print(f"figure eval_overhead_ratio {first / alone:.3f} target <= 1.05")
    print(f"figure eval_vs_nudedetector {peer / ours:.2f} target >= 1.3")
    print(f"figure eval_share_outside_model {share_outside:.2f} (reported beside eval_vs_nudedetector)")
    print(f"figure cached_rerun_speedup {cold / warm:.1f} target >= 5")


if __name__ == "__main__":
    main()
