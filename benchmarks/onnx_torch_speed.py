"""The torch conversions of ONNX models (OpenNSFW, NudeNet) against onnxruntime on the same batches.

    python benchmarks/onnx_torch_speed.py [--images 64] [--batch 16]

Measured in this one run, on the same machine, the same prepared batches and the same thread count:
- figure opennsfw_torch_vs_onnx = seconds per image of `opennsfw` with runtime=torch / with runtime=onnx (target <=
1.5);
- figure nudenet_torch_vs_onnx = the same for `nudenet` (reported: onnx stays NudeNet's default runtime).
Best of three passes each, interleaved, so a noisy neighbour hurts both sides alike.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

TARGET = 1.5


def seconds_per_image(run, items: list, batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(items), batch):
        run(items[start : start + batch])
    return (time.perf_counter() - started) / len(items)


def compare(name: str, images: list, batch: int) -> tuple[float, float]:
    from imagesafety.classifiers import load_classifier

    onnx_clf = load_classifier(name, runtime="onnx")
    torch_clf = load_classifier(name, runtime="torch", device="cpu")
    items = [onnx_clf.prepare(img) for img in images]
    runs = {"onnx": onnx_clf.predict_prepared, "torch": torch_clf.predict_prepared}
    for run in runs.values():
        run(items[:batch])  # warm-up
    best = {k: float("inf") for k in runs}
    for _ in range(3):
        for key, run in runs.items():
            best[key] = min(best[key], seconds_per_image(run, items, batch))
    return best["torch"], best["onnx"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    from imagesafety.data.example import synthetic_image

    rng = np.random.default_rng(0)
    images = [
        synthetic_image(rng, size=int(s), warm=bool(i % 2)) for i, s in enumerate(rng.integers(200, 640, args.images))
    ]
    results = {name: compare(name, images, args.batch) for name in ("opennsfw", "nudenet")}
    for name, (torch_s, onnx_s) in results.items():
        print(
            f"{name}: torch {1000 * torch_s:.1f} ms/image, onnxruntime {1000 * onnx_s:.1f} ms/image (batch "
            f"{args.batch})"
        )
    print(f"figure opennsfw_torch_vs_onnx {results['opennsfw'][0] / results['opennsfw'][1]:.2f} target <= {TARGET}")
    print(f"figure nudenet_torch_vs_onnx {results['nudenet'][0] / results['nudenet'][1]:.2f} target <= {TARGET}")


if __name__ == "__main__":
    sys.exit(main())
