"""Perceptual hashes of decoded images: PDQ through `pdqhash` (the bindings of Meta's reference C++), 256 bits and a
quality in 0..100, with its eight dihedral variants; pHash through `imagehash` (64 bits, DCT of a 32 x 32 greyscale).

Hashes are packed bits (uint8, most significant bit first), hex as Meta's tools print them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

ALGORITHMS = ("pdq", "phash")
BITS = {"pdq": 256, "phash": 64}
#: ThreatExchange's defaults: PDQ matches at Hamming distance <= 31, and hashes of quality < 50 are not matched on
DEFAULT_THRESHOLD = {"pdq": 31, "phash": 8}
MIN_QUALITY = {"pdq": 50, "phash": 0}


def _pdqhash():
    try:
        import pdqhash
    except ImportError:
        raise ImportError("PDQ hashing needs pdqhash: pip install 'imagesafety[hashes]'") from None
    return pdqhash


@dataclass(frozen=True)
class ImageHash:
    """One image's hash: algorithm, packed bits, quality (PDQ's; 100 for pHash)."""

    algorithm: str
    bits: np.ndarray
    quality: int

    @property
    def hex(self) -> str:
        return self.bits.tobytes().hex()

    @property
    def reliable(self) -> bool:
        """Whether the hash is good enough to match on (PDQ quality >= 50)."""
        return self.quality >= MIN_QUALITY[self.algorithm]


def pack(bits) -> np.ndarray:
    return np.packbits(np.asarray(bits, dtype=np.uint8))


def from_hex(text: str, algorithm: str) -> np.ndarray:
    data = bytes.fromhex(text)
    if len(data) * 8 != BITS[algorithm]:
        raise ValueError(f"{text[:20]}...: a {algorithm} hash has {BITS[algorithm] // 4} hex digits, not {len(text)}")
    return np.frombuffer(data, dtype=np.uint8).copy()


def rgb_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"), dtype=np.uint8)


def pdq(image: Image.Image) -> ImageHash:
    """PDQ of an RGB image (pdqhash computes on its luminance)."""
    bits, quality = _pdqhash().compute(rgb_array(image))
    return ImageHash("pdq", pack(bits), int(quality))


def pdq_dihedral(image: Image.Image) -> list[ImageHash]:
    """The eight PDQ hashes of the image's rotations and flips, from one DCT (pdqhash's dihedral computation)."""
    hashes, quality = _pdqhash().compute_dihedral(rgb_array(image))
    return [ImageHash("pdq", pack(h), int(quality)) for h in hashes]


def phash(image: Image.Image) -> ImageHash:
    try:
        import imagehash
    except ImportError:
        raise ImportError("pHash needs imagehash: pip install 'imagesafety[hashes]'") from None
    return ImageHash("phash", pack(imagehash.phash(image.convert("RGB")).hash.ravel()), 100)


def compute(image: Image.Image, algorithm: str) -> ImageHash:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown hash algorithm {algorithm!r}; algorithms: {', '.join(ALGORITHMS)}")
    return pdq(image) if algorithm == "pdq" else phash(image)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamming distances between packed hashes (broadcasting over leading axes)."""
    return np.unpackbits(np.bitwise_xor(a, b), axis=-1).sum(axis=-1)
