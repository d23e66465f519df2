"""Safe image decoding behind one function, and byte hashing for image identity."""

from __future__ import annotations

import hashlib
import io
import warnings

from PIL import Image, ImageOps

from imagesafety.media.policy import ImageDecodeError

#: Largest image (width x height) we decode; larger files are refused as possible decompression bombs.
MAX_PIXELS = 8192 * 8192


__all__ = ["ImageDecodeError", "MAX_PIXELS", "decode_image", "image_size", "sha256_bytes", "thumbnail_jpeg", "to_rgb"]


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of the encoded bytes: the identity of an image everywhere in the toolkit."""
    return hashlib.sha256(data).hexdigest()


def image_size(data: bytes, name: str = "image") -> tuple[int, int]:
    """(width, height) from the header alone, without decoding pixels; ImageDecodeError when it is not an image."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                return img.size
    except Image.DecompressionBombError as exc:
        raise ImageDecodeError(f"{name}: refused as a possible decompression bomb ({exc})") from None
    except Exception as exc:
        raise ImageDecodeError(f"{name}: not a decodable image ({type(exc).__name__}: {exc})") from None


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS, name: str = "image") -> Image.Image:
    """Decode encoded bytes into an upright RGB image.

    Refuses images over `max_pixels` before decoding pixel data, applies the EXIF orientation,
    keeps the first frame of animations, and flattens transparency onto white.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            width, height = img.size
            if width * height > max_pixels:
                raise ImageDecodeError(
                    f"{name}: {width}x{height} pixels exceeds the limit of {max_pixels} (possible decompression bomb)"
                )
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)
            img.load()
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageDecodeError(f"{name}: refused as a possible decompression bomb ({exc})") from exc
    except Exception as exc:  # Pillow raises many types for broken files
        raise ImageDecodeError(f"{name}: not a decodable image ({type(exc).__name__}: {exc})") from exc
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a corrupt EXIF block must not lose the image
        pass
    return to_rgb(img)


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB copy of any Pillow image; transparent pixels become white."""
    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def thumbnail_jpeg(img: Image.Image, size: int = 160, quality: int = 80) -> bytes:
    """A small JPEG of `img` for reports."""
    thumb = img.copy()
    thumb.thumbnail((size, size))
    buf = io.BytesIO()
    to_rgb(thumb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
