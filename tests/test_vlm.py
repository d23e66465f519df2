"""VLM classifiers against a local chat-completions server: concurrency, retries, failures, cache, protocols."""

import json
import time

import pytest

from conftest import jpeg_bytes
from imagesafety.bench.evaluate import evaluate
from imagesafety.classifiers import load_classifier
from imagesafety.store import PredictionCache

pytest.importorskip("openai")
from fake_vlm_server import make_app  # noqa: E402
from serve_helpers import running_app  # noqa: E402


@pytest.fixture(scope="module")
def server():
    app = make_app()
    with running_app(app) as (url, _):
        yield f"{url}/v1", app


def red_blue_folder(root, n=4):
    for label, colour in (("unsafe", (230, 20, 20)), ("safe", (20, 20, 230))):
        for i in range(n):
            folder = root / label / ("violence" if i % 2 else "hate")
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{i}.jpg").write_bytes(jpeg_bytes((colour[0], colour[1] + i, colour[2])))
    return root


def vlm(url, model, tmp_path, **options):
    return load_classifier(f"vlm:openai/{model}", base_url=url, **options)


@pytest.mark.parametrize("protocol", ["unsafebench", "policy", "llamaguard"])
def test_protocols_classify_end_to_end(server, tmp_path, protocol):
    url, _ = server
    data = red_blue_folder(tmp_path / "d")
    result = evaluate(
        vlm(url, "redness", tmp_path, protocol=protocol, taxonomy="llavaguard"),
        data,
        cache=PredictionCache(tmp_path / "c.sqlite"),
        progress=False,
        n_boot=20,
    )
    assert result.metrics["overall"]["accuracy"]["value"] == 1.0
    raw = json.loads(result.predictions["raw"].iloc[0])
    assert len(raw["answers"]) == (3 if protocol == "unsafebench" else 1)  # raw response text is kept
    unsafe = result.predictions[result.predictions["label"] == 1].iloc[0]
    if protocol == "policy":
        assert unsafe["category_scores"]["violence_harm_or_cruelty"] == 1.0
    if protocol == "llamaguard":
        assert unsafe["category_scores"]["sexual_content"] == 1.0  # S3 = the third category
    assert result.metrics["answers"]["usage"]["prompt_tokens"] > 0


def test_requests_overlap_and_the_cache_prevents_repeat_calls(server, tmp_path):
    url, app = server
    data = red_blue_folder(tmp_path / "d", n=8)
    app.state.max_in_flight = 0
    started = time.perf_counter()
    clf = vlm(url, "slow", tmp_path, concurrency=8, protocol="policy")
    evaluate(clf, data, cache=PredictionCache(tmp_path / "c.sqlite"), progress=False, n_boot=10)
    elapsed = time.perf_counter() - started
    assert app.state.max_in_flight >= 4 and elapsed < 16 * 0.2 / 2  # serially it would take 3.2 s
    before = app.state.calls["slow"]
    # a new classifier, the predictions cleared: the answers (kept in the run's cache) answer everything
    cache = PredictionCache(tmp_path / "c.sqlite")
    assert cache.clear() == 16
    evaluate(vlm(url, "slow", tmp_path, concurrency=8, protocol="policy"), data, cache=cache, progress=False, n_boot=10)
    assert app.state.calls["slow"] == before
    # --no-cache: no cache is read or written, answers included, so the endpoint is asked again for every image
    evaluate(vlm(url, "slow", tmp_path, concurrency=8, protocol="policy"), data, cache=None, progress=False, n_boot=10)
    assert app.state.calls["slow"] == before + 16


def test_rate_limits_are_retried(server, tmp_path):
    url, app = server
    data = red_blue_folder(tmp_path / "d", n=2)
    result = evaluate(
        vlm(url, "flaky", tmp_path, protocol="policy", max_retries=3), data, cache=None, progress=False, n_boot=10
    )
    assert result.predictions["error"].isna().all() and result.metrics["overall"]["accuracy"]["value"] == 1.0
    assert all(count == 3 for key, count in app.state.calls.items() if isinstance(key, tuple) and key[0] == "flaky")


def test_garbage_answers_become_error_rows_and_nothing_is_lost(server, tmp_path):
    url, _ = server
    data = red_blue_folder(tmp_path / "d", n=2)
    from imagesafety.bench.evaluate import RunFailed

    # every answer fails: the run fails too, naming the images and why, instead of reporting metrics over nothing
    with pytest.raises(RunFailed, match="every image failed") as failed:
        evaluate(
            vlm(url, "garbage", tmp_path, protocol="policy", max_retries=0), data, cache=None, progress=False, n_boot=10
        )
    assert str(failed.value).count("request failed") == 4 and "safe/hate/0.jpg" in str(failed.value)


