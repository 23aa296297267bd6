"""Decode one image file's bytes, fix its colour mode, rescale and re-encode it as JPEG.

The converter (`alexnet_tf/data/imagenet/convert.py`) calls `recode_image` once per file.
It follows the paper's data preparation: rescale so that the shorter side is `resize`
pixels, then take the central `resize` x `resize` patch.

ImageNet's odd files are recognised by their content, not their names:

  * CMYK JPEGs (22 in the training set) and any other non-RGB mode (palette, RGBA,
    16-bit...) are converted to RGB; alpha is dropped.
  * The PNG named `.JPEG` (and any other format Pillow reads) is re-encoded as JPEG.
  * Grayscale images are turned into 3 identical channels.
  * EXIF orientation is ignored, as in ImageNet's own labels and in TF's decoders.
  * Empty, truncated or corrupt files and non-images raise `BadImageError` with a
    reason; the converter lists them in its manifest instead of stopping.
  * Images over `max_pixels` (decompression bombs: a 48 KB PNG can declare 20000x20000
    pixels) are refused from the size in their header, before any pixel is decoded.

Pillow is used rather than TF ops because it is faster per image (tools/benchmark_convert.py
measures both; docs/performance.md) and reads CMYK/PNG/grayscale without special cases.
"""

import io
from typing import NamedTuple
import warnings

from PIL import Image

from alexnet_tf.data import image_header

# Pillow warns above this many pixels and refuses twice as many when it opens a file. Our
# own limit (`max_pixels`, checked before decoding) is what refuses large images; it may
# not exceed Pillow's, which stays as a second guard.
Image.MAX_IMAGE_PIXELS = 30_000 * 30_000
LARGEST_MAX_PIXELS = Image.MAX_IMAGE_PIXELS

# JPEG decoding can skip work by decoding at 1/2, 1/4 or 1/8 scale (DCT scaling). We only
# let it shrink an image while its shorter side stays at least DRAFT_MARGIN x the target
# size, so the final antialiased resize still averages >= 2x2 decoded pixels per output
# pixel and the result stays close to a full decode (checked in the tests).
DRAFT_MARGIN = 2


class BadImageError(ValueError):
    """The bytes are not a usable image; `reason` says why (it goes into the manifest)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RecodedImage(NamedTuple):
    encoded: bytes  # JPEG bytes (or the original bytes when kept)
    image_format: str  # "JPEG" (always, in this converter)
    height: int
    width: int
    original_mode: str  # Pillow mode of the source, e.g. "RGB", "CMYK", "L", "P"
    original_format: str  # Pillow format of the source, e.g. "JPEG", "PNG"


def too_large_reason(width: int, height: int, max_pixels: int) -> str:
    """The manifest's reason for an image over the pixel limit."""
    return (f"too large: {width}x{height} = {width * height} pixels, over the limit of "
            f"{max_pixels} (--max_pixels); not decoded")


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Reads the header of `data` (no pixels); raises BadImageError for anything unusable."""
    if not data:
        raise BadImageError("empty file")
    try:
        with warnings.catch_warnings():  # The image is refused below with its size.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.UnidentifiedImageError:
        raise BadImageError(
            "not an image, or an unreadable header (Pillow does not recognise it)") from None
    except Image.DecompressionBombError as error:  # Over twice LARGEST_MAX_PIXELS.
        raise BadImageError(f"too large: {str(error).rstrip('.')}; not decoded") from None
    except Exception as error:  # pylint: disable=broad-except
        # Hostile bytes can break a format plugin in any way (struct.error, IndexError...):
        # each is this file's fault, never a reason to stop the conversion.
        raise BadImageError(f"truncated or corrupt image (header): "
                            f"{type(error).__name__}: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise BadImageError(too_large_reason(width, height, max_pixels))
    return image


def _center_box(width: int, height: int, size: int):
    """Source box of the central size x size patch once the shorter side is `size`.

    The rescaled image is round(width * s) x round(height * s) with s = size / shorter
    side, and its central patch starts at ((new - size) // 2): the same integer
    convention as `preprocessing.resize_shorter_side` and its centre crop, so records and
    raw uploads meet the model in the same frame. Resizing this box of the source to
    size x size gives exactly those pixels, without computing the ones thrown away.

    Returns:
      (left, upper, right, lower) in source pixels (floats).
    """
    scale = size / min(width, height)
    new_width = max(size, round(width * scale))
    new_height = max(size, round(height * scale))
    left, upper = (new_width - size) // 2, (new_height - size) // 2
    x_ratio, y_ratio = width / new_width, height / new_height  # source pixels per new pixel
    return (left * x_ratio, upper * y_ratio, (left + size) * x_ratio, (upper + size) * y_ratio)


def recode_image(data: bytes, *, resize: int = 256, quality: int = 90,
                 use_draft: bool = True,
                 max_pixels: int = image_header.DEFAULT_MAX_PIXELS) -> RecodedImage:
    """Turns one image file's bytes into an RGB JPEG as the paper prepared its inputs.

    Args:
      data: the file's bytes (any format Pillow reads).
      resize: rescale so the shorter side is `resize`, then centre-crop resize x resize.
        0 keeps the original size and, for RGB JPEGs, the original bytes.
      quality: JPEG quality (1..100) for re-encoded images.
      use_draft: let JPEG decoding downscale by 2/4/8 when the image is much larger than
        needed (see DRAFT_MARGIN); False always decodes at full size.
      max_pixels: refuse images whose header declares more pixels (width x height), up
        to LARGEST_MAX_PIXELS.

    Returns:
      A RecodedImage.

    Raises:
      BadImageError: empty, truncated, corrupt, too large or non-image data.
      ValueError: bad `resize`, `quality` or `max_pixels`.
    """
    if resize < 0:
        raise ValueError(f"resize must be >= 0 (0 keeps the original size), got {resize}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    image_header.check_max_pixels(max_pixels, LARGEST_MAX_PIXELS)
    image = _open(data, max_pixels)
    original_mode, original_format = image.mode, image.format or "unknown"
    keep_original = resize == 0 and original_format == "JPEG" and original_mode == "RGB"
    if use_draft and resize and original_format == "JPEG":
        width, height = image.size
        scale = resize * DRAFT_MARGIN / min(width, height)
        if scale < 0.5:
            image.draft(None, (max(1, int(width * scale)), max(1, int(height * scale))))
    try:
        image.load()  # Decodes now, so truncation shows up here and not later.
    except Exception as error:  # pylint: disable=broad-except
        # OSError, ValueError, SyntaxError... and whatever a broken decoder raises.
        raise BadImageError(f"truncated or corrupt image (data): {error}") from None
    if keep_original:
        return RecodedImage(data, "JPEG", image.height, image.width, original_mode,
                            original_format)
    if image.mode != "RGB":
        # CMYK (Pillow undoes Adobe's inverted CMYK), L, P, RGBA, I;16 ... -> RGB.
        image = image.convert("RGB")
    if resize:
        box = _center_box(image.width, image.height, resize)
        image = image.resize((resize, resize), Image.Resampling.BILINEAR, box=box)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return RecodedImage(buffer.getvalue(), "JPEG", image.height, image.width, original_mode,
                        original_format)
