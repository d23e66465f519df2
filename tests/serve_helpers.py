"""Run the real moderation server on 127.0.0.1 in a background thread, for tests and benchmarks."""

from __future__ import annotations

import base64
import contextlib
import socket
import threading
import time

import uvicorn

from imagesafety.serve import ServeConfig
from imagesafety.serve.app import create_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(config: ServeConfig, classifiers=None):
    """Yields (base_url, server, app) of the moderation server; stops it (gracefully) on exit."""
    with running_app(create_app(config, classifiers)) as (url, server):
        yield url, server, server.config.app


@contextlib.contextmanager
def running_app(app):
    """Any ASGI app under uvicorn on a free 127.0.0.1 port; yields (base_url, server)."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=10)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def data_url(image_bytes: bytes, mime: str = "image/jpeg") -> str:
    return f"data:{mime};base64," + base64.b64encode(image_bytes).decode()


def image_input(image_bytes: bytes) -> dict:
    return {"type": "image_url", "image_url": {"url": data_url(image_bytes)}}


def wait_until_ready(base_url: str, timeout: float = 60, process=None) -> None:
    """Poll GET /readyz until it answers 200; fail if `process` exits or the time runs out."""
    import httpx

    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(f"{base_url}/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.time() > deadline or (process is not None and process.poll() is not None):
            raise RuntimeError(f"server at {base_url} did not become ready")
        time.sleep(0.2)