def test_an_endpoint_that_refuses_images_fails_on_the_first_call(server, tmp_path):
    from imagesafety.classifiers.base import FatalModelError

    url, app = server
    data = red_blue_folder(tmp_path / "d", n=8)
    with pytest.raises(FatalModelError, match="does this model accept images"):
        evaluate(vlm(url, "textonly", tmp_path, protocol="policy", max_retries=0), data, cache=None, progress=False)
    assert app.state.calls["textonly"] == 1


def test_unsure_answers_follow_the_reported_policy(server, tmp_path):
    url, _ = server
    data = red_blue_folder(tmp_path / "d", n=2)
    as_unsafe = evaluate(
        vlm(url, "unsure", tmp_path, protocol="policy", unsure="unsafe"), data, cache=None, progress=False, n_boot=10
    )
    assert (as_unsafe.predictions["score"] == 1.0).all() and as_unsafe.metrics["answers"]["unsure_answers"] == 4
    from imagesafety.bench.evaluate import RunFailed

    with pytest.raises(RunFailed, match="every answer was unsure"):
        evaluate(
            vlm(url, "unsure", tmp_path, protocol="policy", unsure="exclude"),
            data,
            cache=None,
            progress=False,
            n_boot=10,
        )


def test_cli_flags_reach_the_classifier(server, tmp_path):
    from typer.testing import CliRunner

    from imagesafety.cli import app

    url, _ = server
    data = red_blue_folder(tmp_path / "d", n=2)
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "-c",
            "vlm:openai/redness",
            "-d",
            str(data),
            "-o",
            str(tmp_path / "out"),
            "--base-url",
            url,
            "--concurrency",
            "4",
            "--protocol",
            "policy",
            "--cache",
            str(tmp_path / "c.sqlite"),
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["classifier"]["config"]["protocol"] == "policy" and metrics["overall"]["accuracy"]["value"] == 1.0


def test_moderation_endpoint_classifier_against_our_own_server(tmp_path):
    from imagesafety.serve import ServeConfig
    from serve_helpers import running_server

    data = red_blue_folder(tmp_path / "d", n=3)
    nudenet = load_classifier("nudenet")
    with running_server(
        ServeConfig(auth=False, audit_url=f"sqlite:///{tmp_path / 'a.sqlite'}"), {"nudenet": nudenet}
    ) as (url, _, _):
        remote = evaluate(
            load_classifier(f"moderation:{url}", model="nudenet"), data, cache=None, progress=False, n_boot=10
        )
    local = evaluate(nudenet, data, cache=None, progress=False, n_boot=10)
    merged = remote.predictions.set_index("id")["category_scores"].map(lambda d: d["sexual"])
    expected = local.predictions.set_index("id")["score"]
    assert (abs(merged - expected.loc[merged.index]) < 1e-3).all()


def test_usage_is_a_field_of_the_prediction_and_every_frame_of_an_animation_is_paid_for(server, tmp_path):
    """The fake server answers 100 prompt and 3 completion tokens per call: a 3-frame GIF costs three calls (not
    the deciding frame's one), and the run's usage is the sum over its images."""
    from PIL import Image

    url, _ = server
    root = tmp_path / "d" / "unsafe" / "violence"
    root.mkdir(parents=True)
    frames = [Image.new("RGB", (40, 40), (30 + 90 * i, 20, 20)) for i in range(3)]  # distinct frames, distinct calls
    frames[0].save(root / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    (root / "b.jpg").write_bytes(jpeg_bytes((230, 20, 20)))
    result = evaluate(
        vlm(url, "redness", tmp_path, protocol="policy"), tmp_path / "d", cache=None, progress=False, n_boot=10
    )
    usage = {r.id: json.loads(r.usage) for r in result.predictions.itertuples()}
    assert (
        usage["unsafe/violence/a.gif"]["prompt_tokens"] == 300
        and usage["unsafe/violence/b.jpg"]["prompt_tokens"] == 100
    )
    assert result.metrics["answers"]["usage"]["prompt_tokens"] == 400
    assert result.metrics["answers"]["usage"]["completion_tokens"] == 12
    assert "usage" not in json.loads(result.predictions["raw"].iloc[0])  # the raw answer no longer carries it


def test_a_prediction_cached_with_usage_in_its_raw_answer_still_has_its_usage():
    from imagesafety.classifiers.base import Prediction, Usage

    old = {
        "unsafe_score": 1.0,
        "decision": 1,
        "category_scores": {},
        "raw": {"answers": ["unsafe"], "usage": {"prompt_tokens": 7, "completion_tokens": 2, "cost": 0.5}},
    }
    assert Prediction.from_dict(old).usage == Usage(7, 2, 0.5)
    fresh = Prediction(0.2, 0, {}, None)
    assert "usage" not in fresh.to_dict() and Prediction.from_dict(fresh.to_dict()).usage is None
