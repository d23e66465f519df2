"""Guard head speed against the library a user would otherwise call, and inference against the bare arithmetic.

    python benchmarks/guard_speed.py [--quick]

Embeddings are synthetic (unit-norm, labels from a hidden hyperplane, two categories), measured in this run:
- figure guard_train_vs_sklearn = `train_guard` (linear head by L-BFGS, plus the validation split, threshold
  calibration, metrics and the card's data digest) / scikit-learn's LogisticRegression fit on the same rows
  (target <= 2.5);
- figure guard_inference_overhead = `ProbeClassifier.predict_embeddings` (the path `probe:DIR` takes after the
  encoder: scores, per-category thresholds, a Prediction per image) / the raw head in torch on the same batches of
  256 (target <= 25: a few microseconds of result objects per image on sub-microsecond arithmetic);
- figure guard_probe_path_overhead = the whole `probe:DIR` path a user runs (`ProbeClassifier.predict` on images:
  the encoder's preprocessing and forward, the head, thresholds, a Prediction per image) / the same encoder's
  `encode_images` and the head called directly, on the same 32 images, with a guard trained on NSFWJS embeddings
  (real weights, offline) (target <= 1.1; the figure above divides by a single tiny matmul, so it is mostly noise).
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
    from imagesafety.guard import GuardConfig, train_guard
    from imagesafety.run.embed import Embeddings

    torch.set_num_threads(2)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.n, args.dim)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    labels = (X @ rng.normal(size=args.dim) > 0).astype(int)
    emb = Embeddings.from_arrays(
        X, labels, "synthetic", category=np.where(np.arange(args.n) % 2, "sexual", "violence").tolist()
    )

    warm = torch.nn.Linear(
        2, 1
    )  # torch's optimisers import torch._dynamo on their first step (~1.5 s, once per process):
    torch.optim.LBFGS(warm.parameters()).step(
        lambda: warm(torch.ones(1, 2)).sum().backward() or warm(torch.ones(1, 2)).sum()
    )
    start = time.perf_counter()  # an import cost, excluded here as scikit-learn's imports are
    result = train_guard(emb, config=GuardConfig(head="linear", target="binary"))
    train_seconds = time.perf_counter() - start
    from sklearn.linear_model import LogisticRegression

    start = time.perf_counter()
    LogisticRegression(max_iter=1000).fit(X, labels)
    sklearn_seconds = time.perf_counter() - start
    print(
        f"trained {result.card.training['epochs_run']} epochs on {args.n} x {args.dim}: "
        f"validation F1 {result.card.metrics['validation']['unsafe']['f1']:.3f}"
    )

    with tempfile.TemporaryDirectory() as tmp:
        from imagesafety.classifiers.probe import save_guard

        save_guard(tmp, result.head, result.card.to_json())
        probe = ProbeClassifier(tmp, with_encoder=False)  # the path after the encoder
        batch = X[:256]
        probe.predict_embeddings(batch)
        tensor = torch.from_numpy(batch)
        reps = 20 if args.quick else 100
        ours, bare = [], []
        for _ in range(3):  # interleaved, best of each
            start = time.perf_counter()
            for _ in range(reps):
                probe.predict_embeddings(batch)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            with torch.no_grad():
                for _ in range(reps):
                    torch.sigmoid(probe.head(tensor)).numpy()
            bare.append(time.perf_counter() - start)
        per_image_us = min(ours) / (reps * len(batch)) * 1e6

    probe_path = probe_path_overhead(args.quick)
    print(
        f"training: ours {train_seconds:.2f} s, scikit-learn LogisticRegression {sklearn_seconds:.2f} s; "
        f"inference {per_image_us:.1f} us per image"
    )
    print(f"figure guard_train_vs_sklearn {train_seconds / sklearn_seconds:.2f} target <= 2.5")
    print(f"figure guard_inference_overhead {min(ours) / min(bare):.1f} target <= 25")
    print(f"figure guard_probe_path_overhead {probe_path:.3f} target <= 1.1")


def probe_path_overhead(quick: bool) -> float:
    """`ProbeClassifier.predict` on images over the encoder and head called directly (best of interleaved runs)."""
    import torch

    from imagesafety.classifiers.probe import ProbeClassifier, save_guard
    from imagesafety.data.example import synthetic_image
    from imagesafety.encoders import load_encoder
    from imagesafety.guard import GuardConfig, train_guard
    from imagesafety.run.embed import Embeddings

    rng = np.random.default_rng(1)
    images = [synthetic_image(rng, size=int(s), warm=bool(i % 2)) for i, s in enumerate(rng.integers(200, 400, 96))]
    encoder = load_encoder("nsfwjs", "cpu")
    X = encoder.encode_images(images)
    trained = train_guard(Embeddings.from_arrays(X, np.arange(len(X)) % 2, "nsfwjs"), config=GuardConfig())
    batch = images[:32]
    with tempfile.TemporaryDirectory() as tmp:
        save_guard(tmp, trained.head, trained.card.to_json())
        probe = ProbeClassifier(tmp, encoder=encoder)
        probe.predict(batch[:4])
        ours, direct = [], []
        for _ in range(3 if quick else 6):
            start = time.perf_counter()
            probe.predict(batch)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            with torch.no_grad():
                torch.sigmoid(probe.head(torch.from_numpy(encoder.encode_images(batch)))).numpy()
            direct.append(time.perf_counter() - start)
    return min(ours) / min(direct)


if __name__ == "__main__":
    main()
