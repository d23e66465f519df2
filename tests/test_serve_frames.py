"""The service reads every frame and answers one verdict per moderation input, as OpenAI does; every answer and every
refusal validates against OpenAI's own published schemas (tests/fixtures/openai, from openai/openai-openapi)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from conftest import png_bytes
from imagesafety.serve import ServeConfig
from planted import WHITE, PlantedPatchClassifier, animation_bytes, scene, video_bytes, white_on_transparent_png

pytest.importorskip("fastapi")
from serve_helpers import data_url, running_server  # noqa: E402

KEY = "secret-frames"
SCHEMAS = json.loads((Path(__file__).parent / "fixtures" / "openai" / "moderation_schemas.json").read_text())


def validate(body: dict, schema: str) -> None:
    """Validate against OpenAI's schema of that name (its $refs resolved inside the vendored components)."""
    import jsonschema

    resolver_doc = {"components": SCHEMAS["components"]}
    jsonschema.validate(
        body,
        {**SCHEMAS["components"]["schemas"][schema], "components": resolver_doc["components"]},
        cls=jsonschema.Draft202012Validator,
    )


def harmless_png() -> bytes:
    import numpy as np
    from PIL import Image

    return png_bytes(Image.fromarray(scene(np.random.default_rng(5))))


def planted_png() -> bytes:
    import numpy as np
    from PIL import Image

    from planted import plant

    return png_bytes(Image.fromarray(plant(scene(np.random.default_rng(6)))))


