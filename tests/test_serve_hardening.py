"""The service probed as an attacker and a careless operator would: authentication that cannot switch itself off, keys
checked before bodies are read, bounded and abandonable work per request, SSRF by DNS rebinding, framework errors in
OpenAI's shape, and no answered decision lost when the process is killed."""

import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import MeanRedClassifier, jpeg_bytes, png_bytes
from imagesafety.serve import ServeConfig

pytest.importorskip("fastapi")
from serve_helpers import free_port, image_input, running_server, wait_until_ready  # noqa: E402


def post(url, body, key="k1", **kw):
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    return httpx.post(f"{url}/v1/moderations", json=body, headers=headers, timeout=30, **kw)


def config(tmp_path, **kw):
    return ServeConfig(api_keys={"a": "k1"}, audit_url=f"sqlite:///{tmp_path / 'audit.sqlite'}", **kw)


# ---- authentication cannot switch itself off ------------------------------------------------------------------------


def test_keys_files_without_keys_or_with_broken_lines_are_refused(tmp_path):
    from imagesafety.serve.config import read_keys_file

    (tmp_path / "empty").write_text("# only a comment\n\n   \n")
    with pytest.raises(ValueError, match=r"empty: no API keys in the file .* refusing to serve without authentication"):
        read_keys_file(tmp_path / "empty")
    (tmp_path / "half").write_text("bob:goodsecret\nalice:\n")
    with pytest.raises(ValueError, match=r"half:2: empty API key"):
        read_keys_file(tmp_path / "half")
    with pytest.raises(ValueError, match=r"missing: cannot read the keys file"):
        read_keys_file(tmp_path / "missing")
    with pytest.raises(ValueError, match="no API keys: pass --api-key KEY or --keys-file FILE"):
        ServeConfig().check()
    with pytest.raises(ValueError, match="API key 'key-1': empty API key"):
        ServeConfig(api_keys={"key-1": ""}).check()  # --api-key "$UNSET_VARIABLE"
    ServeConfig(auth=False).check()  # only on purpose


def test_the_cli_refuses_an_empty_keys_file_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from imagesafety.cli import app

    (tmp_path / "keys").write_text("# nothing here\n")
    result = CliRunner().invoke(app, ["serve", "--keys-file", str(tmp_path / "keys")])
    assert result.exit_code == 2 and "no API keys in the file" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3


def test_only_ascii_spaces_around_the_key_are_ignored():
    from imagesafety.serve.auth import KeyChecker
    from imagesafety.serve.errors import APIError

    keys = KeyChecker({"a": "secret"})
    assert keys.identify("Bearer secret") == keys.identify("bearer \tsecret  ") == "a"
    for header in (
        "Bearer secret\u00a0",
        "Bearer \u3000secret",
        "Bearer \u2003",
        "Bearer ",
        "Basic secret",
        "Bearer secreT",
    ):
        with pytest.raises(APIError) as caught:
            keys.identify(header)
        assert caught.value.status == 401, header


def test_the_key_is_checked_before_the_body_is_read_and_failures_are_limited(tmp_path):
    with running_server(config(tmp_path, failed_auth_per_minute=3), {"red": MeanRedClassifier()}) as (url, _, _):
        junk = b"[" * 5_000_000  # would cost seconds to parse (and fail), if it were read
        started = time.perf_counter()
        r = httpx.post(f"{url}/v1/moderations", content=junk, headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 401 and time.perf_counter() - started < 2.0
        assert r.headers["connection"] == "close"  # the refused body is dropped with the connection, not read
        codes = [post(url, {"input": [image_input(jpeg_bytes())]}, key="wrong").status_code for _ in range(3)]
        assert codes == [401, 401, 429]  # the first already counted
        blocked = post(url, {"input": [image_input(jpeg_bytes())]}, key="k1")
        assert blocked.status_code == 429 and blocked.json()["error"]["code"] == "too_many_failed_attempts"
        assert blocked.headers["connection"] == "close"


# ---- bounded, abandonable work --------------------------------------------------------------------------------------


def test_a_junk_image_stops_the_decoding_of_the_others(tmp_path, monkeypatch):
    import imagesafety.serve.service as served_app

    decoded = []
    real = served_app.read_views

    def counting(data, policy, max_pixels, name="image"):
        sampling, views = real(data, policy, max_pixels, name)

        def pixels():  # runs when the first view is asked for: its pixels are decoded then
            decoded.append(name)
            yield from views

        return sampling, pixels()

    monkeypatch.setattr(served_app, "read_views", counting)
    big = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)))
    truncated = jpeg_bytes(size=(1500, 1500))[:3000]  # its header reads fine; its pixels do not
    with running_server(
        config(tmp_path, max_request_bytes=100_000_000, max_images_per_request=16), {"red": MeanRedClassifier()}
    ) as (url, _, _):
        junk_header = post(url, {"input": [image_input(b"junk")] + [image_input(big)] * 8})
        assert (
            junk_header.status_code == 400
            and "input[0]: not a decodable image" in junk_header.json()["error"]["message"]
        )
        assert decoded == []  # refused from the headers, before any decoding
        junk_pixels = post(url, {"input": [image_input(truncated)] + [image_input(big)] * 8})
        assert junk_pixels.status_code == 400 and junk_pixels.json()["error"]["param"] == "input[0]"
        time.sleep(0.5)
        assert 1 <= len(decoded) <= 4, decoded  # the decoding threads that had started; the rest skipped


