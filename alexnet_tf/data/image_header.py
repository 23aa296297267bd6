"""An encoded image's size read from its header, in the graph, and the pixel limit.

A few kilobytes can declare a huge image: a PNG of 20000x20000 one-bit pixels compresses
to about 48 KB and decodes to 1.2 GB of RGB. So an image's width and height are read from
its header, without decoding any pixel, and images over a pixel limit are refused before
they reach the decoder. The serving signature does this for every request, and `predict`
calls the same function before it sends a file (`alexnet_tf/serving/saved_model.py`,
`alexnet_tf/predict.py`); the converter reads the size from Pillow's header parse
(`alexnet_tf/data/imagenet/recode.py`), with the same default limit.

The size is read where TensorFlow's own decoders read it, so what is checked is what
`tf.io.decode_image` would allocate:

  JPEG  the SOF marker, via `tf.image.extract_jpeg_shape` (libjpeg's header parse)
  PNG   the IHDR chunk (big-endian width and height at bytes 16 and 20)
  GIF   the logical screen (little-endian 16-bit width and height at bytes 6 and 8): the
        frame TensorFlow returns has that size
  BMP   the info header (little-endian 32-bit width and height at bytes 18 and 22; a
        negative height is a top-down bitmap)

Anything else, WebP included (which `tf.io.decode_image` would also decode), is refused:
a format whose size is not checked is not decoded.
"""

from typing import Optional, Tuple

import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf.data import preprocessing

# 100 M pixels (10000 x 10000; RGB uint8 decode 300 MB): above any ImageNet image and any
# photo of a 24-61 MP camera, near Pillow's own decompression-bomb threshold (89.5 M
# pixels). docs/hostile_images.md measures what decoding an image at this limit costs.
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_CAP = 2**62  # The largest limit: width x height of 32-bit sides fits in int64.
UNKNOWN_SIZE = -1  # Height and width of an image whose format is not recognised.
_HEADER_BYTES = 32
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _starts_with(head: tf.Tensor, prefix: bytes, offset: int = 0) -> tf.Tensor:
    """Whether head[offset:offset + len(prefix)] == prefix (head: int64 bytes (32,))."""
    expected = tf.constant(list(prefix), tf.int64)
    return tf.reduce_all(head[offset:offset + len(prefix)] == expected)


def _unsigned(head: tf.Tensor, offset: int, num_bytes: int, big_endian: bool) -> tf.Tensor:
    """The unsigned integer stored in head[offset:offset + num_bytes], as int64."""
    value = tf.constant(0, tf.int64)
    order = range(num_bytes) if big_endian else reversed(range(num_bytes))
    for index in order:
        value = value * 256 + head[offset + index]
    return value


def _signed32(head: tf.Tensor, offset: int) -> tf.Tensor:
    value = _unsigned(head, offset, 4, big_endian=False)
    return tf.where(value >= 2**31, value - 2**32, value)


def encoded_image_size(image_bytes: tf.Tensor) -> tf.Tensor:
    """(height, width) of one encoded image, read from its header; no pixel is decoded.

    Args:
      image_bytes: scalar string, an encoded image.

    Returns:
      int64 (2,): the size TensorFlow's decoder would produce, or (UNKNOWN_SIZE,
      UNKNOWN_SIZE) when the bytes are not a JPEG, PNG, GIF or BMP.

    Raises:
      tf.errors.InvalidArgumentError (when run): a JPEG whose header libjpeg cannot parse.
    """
    head = tf.strings.substr(image_bytes, 0, _HEADER_BYTES)  # Shorter for a short file.
    head = tf.strings.substr(tf.strings.join([head, b"\0" * _HEADER_BYTES]), 0, _HEADER_BYTES)
    head = tf.cast(tf.io.decode_raw(head, tf.uint8, fixed_length=_HEADER_BYTES), tf.int64)
    head = tf.reshape(head, [_HEADER_BYTES])  # (32,): the first bytes, zero-padded
    length = tf.strings.length(image_bytes)  # A header cut short is of no known format.
    is_png = (_starts_with(head, _PNG_SIGNATURE) & _starts_with(head, b"IHDR", 12)
              & (length >= 24))
    is_gif = (_starts_with(head, b"GIF87a") | _starts_with(head, b"GIF89a")) & (length >= 10)
    is_bmp = _starts_with(head, b"BM") & (length >= 26)
    unknown = tf.constant([UNKNOWN_SIZE, UNKNOWN_SIZE], tf.int64)
    size = tf.where(is_png, tf.stack([_unsigned(head, 20, 4, True),
                                      _unsigned(head, 16, 4, True)]), unknown)
    size = tf.where(is_gif, tf.stack([_unsigned(head, 8, 2, False),
                                      _unsigned(head, 6, 2, False)]), size)
    size = tf.where(is_bmp, tf.stack([tf.abs(_signed32(head, 22)), _signed32(head, 18)]), size)
    return tf.cond(tf.io.is_jpeg(image_bytes),
                   lambda: tf.cast(tf.image.extract_jpeg_shape(image_bytes)[:2], tf.int64),
                   lambda: size)