def part(data: bytes, mime="image/png") -> dict:
    return {"type": "image_url", "image_url": {"url": data_url(data, mime)}}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two servers: the defaults, and one that accepts text parts and takes one image per input (as OpenAI)."""
    audit = tmp_path_factory.mktemp("audit")
    strict = ServeConfig(api_keys={"a": KEY}, audit_url=f"sqlite:///{audit / 'a.sqlite'}", max_request_bytes=20_000_000)
    lenient = ServeConfig(
        api_keys={"a": KEY}, audit_url=f"sqlite:///{audit / 'b.sqlite'}", text_parts="ignore", max_images_per_input=1
    )
    clf = PlantedPatchClassifier()
    with running_server(strict, {"planted": clf, "white": PlantedPatchClassifier(colour=WHITE)}) as (url, _, _):
        with running_server(lenient, {"planted": PlantedPatchClassifier()}) as (url2, _, _):
            yield url, url2, clf


def moderate(url, inputs, model=None):
    body = {"input": inputs, **({"model": model} if model else {})}
    return httpx.post(f"{url}/v1/moderations", json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)


def test_harmless_then_planted_image_is_one_flagged_result_through_the_openai_client(servers):
    from openai import OpenAI

    url, _, _ = servers
    client = OpenAI(base_url=f"{url}/v1", api_key=KEY)
    response = client.moderations.create(model="planted", input=[part(harmless_png()), part(planted_png())])
    assert len(response.results) == 1
    result = response.results[0]
    assert (
        result.flagged is True
        and result.categories.sexual is True
        and result.category_scores.sexual == pytest.approx(1.0)
    )
    assert result.category_applied_input_types.sexual == ["image"]
    images = result.model_extra["imagesafety"]["images"]
    assert [i["flagged"] for i in images] == [False, True]
    # the code as it was answered one result per image: results[0], all an OpenAI client reads, was the harmless one
    assert images[0]["unsafe_score"] < 0.5


def test_caption_and_image_is_refused_by_default_and_image_scored_with_text_parts_ignore(servers):
    url, url2, _ = servers
    inputs = [{"type": "text", "text": "look at this"}, part(planted_png())]
    refused = moderate(url, inputs)
    assert refused.status_code == 400 and "--text-parts ignore" in refused.json()["error"]["message"]
    assert refused.json()["error"]["code"] == "text_not_supported"
    validate(refused.json(), "ErrorResponse")
    accepted = moderate(url2, inputs)
    assert accepted.status_code == 200, accepted.text
    body = accepted.json()
    validate(body, "CreateModerationResponse")
    result = body["results"][0]
    assert len(body["results"]) == 1 and result["flagged"] is True
    assert all(
        "text" not in types for types in result["category_applied_input_types"].values()
    )  # the text was not moderated
    assert result["imagesafety"]["text_parts_ignored"] == 1


def test_one_image_per_input_behaves_as_openai(servers):
    _, url2, _ = servers
    r = moderate(url2, [part(harmless_png()), part(planted_png())])
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_many_images"
    validate(r.json(), "ErrorResponse")


def test_an_animated_gif_is_flagged_at_its_frame_7_and_validates(servers):
    url, _, _ = servers
    r = moderate(url, [part(animation_bytes("GIF"), "image/gif")], model="planted")
    assert r.status_code == 200, r.text
    validate(r.json(), "CreateModerationResponse")
    result = r.json()["results"][0]
    assert result["flagged"] is True
    assert result["imagesafety"]["images"][0]["views"]["decided_by"]["frame"] == 7


def test_white_on_transparent_is_flagged_on_black(servers):
    url, _, _ = servers
    r = moderate(url, [part(white_on_transparent_png())], model="white")
    result = r.json()["results"][0]
    assert (
        result["flagged"] is True and result["imagesafety"]["images"][0]["views"]["decided_by"]["background"] == "black"
    )


def test_a_video_upload_is_answered_per_timestamp_and_stops_early(servers):
    pytest.importorskip("av")
    url, _, clf = servers
    before = clf.images_seen
    video = video_bytes(seconds=40, planted_from=2.0, planted_to=2.5)
    r = httpx.post(
        f"{url}/v1/classify",
        files=[("files", ("clip.mp4", video, "video/mp4"))],
        data={"model": "planted"},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    res = r.json()["results"][0]
    assert res["flagged"] is True
    views = res["views"]
    assert views["sampling"]["kind"] == "video" and views["decided_by"]["timestamp_s"] == pytest.approx(2.0, abs=0.05)
    assert [round(s["timestamp_s"]) for s in views["scores"]] == list(range(len(views["scores"])))
    assert views["skipped"] == 40 - len(views["scores"]) > 0  # the early exit left the rest of the video unread
    assert clf.images_seen - before == len(views["scores"])


@pytest.mark.parametrize(
    "make, status, words",
    [
        (lambda: __import__("test_frames").gif_of_tiny_frames(65_535), 413, "max_declared_frames"),
        (lambda: animation_bytes("GIF") + b"PK\x03\x04" + b"\x00" * 64, 413, "also something else"),
        (lambda: animation_bytes("GIF")[:600], 400, "not a decodable image"),
        (lambda: animation_bytes("GIF")[:20_000], 400, "frame"),
    ],
)
def test_frame_bombs_are_4xx_naming_the_budget_and_validate(servers, make, status, words):
    url, _, _ = servers
    r = moderate(url, [part(make(), "image/gif")])
    assert r.status_code == status, r.text
    assert words in r.json()["error"]["message"]
    validate(r.json(), "ErrorResponse")


def test_every_answer_validates_against_openais_schema(servers):
    url, _, _ = servers
    for inputs in (
        [part(harmless_png())],
        [part(planted_png()), part(harmless_png())],
        [part(animation_bytes("WEBP"), "image/webp")],
    ):
        r = moderate(url, inputs)
        assert r.status_code == 200, r.text
        validate(r.json(), "CreateModerationResponse")
    for body in ({"input": "text only"}, {"input": ["a", "b"]}, {"input": []}, {"nothing": 1}):
        r = httpx.post(f"{url}/v1/moderations", json=body, headers={"Authorization": f"Bearer {KEY}"})
        assert r.status_code == 400, r.text
        validate(r.json(), "ErrorResponse")
    r = httpx.post(
        f"{url}/v1/moderations", json={"input": [part(harmless_png())]}, headers={"Authorization": "Bearer wrong"}
    )
    assert r.status_code == 401
    validate(r.json(), "ErrorResponse")


def test_the_schema_check_can_fail():
    import jsonschema

    good = {"id": "x", "model": "m", "results": []}
    validate(good, "CreateModerationResponse")
    with pytest.raises(jsonschema.ValidationError):
        validate({"id": "x", "model": "m"}, "CreateModerationResponse")
    with pytest.raises(jsonschema.ValidationError):  # "image" is not an input type OpenAI applies to hate
        from imagesafety.serve.openai_categories import OPENAI_CATEGORIES

        result = {
            "flagged": True,
            "categories": {c: False for c in OPENAI_CATEGORIES},
            "category_scores": {c: 0.0 for c in OPENAI_CATEGORIES},
            "category_applied_input_types": {c: [] for c in OPENAI_CATEGORIES} | {"hate": ["image"]},
        }
        validate({**good, "results": [result]}, "CreateModerationResponse")


def test_classify_with_explain_returns_boxes_on_the_patch_and_keeps_to_its_budget(servers):
    import base64
    import io

    import numpy as np
    from PIL import Image

    from planted import plant

    url, _, clf = servers
    box = (30, 20, 42, 32)
    image = png_bytes(Image.fromarray(plant(scene(np.random.default_rng(9)), box)))
    headers = {"Authorization": f"Bearer {KEY}"}
    r = httpx.post(
        f"{url}/v1/classify",
        files=[("files", ("p.png", image, "image/png"))],
        data={"model": "planted", "explain": "heatmap"},
        headers=headers,
        timeout=60,
    )
    assert r.status_code == 200, r.text
    explanation = r.json()["results"][0]["explanation"]
    top = explanation["boxes"][0]
    ix = max(0, min(top[2], box[2]) - max(top[0], box[0])) * max(0, min(top[3], box[3]) - max(top[1], box[1]))
    assert ix / ((top[2] - top[0]) * (top[3] - top[1]) + 144 - ix) >= 0.5
    heat = Image.open(io.BytesIO(base64.b64decode(explanation["heatmap"].split(",", 1)[1])))
    assert heat.mode == "L" and max(heat.size) <= 64
    gif = r = httpx.post(
        f"{url}/v1/classify",
        files=[("files", ("a.gif", animation_bytes("GIF"), "image/gif"))],
        data={"model": "planted", "explain": "true"},
        headers=headers,
        timeout=60,
    )
    assert gif.status_code == 200 and gif.json()["results"][0]["explanation"]["frame"] == 7
    before = clf.images_seen
    many = [("files", (f"{i}.png", image, "image/png")) for i in range(3)]
    r = httpx.post(
        f"{url}/v1/classify", files=many, data={"model": "planted", "explain": "true"}, headers=headers, timeout=60
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "explain_budget_exceeded"
    assert (
        "--max-explain-calls" in r.json()["error"]["message"] and clf.images_seen == before
    )  # refused before any model call
    bad = httpx.post(
        f"{url}/v1/classify", files=many[:1], data={"model": "planted", "explain": "maybe"}, headers=headers
    )
    assert bad.status_code == 400
