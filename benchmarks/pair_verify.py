"""Pair verification (the similarity checks, no judge) vs the straightforward computation with the same libraries.

    python benchmarks/pair_verify.py [--pairs 40] [--quick]

Both sides score the same 512 x 512 pairs (a generated image and its edit), one pair at a time, in this run:
- ours: `similarity_scores` as `verify_pair` calls it (SSIM on luminance, changed share, similarity outside the
  editor's region, LPIPS with its AlexNet at 224 px, AlexNet's own input size);
- straightforward: scikit-image's `structural_similarity` on the RGB images and the lpips package at full
  resolution, plus the same pixel statistics.
figure pair_verify_speedup = straightforward time / ours (target >= 3). LPIPS runs on a random AlexNet offline
(`pnet_rand`): the same computation and cost as the pretrained one.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

TARGET = 3.0


def straightforward(original, edited, region, model) -> dict:
    import torch
    from skimage.metrics import structural_similarity

    a, b = np.asarray(original.convert("RGB")), np.asarray(edited.convert("RGB"))
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))

    def tensor(x):
        return torch.from_numpy(x.astype(np.float32) / 127.5 - 1).permute(2, 0, 1)[None]

    with torch.no_grad():
        distance = float(model(tensor(a), tensor(b)).item())
    return {
        "ssim": structural_similarity(a, b, channel_axis=2, data_range=255),
        "changed_fraction": float((diff.max(axis=2) > 16).mean()),
        "outside_similarity": float(1 - diff[~region].mean() / 255),
        "lpips": distance,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="12 pairs")
    args = parser.parse_args()
    n = 12 if args.quick else args.pairs

    import lpips as lpips_package
    import torch

    from imagesafety.data.example import synthetic_image
    from imagesafety.pairs.editors import MaskCompositeEditor
    from imagesafety.pairs.plans import EditPlan
    from imagesafety.pairs.verify import LPIPSMetric, similarity_scores

    torch.set_num_threads(2)
    ours_lpips = LPIPSMetric(pretrained_backbone=False)
    reference = lpips_package.LPIPS(net="alex", pnet_rand=True, verbose=False).eval()
    rng = np.random.default_rng(0)
    editor = MaskCompositeEditor(fill=(200, 0, 0))
    plan = EditPlan("x", "violence_harm_or_cruelty", 0, 1, "add")
    pairs = []
    for i in range(n):
        img = synthetic_image(rng, size=512)
        pairs.append((img, editor.edit(img, plan, i), editor.region(img, plan, i)))
    similarity_scores(*pairs[0], lpips=ours_lpips)  # warm-up, both sides
    straightforward(*pairs[0], reference)
    ours_times, plain_times = [], []
    for _ in range(2):  # interleaved, best of each
        start = time.perf_counter()
        for original, edited, region in pairs:
            similarity_scores(original, edited, region, lpips=ours_lpips)
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        for original, edited, region in pairs:
            straightforward(original, edited, region, reference)
        plain_times.append(time.perf_counter() - start)
    ours, plain = min(ours_times), min(plain_times)
    print(f"{n} pairs of 512 x 512: ours {ours / n * 1000:.0f} ms/pair, straightforward {plain / n * 1000:.0f} ms/pair")
    print(f"figure pair_verify_speedup {plain / ours:.1f} target >= {TARGET:g}")


if __name__ == "__main__":
    main()