def test_sizes_and_aspect_ratios_are_refused_from_the_header(tmp_path):
    from imagesafety.classifiers import load_classifier

    strip = png_bytes(Image.new("1", (20000, 1)))
    tall = png_bytes(Image.new("1", (100, 7000)))
    wide_ok = png_bytes(Image.new("RGB", (6000, 200), (200, 150, 120)))  # 30:1, within the limits
    with running_server(config(tmp_path, max_request_pixels=3_000_000), {"nudenet": load_classifier("nudenet")}) as (
        url,
        _,
        _,
    ):
        r = post(url, {"input": [image_input(strip)]})
        assert (
            r.status_code == 400 and "20000x1: a side over this server's limit of 16384" in r.json()["error"]["message"]
        )
        r = post(url, {"input": [image_input(tall)]})
        assert r.status_code == 400 and "aspect ratio over this server's limit of 64" in r.json()["error"]["message"]
        r = post(url, {"input": [image_input(wide_ok)]})
        assert r.status_code == 200, r.text  # NudeNet resizes the long side first: no huge square
        r = post(url, {"input": [image_input(wide_ok)] * 3})
        assert r.status_code == 413 and "3600000 pixels or more together" in r.json()["error"]["message"]
        # the first image over the request's budget ends the checks: the ones after it are never base64-decoded
        junk = {"type": "image_url", "image_url": {"url": "data:image/png;base64,not*base64"}}
        r = post(url, {"input": [image_input(wide_ok)] * 3 + [junk]})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert post(url, {"input": [image_input(wide_ok), junk]}).json()["error"]["code"] == "invalid_image_url"


def test_per_key_image_budget(tmp_path):
    with running_server(config(tmp_path, images_per_minute=3), {"red": MeanRedClassifier()}) as (url, _, _):
        assert post(url, {"input": [image_input(jpeg_bytes())] * 2}).status_code == 200
        over = post(url, {"input": [image_input(jpeg_bytes())] * 2})
        assert over.status_code == 429 and "3 images per minute" in over.json()["error"]["message"]


class Slow(MeanRedClassifier):
    name = "slow"

    def predict(self, images):
        time.sleep(0.5)
        return super().predict(images)


def test_after_a_timeout_the_rest_of_the_work_is_dropped(tmp_path):
    slow = Slow()
    with running_server(
        config(tmp_path, request_timeout_s=0.25, max_batch_size=1, batch_window_ms=1), {"slow": slow}
    ) as (url, _, _):
        r = post(url, {"input": [image_input(jpeg_bytes((i, 0, 0))) for i in range(4)]})
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        time.sleep(1.5)
        assert slow.images_seen == 1  # the image already in the model; the three queued ones were never run


# ---- errors in OpenAI's shape ---------------------------------------------------------------------------------------


