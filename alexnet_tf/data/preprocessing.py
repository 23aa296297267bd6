"""Image preprocessing for AlexNet: one code path for training, evaluation and serving.

The paper (Krizhevsky et al. 2012, section 2 and 4.1) works on a canonical 256x256 image:
the shorter side resized to 256, then the central 256x256 patch. Here that canonical
frame is implicit: every crop is given by its offset (y, x) inside the central
`resize_size` x `resize_size` patch of the (shorter-side resized) image.

Work is split in two so that the float work runs vectorised over a batch:

  1. per image, on uint8 (`train_crop` = `train_draws` + `decode_crop`, and
     `eval_crops`): draw, decode (for training only the crop window:
     `tf.image.decode_and_crop_jpeg`) and crop. Each crop carries its offset, flip flag
     and PCA coefficients alpha; it is not mirrored yet. The input pipeline calls
     `train_draws` once per chunk of records and `decode_crop` per record.
  2. per batch (`float_augment_batch`): mirror the crops whose flag says so, convert to
     float32, subtract the mean (the mean image cropped at the same window and mirrored
     the same way, or the per-channel mean) and add the PCA lighting shift. This runs
     per batch in tf.data (compiled with XLA there, so the mirror, the cast, the
     mean and the lighting are one pass over the batch), or inside the training step
     on the accelerator (`device_augment`, for --augment_on=device).

`preprocess_for_train` and `preprocess_for_eval` chain both steps for one image. They
are the reference: serving calls `preprocess_for_eval` itself; the input pipeline runs
the same two steps on a chunk of records at a time (`train_draws` for the chunk,
`decode_crop` or `eval_crops` per record, then the per-batch float stage compiled with
XLA), and gives, for the record at stream position k, exactly
`preprocess_for_train(record, seed=(pipeline.augment_seed(seed), k))` (tested to the
bit), so there is no second copy of any step.

All randomness is stateless and comes from a per-image seed (shape [2] int32/int64):
the same seed gives the same crop, flip and lighting, eagerly or inside tf.data, and
drawn alone or with its neighbours (`train_draws`).

Output images are float32 on the 0..255 pixel scale minus the mean, the model's input.
"""

import dataclasses
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf

from alexnet_tf.data import stats as stats_lib

MEAN_MODES = ("image", "rgb")
# What `decode_image` (so evaluation, serving and predict) reads, said one way everywhere.
IMAGE_FORMATS = "JPEG, PNG, GIF (first frame) or BMP"
# The paper's canonical image size and crop size.
RESIZE_SIZE = 256
CROP_SIZE = 224
# The standard deviation of the PCA lighting coefficients alpha (section 4.1); 0 = none.
PCA_STD = 0.1
# Feature keys of a batch whose float work is left to the accelerator (augment_on_device).
IMAGE_KEY = "image"  # uint8 (batch, S, S, 3)
OFFSET_KEY = "offset"  # int32 (batch, 2): crop (y, x) in the canonical frame
FLIP_KEY = "flip"  # bool (batch,)
ALPHA_KEY = "alpha"  # float32 (batch, 3): PCA coefficients


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """How a trained model's images are preprocessed at test time: as in its training.

    Attributes:
      stats: the colour statistics (mean image or per-channel mean) it was trained with.
      mean_mode: "image" or "rgb".
      crop_size: the model's input side S.
      resize_size: the shorter side images are resized to before the crop.
    """
    stats: stats_lib.ImageStats
    mean_mode: str
    crop_size: int
    resize_size: int


def _check_sizes(crop_size: int, resize_size: int) -> None:
    if not 0 < crop_size <= resize_size:
        raise ValueError(f"crop_size must be in (0, resize_size={resize_size}], got {crop_size}")


