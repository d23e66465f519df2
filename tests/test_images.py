import hashlib
import io

import pytest
from PIL import Image

from conftest import jpeg_bytes, png_bytes
from imagesafety.images import ImageDecodeError, decode_image, sha256_bytes, to_rgb


def test_sha256_is_of_the_encoded_bytes():
    data = jpeg_bytes()
    assert sha256_bytes(data) == hashlib.sha256(data).hexdigest()


def rotated_file(container: str) -> bytes:
    """A 60x20 image whose orientation (rotate 90 degrees on display) is written where `container` keeps it."""
    from PIL.PngImagePlugin import PngInfo

    img = Image.new("RGB", (60, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    if container == "png-xmp":
        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", '<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>')
        img.save(buf, format="PNG", pnginfo=info)
    elif container == "png-raw-profile":
        info = PngInfo()
        raw = exif.tobytes()
        info.add_text("Raw profile type exif", f"\nexif\n{len(raw):8}\n{raw.hex()}\n")
        img.save(buf, format="PNG", pnginfo=info)
    elif container == "tiff":
        img.save(buf, format="TIFF", tiffinfo={0x0112: 6})
    else:
        img.save(buf, format=container.upper(), exif=exif)
    return buf.getvalue()


@pytest.mark.parametrize("container", ["jpeg", "png", "webp", "tiff", "png-xmp", "png-raw-profile"])
def test_exif_orientation_is_applied_wherever_the_file_keeps_it(container):
    from imagesafety.media import FramePolicy, read_views

    def run_view(data: bytes) -> Image.Image:  # what a run classifies
        return next(read_views(data, FramePolicy(), 1 << 24)[1])[0]

    assert decode_image(rotated_file(container)).size == run_view(rotated_file(container)).size == (20, 60)
    plain = png_bytes(Image.new("RGB", (60, 20)))
    assert decode_image(plain).size == run_view(plain).size == (60, 20)  # none kept: as stored


def test_transparency_becomes_white_and_mode_is_rgb():
    img = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    out = decode_image(png_bytes(img))
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)
    assert to_rgb(Image.new("L", (2, 2), 7)).getpixel((0, 0)) == (7, 7, 7)


def test_first_frame_of_animation():
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    r, g, b = decode_image(buf.getvalue()).getpixel((4, 4))
    assert r > 200 and b < 50


def test_pixel_limit_refuses_before_decoding():
    with pytest.raises(ImageDecodeError, match="exceeds the limit of 100"):
        decode_image(png_bytes(Image.new("RGB", (20, 20))), max_pixels=100, name="big.png")


def test_truncated_and_non_image_files_raise_clear_errors():
    data = jpeg_bytes(size=(200, 200))
    with pytest.raises(ImageDecodeError, match="cut.jpg: not a decodable image"):
        decode_image(data[: len(data) // 2], name="cut.jpg")
    with pytest.raises(ImageDecodeError, match="notes.txt: not a decodable image"):
        decode_image(b"hello, not an image", name="notes.txt")
