"""What evidence maps cost: batched occlusion against captum and one query per masked copy, and the memory of a large
image.

    python benchmarks/explain_speed.py [--quick]

Every figure is a ratio measured in this run:
- occlusion_vs_captum = captum's `Occlusion` with perturbations_per_eval=1 / our batched occlusion (many masked copies
per
  forward batch), the same torch model (NSFWJS's MobileNetV2, its real weights from the npm package), image, window,
  stride and baseline, the two maps checked equal (target >= 5);
- nudenet_batched_queries = NudeNet's occlusion with one `predict` per masked copy / with the masked copies batched
  (target >= 2);
- explain_2048_peak_memory_ratio = the peak memory a full explanation of one 2048 x 2048 image adds (map, flip search
  over 16-pixel patches, deletion / insertion) / one float32 copy of the image (a figure; memory is bounded by a batch).
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


def photo(side: int) -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((side, side), Image.BICUBIC), dtype=np.float32) / 255


def captum_figure(window: int, stride: int) -> float:
    import torch
    from captum.attr import Occlusion

    from imagesafety.classifiers import load_classifier
    from imagesafety.evidence.maps import occlusion_map

    clf = load_classifier("nsfwjs")
    side = clf.pixel_spec.height
    image = photo(side)
    torch.set_grad_enabled(False)

    def forward(x):  # on the model's device (a GPU where there is one), scores back on the CPU
        return torch.sigmoid(clf.unsafe_logits(x.to(clf.device))).reshape(-1).cpu()

    def scorer(arrays):
        return forward(torch.from_numpy(np.stack(arrays).transpose(0, 3, 1, 2))).numpy()

    occlusion_map(image, scorer, window, stride, baseline=0.0, batch_size=32)  # warm-up: every batch shape seen once
    started = time.perf_counter()
    ours = occlusion_map(image, scorer, window, stride, baseline=0.0, batch_size=32)
    batched = time.perf_counter() - started
    x = torch.from_numpy(image.transpose(2, 0, 1))[None]
    forward(x)  # captum's batch shape, warmed too
    started = time.perf_counter()
    theirs = Occlusion(forward).attribute(
        x,
        sliding_window_shapes=(3, window, window),
        strides=(3, stride, stride),
        baselines=0.0,
        perturbations_per_eval=1,
    )
    one_by_one = time.perf_counter() - started
    gap = float(np.abs(theirs[0, 0].numpy() - ours).max())
    print(
        f"occlusion {side}px window {window} stride {stride}: ours {batched:.2f}s, captum {one_by_one:.2f}s, max "
        f"difference {gap:.2e}"
    )
    assert gap < 1e-4, gap
    return one_by_one / batched


def nudenet_figure(window: int, stride: int) -> float:
    from imagesafety.classifiers import load_classifier
    from imagesafety.evidence.api import scorer_for
    from imagesafety.evidence.maps import occlusion_map

    clf = load_classifier("nudenet")
    image = photo(320)
    scorer = scorer_for(clf, None)
    times = {}
    for batch in (32, 1, 32, 1):
        started = time.perf_counter()
        occlusion_map(image, scorer, window, stride, batch_size=batch)
        times[batch] = min(times.get(batch, float("inf")), time.perf_counter() - started)
    print(f"nudenet occlusion: batched {times[32]:.2f}s, one predict per copy {times[1]:.2f}s")
    return times[1] / times[32]


def memory_figure() -> float:
    from imagesafety.evidence import ExplainSettings, explain_image
    from planted import PlantedPatchClassifier, plant

    image = Image.fromarray(plant(np.full((2048, 2048, 3), 90, np.uint8), (1000, 900, 1100, 1000)))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    evidence = explain_image(
        PlantedPatchClassifier(gain=400.0),
        image,
        ExplainSettings(method="occlusion", work_side=2048, window=256, stride=128, patch=16, steps=8),
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    one_copy = 2048 * 2048 * 3 * 4
    print(
        f"2048x2048: peak +{peak / 2**20:.0f} MB (one float32 copy {one_copy / 2**20:.0f} MB); flip fraction "
        f"{evidence.flip_fraction}"
    )
    return peak / one_copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="larger windows (fewer masked copies)")
    args = parser.parse_args()
    window, stride = (32, 16) if args.quick else (16, 8)
    memory = memory_figure()  # first: the process's peak is not yet raised by loading the other models
    print(f"figure occlusion_vs_captum {captum_figure(window, stride):.1f} target >= 5")
    print(
        f"figure nudenet_batched_queries {nudenet_figure(64 if args.quick else 32, 32 if args.quick else 16):.2f} "
        "target >= 2"
    )
    print(f"figure explain_2048_peak_memory_ratio {memory:.1f} (peak memory added / one float32 copy of the image)")


if __name__ == "__main__":
    main()
