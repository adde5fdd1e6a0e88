"""decode_image on real malformed files and on every Pillow mode, built in tmp_path."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile

from emoadapt.data.decode import decode_image, probe_image
from emoadapt.errors import ImageDecodeError


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def _noise(size=(64, 64)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG file whose header claims ``width`` × ``height`` grey pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


def _refused(path, reason: str, **options) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(path, **options)
    assert info.value.reason == reason, str(info.value)
    assert str(path) in str(info.value)
    return info.value


# --- malformed files ---------------------------------------------------------------------------

def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    _refused(path, "empty")


def test_missing_file_and_folder(tmp_path):
    _refused(tmp_path / "nope.png", "missing")
    _refused(tmp_path, "not-an-image")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_file(tmp_path, fmt):
    data = _encode(_noise(), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    _refused(path, "truncated")


def test_jpeg_cut_inside_its_header(tmp_path):
    path = tmp_path / "header.jpg"
    path.write_bytes(_encode(_noise(), "JPEG")[:300])
    _refused(path, "truncated")


def test_corrupt_png_data(tmp_path):
    data = bytearray(_encode(_noise(), "PNG"))
    data[len(data) // 2] ^= 0xFF  # inside the compressed pixel stream
    path = tmp_path / "flipped.png"
    path.write_bytes(bytes(data))
    _refused(path, "corrupt")


def test_random_bytes_and_text_named_jpg(tmp_path):
    noise = tmp_path / "noise.png"
    noise.write_bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8).tobytes())
    _refused(noise, "not-an-image")
    text = tmp_path / "notes.jpg"
    text.write_text("this is not a picture\n")
    _refused(text, "not-an-image")


def test_bytes_input_uses_the_given_name():
    with pytest.raises(ImageDecodeError) as info:
        decode_image(b"hello", name="upload.jpg")
    assert info.value.path == "upload.jpg" and info.value.reason == "not-an-image"


@pytest.mark.parametrize("size", [(100_000, 100_000), (10_000, 6_000)])
def test_decompression_bomb_refused_before_decoding(tmp_path, monkeypatch, size):
    """100000² is beyond Pillow's own limit; 10000×6000 (60 Mpx) is beyond decode_image's 50 Mpx.
    Both must be refused from the header, without decoding any pixel."""
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(*size))
    assert path.stat().st_size < 200

    def no_decoding(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    error = _refused(path, "too-many-pixels")
    assert "pixels" in error.detail
    if size[0] == 100_000:  # beyond Pillow's own limit: even the header probe refuses it
        with pytest.raises(ImageDecodeError) as info:
            probe_image(path)
        assert info.value.reason == "too-many-pixels"
    else:
        assert probe_image(path)["width"] == 10_000


def test_max_pixels_is_configurable(tmp_path):
    path = tmp_path / "small.png"
    Image.new("L", (100, 100), 7).save(path)
    _refused(path, "too-many-pixels", max_pixels=9_999)
    assert decode_image(path, max_pixels=10_000).size == (100, 100)


# --- orientation and frames -----------------------------------------------------------------------

def test_exif_orientation_is_applied(tmp_path):
    """Stored 40×20 with a red top half and a blue bottom half; Orientation=6 means 'rotate 90°
    clockwise to display', so the result is 20×40 with red on the right and blue on the left."""
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 40, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "portrait.jpg"
    stored.save(path, "JPEG", exif=exif, quality=95)
    image = decode_image(path)
    assert image.size == (20, 40)
    right, left = image.getpixel((15, 20)), image.getpixel((4, 20))
    assert right[0] > 200 and right[2] < 60, right
    assert left[2] > 200 and left[0] < 60, left
    assert probe_image(path)["width"] == 20 and probe_image(path)["height"] == 40


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 3
    red = decode_image(path).getpixel((8, 8))
    assert red[0] > 200 and red[1] < 50 and red[2] < 50


# --- every mode -----------------------------------------------------------------------------------

def test_mode_L(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (4, 4), 77).save(path)
    assert decode_image(path).getpixel((0, 0)) == (77, 77, 77)
    assert decode_image(path, mode="L").getpixel((0, 0)) == 77


def test_mode_LA_composites_on_background(tmp_path):
    image = Image.new("LA", (2, 1))
    image.putpixel((0, 0), (0, 0))  # black but fully transparent
    image.putpixel((1, 0), (30, 255))
    path = tmp_path / "la.png"
    image.save(path)
    out = decode_image(path)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (30, 30, 30)


