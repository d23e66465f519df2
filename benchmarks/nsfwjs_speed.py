"""NSFWJS in torch vs NSFWJS itself on Node (tfjs CPU backend), and the converted-weights cold start.

    python benchmarks/nsfwjs_speed.py [--model mobilenet_v2] [--images 16] [--batch 8]

Measured in this one run, on the same machine:
- figure nsfwjs_port_speedup = images/s of the port (batched forward on [0, 1] inputs of the model's size, torch CPU)
  / images/s of NSFWJS's `model.predict` on Node with the tfjs CPU backend, same batch size (target >= 2);
- figure nsfwjs_cold_start_ratio = first load (reading the npm package's bundles, dequantising, building the module)
  / a later load from the safetensors cache (reported; the cached load itself should stay well under a second).
Node and tests/node/node_modules are needed (installed from the npm registry with `npm ci` when missing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NODE_DIR = Path(__file__).resolve().parents[1] / "tests" / "node"
NODE_NAMES = {"mobilenet_v2": "MobileNetV2", "mobilenet_v2_mid": "MobileNetV2Mid", "inception_v3": "InceptionV3"}
TARGET = 2.0


def node_speed(model: str, n: int, batch: int) -> float:
    if not (NODE_DIR / "node_modules" / "nsfwjs").is_dir():
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--silent"], cwd=NODE_DIR, check=True
        )
    done = subprocess.run(
        ["node", str(NODE_DIR / "nsfwjs_reference.cjs"), "time", NODE_NAMES[model], str(n), str(batch)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)["images_per_second"]


def port_speed(clf, n: int, batch: int) -> float:
    import torch

    size = clf.pixel_spec.height
    inputs = torch.rand(batch, 3, size, size)
    with torch.no_grad():
        clf.program.probabilities(inputs)  # warm-up
        started = time.perf_counter()
        done = 0
        while done < n:
            clf.program.probabilities(inputs)
            done += batch
    return done / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mobilenet_v2", choices=list(NODE_NAMES))
    parser.add_argument("--images", type=int, default=16, help="images for the Node side (the port does 8x as many)")
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    package = NODE_DIR / "node_modules" / "nsfwjs"
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["IMAGESAFETY_CACHE"] = str(Path(tmp) / "cache.sqlite")  # a cold cache: the first load converts
        from imagesafety.classifiers import load_classifier

        node = node_speed(args.model, args.images, args.batch)
        started = time.perf_counter()
        load_classifier(f"nsfwjs:{args.model}", package=str(package), device="cpu")
        first = time.perf_counter() - started
        started = time.perf_counter()
        clf = load_classifier(f"nsfwjs:{args.model}", device="cpu")
        cached = time.perf_counter() - started
        port = port_speed(clf, 8 * args.images, args.batch)
    print(
        f"{args.model}: port {port:.1f} images/s, NSFWJS on Node (tfjs CPU) {node:.2f} images/s, batch {args.batch}; "
        f"first load {first:.2f} s, cached load {cached:.3f} s"
    )
    print(f"figure nsfwjs_port_speedup {port / node:.1f} target >= {TARGET}")
    print(f"figure nsfwjs_cold_start_ratio {first / cached:.1f} target >= 1")


if __name__ == "__main__":
    sys.exit(main())
