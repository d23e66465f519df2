"""Pillow-decodable files as views: every frame of an animated GIF, WebP or APNG (lazily, within the policy's
budgets) and, for frames with transparent pixels, the frame on white and on black."""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator

from PIL import Image, ImageOps

from imagesafety.media.policy import FramePolicy, ImageDecodeError, MediaBudgetError, Sampling, ViewInfo, sample_indices

BACKGROUNDS = (("white", (255, 255, 255)), ("black", (0, 0, 0)))
#: bytes tolerated after an image's own end (some encoders pad); more means the file is also something else
TRAILING_SLACK = 16
PNG_LENGTH = struct.Struct(">I")  # a PNG chunk's length, before its type


def open_image(data: bytes, max_pixels: int, name: str) -> Image.Image:
    """The opened (not yet decoded) image, refused over `max_pixels` by its header. (Pillow itself warns over
    `Image.MAX_IMAGE_PIXELS`, 89M, and refuses over twice that; the default limit, `MAX_PIXELS`, is lower, so every
    image it warns about is refused here. Turning its warning into an error per image with `catch_warnings` cost more
    than decoding a small image and changes the process's filters under the other decoding threads.)"""
    try:
        img = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{name}: refused as a possible decompression bomb ({exc})") from exc
    except Exception as exc:  # Pillow raises many types for broken files
        raise ImageDecodeError(f"{name}: not a decodable image ({type(exc).__name__}: {exc})") from exc
    width, height = img.size
    if width * height > max_pixels:
        raise ImageDecodeError(
            f"{name}: {width}x{height} pixels exceeds the limit of {max_pixels} (possible decompression bomb)"
        )
    return img


def frame_count(img: Image.Image) -> int:
    """Frames the file declares (GIF: counted from its blocks without decoding pixels)."""
    return int(getattr(img, "n_frames", 1) or 1)


def has_transparency(img: Image.Image) -> bool:
    """Whether any pixel of the frame is not fully opaque."""
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        alpha = img.convert("RGBA").getchannel("A")
        return alpha.getextrema()[0] < 255
    return False


