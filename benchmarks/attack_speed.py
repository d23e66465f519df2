"""PGD-100 per attacked image: batched vs one image at a time, on a CLIP-shaped tiny random model.

    python benchmarks/attack_speed.py [--quick]

The model is a 2-layer random CLIP with ViT-B/32's input geometry (224 px, 32 px patches: 49 tokens) saved and loaded as
users' checkpoints
are, used as `clip-zeroshot` over UnsafeBench's 11 categories: the same code path as a real CLIP,
at a size this 2-core machine attacks in seconds.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3, help="timings are the best of this many runs")
    parser.add_argument("--quick", action="store_true", help="8 images, 30 steps")
    args = parser.parse_args()
    n, steps = (8, 30) if args.quick else (args.images, args.steps)

    import torch

    from imagesafety.bench.robustness.attacks import pgd
    from imagesafety.classifiers.clip_zeroshot import ClipZeroShotClassifier
    from imagesafety.data.example import synthetic_image
    from tiny_models import make_tiny_clip

    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        clf = ClipZeroShotClassifier(
            f"hf:{make_tiny_clip(Path(tmp) / 'clip', image_size=224, patch_size=32)}", device="cpu"
        )
    rng = np.random.default_rng(0)
    x = clf.input_pixels([synthetic_image(rng, size=256) for _ in range(n)])
    with torch.no_grad():
        labels = (clf.unsafe_logits(x) >= clf.logit_threshold).long()

    def attack(batch, lab):
        return pgd(batch, lab, clf.unsafe_logits, clf.logit_threshold, 0.01, steps=steps, random_start=False)

    # early stopping would make the comparison depend on which images flip: attack to the full step count
    import imagesafety.bench.robustness.attacks as attacks

    original_margin = attacks._margin
    attacks._margin = lambda logits, threshold, lab: original_margin(logits, threshold, lab) + 1e6
    try:
        attack(x[:2], labels[:2])  # warm-up
        batched, single = float("inf"), float("inf")
        for _ in range(args.repeats):  # interleaved, best of each: this machine's noise hits both alike
            start = time.perf_counter()
            attack(x, labels)
            batched = min(batched, time.perf_counter() - start)
            start = time.perf_counter()
            for i in range(n):
                attack(x[i : i + 1], labels[i : i + 1])
            single = min(single, time.perf_counter() - start)
    finally:
        attacks._margin = original_margin
    print(
        f"PGD-{steps} on {n} images: batched {batched / n * 1000:.0f} ms/image · one by one {single / n * 1000:.0f} "
        "ms/image"
    )
    print(f"figure pgd_batching_speedup {single / batched:.2f} target >= 3")


if __name__ == "__main__":
    main()
