"""VLM classifier throughput against an OpenAI-compatible server with a fixed 200 ms latency, through the real engine.

    python benchmarks/vlm_throughput.py [--quick]

The fake server (tests/fake_vlm_server.py) runs in its own process; the client is `vlm:openai/...` (policy protocol:
one request per image, no answer cache) evaluated by the engine as `imagesafety eval` runs it: reading, decoding and
the image's encoding (resize, JPEG, base64) on the decoding workers, the event loop left to I/O. Measured in this
run at concurrency 1, 8 and 32, on 128 px JPEGs (as small as VLM thumbnails get; the figure is about concurrency,
not image size):
- figure vlm_speedup_at_32 = requests/s at 32 / requests/s at 1 (the limit is 32; target >= 28);
- the client's CPU-seconds per request at each concurrency (reported).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))
TARGET = 28.0

SERVER = """
import sys, uvicorn
sys.path.insert(0, sys.argv[2])
from fake_vlm_server import make_app
uvicorn.run(make_app(latency_s=0.2), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    args = parser.parse_args()
    from imagesafety.classifiers.vlm.openai_vlm import OpenAIVLMClassifier
    from imagesafety.data import load_dataset
    from imagesafety.data.example import synthetic_image
    from imagesafety.run.runner import Runner
    from imagesafety.run.tasks import PredictionTask
    from serve_helpers import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(port), str(TESTS)], env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    rates, cpu = {}, {}
    try:
        import httpx

        deadline = time.time() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/docs", timeout=1)
                break
            except httpx.HTTPError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("the fake VLM server did not start")
                time.sleep(0.2)
        with tempfile.TemporaryDirectory() as tmp:
            rng = np.random.default_rng(0)
            for concurrency in (1, 8, 32):
                n = (5 if args.quick else 20) * concurrency * (2 if concurrency == 1 else 1)
                root = Path(tmp) / f"c{concurrency}" / "unsafe"
                root.mkdir(parents=True)
                for i in range(n):
                    synthetic_image(rng, size=128, warm=bool(i % 2)).save(root / f"{i:04d}.jpg", quality=90)
                clf = OpenAIVLMClassifier(
                    "slow-200", base_url=f"http://127.0.0.1:{port}/v1", protocol="policy", concurrency=concurrency
                )
                clf.predict_prepared(
                    [clf.prepare(synthetic_image(rng, size=64))]
                )  # connection set-up and the first-call check
                runner = Runner(PredictionTask(clf, None), batch_size=clf.preferred_batch_size, show_progress=False)
                started_cpu, started = time.process_time(), time.perf_counter()
                rows = runner.run(load_dataset(root.parent))
                elapsed, used = time.perf_counter() - started, time.process_time() - started_cpu
                assert rows["error"].isna().all(), rows["error"].dropna().head()
                rates[concurrency], cpu[concurrency] = n / elapsed, used / n
                print(
                    f"concurrency {concurrency:>2}: {rates[concurrency]:6.1f} requests/s ({n} images in {elapsed:.2f} "
                    "s) · "
                    f"client {cpu[concurrency] * 1000:.1f} CPU-ms per request"
                )
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"figure vlm_speedup_at_32 {rates[32] / rates[1]:.1f} target >= {TARGET:g}")


if __name__ == "__main__":
    main()