def flatten(img: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    """RGB copy of the frame with transparent pixels composited onto `colour`."""
    rgba = img.convert("RGBA")
    background = Image.new("RGB", rgba.size, colour)
    background.paste(rgba, mask=rgba.getchannel("A"))
    return background


def frame_views(img: Image.Image, info: ViewInfo) -> list[tuple[Image.Image, ViewInfo]]:
    """One RGB view of an opaque frame; two (white, black) of a frame with transparent pixels."""
    if has_transparency(img):
        return [(flatten(img, colour), ViewInfo(info.frame, info.timestamp_s, name)) for name, colour in BACKGROUNDS]
    return [(img if img.mode == "RGB" else img.convert("RGB"), info)]


def image_end(data: bytes, fmt: str | None, img: Image.Image) -> int | None:
    """Where the image's own bytes end (PNG: after IEND; WebP: its RIFF size; GIF: after the trailer), None if
    unknown."""
    if fmt == "PNG":
        pos, size = 8, len(data)
        while pos + 8 <= size:
            (length,) = PNG_LENGTH.unpack_from(data, pos)
            if data.startswith(b"IEND", pos + 4):
                return pos + 12 + length
            pos += 12 + length
        return None
    if fmt == "WEBP" and data[:4] == b"RIFF":
        (size,) = struct.unpack("<I", data[4:8])
        return 8 + size + (size & 1)
    if fmt == "GIF":
        return gif_end(data)
    return None


def gif_end(data: bytes) -> int | None:
    """Offset just past a GIF's trailer, walking its blocks without decoding (None if the block structure breaks)."""

    def sub_blocks(pos: int) -> int:
        while pos < len(data) and data[pos]:
            pos += 1 + data[pos]
        return pos + 1

    if len(data) < 13:
        return None
    pos = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:
            return pos + 1
        if block == 0x21:
            pos = sub_blocks(pos + 2)
        elif block == 0x2C and pos + 10 <= len(data):
            flags = data[pos + 9]
            pos += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
            pos = sub_blocks(pos + 1)
        else:
            return None
    return None


def check_single_format(data: bytes, fmt: str | None, img: Image.Image, name: str) -> None:
    """Refuse a file whose bytes go on past the image's end: it is also something else (a polyglot)."""
    end = image_end(data, fmt, img)
    if end is not None and len(data) - end > TRAILING_SLACK:
        raise MediaBudgetError(
            f"{name}: {len(data) - end} bytes follow the end of the {fmt} image: a file that is also "
            "something else is refused (single-format budget)"
        )


def read_still_views(
    data: bytes, policy: FramePolicy, max_pixels: int, name: str
) -> tuple[Sampling, Iterator[tuple[Image.Image, ViewInfo]]]:
    """What will be read, then the views lazily (each frame decoded only when its turn comes)."""
    img = open_image(data, max_pixels, name)
    fmt = img.format
    total = frame_count(img)
    check_single_format(data, fmt, img, name)
    width, height = img.size
    if total == 1:
        return Sampling(width=width, height=height), _still(img, name)
    if total > policy.max_declared_frames:
        raise MediaBudgetError(
            f"{name}: the animation declares {total} frames, over the budget of {policy.max_declared_frames} "
            "(max_declared_frames)"
        )
    if width * height * total > policy.max_total_pixels:
        raise MediaBudgetError(
            f"{name}: {total} frames of {width}x{height} are {width * height * total} pixels to decode, over "
            f"the budget of {policy.max_total_pixels} (max_total_pixels)"
        )
    indices = sample_indices(total, policy.max_frames)
    rule = "all" if len(indices) == total else f"first, last and evenly spaced: {len(indices)} of {total}"
    return Sampling("animation", total, indices, rule, width=width, height=height), _frames(img, set(indices), name)


def _still(img: Image.Image, name: str) -> Iterator[tuple[Image.Image, ViewInfo]]:
    try:
        img.load()
    except Exception as exc:
        raise ImageDecodeError(f"{name}: not a decodable image ({type(exc).__name__}: {exc})") from exc
    if may_carry_orientation(img):
        try:  # in place: a copy of every image without a rotation cost as much as decoding a small one
            ImageOps.exif_transpose(img, in_place=True)
        except Exception:  # a corrupt EXIF block must not lose the image
            pass
    yield from frame_views(img, ViewInfo())


#: where Pillow reads an orientation from (`Image.getexif`): an EXIF block, PNG's raw EXIF profile, an XMP packet
ORIENTATION_KEYS = ("exif", "Raw profile type exif", "XML:com.adobe.xmp", "xmp")


def may_carry_orientation(img: Image.Image) -> bool:
    """Whether the loaded image holds anything Pillow reads an orientation from (those keys, or TIFF tags): reading
    EXIF from a file without any cost a fifth of decoding a small image."""
    return hasattr(img, "tag_v2") or not img.info.keys().isdisjoint(ORIENTATION_KEYS)


def _frames(img: Image.Image, wanted: set[int], name: str) -> Iterator[tuple[Image.Image, ViewInfo]]:
    """Frames in order (each seek decodes the ones before, as the formats compose frames on a canvas)."""
    canvas = img.size
    elapsed_ms = 0.0
    last = max(wanted)
    for index in range(last + 1):
        try:
            img.seek(index)
            if index in wanted:
                img.load()
        except EOFError:
            raise MediaBudgetError(
                f"{name}: frame {index} is missing (the file declares more frames than it holds)"
            ) from None
        except Exception as exc:
            raise ImageDecodeError(f"{name}: frame {index} is not decodable ({type(exc).__name__}: {exc})") from exc
        if img.size != canvas:
            raise MediaBudgetError(
                f"{name}: frame {index} is {img.size[0]}x{img.size[1]}, the canvas {canvas[0]}x{canvas[1]}: "
                "frames that disagree in size are refused (frame geometry)"
            )
        if index in wanted:  # a copy: the next seek redraws this image object in place
            yield from frame_views(img.copy(), ViewInfo(index, round(elapsed_ms / 1000, 3)))
        duration = img.info.get("duration") or 0
        elapsed_ms += float(duration) if isinstance(duration, (int, float)) else 0.0
