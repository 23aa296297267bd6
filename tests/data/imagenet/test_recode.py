"""Tests for alexnet_tf.data.imagenet.recode: the paper's rescale and centre crop, odd files
recognised by their content."""

import io

import numpy as np
from PIL import Image
from PIL import PngImagePlugin
import pytest
import tensorflow as tf

from alexnet_tf.bench import pixel_limit
from alexnet_tf.data import image_header
from alexnet_tf.data import preprocessing
from alexnet_tf.data.imagenet import recode as image_recode


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def smooth_image(height, width, seed=0, cell=8) -> Image.Image:
    """A photo-like image: a random coarse grid (cell x cell pixels) upsampled smoothly."""
    coarse = np.random.default_rng(seed).integers(
            0, 256, (height // cell + 2, width // cell + 2, 3), dtype=np.uint8)
    return Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-12))


@pytest.mark.parametrize("width,height", [(60, 40), (40, 60)])
def test_keeps_the_central_square_of_the_shorter_side(width, height, encode_image):
    # Three bands along the longer side: 10 px red, the central square green, 10 px blue.
    pixels = np.zeros((height, width, 3), np.uint8)
    long_axis = 1 if width > height else 0
    index = [slice(None)] * 3
    for start, stop, channel in ((0, 10, 0), (10, -10, 1), (-10, None, 2)):
        index[long_axis] = slice(start, stop)
        pixels[tuple(index[:2]) + (channel,)] = 255
    result = image_recode.recode_image(encode_image(Image.fromarray(pixels), "PNG"), resize=20)
    assert (result.height, result.width, result.image_format) == (20, 20, "JPEG")
    out = decode(result.encoded).astype(int)
    assert out.shape == (20, 20, 3)
    # Away from the edges (bilinear support + JPEG ringing) the crop is pure green.
    inner = out[3:-3, 3:-3]
    assert inner[..., 1].min() > 200 and inner[..., 0].max() < 60 and inner[..., 2].max() < 60


def test_matches_the_input_pipelines_canonical_frame(encode_image):
    # The converter (Pillow) and preprocessing.eval_crops (TF) must agree on what the
    # "rescale to 256, centre crop" frame is; they differ only by resampling details
    # (~36 dB here; a crop shifted by one pixel gives ~25 dB).
    image = smooth_image(150, 200, seed=1, cell=12)
    data = encode_image(image, "PNG")
    ours = decode(image_recode.recode_image(data, resize=96, quality=100).encoded)
    frame = preprocessing.eval_crops(tf.constant(data), crop_size=96, resize_size=96)
    theirs = frame[preprocessing.IMAGE_KEY][0].numpy()
    assert ours.shape == theirs.shape == (96, 96, 3)
    assert psnr(ours, theirs) > 32


def test_cmyk_jpeg_becomes_rgb_with_its_colours(encode_image):
    red = Image.new("RGB", (24, 16), (220, 30, 30))
    data = encode_image(red.convert("CMYK"), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    result = image_recode.recode_image(data, resize=16)
    assert result.original_mode == "CMYK"
    out = decode(result.encoded)
    assert out.shape == (16, 16, 3)
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), [220, 30, 30], atol=12)