def test_mode_P_with_transparency(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, index 1 blue
    image.putpixel((0, 0), 0)
    image.putpixel((1, 0), 1)
    path = tmp_path / "p.png"
    image.save(path, transparency=0)
    assert Image.open(path).mode == "P" and "transparency" in Image.open(path).info
    out = decode_image(path, background=(0, 255, 0))
    assert out.getpixel((0, 0)) == (0, 255, 0)  # transparent red shows the background, not red
    assert out.getpixel((1, 0)) == (0, 0, 255)


def test_mode_P_grey_palette_as_in_jaffe(tmp_path):
    image = Image.new("P", (3, 1))
    image.putpalette([v for g in range(256) for v in (g, g, g)])
    for x, value in enumerate((0, 128, 255)):
        image.putpixel((x, 0), value)
    path = tmp_path / "grey-palette.tiff"
    image.save(path)
    assert Image.open(path).mode == "P"
    assert [decode_image(path, mode="L").getpixel((x, 0)) for x in range(3)] == [0, 128, 255]


def test_mode_RGBA_transparent_pixels_become_background(tmp_path):
    image = Image.new("RGBA", (2, 1), (255, 0, 0, 0))  # hidden red under full transparency
    image.putpixel((1, 0), (10, 20, 30, 255))
    path = tmp_path / "rgba.png"
    image.save(path)
    out = decode_image(path)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (10, 20, 30)
    assert decode_image(path, background=(0, 0, 0)).getpixel((0, 0)) == (0, 0, 0)


def test_mode_CMYK(tmp_path):
    image = Image.new("CMYK", (2, 1), (0, 0, 0, 0))
    image.putpixel((1, 0), (255, 0, 0, 0))  # pure cyan
    path = tmp_path / "cmyk.tiff"
    image.save(path)
    assert Image.open(path).mode == "CMYK"
    out = decode_image(path)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (0, 255, 255)


def test_mode_I16_is_rescaled_not_clipped(tmp_path):
    values = np.array([[0, 128 * 257, 65535]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    assert [decode_image(path, mode="L").getpixel((x, 0)) for x in range(3)] == [0, 128, 255]


@pytest.mark.parametrize("values, expected", [
    ([0, 100, 255], [0, 100, 255]),  # already 8-bit range: kept
    ([0, 257 * 100, 65535], [0, 100, 255]),  # 16-bit range: / 257
    ([-1000, 0, 1000], [0, 128, 255]),  # anything else: stretched
])
def test_mode_I(tmp_path, values, expected):
    path = tmp_path / "int32.tiff"
    Image.fromarray(np.array([values], dtype=np.int32), mode="I").save(path)
    assert Image.open(path).mode == "I"
    assert [decode_image(path, mode="L").getpixel((x, 0)) for x in range(3)] == expected


@pytest.mark.parametrize("values, expected", [
    ([0.0, 0.5, 1.0], [0, 128, 255]),  # intensities in [0, 1]
    ([-2.0, 0.0, 2.0], [0, 128, 255]),  # stretched
])
def test_mode_F(tmp_path, values, expected):
    path = tmp_path / "float.tiff"
    Image.fromarray(np.array([values], dtype=np.float32), mode="F").save(path)
    assert Image.open(path).mode == "F"
    assert [decode_image(path, mode="L").getpixel((x, 0)) for x in range(3)] == expected


def test_output_modes_and_bad_mode(tmp_path):
    path = tmp_path / "rgb.png"
    Image.new("RGB", (3, 2), (1, 2, 3)).save(path)
    assert decode_image(path).mode == "RGB"
    assert decode_image(path, mode="L").mode == "L"
    with pytest.raises(ValueError):
        decode_image(path, mode="RGBA")


def test_probe_reads_header_only(tmp_path):
    path = tmp_path / "p.jpg"
    Image.new("L", (30, 10)).save(path)
    assert probe_image(path) == {"width": 30, "height": 10, "mode": "L", "format": "JPEG"}
    (tmp_path / "e.jpg").write_bytes(b"")
    with pytest.raises(ImageDecodeError) as info:
        probe_image(tmp_path / "e.jpg")
    assert info.value.reason == "empty"
