"""VLM classifier throughput against a local OpenAI-compatible server with a fixed 200 ms latency.

    python benchmarks/vlm_throughput.py [--quick]

Requests/s at concurrency 1, 8 and 32 through `vlm:openai/...` (policy protocol: one request per
image, no answer cache), measured in this run; the figure is the speed-up at 32 over 1.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    args = parser.parse_args()
    from fake_vlm_server import make_app
    from serve_helpers import running_app

    from imagesafety.classifiers.vlm.openai_vlm import OpenAIVLMClassifier
    from imagesafety.data.example import synthetic_image

    rng = np.random.default_rng(0)
    images = [synthetic_image(rng, size=128) for _ in range(64)]
    rates = {}
    with running_app(make_app(latency_s=0.2)) as (url, _):
        for concurrency in (1, 8, 32):
            clf = OpenAIVLMClassifier("slow-200", base_url=f"{url}/v1", protocol="policy", concurrency=concurrency, cache=None)
            prepared = [clf.prepare(img) for img in images]
            clf.predict_prepared(prepared[:1])  # connection set-up and the first-call check
            n = (5 if args.quick else 10) * concurrency
            batch = [prepared[i % len(prepared)] for i in range(n)]
            start = time.perf_counter()
            preds = clf.predict_prepared(batch)
            elapsed = time.perf_counter() - start
            assert all(hasattr(p, "unsafe_score") for p in preds), preds[:3]
            rates[concurrency] = n / elapsed
            print(f"concurrency {concurrency:>2}: {rates[concurrency]:6.1f} requests/s ({n} requests in {elapsed:.2f} s)")
    print(f"figure vlm_speedup_at_32 {rates[32] / rates[1]:.1f} target >= 25")


if __name__ == "__main__":
    main()