def decode_image(image_bytes: tf.Tensor) -> tf.Tensor:
    """Decodes an encoded image (IMAGE_FORMATS) to uint8 RGB (height, width, 3)."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_shorter_side(image: tf.Tensor, size: int) -> tf.Tensor:
    """Resizes so the shorter side is `size` (aspect kept); a no-op when it already is.

    Bilinear with antialiasing, rounded back to uint8 so that a raw upload reaches the
    model exactly as a record written at that size would.

    Args:
      image: uint8 (height, width, 3).
      size: the target length of the shorter side.

    Returns:
      uint8 (new_height, new_width, 3).
    """
    shape = tf.shape(image)
    height, width = tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32)
    scale = size / tf.minimum(height, width)
    new_size = tf.cast(tf.round(tf.stack([height * scale, width * scale])), tf.int32)
    new_size = tf.maximum(new_size, size)

    def resize():
        resized = tf.image.resize(image, new_size, method="bilinear", antialias=True)
        return tf.cast(tf.round(tf.clip_by_value(resized, 0.0, 255.0)), tf.uint8)

    return tf.cond(tf.reduce_all(shape[:2] == new_size), lambda: image, resize)


def _frame_origin(height, width, resize_size: int):
    """(y, x) of the canonical resize_size square centred in a (height, width) image."""
    return (height - resize_size) // 2, (width - resize_size) // 2


def _crop(image: tf.Tensor, offset: tf.Tensor, crop_size: int, resize_size: int) -> tf.Tensor:
    """Crops a window at `offset` of the canonical frame from a shorter-side-resized image."""
    shape = tf.shape(image)
    origin_y, origin_x = _frame_origin(shape[0], shape[1], resize_size)
    return tf.image.crop_to_bounding_box(image, origin_y + offset[0], origin_x + offset[1],
                                         crop_size, crop_size)


# Uniform draws per image: crop y, crop x, flip, PCA alpha x 3, and two unused (Philox
# yields four per block, so an image takes exactly two blocks).
_DRAWS_PER_IMAGE = 8


def train_draws(seed: tf.Tensor, num_images, *, crop_size: int = CROP_SIZE,
                resize_size: int = RESIZE_SIZE, flip: bool = True,
                pca_std: float = PCA_STD) -> dict:
    """The random choices of training augmentation for `num_images` consecutive seeds.

    Image i of the result is drawn with the seed (seed[0], seed[1] + i), and what an
    image gets depends on its own seed only: drawing n images at once equals drawing
    each alone. The input pipeline uses this to draw a whole chunk of records in one op
    while any single record can be redrawn on its own.

    The draws are Philox uniforms (`StatelessRandomUniformV2`) with key seed[0] and
    counter 2 x seed[1]: the 8 uniforms of seed (k, p) are Philox blocks 2p and 2p + 1
    of key k. Offsets are uniform integers, the flip a fair coin, and the PCA
    coefficients alpha ~ N(0, pca_std^2) by the inverse normal CDF (a uniform on
    (2^-24, 1 - 2^-24), so |alpha| < 5.3 pca_std).

    Args:
      seed: int32/int64 [2], the stateless seed of the first image.
      num_images: how many consecutive seeds to draw for (int or scalar tensor).
      crop_size, resize_size: the crop and the canonical frame it lies in.
      flip: whether to mirror horizontally with probability 1/2 (else never).
      pca_std: standard deviation of alpha (0 disables lighting).

    Returns:
      A dict: OFFSET_KEY int32 (n, 2); FLIP_KEY bool (n,); ALPHA_KEY float32 (n, 3).
    """
    _check_sizes(crop_size, resize_size)
    seed = tf.bitcast(tf.cast(seed, tf.int64), tf.uint64)
    counter = tf.stack([seed[1] * 2, tf.constant(0, tf.uint64)])
    uniforms = tf.raw_ops.StatelessRandomUniformV2(
            shape=tf.stack([num_images * _DRAWS_PER_IMAGE]), key=seed[:1], counter=counter,
            alg=1, dtype=tf.float32)  # alg 1: Philox
    uniforms = tf.reshape(uniforms, [-1, _DRAWS_PER_IMAGE])
    max_offset = resize_size - crop_size
    offset = tf.minimum(tf.cast(uniforms[:, :2] * (max_offset + 1), tf.int32), max_offset)
    mirror = uniforms[:, 2] < 0.5 if flip else tf.zeros_like(uniforms[:, 2], tf.bool)
    # Uniforms are multiples of 2^-23 in [0, 1): shift into the open interval. The
    # inverse CDF is computed on rows padded to 16 lanes: TF's vectorised and scalar
    # ndtri differ in the last bit, and full 16-float rows (one AVX-512 packet, two
    # AVX2 ones) take the vectorised code for every image, however many are drawn.
    lanes = tf.pad(uniforms[:, 3:6], [[0, 0], [0, 13]], constant_values=0.5)
    alpha = (tf.math.ndtri(lanes * (1.0 - 2.0 ** -23) + 2.0 ** -24) * pca_std)[:, :3]
    return {OFFSET_KEY: offset, FLIP_KEY: mirror, ALPHA_KEY: alpha}


def decode_crop(image_bytes: tf.Tensor, offset: tf.Tensor, *, crop_size: int = CROP_SIZE,
                resize_size: int = RESIZE_SIZE, square_jpeg: bool = False) -> tf.Tensor:
    """The uint8 (S, S, 3) crop at `offset` (y, x) of an encoded image's canonical frame.

    A JPEG whose shorter side already is `resize_size` (the converter's records) is
    decoded only inside the crop window; anything else is decoded whole and resized.
    With `square_jpeg` the image must be a `resize_size` square JPEG (what the converter
    writes): the window is decoded with no branching at all, and any other image is an
    error (InvalidArgumentError), i.e. a bad record for the input pipeline.
    """
    if square_jpeg:
        shape = tf.image.extract_jpeg_shape(image_bytes)  # raises for a non-JPEG
        check = tf.debugging.Assert(tf.reduce_all(shape[:2] == resize_size),
                                    ["expected a square JPEG of side", resize_size,
                                     "got shape", shape])
        with tf.control_dependencies([check]):
            window = tf.stack([offset[0], offset[1], crop_size, crop_size])
            image = tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)
        return tf.ensure_shape(image, [crop_size, crop_size, 3])

    is_jpeg = tf.io.is_jpeg(image_bytes)
    jpeg_shape = tf.cond(is_jpeg, lambda: tf.image.extract_jpeg_shape(image_bytes),
                         lambda: tf.zeros([3], tf.int32))
    fast = is_jpeg & (tf.minimum(jpeg_shape[0], jpeg_shape[1]) == resize_size)

    def decode_window():
        # Only the (S, S) window is decoded: most of the JPEG's IDCT work is skipped.
        origin_y, origin_x = _frame_origin(jpeg_shape[0], jpeg_shape[1], resize_size)
        window = tf.stack([origin_y + offset[0], origin_x + offset[1], crop_size, crop_size])
        return tf.image.decode_and_crop_jpeg(image_bytes, window, channels=3)

    def decode_resize_crop():
        image = resize_shorter_side(decode_image(image_bytes), resize_size)
        return _crop(image, offset, crop_size, resize_size)

    image = tf.cond(fast, decode_window, decode_resize_crop)
    return tf.ensure_shape(image, [crop_size, crop_size, 3])


def train_crop(image_bytes: tf.Tensor, seed: tf.Tensor, *, crop_size: int = CROP_SIZE,
               resize_size: int = RESIZE_SIZE, flip: bool = True, pca_std: float = PCA_STD,
               square_jpeg: bool = False) -> dict:
    """The per-image, uint8 part of training augmentation: the random crop and its draws.

    The crop comes back unmirrored, with the flip drawn in FLIP_KEY: mirroring is done
    by `float_augment_batch`, over the whole batch at once. The draws are
    `train_draws(seed, 1)`, the decoding `decode_crop`.

    Args:
      image_bytes: scalar string, an encoded image.
      seed: int32/int64 [2], the stateless seed of this image (this epoch).
      crop_size: side of the square crop.
      resize_size: side of the canonical frame the crop is taken from.
      flip: whether to mirror horizontally with probability 1/2.
      pca_std: standard deviation of the PCA coefficients alpha (0 disables lighting).
      square_jpeg: the image is known to be a resize_size x resize_size JPEG.

    Returns:
      A dict: IMAGE_KEY uint8 (S, S, 3), the crop as it lies in the image; OFFSET_KEY
      int32 (2,); FLIP_KEY bool (), whether the float stage mirrors it; ALPHA_KEY
      float32 (3,).
    """
    draws = {key: value[0] for key, value in train_draws(
            seed, 1, crop_size=crop_size, resize_size=resize_size, flip=flip,
            pca_std=pca_std).items()}
    draws[IMAGE_KEY] = decode_crop(image_bytes, draws[OFFSET_KEY], crop_size=crop_size,
                                   resize_size=resize_size, square_jpeg=square_jpeg)
    return draws


def eval_crops(image_bytes: tf.Tensor, *, crop_size: int = CROP_SIZE,
               resize_size: int = RESIZE_SIZE, ten_crop: bool = False) -> dict:
    """The per-image, uint8 part of evaluation: the centre crop, or the paper's 10 crops.

    The 10 crops are, in this order: centre, top-left, top-right, bottom-left,
    bottom-right of the canonical frame, then the same five mirrored. As for
    `train_crop`, the images come back unmirrored with FLIP_KEY set: the last five are
    mirrored by `float_augment_batch`.

    Args:
      image_bytes: scalar string, an encoded image of any size.
      crop_size: side of the square crop.
      resize_size: the shorter side is resized to this (a no-op for such records).
      ten_crop: return the 10 crops instead of the centre one.

    Returns:
      A dict like `train_crop`'s, with a leading crop axis of size 1 or 10:
      IMAGE_KEY uint8 (N, S, S, 3), OFFSET_KEY (N, 2), FLIP_KEY (N,), ALPHA_KEY zeros (N, 3).
    """
    _check_sizes(crop_size, resize_size)
    image = resize_shorter_side(decode_image(image_bytes), resize_size)
    far, mid = resize_size - crop_size, (resize_size - crop_size) // 2
    corners = [(mid, mid), (0, 0), (0, far), (far, 0), (far, far)] if ten_crop else [(mid, mid)]
    offsets = tf.constant(corners, tf.int32)  # (5 or 1, 2)
    crops = tf.stack([_crop(image, offsets[i], crop_size, resize_size)
                      for i in range(len(corners))])  # (5 or 1, S, S, 3)
    flips = tf.zeros([len(corners)], tf.bool)
    if ten_crop:
        crops = tf.concat([crops, crops], axis=0)  # (10, S, S, 3); flags mirror the last 5
        offsets = tf.concat([offsets, offsets], axis=0)
        flips = tf.concat([flips, tf.ones_like(flips)], axis=0)
    return {IMAGE_KEY: crops, OFFSET_KEY: offsets, FLIP_KEY: flips,
            ALPHA_KEY: tf.zeros([len(corners) * (2 if ten_crop else 1), 3])}


def subtracted_mean(stats: stats_lib.ImageStats, mean_mode: str) -> np.ndarray:
    """The mean the images lose: the mean image (H, W, 3) under mean_mode="image" when the
    statistics hold one, else the per-channel mean (3,)."""
    if mean_mode == "image" and stats.mean_image is not None:
        return np.asarray(stats.mean_image, np.float32)
    return np.asarray(stats.mean_rgb, np.float32)


def _mean_image(stats: stats_lib.ImageStats, resize_size: int) -> Optional[tf.Tensor]:
    """The mean image as float32 (R, R, 3), resized to the canonical frame if needed."""
    if stats.mean_image is None:
        return None
    mean_image = tf.constant(stats.mean_image, tf.float32)
    if tuple(stats.mean_image.shape[:2]) != (resize_size, resize_size):
        mean_image = tf.image.resize(mean_image, [resize_size, resize_size], antialias=True)
    return mean_image


def _crop_mean_image(mean_image: tf.Tensor, offsets: tf.Tensor, flips: tf.Tensor,
                     crop_size) -> tf.Tensor:
    """Crops (and mirrors) the mean image at every window of a batch: (B, S, S, 3)."""
    # One gather of pixels by their index in the flattened mean image: exact, mirrored by
    # reversing the column indices, and (unlike crop_and_resize) compiled by XLA, which
    # fuses it into the subtraction.
    size = tf.shape(mean_image)[1]
    steps = tf.range(crop_size)  # (S,)
    rows = offsets[:, :1] + steps  # (B, S)
    cols = offsets[:, 1:] + tf.where(flips[:, tf.newaxis], crop_size - 1 - steps, steps)
    pixels = rows[:, :, tf.newaxis] * size + cols[:, tf.newaxis, :]  # (B, S, S)
    return tf.gather(tf.reshape(mean_image, [-1, 3]), pixels)


def float_augment_batch(images: tf.Tensor, offsets: tf.Tensor, flips: tf.Tensor,
                        alphas: tf.Tensor, *, stats: stats_lib.ImageStats,
                        mean_mode: str = "image", resize_size: int = RESIZE_SIZE) -> tf.Tensor:
    """Mirroring, mean subtraction and PCA lighting for a batch of crops, vectorised.

    Mirrors the crops whose `flips` is set, adds the paper's sum_i alpha_i * lambda_i * p_i
    (one RGB shift per image) and subtracts the mean: the mean image at the crop's window
    when `mean_mode="image"` and the statistics hold one, else the per-channel mean.

    Args:
      images: uint8 or float32 (B, S, S, 3) unmirrored crops on the 0..255 scale.
      offsets: int32 (B, 2), each crop's (y, x) in the canonical frame.
      flips: bool (B,), whether to mirror each crop.
      alphas: float32 (B, 3), PCA coefficients (zeros: no lighting).
      stats: colour statistics on the 0..255 scale.
      mean_mode: "image" or "rgb".
      resize_size: side of the canonical frame (the mean image is resized to it).

    Returns:
      float32 (B, S, S, 3).
    """
    return float_augment_with_shift(images, offsets, flips, lighting_shift(alphas, stats),
                                    stats=stats, mean_mode=mean_mode, resize_size=resize_size)


def lighting_shift(alphas: tf.Tensor, stats: stats_lib.ImageStats) -> tf.Tensor:
    """The paper's PCA lighting: sum_i alpha_i * lambda_i * p_i per image, float32 (B, 3).

    Args:
      alphas: (B, 3) coefficients; eigen values and vectors (columns p_i) from `stats`.
    """
    return tf.linalg.matmul(tf.cast(alphas, tf.float32) * tf.constant(stats.eigval, tf.float32),
                            tf.constant(stats.eigvec, tf.float32), transpose_b=True)


def float_augment_with_shift(images: tf.Tensor, offsets: tf.Tensor, flips: tf.Tensor,
                             shift: tf.Tensor, *, stats: stats_lib.ImageStats,
                             mean_mode: str = "image", resize_size: int = RESIZE_SIZE,
                             blend_mirror: bool = False) -> tf.Tensor:
    """`float_augment_batch` given the lighting shift (B, 3) instead of the alphas.

    The per-pixel part alone: mirror, cast, subtract the mean, add the shift. Every
    operation is exact or a single rounding, so XLA computes exactly what plain TF
    does; the input pipeline compiles this part.

    With `blend_mirror` the mirror is written as x + flip * (reverse(x) - x) on the
    float pixels, exact for 0/1 flips and integer pixels, so the same result to the
    bit. XLA vectorises that form (about 15 us per 224x224 image faster on one core
    here) but not a select between an image and its reverse; plain TF is faster with
    the select, done on uint8.
    """
    if mean_mode not in MEAN_MODES:
        raise ValueError(f"mean_mode must be one of {MEAN_MODES}, got {mean_mode!r}")
    if blend_mirror:
        pixels = tf.cast(images, tf.float32)
        flip = tf.cast(flips, tf.float32)[:, tf.newaxis, tf.newaxis, tf.newaxis]
        images = pixels + flip * (tf.cast(tf.reverse(images, axis=[2]), tf.float32) - pixels)
    else:
        # Mirrored before the cast: on uint8 the reverse moves a quarter of the bytes.
        images = tf.cast(tf.where(flips[:, tf.newaxis, tf.newaxis, tf.newaxis],
                                  tf.reverse(images, axis=[2]), images), tf.float32)
    mean_image = _mean_image(stats, resize_size) if mean_mode == "image" else None
    if mean_image is not None:
        crop_size = tf.shape(images)[1]
        images -= _crop_mean_image(mean_image, offsets, flips, crop_size)  # (B, S, S, 3)
        return _add_rgb_per_image(images, shift)
    return _add_rgb_per_image(images, shift - tf.constant(stats.mean_rgb, tf.float32))


def _add_rgb_per_image(images: tf.Tensor, rgb: tf.Tensor) -> tf.Tensor:
    """images (B, H, W, 3) + rgb (B, 3) broadcast over the pixels of each image."""
    # Broadcasting a (B, 1, 1, 3) operand takes TF's slow generic broadcast on CPU:
    # view the images as (B, H, W * 3) and add a (B, 1, W * 3) row instead.
    shape = tf.shape(images)
    rows = tf.reshape(images, [shape[0], shape[1], shape[2] * 3])
    row = tf.tile(rgb, [1, shape[2]])[:, tf.newaxis, :]  # (B, 1, W * 3)
    return tf.reshape(rows + row, shape)


def device_augment(batch: dict, *, stats: stats_lib.ImageStats, mean_mode: str = "image",
                   resize_size: int = RESIZE_SIZE) -> tf.Tensor:
    """The float part of training augmentation on a batch from an augment_on_device pipeline.

    Call it first thing inside the training step so mean subtraction and PCA lighting
    run on the accelerator; the host then only decodes and crops uint8.

    Args:
      batch: dict with IMAGE_KEY uint8 (B, S, S, 3), OFFSET_KEY, FLIP_KEY, ALPHA_KEY.
      stats, mean_mode, resize_size: as for `float_augment_batch`.

    Returns:
      float32 (B, S, S, 3), identical to what the host pipeline would have produced.
    """
    return float_augment_batch(batch[IMAGE_KEY], batch[OFFSET_KEY], batch[FLIP_KEY],
                               batch[ALPHA_KEY], stats=stats, mean_mode=mean_mode,
                               resize_size=resize_size)


def _warn_if_no_mean_image(stats: stats_lib.ImageStats, mean_mode: str) -> None:
    if mean_mode == "image" and stats.mean_image is None:
        logging.log_first_n(logging.WARNING, "mean_mode='image' but the statistics hold no "
                            "mean image: subtracting the per-channel mean instead.", 1)


def preprocess_for_train(image_bytes: tf.Tensor, seed: tf.Tensor, *,
                         stats: stats_lib.ImageStats, crop_size: int = CROP_SIZE,
                         mean_mode: str = "image", flip: bool = True, pca_std: float = PCA_STD,
                         augment_on_device: bool = False, resize_size: int = RESIZE_SIZE):
    """The paper's training augmentation for one image.

    Args:
      image_bytes: scalar string, an encoded image (JPEG fastest; any decodable format).
      seed: int32/int64 [2] stateless seed; the same seed gives the same output.
      stats: colour statistics (mean, PCA) on the 0..255 scale.
      crop_size: side of the random square crop.
      mean_mode: "image" (mean image at the crop window) or "rgb" (per-channel mean).
      flip: mirror horizontally with probability 1/2.
      pca_std: standard deviation of the PCA lighting coefficients (paper: 0.1).
      augment_on_device: return the uint8 crop and its parameters (a `train_crop`
        dict) and leave the float work to `device_augment`.
      resize_size: side of the canonical frame.

    Returns:
      float32 (S, S, 3), or the `train_crop` dict when augment_on_device.
    """
    _warn_if_no_mean_image(stats, mean_mode)
    crop = train_crop(image_bytes, seed, crop_size=crop_size, resize_size=resize_size,
                      flip=flip, pca_std=pca_std)
    if augment_on_device:
        return crop
    batch = {key: value[tf.newaxis] for key, value in crop.items()}
    return device_augment(batch, stats=stats, mean_mode=mean_mode, resize_size=resize_size)[0]


def preprocess_for_eval(image_bytes: tf.Tensor, *, stats: stats_lib.ImageStats,
                        crop_size: int = CROP_SIZE, resize_size: int = RESIZE_SIZE,
                        ten_crop: bool = False, mean_mode: str = "image") -> tf.Tensor:
    """Evaluation and serving preprocessing for one image of any size and format.

    Decode, resize the shorter side to `resize_size`, take the centre crop (or the 10
    crops), subtract the mean. Use the same `mean_mode` as in training.

    Args:
      image_bytes: scalar string, an encoded image (IMAGE_FORMATS).
      stats: colour statistics on the 0..255 scale.
      crop_size: side of the crop.
      resize_size: the shorter side is resized to this first.
      ten_crop: return the paper's 10 crops (see `eval_crops`) instead of one.
      mean_mode: "image" or "rgb", as in training.

    Returns:
      float32 (S, S, 3), or (10, S, S, 3) when ten_crop.
    """
    _warn_if_no_mean_image(stats, mean_mode)
    crops = eval_crops(image_bytes, crop_size=crop_size, resize_size=resize_size,
                       ten_crop=ten_crop)
    images = device_augment(crops, stats=stats, mean_mode=mean_mode, resize_size=resize_size)
    return images if ten_crop else images[0]
