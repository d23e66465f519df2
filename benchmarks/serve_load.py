"""Moderation server under load: requests/s and p50/p99 latency at 1, 8 and 32 concurrent clients.

    python benchmarks/serve_load.py [--quick]

The server (NudeNet, micro-batching on) runs in its own process on 127.0.0.1; the clients are async
httpx in this process, each sending one 512px JPEG per request as a data URL. The reference is the
classifier's own throughput called directly in a loop, one image per call, in this same run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SERVER = """
import sys, uvicorn
from imagesafety.serve import ServeConfig
from imagesafety.serve.app import create_app
config = ServeConfig(classifiers=["nudenet"], audit_url=sys.argv[2])  # default batching settings
uvicorn.run(create_app(config), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def make_images(n: int) -> list[bytes]:
    from imagesafety.data.example import synthetic_image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        synthetic_image(rng, size=512, warm=True).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def direct_throughput(images: list[bytes], n: int) -> float:
    from imagesafety.classifiers.registry import load_classifier
    from imagesafety.images import decode_image

    clf = load_classifier("nudenet")
    decoded = [decode_image(b) for b in images]
    clf.predict(decoded[:1])
    start = time.perf_counter()
    for i in range(n):
        clf.predict([decoded[i % len(decoded)]])
    return n / (time.perf_counter() - start)


async def load(url: str, bodies: list[dict], clients: int, requests: int) -> tuple[float, list[float], int]:
    import httpx

    latencies, errors = [], 0
    counter = iter(range(requests))

    async def client(session):
        nonlocal errors
        for i in counter:
            started = time.perf_counter()
            r = await session.post(f"{url}/v1/moderations", json=bodies[i % len(bodies)])
            latencies.append(time.perf_counter() - started)
            errors += r.status_code != 200

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as session:
        await session.post(f"{url}/v1/moderations", json=bodies[0])  # warm-up
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return requests / elapsed, latencies, errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    args = parser.parse_args()
    from serve_helpers import free_port, wait_until_ready

    images = make_images(32)
    bodies = [{"input": [{"type": "image_url", "image_url": {"url": "data:image/jpeg;base64," + base64.b64encode(b).decode()}}]} for b in images]
    direct = direct_throughput(images, 60 if args.quick else 150)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), f"sqlite:///{tmp}/audit.sqlite"], env=env)
        try:
            wait_until_ready(f"http://127.0.0.1:{port}", process=server)
            results = {}
            for clients in (1, 8, 32):
                n = (40 if clients == 1 else 160) if args.quick else (80 if clients == 1 else 400)
                rps, latencies, errors = asyncio.run(load(f"http://127.0.0.1:{port}", bodies, clients, n))
                q = statistics.quantiles(latencies, n=100)
                results[clients] = (rps, errors)
                print(f"clients {clients:>2}: {rps:6.1f} req/s · p50 {q[49] * 1000:6.1f} ms · p99 {q[98] * 1000:6.1f} ms · errors {errors}")
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"direct (one image per call): {direct:.1f} img/s")
    print(f"figure serve_vs_direct_at_32_clients {results[32][0] / direct:.2f} target >= 0.8")
    print(f"figure serve_errors {sum(e for _, e in results.values())} target <= 0")


if __name__ == "__main__":
    main()
