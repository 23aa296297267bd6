"""Tests for alexnet_tf.data.image_header: sizes read from headers, and the pixel limit."""

import struct

import pytest
import tensorflow as tf

from alexnet_tf.data import image_header
from alexnet_tf.data import preprocessing

SIZES = ((30, 40), (41, 17), (1, 1))  # (height, width)


def _encoded(encode_image, random_image):
    """[(bytes, (height, width))] for every format, every size; BMP also top-down."""
    images = []
    for height, width in SIZES:
        pixels = random_image(height, width)
        for image_format in ("JPEG", "PNG", "GIF", "BMP"):
            images.append((encode_image(pixels, image_format), (height, width)))
        bottom_up = encode_image(pixels, "BMP")
        # A negative height in the info header is a top-down bitmap of the same size.
        top_down = bottom_up[:22] + struct.pack("<i", -height) + bottom_up[26:]
        images.append((top_down, (height, width)))
    return images


def test_size_from_the_header_is_what_decode_image_returns(encode_image, random_image):
    images = _encoded(encode_image, random_image)
    dataset = tf.data.Dataset.from_tensor_slices([data for data, _ in images]).map(
            image_header.encoded_image_size)
    for (data, size), from_dataset in zip(images, dataset):
        eager = image_header.encoded_image_size(tf.constant(data)).numpy()
        assert tuple(eager) == tuple(from_dataset.numpy()) == size
        decoded = preprocessing.decode_image(tf.constant(data))
        assert tuple(decoded.shape[:2]) == size


def test_a_png_bomb_is_measured_without_being_decoded(png_bomb):
    assert len(png_bomb) < 60_000
    assert image_header.encoded_image_size(tf.constant(png_bomb)).numpy().tolist() == [
            20000, 20000]


@pytest.mark.parametrize("data", [b"", b"\x89PNG", b"GIF8", b"BM", b"hello, not an image",
                                  b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "webp"])
def test_unknown_or_short_headers_have_no_size(data, encode_image, random_image):
    if data == "webp":  # tf.io.decode_image reads WebP, but its size is not checked.
        data = encode_image(random_image(8, 8), "WEBP")
    size = image_header.encoded_image_size(tf.constant(data)).numpy().tolist()
    assert size == [image_header.UNKNOWN_SIZE] * 2


def test_find_refused_names_the_first_refused_image_and_counts_the_others(png_bomb,
                                                                          encode_image,
                                                                          random_image):
    small = encode_image(random_image(10, 20), "PNG")  # 200 pixels
    ok, message = image_header.find_refused(tf.constant([small, small]), 200)
    assert ok.numpy() and message.numpy() == b""
    ok, message = image_header.find_refused(tf.constant([small, png_bomb, b"junk", small]), 200)
    assert not ok.numpy()
    assert message.numpy().decode() == (
            "[1]: 20000x20000 = 400000000 pixels, over the limit of 200 (--max_pixels); not "
            "decoded (and 1 more refused)")
    ok, message = image_header.find_refused(tf.constant([b"junk", small]), 199,
                                            names=tf.constant(["a.png", "b.png"]))
    assert message.numpy().decode() == (
            f"a.png: not a {preprocessing.IMAGE_FORMATS} image (unrecognised header) "
            "(and 1 more refused)")


def test_check_pixel_limit_in_a_graph_refuses_by_index(png_bomb, encode_image, random_image):
    small = encode_image(random_image(10, 20), "JPEG")

    @tf.function
    def decode_first(image_bytes):
        checked = image_header.check_pixel_limit(image_bytes, 1000, "image_bytes")
        return preprocessing.decode_image(checked[0])

    assert decode_first(tf.constant([small, small])).shape == (10, 20, 3)
    with pytest.raises(tf.errors.InvalidArgumentError, match=(
            r"image_bytes\[2\]: 20000x20000 = 400000000 pixels, over the limit of 1000 ")):
        decode_first(tf.constant([small, small, png_bomb]))


def test_max_pixels_must_be_a_positive_whole_number():
    assert image_header.check_max_pixels(1) == 1
    for value in (0, -5, 2.5, True, image_header.MAX_PIXELS_CAP + 1):
        with pytest.raises(ValueError, match="--max_pixels must be a number of pixels in 1.."):
            image_header.check_max_pixels(value)
