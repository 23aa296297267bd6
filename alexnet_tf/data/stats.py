"""Dataset colour statistics: the mean image, per-channel mean and RGB PCA.

One format, written by `tools/compute_stats.py` and read by the input pipeline:
an `.npz` file (STATS_FILE in a data directory) with

  mean_rgb    float32 [3]        per-channel mean, pixel scale 0..255
  eigval      float32 [3]        the l_i of the paper's PCA lighting, descending (see below)
  eigvec      float32 [3, 3]     eigenvectors as COLUMNS: eigvec[:, i] is p_i
  mean_image  float32 [H, W, 3]  optional per-pixel mean image (256x256x3), 0..255
  num_images  int64   []         how many images the statistics came from
  source      str     []         where the numbers came from

The paper adds [p1, p2, p3] [a1*l1, a2*l2, a3*l3]^T to every pixel, a_i ~ N(0, 0.1),
with l_i the eigenvalues of the 3x3 RGB covariance. It does not say on which pixel
scale; on 0..255 the eigenvalues are ~10^3 and the shift would swamp the image, so
we take the covariance of pixels on the 0..1 scale (the only reading that gives a
sensible shift) and store l_i * 255, so that `eigvec @ (a * eigval)` is the shift
in 0..255 units. `tools/compute_stats.py` writes exactly that; the shipped
defaults (alexnet_tf/data/imagenet_stats.json) state their own source and scale.

When no stats file is given, `load_stats(None)` returns the shipped published
ImageNet values (no mean image: mean subtraction then uses the per-channel mean).
"""

import dataclasses
import json
import os
from typing import Optional

import numpy as np

from alexnet_tf import atomic
from alexnet_tf import errors

STATS_FILE = "stats.npz"  # In a data directory, next to the shards.
DEFAULT_STATS_JSON = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                  "imagenet_stats.json")


@dataclasses.dataclass(frozen=True)
class ImageStats:
    """Colour statistics on the 0..255 pixel scale."""
    mean_rgb: np.ndarray  # (3,)
    eigval: np.ndarray  # (3,)
    eigvec: np.ndarray  # (3, 3), columns are eigenvectors
    mean_image: Optional[np.ndarray] = None  # (H, W, 3) or None
    num_images: int = 0
    source: str = ""

    def __post_init__(self):
        for name, shape in (("mean_rgb", (3,)), ("eigval", (3,)), ("eigvec", (3, 3))):
            value = np.asarray(getattr(self, name))
            if value.shape != shape:
                raise ValueError(f"ImageStats.{name} must have shape {shape}, got {value.shape}")
        if self.mean_image is not None:
            shape = np.asarray(self.mean_image).shape
            if len(shape) != 3 or shape[-1] != 3:
                raise ValueError(f"ImageStats.mean_image must be (H, W, 3), got {shape}")


def save_stats(stats: ImageStats, path: str) -> None:
    """Writes `stats` to `path` (.npz) atomically (temporary file, then rename)."""
    arrays = dict(mean_rgb=np.asarray(stats.mean_rgb, np.float32),
                  eigval=np.asarray(stats.eigval, np.float32),
                  eigvec=np.asarray(stats.eigvec, np.float32),
                  num_images=np.int64(stats.num_images),
                  source=np.array(stats.source))
    if stats.mean_image is not None:
        arrays["mean_image"] = np.asarray(stats.mean_image, np.float32)
    with atomic.replacing(path, suffix=".npz") as tmp_path:
        np.savez(tmp_path, **arrays)


def _load_published(path: str) -> ImageStats:
    with open(path) as f:
        published = json.load(f)
    scale = float(published["pixel_scale"])  # 1.0 for 0..1 values, 255.0 for 0..255
    to_255 = 255.0 / scale
    return ImageStats(
        mean_rgb=np.asarray(published["mean_rgb"], np.float32) * to_255,
        eigval=np.asarray(published["eigval"], np.float32) * to_255,
        eigvec=np.asarray(published["eigvec"], np.float32),
        source=published.get("source", path))


def resolve_path(stats_path: Optional[str], data_dir: Optional[str]) -> Optional[str]:
    """Which statistics a run uses: `stats_path`, else data_dir/stats.npz if it exists,
    else None (the shipped ImageNet values)."""
    if stats_path:
        return stats_path
    if data_dir and os.path.exists(os.path.join(data_dir, STATS_FILE)):
        return os.path.join(data_dir, STATS_FILE)
    return None


def load_stats(path: Optional[str] = None) -> ImageStats:
    """Loads statistics from a `.npz` written by compute_stats, or the shipped defaults.

    Args:
      path: a `.npz` stats file, a data directory holding `stats.npz`, a `.json` file in
        the format of alexnet_tf/data/imagenet_stats.json, or None for the shipped ImageNet values.

    Raises:
      FileNotFoundError: `path` names no stats file.
      ValueError: the file does not hold the expected arrays.
    """
    if path is None:
        return _load_published(DEFAULT_STATS_JSON)
    if os.path.isdir(path):
        path = os.path.join(path, STATS_FILE)
    if not os.path.exists(path):
        raise errors.MissingInputError(
                f"no statistics file at {path!r} (expected a .npz written by "
                "tools/compute_stats.py, or a .json like alexnet_tf/data/imagenet_stats.json)")
    if path.endswith(".json"):
        return _load_published(path)
    with np.load(path) as data:
        missing = {"mean_rgb", "eigval", "eigvec"} - set(data.files)
        if missing:
            raise errors.InvalidInputError(f"statistics file {path!r} lacks {sorted(missing)}")
        return ImageStats(
            mean_rgb=data["mean_rgb"], eigval=data["eigval"], eigvec=data["eigvec"],
            mean_image=data["mean_image"] if "mean_image" in data.files else None,
            num_images=int(data["num_images"]) if "num_images" in data.files else 0,
            source=str(data["source"]) if "source" in data.files else path)