def test_unparseable_and_oversized_bodies_get_openai_shaped_errors(tmp_path):
    with running_server(config(tmp_path, max_request_bytes=100_000), {"red": MeanRedClassifier()}) as (url, _, _):
        headers = {"Authorization": "Bearer k1", "Content-Type": "application/json"}
        for body in (b'{"input": "\xff\xfe"}', b"[" * 50_000 + b"]" * 50_000):
            r = httpx.post(f"{url}/v1/moderations", content=body, headers=headers)
            assert r.status_code == 400 and set(r.json()["error"]) == {"message", "type", "param", "code"}, r.text

        def chunks():
            for _ in range(30):
                yield b"x" * 10_000

        r = httpx.post(f"{url}/v1/moderations", content=chunks(), headers=headers)  # chunked: no Content-Length
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert httpx.get(f"{url}/v1/nothing", headers=headers).json()["error"]["code"] == "not_found"


# ---- SSRF ------------------------------------------------------------------------------------------------------------


class Hits(BaseHTTPRequestHandler):
    count = 0

    def do_GET(self):
        Hits.count += 1
        body = jpeg_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_resolver_that_changes_its_answer_cannot_reach_loopback():
    from imagesafety.net import FetchError, fetch_url, is_public_address

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hits)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = server.server_address[1]
    calls = []

    def rebinding(host, port_):
        """A DNS answer that is public when checked; the system's answer for `localhost` (loopback) is what a client
        that resolved again to connect would reach."""
        calls.append(host)
        return ["8.8.8.8"] if len(calls) == 1 else ["127.0.0.1"]

    try:
        with pytest.raises(FetchError):
            fetch_url(
                f"http://localhost:{port}/x.jpg",
                allow_hosts=["localhost"],
                require_allowed=True,
                resolver=rebinding,
                timeout_s=1.0,
            )
        assert Hits.count == 0 and calls == ["localhost"]  # resolved once; the checked address is the one connected to
        direct = fetch_url(f"http://127.0.0.1:{port}/x.jpg", allow_hosts=["127.0.0.1"], allow_private=True)
        assert direct == jpeg_bytes() and Hits.count == 1  # the server was reachable all along
    finally:
        server.shutdown()
    for address in ("100.64.0.1", "::ffff:127.0.0.1", "169.254.169.254", "0.0.0.0", "fc00::1", "192.0.2.5"):
        assert not is_public_address(address), address
    assert is_public_address("8.8.8.8")
    with pytest.raises(FetchError, match="not on the allow-list"):
        fetch_url("https://evil.example/x.png", allow_hosts=[".images.example"], require_allowed=True)
    with pytest.raises(FetchError, match="only http"):
        fetch_url("file:///etc/passwd", allow_hosts=["localhost"])


# ---- nothing answered is lost
# -----------------------------------------------------------------------------------------

SERVER = """
import sys
from imagesafety.serve import ServeConfig
from imagesafety.serve.app import create_app
import uvicorn
sys.path.insert(0, sys.argv[3])
from conftest import MeanRedClassifier
app = create_app(ServeConfig(auth=False, audit_url=sys.argv[2], batch_window_ms=2), {"red": MeanRedClassifier()})
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


def test_sigkill_under_load_loses_no_answered_decision(tmp_path):
    from imagesafety.serve.audit import AuditLog

    audit_url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    for _ in range(2):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(port), audit_url, os.path.dirname(__file__)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(url, process=process)
            answered, stop = [], threading.Event()

            def client(i):
                with httpx.Client(timeout=10) as http:
                    while not stop.is_set():
                        try:
                            r = http.post(
                                f"{url}/v1/moderations", json={"input": [image_input(jpeg_bytes((i * 20 % 255, 0, 0)))]}
                            )
                        except httpx.HTTPError:
                            return
                        if r.status_code == 200:
                            answered.append(r.json()["id"])

            threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            deadline = time.time() + 30
            while len(answered) < 150 and time.time() < deadline:
                time.sleep(0.01)
            process.send_signal(signal.SIGKILL)
            stop.set()
            for t in threads:
                t.join()
        finally:
            process.kill()
            process.wait()
        log = AuditLog(audit_url)
        logged = {row["request_id"] for row in log.rows(limit=1_000_000)}
        log.close()
        assert len(answered) >= 100
        missing = [a for a in answered if a not in logged]
        assert not missing, f"{len(missing)} answered decisions are not in the audit log"
