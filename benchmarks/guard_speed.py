"""Guard head speed: training a linear head on 10,000 x 768 embeddings, and inference per image (encoder excluded).

    python benchmarks/guard_speed.py [--quick]

Embeddings are synthetic (unit-norm, labels from a hidden hyperplane, two categories) so the numbers
measure the training loop and head only. Inference is timed through `ProbeClassifier.predict_embeddings`,
the path `probe:DIR` uses after the encoder, on batches of 256.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()

    import torch

    from imagesafety.classifiers.probe import ProbeClassifier
    from imagesafety.encoders.embed import Embeddings
    from imagesafety.guard import GuardConfig, train_guard

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = (X @ rng.normal(size=args.dim) > 0).astype(int)
    emb = Embeddings.from_arrays(X, labels, "synthetic", category=np.where(np.arange(args.n) % 2, "sexual", "violence").tolist())

    start = time.perf_counter()
    result = train_guard(emb, config=GuardConfig(head="linear", target="binary"))
    train_seconds = time.perf_counter() - start
    print(f"trained {result.card['training']['epochs_run']} epochs on {args.n} x {args.dim}: "
          f"validation F1 {result.card['metrics']['validation']['unsafe']['f1']:.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        from imagesafety.classifiers.probe import save_guard


        save_guard(tmp, result.head, result.card)
        probe = ProbeClassifier(tmp, with_encoder=False)  # the path after the encoder
        batch = X[:256]
        probe.predict_embeddings(batch)
        reps = 20 if args.quick else 100
        start = time.perf_counter()
        for _ in range(reps):
            probe.predict_embeddings(batch)
        per_image_us = (time.perf_counter() - start) / (reps * len(batch)) * 1e6

    print(f"figure guard_train_seconds {train_seconds:.2f} target <= 10")
    print(f"figure guard_inference_us_per_image {per_image_us:.1f} target <= 50")


if __name__ == "__main__":
    main()