def find_refused(image_bytes: tf.Tensor, max_pixels: int,
                 names: Optional[tf.Tensor] = None) -> Tuple[tf.Tensor, tf.Tensor]:
    """Checks a batch of encoded images against a pixel limit, reading headers only.

    Args:
      image_bytes: string (N,), encoded images.
      max_pixels: the largest width x height accepted.
      names: string (N,), how the message names each image; default "[i]".

    Returns:
      (ok, message): bool scalar, whether every image is of a known format and within
      the limit; and a string scalar naming the first image that is not, with its size
      and the limit, and how many others are refused too ("" when ok).
    """
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    sizes = tf.map_fn(encoded_image_size, image_bytes,
                      fn_output_signature=tf.TensorSpec([2], tf.int64))  # (N, 2)
    if names is None:
        names = tf.strings.join(["[", tf.strings.as_string(tf.range(tf.size(image_bytes))), "]"])
    unknown = sizes[:, 0] == UNKNOWN_SIZE
    too_large = sizes[:, 0] * sizes[:, 1] > max_pixels
    refused = unknown | too_large  # (N,)
    num_refused = tf.reduce_sum(tf.cast(refused, tf.int32))
    first = tf.argmax(tf.cast(refused, tf.int32), output_type=tf.int32)  # 0 when none
    height, width = tf.strings.as_string(sizes[first, 0]), tf.strings.as_string(sizes[first, 1])
    reason = tf.where(
            unknown[first],
            f"not a {preprocessing.IMAGE_FORMATS} image (unrecognised header)",
            tf.strings.join([width, "x", height, " = ",
                             tf.strings.as_string(sizes[first, 0] * sizes[first, 1]),
                             f" pixels, over the limit of {max_pixels} (--max_pixels); "
                             "not decoded"]))
    others = tf.where(num_refused > 1, tf.strings.join(
            [" (and ", tf.strings.as_string(num_refused - 1), " more refused)"]), "")
    message = tf.strings.join([tf.gather(names, first), ": ", reason, others])
    ok = tf.equal(num_refused, 0)
    return ok, tf.where(ok, "", message)


def check_pixel_limit(image_bytes: tf.Tensor, max_pixels: int, input_name: str) -> tf.Tensor:
    """`image_bytes`, once every image's header says it is within `max_pixels`.

    Use the result, not the input, for decoding: the decoding then depends on the check,
    and nothing is decoded when any image is refused.

    Args:
      image_bytes: string (N,), encoded images.
      max_pixels: the largest width x height accepted.
      input_name: the input's name; image i is named "input_name[i]" in the error.

    Returns:
      string (N,), the same images.

    Raises:
      tf.errors.InvalidArgumentError (when run): an image over the limit or of an unknown
        format; the message names the first one by its index, e.g.
        "image_bytes[2]: 20000x20000 = 400000000 pixels, over the limit of 100000000
        (--max_pixels); not decoded".
    """
    image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
    names = tf.strings.join([input_name, "[", tf.strings.as_string(
            tf.range(tf.size(image_bytes))), "]"])
    ok, message = find_refused(image_bytes, max_pixels, names)
    check = tf.debugging.Assert(ok, [message])
    with tf.control_dependencies([check]):
        return tf.identity(image_bytes)


def check_max_pixels(max_pixels: int, largest: int = MAX_PIXELS_CAP) -> int:
    """Returns `max_pixels` if it is a whole number of pixels in 1..largest.

    Raises:
      errors.InvalidInputError: it is not.
    """
    if (isinstance(max_pixels, bool) or not isinstance(max_pixels, int)
            or not 1 <= max_pixels <= largest):
        raise errors.InvalidInputError(
                f"--max_pixels must be a number of pixels in 1..{largest}, got {max_pixels!r}")
    return max_pixels
