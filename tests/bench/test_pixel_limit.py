"""Tests for alexnet_tf.bench.pixel_limit: the PNG bomb it measures, and its rows."""

import io
import struct

import numpy as np
from PIL import Image

from alexnet_tf.bench import pixel_limit
from alexnet_tf.data import image_header


def test_png_bomb_is_a_valid_png_of_the_declared_size():
    image = Image.open(io.BytesIO(pixel_limit.png_bomb(300, 203)))
    image.load()
    assert image.size == (300, 203) and image.mode == "1"
    assert not np.asarray(image).any()
    truncated = Image.open(io.BytesIO(pixel_limit.png_bomb(300, 203, data_rows=3)))
    assert truncated.size == (300, 203)  # The header is whole; the pixel data is cut short.


def test_png_bomb_compresses_20000x20000_into_under_50_kb(png_bomb):
    assert len(png_bomb) < 50_000
    assert png_bomb[12:16] == b"IHDR" and struct.unpack(">II", png_bomb[16:24]) == (20000, 20000)


def test_rows_and_a_refused_measurement():
    rows = pixel_limit.default_rows()
    assert {(row.path, row.side, row.max_pixels) for row in rows} >= {
            ("serving", 20000, None), ("converter", 20000, image_header.DEFAULT_MAX_PIXELS),
            ("serving", 10000, image_header.DEFAULT_MAX_PIXELS)}
    result = pixel_limit.measure(
            pixel_limit.Row("converter", 20000, image_header.DEFAULT_MAX_PIXELS))
    assert result.outcome.startswith("refused: too large: 20000x20000")
    table = pixel_limit.format_table([result])
    assert table.splitlines()[-1].startswith(
            "| converter | 20000x20000 PNG | 49 KB | 100,000,000 |")
