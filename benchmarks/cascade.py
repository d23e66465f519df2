"""A cascade against its slow classifier alone: the wall time it saves and the F1 it keeps.

    python benchmarks/cascade.py [--images 300] [--quick]

The slow second stage stands for an endpoint (a VLM, a hosted guard): it reads each image's red channel accurately and
sleeps 30 ms per image as a request would; the cheap first stage reads the same signal with noise. The band is set on
the cheap stage's scores so that it holds a third of the images. Figures, measured in this run on the same images:
- cascade_speedup = the slow classifier alone / the cascade, wall time of `evaluate` (target >= 3);
- cascade_speedup_of_limit = cascade_speedup x the share of images the band sends on (1.0: the whole saving the band
  allows; a band holding exactly a third caps cascade_speedup at 3, so that target is reached only at zero overhead);
- the F1 of both, the cascade's inside the slow classifier's bootstrap interval (checked).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from imagesafety.bench.evaluate import evaluate
from imagesafety.classifiers.base import Classifier, Prediction, decide
from imagesafety.classifiers.combine import Combined
from imagesafety.taxonomy import UNSAFEBENCH


class Reader(Classifier):
    """Score = the image's red level (plus seeded noise per image), optionally sleeping per image like a remote call."""

    taxonomy = UNSAFEBENCH
    threshold = 0.5

    def __init__(self, name: str, noise: float, delay: float):
        self.name, self.version, self.noise, self.delay = name, "1", noise, delay
        self.config = {"noise": noise, "delay": delay}

    def predict_prepared(self, items):
        time.sleep(self.delay * len(items))
        out = []
        for img in items:
            arr = np.asarray(img, dtype=np.float64)
            signal = arr[..., 0].mean() / 255
            jitter = np.random.default_rng(int(arr[..., 1].mean() * 1000)).normal(0, self.noise)
            s = float(np.clip(signal + jitter, 0, 1))
            out.append(Prediction(s, decide(s, self.threshold), {"sexual": s}))
        return out


def write_set(root: Path, n: int) -> None:
    rng = np.random.default_rng(0)
    for i in range(n):
        label = i % 2
        folder = root / ("unsafe/sexual" if label else "safe")
        folder.mkdir(parents=True, exist_ok=True)
        red = int(np.clip(rng.normal(170 if label else 85, 25), 0, 255))
        Image.new("RGB", (24, 24), (red, int(rng.integers(0, 256)), 0)).save(folder / f"{i:04d}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="120 images")
    args = parser.parse_args()
    n = 120 if args.quick else args.images
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_set(root, n)
        cheap, slow = Reader("cheap", 0.12, 0.0), Reader("slow", 0.02, 0.03)
        scores = evaluate(cheap, root, None, cache=None, progress=False, n_boot=10).predictions["score"].to_numpy()
        lo, hi = np.quantile(
            np.abs(scores - 0.5), [0, 1 / 3]
        )  # the third of the images the cheap stage is least sure of
        band = (float(0.5 - hi), float(0.5 + hi))
        started = time.perf_counter()
        alone = evaluate(slow, root, None, cache=None, progress=False, n_boot=1000)
        slow_seconds = time.perf_counter() - started
        cascade = Combined("cascade", [cheap, Reader("slow", 0.02, 0.03)], band=band, spec="cascade:cheap>slow")
        started = time.perf_counter()
        combined = evaluate(cascade, root, None, cache=None, progress=False, n_boot=1000)
        cascade_seconds = time.perf_counter() - started
    f1_slow, f1_cascade = alone.metrics["overall"]["f1"], combined.metrics["overall"]["f1"]
    share = combined.metrics["classifier_summary"]["stages"]["slow"]["share_of_images"]
    print(f"band {band[0]:.3f}:{band[1]:.3f} sends {share:.0%} of the images to the slow stage")
    print(
        f"slow alone {slow_seconds:.2f}s F1 {f1_slow['value']:.3f} [{f1_slow['ci95'][0]:.3f}, "
        f"{f1_slow['ci95'][1]:.3f}]; "
        f"cascade {cascade_seconds:.2f}s F1 {f1_cascade['value']:.3f}"
    )
    inside = f1_slow["ci95"][0] <= f1_cascade["value"] <= f1_slow["ci95"][1]
    speedup = slow_seconds / cascade_seconds
    print(f"figure cascade_speedup {speedup:.2f} target >= 3 (cascade F1 inside the slow one's interval: {inside})")
    print(
        f"figure cascade_speedup_of_limit {speedup * share:.2f} (the speedup over its limit 1 / share sent to the slow "
        "stage)"
    )


if __name__ == "__main__":
    main()
