"""Nothing slips through: every frame of animations and videos, transparency on both backgrounds, and files that try
to exhaust the reader, with inputs whose right answer is known by construction (a patch planted in one frame)."""

from __future__ import annotations

import io
import json
import struct

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imagesafety.images import decode_image
from imagesafety.media import FramePolicy, MediaBudgetError, read_views
from imagesafety.run.runner import Runner
from imagesafety.run.tasks import PredictionTask
from planted import (
    MAGENTA,
    WHITE,
    PlantedPatchClassifier,
    animation_bytes,
    register_planted,
    scene,
    video_bytes,
    white_on_transparent_png,
)

SUFFIX = {"GIF": "gif", "WEBP": "webp", "PNG": "png"}


@pytest.fixture
def planted_spec(monkeypatch):
    from imagesafety import registry

    register_planted(monkeypatch)
    yield "planted"
    registry._plugins.cache_clear()


def folder_with(tmp_path, files: dict[str, bytes], label="unsafe"):
    root = tmp_path / "data"
    (root / label).mkdir(parents=True)
    (root / "safe").mkdir()
    for name, data in files.items():
        (root / label / name).write_bytes(data)
    return root


def run_rows(root, classifier, frames=None):
    from imagesafety.data import load_dataset

    return (
        Runner(PredictionTask(classifier, None, frames), batch_size=4, show_progress=False)
        .run(load_dataset(root))
        .set_index("id")
    )


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_an_animation_whose_only_unsafe_frame_is_7_is_flagged_with_frame_7(tmp_path, fmt):
    data = animation_bytes(fmt, frames=12, planted=7)
    clf = PlantedPatchClassifier()
    # what the code did before: the first frame alone, which passes as safe
    first = clf.predict([decode_image(data)])[0]
    assert first.decision == 0 and first.unsafe_score < 0.1
    rows = run_rows(folder_with(tmp_path, {f"a.{SUFFIX[fmt]}": data}), clf)
    row = rows.loc[f"unsafe/a.{SUFFIX[fmt]}"]
    assert row["classifier_decision"] == 1 and row["score"] == pytest.approx(1.0)
    views = json.loads(row["views"])
    assert views["decided_by"]["frame"] == 7 and views["decided_by"]["timestamp_s"] == pytest.approx(0.7)
    assert views["sampling"] == {**views["sampling"], "kind": "animation", "frames_total": 12, "rule": "all"}
    assert [s["frame"] for s in views["scores"]] == list(range(12))
    assert [s["score"] > 0.5 for s in views["scores"]] == [i == 7 for i in range(12)]
    assert clf.images_seen == 12 + 1


def test_frames_are_classified_in_shared_batches(tmp_path):
    files = {f"a{i}.gif": animation_bytes("GIF", frames=5, planted=None, seed=i) for i in range(3)}
    calls = []

    class Counting(PlantedPatchClassifier):
        def predict_prepared(self, items):
            calls.append(len(items))
            return super().predict_prepared(items)

    run_rows(folder_with(tmp_path, files), Counting())
    assert calls == [4, 4, 4, 3]  # 15 frames of 3 files in batches of 4, not one call per file


def test_k_of_n_needs_k_frames_and_a_still_image_is_judged_by_its_one_frame(tmp_path):
    data = animation_bytes("GIF", frames=12, planted=7)
    still = io.BytesIO()
    Image.fromarray(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))).save(still, "PNG")
    planted_still = io.BytesIO()
    from planted import plant

    Image.fromarray(plant(scene(np.random.default_rng(3)))).save(planted_still, "PNG")
    rows = run_rows(
        folder_with(tmp_path, {"a.gif": data, "s.png": planted_still.getvalue()}),
        PlantedPatchClassifier(),
        FramePolicy(rule="2-of-n"),
    )
    assert rows.loc["unsafe/a.gif", "classifier_decision"] == 0  # one unsafe frame of 12: not 2
    assert json.loads(rows.loc["unsafe/a.gif", "views"])["aggregate"] == "2-of-n"
    assert rows.loc["unsafe/s.png", "classifier_decision"] == 1  # one frame: K is capped at 1


