"""The moderation server, really started on 127.0.0.1 and called with the official openai client and httpx."""

import asyncio
import io
import threading
import time

import httpx
import pytest
from PIL import Image

from conftest import MeanRedClassifier, jpeg_bytes, png_bytes
from imagesafety.serve import ServeConfig

pytest.importorskip("fastapi")
from serve_helpers import data_url, image_input, running_server  # noqa: E402

KEY = "secret-alice"


class SlowRed(MeanRedClassifier):
    """Sleeps in predict and records batch sizes, to observe micro-batching and graceful shutdown."""

    name = "slow-red"

    def __init__(self, delay=0.05):
        super().__init__(fail_on_green=True)
        self.delay, self.batches = delay, []

    def predict(self, images):
        self.batches.append(len(images))
        time.sleep(self.delay)
        return super().predict(images)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from imagesafety.classifiers import load_classifier

    audit = tmp_path_factory.mktemp("audit") / "audit.sqlite"
    config = ServeConfig(
        api_keys={"alice": KEY},
        thresholds={"sexual": 0.6},
        audit_url=f"sqlite:///{audit}",
        max_request_bytes=2_000_000,
        max_images_per_request=4,
        max_pixels=4000 * 4000,
    )
    classifiers = {"nudenet": load_classifier("nudenet"), "slow-red": SlowRed()}
    with running_server(config, classifiers) as (url, srv, app):
        yield url, app


def auth():
    return {"Authorization": f"Bearer {KEY}"}


def test_openai_client_gets_the_classifier_verdict(server):
    import numpy as np
    from openai import OpenAI

    from imagesafety.classifiers import load_classifier
    from imagesafety.data.example import synthetic_image

    url, _ = server
    client = OpenAI(base_url=f"{url}/v1", api_key=KEY)
    images = [synthetic_image(np.random.default_rng(i), warm=True) for i in range(3)]
    inputs = [{"type": "image_url", "image_url": {"url": data_url(png_bytes(img), "image/png")}} for img in images]
    response = client.moderations.create(model="nudenet", input=inputs)
    direct = load_classifier("nudenet").predict(images)
    # one multi-modal input is one submission with one verdict, as OpenAI answers it; the images' details beside it
    assert response.model == "nudenet" and len(response.results) == 1
    result = response.results[0]
    assert result.category_scores.sexual == pytest.approx(max(p.unsafe_score for p in direct), abs=1e-5)
    assert result.flagged == any(p.unsafe_score >= 0.6 for p in direct)
    assert result.category_applied_input_types.sexual == ["image"]
    assert result.categories.violence is False
    details = result.model_extra["imagesafety"]["images"]
    assert [d["unsafe_score"] for d in details] == pytest.approx([p.unsafe_score for p in direct], abs=1e-5)


def test_classify_multipart_matches_direct_prediction_and_thresholds(server):
    url, _ = server
    files = [
        ("files", ("dark.jpg", jpeg_bytes((60, 0, 0)), "image/jpeg")),
        ("files", ("bright.jpg", jpeg_bytes((250, 0, 0)), "image/jpeg")),
    ]
    r = httpx.post(f"{url}/v1/classify", files=files, data={"model": "slow-red"}, headers=auth())
    assert r.status_code == 200, r.text
    body = r.json()
    direct = MeanRedClassifier().predict(
        [Image.open(io.BytesIO(jpeg_bytes(c))).convert("RGB") for c in ((60, 0, 0), (250, 0, 0))]
    )
    assert [res["unsafe_score"] for res in body["results"]] == pytest.approx([p.unsafe_score for p in direct], abs=1e-9)
    assert [res["flagged"] for res in body["results"]] == [False, True]  # operator threshold 0.6 on 'sexual'
    assert body["model_version"] == "1" and len(body["taxonomy"]["categories"]) == 11
    only = httpx.post(
        f"{url}/v1/classify", files=files, data={"model": "slow-red", "categories": "hate"}, headers=auth()
    )
    assert only.status_code == 400 and "not scored by slow-red" in only.json()["error"]["message"]


def post(url, body, headers=None, **kw):
    return httpx.post(f"{url}/v1/moderations", json=body, headers=headers if headers is not None else auth(), **kw)


