"""What a request's images may be before anything is decoded: data URLs (base64), http(s) URLs through the one guarded
fetcher (`imagesafety.net`: allow-listed public hosts, the checked address pinned), and sizes within the operator's
limits on side length, pixels and aspect ratio (a 67108864 x 1 image is refused, not padded to a square)."""

from __future__ import annotations

import binascii

from imagesafety.serve.config import ServeConfig
from imagesafety.serve.errors import APIError

#: FetchError reason -> (HTTP status, error code)
FETCH_ERRORS = {
    "invalid_url": (400, "invalid_image_url"),
    "not_allowed": (400, "url_not_allowed"),
    "too_large": (413, "image_too_large"),
    "failed": (400, "image_fetch_failed"),
}


def decode_data_url(url: str, max_bytes: int, where: str = "image_url") -> bytes:
    header, sep, payload = url.partition(",")
    if not sep or ";base64" not in header:
        raise APIError(
            400,
            f"{where}: data URLs must be base64 encoded: data:image/...;base64,...",
            code="invalid_image_url",
            param=where,
        )
    if len(payload) * 3 // 4 > max_bytes:
        raise APIError(413, f"{where}: image exceeds {max_bytes} bytes", code="image_too_large", param=where)
    try:
        return binascii.a2b_base64(payload, strict_mode=True)  # b64decode(validate=True) checks with a slow regex
    except (binascii.Error, ValueError):
        raise APIError(
            400, f"{where}: data URL payload is not valid base64", code="invalid_image_url", param=where
        ) from None


def check_geometry(where: str, width: int, height: int, config: ServeConfig) -> None:
    """Refuse an image by its header: too many pixels, a side over the limit, or an extreme aspect ratio."""
    if width < 1 or height < 1:
        raise APIError(400, f"{where}: {width}x{height} is not an image size", code="invalid_image", param=where)
    if width * height > config.max_pixels:
        raise APIError(
            400,
            f"{where}: {width}x{height} pixels exceeds the limit of {config.max_pixels}",
            code="invalid_image",
            param=where,
        )
    if max(width, height) > config.max_side:
        raise APIError(
            400,
            f"{where}: {width}x{height}: a side over this server's limit of {config.max_side} pixels",
            code="invalid_image",
            param=where,
        )
    if max(width, height) / min(width, height) > config.max_aspect_ratio:
        raise APIError(
            400,
            f"{where}: {width}x{height}: aspect ratio over this server's limit of {config.max_aspect_ratio:g}",
            code="invalid_image",
            param=where,
        )
