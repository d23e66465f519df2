"""Video files (mp4, webm, mov, mkv) as views through PyAV: frames sampled at the policy's rate with their timestamps,
the declared duration, frame rate and size checked before anything is decoded, and decoding bounded by a pixel budget
(long videos are sampled by seeking rather than decoded whole)."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

from PIL import Image

from imagesafety.media.policy import FramePolicy, ImageDecodeError, MediaBudgetError, Sampling, ViewInfo

#: container signatures: ISO base media (mp4, mov: 'ftyp' at offset 4) and Matroska/WebM (EBML magic)
EBML_MAGIC = b"\x1a\x45\xdf\xa3"


def looks_like_video(data: bytes) -> bool:
    """Whether the bytes start like a video container we read (decided from the header, not the file name)."""
    return data[4:8] in (b"ftyp", b"moov", b"mdat", b"wide", b"free") or data[:4] == EBML_MAGIC


def _av():
    try:
        import av
    except ImportError:
        raise ImageDecodeError("video files need PyAV: pip install 'imagesafety[video]'") from None
    return av


def sample_times(duration: float, rate: float, policy: FramePolicy) -> tuple[list[float], str]:
    """Seconds at which frames are taken: every 1/fps from 0, or `max_frames` spread from the first frame to the
    last."""
    count = max(1, math.ceil(duration * policy.fps - 1e-9))
    if count <= policy.max_frames:
        return [round(i / policy.fps, 6) for i in range(count)], f"{policy.fps:g} fps"
    last = max(0.0, duration - (1 / rate if rate else 0.0))
    step = last / max(1, policy.max_frames - 1)
    return [
        round(i * step, 6) for i in range(policy.max_frames)
    ], f"{policy.max_frames} evenly spaced from 0 to {last:.3f}s (over max_frames at {policy.fps:g} fps)"


def read_video_views(
    data: bytes, policy: FramePolicy, max_pixels: int, name: str
) -> tuple[Sampling, Iterator[tuple[Image.Image, ViewInfo]]]:
    """What will be read (from the container's declarations), then the sampled frames lazily."""
    av = _av()
    try:
        container = av.open(io.BytesIO(data), mode="r")
    except Exception as exc:
        raise ImageDecodeError(f"{name}: not a decodable video ({type(exc).__name__}: {exc})") from None
    if not container.streams.video:
        container.close()
        raise ImageDecodeError(f"{name}: the file has no video stream")
    stream = container.streams.video[0]
    width, height = stream.codec_context.width, stream.codec_context.height
    rate = max([float(r) for r in (stream.average_rate, stream.base_rate, stream.guessed_rate) if r] or [0.0])
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    try:
        if width * height > max_pixels or width < 1 or height < 1:
            raise MediaBudgetError(
                f"{name}: video frames of {width}x{height} are not within the limit of {max_pixels} pixels"
            )
        if duration > policy.max_duration_s:
            raise MediaBudgetError(
                f"{name}: the video declares {duration:.0f}s, over the budget of {policy.max_duration_s:g}s "
                "(max_duration_s)"
            )
        if rate > policy.max_frame_rate:
            raise MediaBudgetError(
                f"{name}: the video declares {rate:g} frames per second, over the budget of {policy.max_frame_rate:g} "
                "(max_frame_rate)"
            )
    except MediaBudgetError:
        container.close()
        raise
    times, rule = sample_times(duration, rate, policy)
    sampling = Sampling("video", len(times), list(range(len(times))), rule, round(duration, 3), width, height)
    return sampling, _decode(container, stream, sampling, times, width * height, rate, policy, name)


def _decode(
    container,
    stream,
    sampling: Sampling,
    times: list[float],
    frame_pixels: int,
    rate: float,
    policy: FramePolicy,
    name: str,
) -> Iterator[tuple[Image.Image, ViewInfo]]:
    """The first frame at or after each sample time, decoding sequentially when the whole video fits the pixel budget
    and seeking to each time otherwise; every decoded frame counts against the budget."""
    from imagesafety.media.still import frame_views

    decoded = 0
    sequential = frame_pixels * max(1.0, rate) * (times[-1] + 1) <= policy.max_total_pixels

    def spend() -> None:
        nonlocal decoded
        decoded += frame_pixels
        if decoded > policy.max_total_pixels:
            raise MediaBudgetError(
                f"{name}: decoding passed {policy.max_total_pixels} pixels (max_total_pixels) before every "
                "sampled frame was read"
            )

    def frames() -> Iterator:
        try:
            yield from container.decode(stream)
        except MediaBudgetError:
            raise
        except Exception as exc:
            raise ImageDecodeError(f"{name}: the video stream is corrupt ({type(exc).__name__}: {exc})") from None

    try:
        stream.thread_type = "AUTO"
        index, last = 0, None
        it = frames()
        for t in times:
            if not sequential and (last is None or last.time is None or last.time < t - 1.0):
                container.seek(int(t / float(stream.time_base)), stream=stream, backward=True, any_frame=False)
                it = frames()
            frame = last if last is not None and last.time is not None and last.time >= t else None
            while frame is None:
                candidate = next(it, None)
                if candidate is None:
                    break
                spend()
                if candidate.time is None or candidate.time + 1e-6 >= t:
                    frame = candidate
                last = candidate
            if frame is None:
                if index == 0:
                    raise ImageDecodeError(f"{name}: the video has no decodable frame")
                ended = float(last.time or 0.0)
                if t - ended > max(1.0, 1 / policy.fps):
                    raise MediaBudgetError(
                        f"{name}: the video ends at {ended:.3f}s, before its declared {times[-1]:.3f}s (truncated)"
                    )
                sampling.frames_read = list(range(index))  # the last frame read is the video's end
                return
            last = frame
            yield from frame_views(frame.to_image(), ViewInfo(index, round(float(frame.time or 0.0), 3)))
            index += 1
    finally:
        container.close()
