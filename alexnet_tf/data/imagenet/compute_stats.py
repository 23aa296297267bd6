"""Colour statistics of a converted training set, in the format of alexnet_tf/data/stats.py.

Every image is seen exactly as the input pipeline sees it: decoded and brought to the
canonical `resize_size` square by `preprocessing.eval_crops` (a no-op crop for records the
converter already made 256x256). From those (R, R, 3) uint8 frames we accumulate, in
float64:

  * the per-pixel mean image (R, R, 3) and the per-channel mean (3,), on 0..255;
  * the 3x3 covariance of all RGB pixels on the 0..1 scale, whose eigen decomposition is
    the paper's PCA for colour augmentation. Eigenvalues are stored times 255 and sorted
    descending, eigenvectors as columns (the convention stats.py documents).
"""

import json
import os
from typing import Optional

import numpy as np
import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf.data import pipeline as input_pipeline
from alexnet_tf.data import preprocessing
from alexnet_tf.data import schema
from alexnet_tf.data import stats as stats_lib


class _Accumulator:
    """Running float64 sums over uint8 frames (batch, R, R, 3)."""

    def __init__(self, size: int):
        self.image_sum = np.zeros((size, size, 3), np.float64)
        self.outer_sum = np.zeros((3, 3), np.float64)  # sum of x x^T, x on 0..1
        self.num_images = 0

    def add(self, frames: np.ndarray) -> None:
        frames = frames.astype(np.float64)
        self.image_sum += frames.sum(axis=0)
        pixels = frames.reshape(-1, 3) / 255.0  # (batch * R * R, 3)
        self.outer_sum += pixels.T @ pixels
        self.num_images += frames.shape[0]


def stats_from_sums(image_sum: np.ndarray, outer_sum: np.ndarray, num_images: int,
                    source: str) -> stats_lib.ImageStats:
    """Turns accumulated sums into ImageStats (means, PCA of the RGB covariance).

    Args:
      image_sum: float64 (R, R, 3), the sum of all frames on 0..255.
      outer_sum: float64 (3, 3), the sum over all pixels of x x^T with x on 0..1.
      num_images: how many frames were summed.
      source: where the numbers came from.

    Raises:
      ValueError: no images.
    """
    if num_images <= 0:
        raise errors.InvalidInputError("cannot compute statistics of 0 images")
    mean_image = image_sum / num_images  # (R, R, 3), 0..255
    num_pixels = num_images * image_sum.shape[0] * image_sum.shape[1]
    mean_unit = image_sum.sum(axis=(0, 1)) / num_pixels / 255.0  # (3,), 0..1
    covariance = outer_sum / num_pixels - np.outer(mean_unit, mean_unit)  # (3, 3), 0..1
    eigval, eigvec = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = eigval[order], eigvec[:, order]
    # An eigenvector's sign is arbitrary; fix it (column sum <= 0, like the published
    # first component, whose entries are all negative) so reruns give the same file.
    eigvec = eigvec * np.where(eigvec.sum(axis=0) > 0, -1.0, 1.0)
    return stats_lib.ImageStats(
        mean_rgb=(mean_unit * 255.0).astype(np.float32),
        eigval=(np.maximum(eigval, 0.0) * 255.0).astype(np.float32),
        eigvec=eigvec.astype(np.float32), mean_image=mean_image.astype(np.float32),
        num_images=num_images, source=source)


def _frames(data_dir: str, split: str, resize_size: int, batch_size: int,
            max_images: int) -> tf.data.Dataset:
    files = input_pipeline.list_shards(data_dir, split)
    dataset = tf.data.TFRecordDataset(files)  # Shards in order: the result is reproducible.
    if max_images:
        dataset = dataset.take(max_images)

    def frame(serialized):
        image_bytes, _ = input_pipeline.parse_record(serialized)
        crops = preprocessing.eval_crops(image_bytes, crop_size=resize_size,
                                         resize_size=resize_size)
        return crops[preprocessing.IMAGE_KEY][0]  # (R, R, 3) uint8

    dataset = dataset.map(frame, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return dataset.batch(batch_size).prefetch(2)


def _expected_count(data_dir: str, split: str, max_images: int) -> Optional[int]:
    path = os.path.join(data_dir, schema.MANIFEST_FILE)
    if not os.path.isfile(path):
        return max_images or None
    with open(path) as f:
        count = json.load(f)["splits"].get(split, {}).get("num_images")
    return min(count, max_images) if max_images and count else count


def compute_stats(data_dir: str, *, split: str = schema.TRAIN,
                  resize_size: int = preprocessing.RESIZE_SIZE, batch_size: int = 32,
                  max_images: int = 0, show_progress: bool = False) -> stats_lib.ImageStats:
    """Computes the mean image, per-channel mean and RGB PCA of a converted split.

    Args:
      data_dir: the converter's output directory.
      split: which split's shards to read (the paper uses the training set).
      resize_size: side of the canonical frame the mean image is computed on.
      batch_size: frames summed at once (memory: batch_size * R * R * 3 * 8 bytes).
      max_images: stop after this many images (in shard order); 0 reads them all.
      show_progress: show a tqdm progress bar.

    Raises:
      FileNotFoundError: no shards of `split` in data_dir.
      ValueError: the shards hold no images.
    """
    from tqdm import tqdm  # Local import: only for the progress bar.
    input_pipeline.list_shards(data_dir, split)  # Before the bar: a missing split is an error.
    accumulator = _Accumulator(resize_size)
    with tqdm(total=_expected_count(data_dir, split, max_images), unit="img",
              disable=not show_progress, desc="statistics") as bar:
        for frames in _frames(data_dir, split, resize_size, batch_size,
                              max_images).as_numpy_iterator():
            accumulator.add(frames)
            bar.update(frames.shape[0])
    source = (f"tools/compute_stats.py: {accumulator.num_images} {split} images of "
              f"{os.path.abspath(data_dir)}, {resize_size}x{resize_size} frames; eigval = "
              "eigenvalues of the 0..1 RGB covariance x 255")
    return stats_from_sums(accumulator.image_sum, accumulator.outer_sum,
                           accumulator.num_images, source)