@pytest.mark.parametrize(
    "body, status, code, words",
    [
        ({"input": [image_input(b"not an image at all")]}, 400, "invalid_image", "input[0]: not a decodable image"),
        ({"input": [image_input(jpeg_bytes(size=(300, 300))[:400])]}, 400, "invalid_image", "not a decodable image"),
        ({"input": [image_input(png_bytes(Image.new("1", (5000, 5000))))]}, 400, "invalid_image", "exceeds the limit"),
        ({"input": [image_input(jpeg_bytes())] * 5}, 400, None, "at most 4 images"),
        ({"input": "some text"}, 400, None, "moderates images only"),
        ({"input": [image_input(jpeg_bytes())], "model": "gpt-9"}, 404, "model_not_found", "unknown model 'gpt-9'"),
        (
            {"input": [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:1/x.png"}}]},
            400,
            "url_not_allowed",
            "only data URLs",
        ),
        (
            {"input": [{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]},
            400,
            "invalid_image_url",
            "base64",
        ),
        ({"inputs": []}, 400, "invalid_body", "invalid request"),
    ],
)
def test_bad_input_gets_a_4xx_in_openai_error_shape(server, body, status, code, words):
    url, _ = server
    r = post(url, body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and words in error["message"]
    if code:
        assert error["code"] == code


def test_malformed_json_and_oversized_bodies(server):
    url, _ = server
    r = httpx.post(
        f"{url}/v1/moderations", content=b"{not json", headers={**auth(), "Content-Type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_body"
    r = httpx.post(
        f"{url}/v1/moderations", content=b"x" * 3_000_000, headers={**auth(), "Content-Type": "application/json"}
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_api_keys_are_required_and_checked(server):
    url, _ = server
    body = {"input": [image_input(jpeg_bytes())]}
    missing = post(url, body, headers={})
    wrong = post(url, body, headers={"Authorization": "Bearer nope"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key" and wrong.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{url}/healthz").status_code == 200  # health needs no key


def test_a_crashing_classifier_fails_only_its_request(server):
    url, _ = server
    green = post(url, {"model": "slow-red", "input": [image_input(jpeg_bytes((0, 255, 0)))]})
    assert green.status_code == 500 and "green images break this model" in green.json()["error"]["message"]
    red = post(url, {"model": "slow-red", "input": [image_input(jpeg_bytes((250, 0, 0)))]})
    assert red.status_code == 200 and red.json()["results"][0]["flagged"] is True


def test_concurrent_requests_are_micro_batched_and_all_audited(server):
    url, app = server
    state = app.state.imagesafety.state
    slow = state.served["slow-red"].classifier
    slow.batches.clear()
    audit = state.audit
    before = audit.written + audit.queue.qsize()

    async def many():
        async with httpx.AsyncClient(timeout=30) as client:
            bodies = [{"model": "slow-red", "input": [image_input(jpeg_bytes((100 + i, 0, 0)))]} for i in range(24)]
            return await asyncio.gather(*(client.post(f"{url}/v1/moderations", json=b, headers=auth()) for b in bodies))

    responses = asyncio.run(many())
    assert all(r.status_code == 200 for r in responses)
    assert max(slow.batches) > 1 and sum(slow.batches) == 24
    deadline = time.time() + 10
    while audit.written < before + 24 and time.time() < deadline:
        time.sleep(0.05)
    rows = [r for r in audit.rows() if r["model"] == "slow-red" and r["error"] is None]
    ids = {r["request_id"] for r in rows}
    assert {r.json()["id"] for r in responses} <= ids
    row = next(r for r in rows if r["request_id"] == responses[0].json()["id"])
    assert (
        row["key_id"] == "alice" and len(row["image_sha256"]) == 64 and row["image"] is None and row["latency_ms"] > 0
    )


def test_metrics_and_readiness(server):
    url, _ = server
    post(url, {"model": "nudenet", "input": [image_input(jpeg_bytes())]})
    text = httpx.get(f"{url}/metrics").text
    for name in (
        "imagesafety_requests_total",
        "imagesafety_request_seconds_bucket",
        "imagesafety_batch_size_bucket",
        "imagesafety_images_total",
    ):
        assert name in text
    assert httpx.get(f"{url}/readyz").json()["models"] == ["nudenet", "slow-red"]
    models = httpx.get(f"{url}/v1/models", headers=auth()).json()["data"]
    assert [m["id"] for m in models] == ["nudenet", "slow-red"]
    assert httpx.get(f"{url}/openapi.json").json()["paths"]["/v1/moderations"]


def test_rate_limit_per_key(tmp_path):
    config = ServeConfig(
        api_keys={"a": "ka", "b": "kb"}, rate_limit_per_minute=3, audit_url=f"sqlite:///{tmp_path / 'a.sqlite'}"
    )
    with running_server(config, {"red": MeanRedClassifier()}) as (url, _, _):
        body = {"input": [image_input(jpeg_bytes())]}
        codes = [post(url, body, headers={"Authorization": "Bearer ka"}).status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        assert post(url, body, headers={"Authorization": "Bearer kb"}).status_code == 200


def test_graceful_shutdown_finishes_in_flight_requests_and_flushes_the_audit_log(tmp_path):
    audit_url = f"sqlite:///{tmp_path / 'audit.sqlite'}"
    slow = SlowRed(delay=0.4)
    results = []
    with running_server(ServeConfig(auth=False, audit_url=audit_url, batch_window_ms=1), {"slow": slow}) as (
        url,
        server,
        _,
    ):

        def call(i):
            results.append(
                post(url, {"input": [image_input(jpeg_bytes((120 + i, 0, 0)))]}, headers={}, timeout=30).status_code
            )

        threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        deadline = time.time() + 20  # wait until all three are in flight and the model is busy, not for a guessed time
        while (len(server.server_state.tasks) < 3 or not slow.batches) and time.time() < deadline:
            time.sleep(0.01)
        assert len(server.server_state.tasks) == 3 and slow.batches
        server.should_exit = True
        for t in threads:
            t.join()
    assert results == [200, 200, 200]
    from imagesafety.serve.audit import AuditLog

    log = AuditLog(audit_url)
    assert len(log.rows()) == 3
    log.close()


def test_audit_log_in_postgresql_under_concurrent_load():
    from pg_helpers import temporary_postgres

    with temporary_postgres() as pg_url:
        if pg_url is None:
            pytest.skip("no PostgreSQL server binaries or psycopg here; SQLite is covered above")
        with running_server(
            ServeConfig(auth=False, audit_url=pg_url, store_images=True), {"red": MeanRedClassifier()}
        ) as (url, _, app):

            async def many():
                async with httpx.AsyncClient(timeout=30) as client:
                    return await asyncio.gather(
                        *(
                            client.post(
                                f"{url}/v1/moderations", json={"input": [image_input(jpeg_bytes((i, 0, 0)))] * 2}
                            )
                            for i in range(30)
                        )
                    )

            responses = asyncio.run(many())
            assert all(r.status_code == 200 for r in responses)
        from imagesafety.serve.audit import AuditLog

        log = AuditLog(pg_url)
        rows = log.rows()
        log.close()
        assert len(rows) == 60 and {r["request_id"] for r in rows} == {r.json()["id"] for r in responses}
        assert all(r["image"] is not None for r in rows)