@pytest.mark.parametrize("mode,kind", [("L", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"),
                                       ("RGB", "PNG")])
def test_other_modes_and_formats_become_rgb_jpeg(mode, kind, encode_image):
    image = smooth_image(20, 30).convert(mode)
    result = image_recode.recode_image(encode_image(image, kind), resize=16)
    assert (result.original_mode, result.original_format) == (mode, kind)
    assert result.encoded[:2] == b"\xff\xd8"  # A JPEG, whatever came in.
    out = decode(result.encoded)
    assert out.shape == (16, 16, 3)
    if mode == "L":
        assert np.abs(out[..., 0].astype(int) - out[..., 2]).max() <= 2


def test_resize_zero_keeps_rgb_jpeg_bytes_and_fixes_the_rest(encode_image):
    image = smooth_image(30, 50)
    data = encode_image(image, "JPEG", quality=80)
    kept = image_recode.recode_image(data, resize=0)
    assert kept.encoded == data and (kept.height, kept.width) == (30, 50)
    fixed = image_recode.recode_image(encode_image(image.convert("CMYK"), "JPEG"), resize=0)
    assert fixed.encoded != data and decode(fixed.encoded).shape == (30, 50, 3)


@pytest.mark.parametrize("data,reason", [
        (b"", "empty file"),
        (b"hello, not an image\n" * 10, "not an image"),
        (400, "truncated or corrupt image (header)"),
        (1500, "truncated or corrupt image (data)"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "not an image, or an unreadable header"),
], ids=["empty", "text", "cut_in_header", "cut_in_data", "broken_png"])
def test_bad_files_raise_with_a_reason(data, reason, encode_image):
    if isinstance(data, int):  # A 64x64 JPEG cut after that many bytes.
        data = encode_image(smooth_image(64, 64), "JPEG")[:data]
    with pytest.raises(image_recode.BadImageError) as raised:
        image_recode.recode_image(data, resize=16)
    assert raised.value.reason.startswith(reason)


def test_images_over_the_pixel_limit_are_refused_before_decoding(png_bomb, encode_image,
                                                                  monkeypatch):
    data = encode_image(smooth_image(30, 40), "PNG")  # 40x30 = 1200 pixels
    assert image_recode.recode_image(data, resize=16, max_pixels=1200).width == 16
    giant = pixel_limit.png_bomb(45000, 45000, data_rows=8)  # Over Pillow's own limit.

    def no_decoding(image):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    cases = [(data, 1199, "too large: 40x30 = 1200 pixels, over the limit of 1199 "),
             (png_bomb, image_header.DEFAULT_MAX_PIXELS, "too large: 20000x20000 = 400000000 "
              "pixels, over the limit of 100000000 (--max_pixels); not decoded"),
             (giant, image_recode.LARGEST_MAX_PIXELS, "too large: Image size (2025000000 pixels)")]
    for image, max_pixels, reason in cases:
        with pytest.raises(image_recode.BadImageError) as raised:
            image_recode.recode_image(image, resize=16, max_pixels=max_pixels)
        assert raised.value.reason.startswith(reason)


def test_a_plugin_failing_in_any_way_rejects_the_file(encode_image, monkeypatch):
    def broken(self):
        raise ZeroDivisionError("hostile chunk")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "_open", broken)
    with pytest.raises(image_recode.BadImageError, match="ZeroDivisionError: hostile chunk"):
        image_recode.recode_image(encode_image(smooth_image(8, 8), "PNG"))


def test_draft_decoding_of_large_jpegs_stays_close_to_a_full_decode(encode_image):
    data = encode_image(smooth_image(1200, 1600, seed=3), "JPEG", quality=90)
    full = decode(image_recode.recode_image(data, resize=128, use_draft=False).encoded)
    draft = decode(image_recode.recode_image(data, resize=128, use_draft=True).encoded)
    assert full.shape == draft.shape == (128, 128, 3)
    assert 32 < psnr(full, draft) < 100  # Close, but the draft path did change the decode.


def test_bad_arguments(encode_image):
    data = encode_image(smooth_image(8, 8), "JPEG")
    with pytest.raises(ValueError, match="resize"):
        image_recode.recode_image(data, resize=-1)
    with pytest.raises(ValueError, match="quality"):
        image_recode.recode_image(data, quality=0)
    for max_pixels in (0, image_recode.LARGEST_MAX_PIXELS + 1, 1.5):
        with pytest.raises(ValueError, match="--max_pixels must be a number of pixels in 1.."):
            image_recode.recode_image(data, max_pixels=max_pixels)