def test_over_max_frames_the_first_last_and_evenly_spaced_are_read_and_the_rule_recorded(tmp_path):
    data = animation_bytes("GIF", frames=40, planted=39)
    rows = run_rows(folder_with(tmp_path, {"a.gif": data}), PlantedPatchClassifier(), FramePolicy(max_frames=5))
    views = json.loads(rows.loc["unsafe/a.gif", "views"])
    assert views["sampling"]["frames_read"] == [0, 10, 20, 29, 39]
    assert views["sampling"]["rule"] == "first, last and evenly spaced: 5 of 40"
    assert rows.loc["unsafe/a.gif", "classifier_decision"] == 1  # the last frame is always read


def test_a_video_is_sampled_per_second_and_flagged_at_the_planted_time(tmp_path):
    pytest.importorskip("av")
    data = video_bytes(seconds=6, planted_from=3.0, planted_to=3.5)
    clf = PlantedPatchClassifier()
    rows = run_rows(folder_with(tmp_path, {"v.mp4": data}), clf)
    row = rows.loc["unsafe/v.mp4"]
    views = json.loads(row["views"])
    assert row["classifier_decision"] == 1
    assert views["sampling"]["kind"] == "video" and views["sampling"]["rule"] == "1 fps"
    assert [s["timestamp_s"] for s in views["scores"]] == pytest.approx([0, 1, 2, 3, 4, 5], abs=0.05)
    assert views["decided_by"]["timestamp_s"] == pytest.approx(3.0, abs=0.05)
    assert [s["score"] > 0.5 for s in views["scores"]] == [False, False, False, True, False, False]
    assert clf.images_seen == 6


def test_early_exit_stops_a_video_at_the_first_flagged_batch_and_reports_the_saving(tmp_path):
    pytest.importorskip("av")
    data = video_bytes(seconds=12, planted_from=1.0, planted_to=1.5)
    clf = PlantedPatchClassifier()
    rows = run_rows(folder_with(tmp_path, {"v.mp4": data}), clf, FramePolicy(early_exit=True))
    views = json.loads(rows.loc["unsafe/v.mp4", "views"])
    assert rows.loc["unsafe/v.mp4", "classifier_decision"] == 1
    assert clf.images_seen == 4  # the first model batch of 4 held the planted second
    assert views["skipped"] == 8 and len(views["scores"]) == 4


def test_white_on_transparent_is_flagged_by_the_black_background_pass(tmp_path):
    data = white_on_transparent_png()
    clf = PlantedPatchClassifier(colour=WHITE)
    assert clf.predict([decode_image(data)])[0].decision == 0  # flattened onto white, as before: nothing to see
    rows = run_rows(folder_with(tmp_path, {"t.png": data}), clf)
    views = json.loads(rows.loc["unsafe/t.png", "views"])
    assert rows.loc["unsafe/t.png", "classifier_decision"] == 1
    assert views["decided_by"]["background"] == "black"
    assert [s["background"] for s in views["scores"]] == ["white", "black"]


def test_an_opaque_still_keeps_its_prediction_unchanged(tmp_path):
    from conftest import jpeg_bytes

    rows = run_rows(folder_with(tmp_path, {"a.jpg": jpeg_bytes()}), PlantedPatchClassifier())
    assert rows.loc["unsafe/a.jpg", "views"] is None


