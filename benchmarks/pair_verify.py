"""Pair verification throughput (similarity checks only, no judge) on 512 x 512 pairs.

    python benchmarks/pair_verify.py [--quick]

Each pair: LPIPS (when the lpips package is installed; its AlexNet at 256 px, random backbone weights
offline - the same computation as the pretrained ones), SSIM, changed-pixel share and similarity
outside the editor's region, as `verify_pair` computes them, on a generated image and its edit.
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="20 pairs")
    args = parser.parse_args()
    n = 20 if args.quick else args.pairs

    from imagesafety.data.example import synthetic_image
    from imagesafety.pairs.editors import MaskCompositeEditor
    from imagesafety.pairs.plans import EditPlan
    from imagesafety.pairs.verify import LPIPSMetric, similarity_scores

    try:
        import torch

        torch.set_num_threads(2)
        lpips = LPIPSMetric(pretrained_backbone=False)
    except ImportError:
        lpips = None
        print("lpips not installed: measuring without the LPIPS check")

    rng = np.random.default_rng(0)
    editor = MaskCompositeEditor(fill=(200, 0, 0))
    plan = EditPlan("x", "violence_harm_or_cruelty", 0, 1, "add")
    pairs = []
    for i in range(n):
        img = synthetic_image(rng, size=512)
        pairs.append((img, editor.edit(img, plan, i), editor.region(img, plan, i)))
    similarity_scores(*pairs[0], lpips=lpips)  # warm-up
    start = time.perf_counter()
    for original, edited, region in pairs:
        similarity_scores(original, edited, region, lpips=lpips)
    rate = n / (time.perf_counter() - start)
    print(f"{n} pairs of 512 x 512{' with LPIPS' if lpips else ''}: {rate:.1f} pairs/s")
    print(f"figure pair_verify_pairs_per_s {rate:.1f} target >= 20")


if __name__ == "__main__":
    main()