def test_eval_reports_the_deciding_frame_and_the_policy(tmp_path, planted_spec):
    from typer.testing import CliRunner

    from imagesafety.cli import app

    root = folder_with(tmp_path, {"a.gif": animation_bytes("GIF"), "b.webp": animation_bytes("WEBP", planted=None)})
    (root / "safe" / "c.png").write_bytes(animation_bytes("PNG", planted=None))
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["eval", "-c", planted_spec, "-d", str(root), "-o", str(out), "--no-cache", "-q", "--bootstrap", "10"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["frames"]["animations"] == 3 and metrics["frames"]["policy"]["rule"] == "max"
    rows = pd.read_parquet(out / "predictions.parquet").set_index("id")
    assert json.loads(rows.loc["unsafe/a.gif", "views"])["decided_by"]["frame"] == 7
    bad = CliRunner().invoke(app, ["eval", "-c", planted_spec, "-d", str(root), "--frame-rule", "most"])
    assert bad.exit_code == 2 and "'most' is not 'max' or 'K-of-n'" in bad.output


# -- files that try to exhaust the reader ------------------------------------------------------------------------------


def gif_of_tiny_frames(n: int, frame_w: int = 1, frame_h: int = 1, canvas=(1, 1)) -> bytes:
    """A GIF of `n` image blocks written by hand (no encoder would make these)."""
    head = b"GIF89a" + struct.pack("<HH", *canvas) + bytes([0x80, 0, 0]) + bytes([0, 0, 0, 255, 255, 255])
    frame = b"\x2c" + struct.pack("<HHHH", 0, 0, frame_w, frame_h) + b"\x00" + b"\x02\x02\x44\x01\x00"
    return head + frame * n + b"\x3b"


def views_of(data, policy=FramePolicy()):
    sampling, views = read_views(data, policy, 8192 * 8192, "f")
    return sampling, list(views)


@pytest.mark.parametrize(
    "data, words",
    [
        (gif_of_tiny_frames(65_535), "declares 65535 frames, over the budget of 4096 (max_declared_frames)"),
        (gif_of_tiny_frames(10_000), "declares 10000 frames, over the budget of 4096 (max_declared_frames)"),
        (animation_bytes("GIF") + b"PK\x03\x04" + b"\x00" * 200, "follow the end of the GIF image"),
        (animation_bytes("PNG") + b"<script>alert(1)</script>" * 4, "follow the end of the PNG image"),
    ],
)
def test_frame_bombs_and_polyglots_are_refused_before_decoding(data, words):
    import time

    started = time.perf_counter()
    with pytest.raises(MediaBudgetError) as info:
        views_of(data)
    assert words in str(info.value) and time.perf_counter() - started < 5


def test_total_pixel_budget_and_frames_larger_than_the_canvas():
    big = animation_bytes("GIF", frames=12)
    with pytest.raises(MediaBudgetError, match="max_total_pixels"):
        views_of(big, FramePolicy(max_total_pixels=80 * 64 * 11))
    # frames drawn outside a 1x1 canvas: refused or read within the canvas, never a crash
    try:
        _, views = views_of(gif_of_tiny_frames(3, frame_w=4000, frame_h=4000))
        assert all(img.size == (1, 1) for img, _ in views)
    except MediaBudgetError as exc:
        assert "frame" in str(exc)
    except Exception as exc:  # Pillow's own refusal, as an ImageDecodeError
        from imagesafety.images import ImageDecodeError

        assert isinstance(exc, ImageDecodeError), exc


def test_a_truncated_animation_is_an_error_row_not_a_crash(tmp_path):
    data = animation_bytes("GIF", frames=12)
    rows = run_rows(folder_with(tmp_path, {"a.gif": data[: len(data) // 2]}), PlantedPatchClassifier())
    assert rows.loc["unsafe/a.gif", "error"] and pd.isna(rows.loc["unsafe/a.gif", "score"])


def video_with(duration_s: float | None = None, rate: int = 10) -> bytes:
    """A short mp4 whose container declares a duration far longer than its frames (pts jumps), or a huge frame rate."""
    import av

    buf = io.BytesIO()
    out = av.open(buf, mode="w", format="mp4")
    stream = out.add_stream("libx264", rate=rate)
    stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
    from fractions import Fraction

    stream.time_base = Fraction(1, rate)
    for i, pts in enumerate([0, 1, int(duration_s * rate)] if duration_s else range(30)):
        frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), (80 + i * 30) % 250, np.uint8), format="rgb24")
        frame.pts = pts
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return buf.getvalue()


def test_video_budgets_and_broken_streams():
    pytest.importorskip("av")
    with pytest.raises(MediaBudgetError, match="max_duration_s"):
        views_of(video_with(duration_s=20_000))
    with pytest.raises(MediaBudgetError, match="max_frame_rate"):
        views_of(video_with(rate=1000), FramePolicy(max_frame_rate=240))
    data = video_bytes(seconds=6)
    from imagesafety.images import ImageDecodeError

    with pytest.raises(ImageDecodeError):
        views_of(data[: len(data) // 3])
    with pytest.raises(ImageDecodeError):
        views_of(data[:48] + b"\x00" * 4000)


def test_a_long_video_is_spread_over_max_frames_by_seeking():
    pytest.importorskip("av")
    data = video_bytes(seconds=30, rate=10, planted_from=29.0, planted_to=30.0, gop=10)
    budget = FramePolicy(max_frames=4, max_total_pixels=96 * 64 * 60)  # 60 frames' pixels: a whole decode needs 300
    sampling, views = views_of(data, budget)
    assert sampling.rule.startswith("4 evenly spaced") and len(views) == 4
    assert [round(v.timestamp_s) for _, v in views] == [0, 10, 20, 30] or views[-1][1].timestamp_s > 28
    assert PlantedPatchClassifier().predict([views[-1][0]])[0].decision == 1
    with pytest.raises(MediaBudgetError, match="max_total_pixels"):  # one keyframe at the start: seeking cannot help
        views_of(video_bytes(seconds=30, rate=10), budget)


def test_the_reports_thumbnail_is_the_frame_that_decided(tmp_path, planted_spec):
    import base64
    import re

    from typer.testing import CliRunner

    from imagesafety.cli import app

    root = folder_with(tmp_path, {"x.gif": animation_bytes("GIF", planted=None)})
    (root / "safe" / "fp.gif").write_bytes(
        animation_bytes("GIF", planted=7)
    )  # a false positive: flagged on frame 7 only
    out = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["eval", "-c", planted_spec, "-d", str(root), "-o", str(out), "--no-cache", "-q", "--bootstrap", "10"]
    )
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    section = page[page.index("Safe images flagged unsafe") : page.index("Unsafe images passed as safe")]
    thumb = Image.open(
        io.BytesIO(base64.b64decode(re.search(r"data:image/jpeg;base64,([^\"']+)", section).group(1)))
    ).convert("RGB")
    arr = np.asarray(thumb, dtype=float)
    magenta = (np.abs(arr - np.array(MAGENTA)).max(axis=-1) < 60).mean()
    assert magenta > 0.005  # frame 7's patch is in the thumbnail; frame 0 (what a first-frame thumbnail shows) has none


def test_early_exit_never_stops_below_the_threshold_the_run_decides_with(tmp_path):
    pytest.importorskip("av")
    from imagesafety.bench.evaluate import evaluate

    data = video_bytes(seconds=12, planted_from=1.0, planted_to=1.5)
    root = folder_with(tmp_path, {"v.mp4": data})
    # the planted second scores 0.75: unsafe at the classifier's own 0.5, safe at the 0.99 the run decides with
    clf = PlantedPatchClassifier(gain=6.0)
    result = evaluate(
        clf, root, None, cache=None, progress=False, n_boot=10, threshold=0.99, frames=FramePolicy(early_exit=True)
    )
    views = json.loads(result.predictions.set_index("id").loc["unsafe/v.mp4", "views"])
    assert max(s["score"] for s in views["scores"]) == pytest.approx(0.75, abs=0.05)
    assert views["skipped"] == 0  # nothing over 0.99: every sampled frame was read
    with pytest.raises(ValueError, match="--early-exit stops a video at the decision threshold"):
        evaluate(
            clf, root, None, cache=None, progress=False, calibrate="validation", frames=FramePolicy(early_exit=True)
        )
