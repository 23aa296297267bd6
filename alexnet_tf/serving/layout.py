"""The layout of an export (`--export_dir`), as TF Serving's file-system source reads it.

  export_dir/
    1/                                   one integer-named directory per version
      saved_model.pb  variables/
      assets.extra/tf_serving_warmup_requests   TFRecord of PredictionLog (warmup.py)
      assets.extra/alexnet_tf_preprocessing.json, alexnet_tf_stats.npz
                                         the preprocessing the model expects, so a
                                         SavedModel alone can be evaluated and visualised,
                                         and the pixel limit of serving_default (max_pixels)
      assets.extra/labels.json           the class list, as in a run directory
      assets.extra/alexnet_tf_ensemble.json  an ensemble's members (their checkpoints),
                                         only when the version averages several models
    2/ ...

TF Serving ignores assets.extra (except the warm-up file) and every directory whose
name is not an integer, so a version being written under a hidden name is never loaded.

Signatures (see `saved_model.py`):
  serving_default  image_bytes: string [N], encoded images (JPEG, PNG, GIF (first frame)
                   or BMP: preprocessing.IMAGE_FORMATS) of up to max_pixels pixels each,
                   read from their headers before decoding (image_header.py)
  preprocessed     images: float32 [N, S, S, 3], already mean-subtracted (0..255 scale)
Both return OUTPUTS: probabilities [N, C]; for the top k = min(5, C) classes: classes
(int64), scores, synsets and names (strings). An ensemble has the same signatures and
outputs; its probabilities are the mean of its members' softmax outputs.
"""

import json
import os
from typing import List, Optional

from alexnet_tf import atomic
from alexnet_tf import errors
from alexnet_tf.data import preprocessing
from alexnet_tf.data import schema
from alexnet_tf.data import stats as stats_lib

SERVING_SIGNATURE = "serving_default"
PREPROCESSED_SIGNATURE = "preprocessed"
IMAGE_BYTES_INPUT = "image_bytes"
IMAGES_INPUT = "images"
OUTPUTS = ("probabilities", "classes", "scores", "synsets", "names")
SAVED_MODEL_FILE = "saved_model.pb"
EXTRA_DIR = "assets.extra"
WARMUP_FILE = "tf_serving_warmup_requests"
SETTINGS_FILE = "alexnet_tf_preprocessing.json"
SETTINGS_STATS_FILE = "alexnet_tf_stats.npz"
MAX_PIXELS_KEY = "max_pixels"  # in SETTINGS_FILE
LABELS_FILE = schema.LABELS_FILE
ENSEMBLE_FILE = "alexnet_tf_ensemble.json"


def is_version_dir(path: str) -> bool:
    """Whether `path` holds a SavedModel."""
    return os.path.exists(os.path.join(path, SAVED_MODEL_FILE))


def existing_versions(export_dir: str) -> List[int]:
    """The sorted integer version numbers already in `export_dir` (temporaries ignored)."""
    if not os.path.isdir(export_dir):
        return []
    return sorted(int(name) for name in os.listdir(export_dir)
                  if name.isdigit() and os.path.isdir(os.path.join(export_dir, name)))


def next_version(export_dir: str) -> int:
    versions = existing_versions(export_dir)
    return versions[-1] + 1 if versions else 1


def resolve_version(path: str, name: str = "--saved_model") -> str:
    """The SavedModel to load for `path`: a version directory, or an export base
    directory (its highest complete version).

    Raises:
      FileNotFoundError: `path` is neither.
    """
    if is_version_dir(path):
        return path
    versions = [version for version in existing_versions(path)
                if is_version_dir(os.path.join(path, str(version)))]
    if not versions:
        raise errors.MissingInputError(
                f"{name}={path!r} is neither a SavedModel directory (no "
                f"{SAVED_MODEL_FILE}) nor an export directory holding versions "
                "1, 2, ... (written by `python -m alexnet_tf.export`)")
    return os.path.join(path, str(versions[-1]))


def save_extras(version_dir: str, settings: preprocessing.EvalSettings,
                labels: Optional[list], max_pixels: int,
                members: Optional[list] = None) -> None:
    """Writes the preprocessing settings (and statistics), the pixel limit of
    `serving_default`, the labels and, for an ensemble, its `members` (a JSON-able list,
    one entry per member) into assets.extra."""
    extra_dir = os.path.join(version_dir, EXTRA_DIR)
    os.makedirs(extra_dir, exist_ok=True)
    stats_lib.save_stats(settings.stats, os.path.join(extra_dir, SETTINGS_STATS_FILE))
    atomic.write_json(os.path.join(extra_dir, SETTINGS_FILE), dict(
            crop_size=settings.crop_size, resize_size=settings.resize_size,
            mean_mode=settings.mean_mode, stats_file=SETTINGS_STATS_FILE,
            **{MAX_PIXELS_KEY: max_pixels}))
    if labels is not None:
        atomic.write_json(os.path.join(extra_dir, LABELS_FILE), labels, indent=1)
    if members is not None:
        atomic.write_json(os.path.join(extra_dir, ENSEMBLE_FILE),
                          {"combination": "mean of the members' softmax outputs",
                           "members": members}, indent=1)


def load_settings(version_dir: str) -> preprocessing.EvalSettings:
    """The preprocessing settings `save_extras` wrote.

    Raises:
      FileNotFoundError: none there (a SavedModel not written by alexnet_tf.export).
    """
    extra_dir = os.path.join(version_dir, EXTRA_DIR)
    path = os.path.join(extra_dir, SETTINGS_FILE)
    if not os.path.exists(path):
        raise errors.MissingInputError(
                f"no {EXTRA_DIR}/{SETTINGS_FILE} in {version_dir!r}: use a "
                "SavedModel written by `python -m alexnet_tf.export`, or pass "
                "--model_dir")
    with open(path) as f:
        values = json.load(f)
    return preprocessing.EvalSettings(
            stats=stats_lib.load_stats(os.path.join(extra_dir, values["stats_file"])),
            mean_mode=values["mean_mode"], crop_size=int(values["crop_size"]),
            resize_size=int(values["resize_size"]))


def load_max_pixels(version_dir: str) -> Optional[int]:
    """The pixel limit `serving_default` was exported with, or None if not recorded."""
    path = os.path.join(version_dir, EXTRA_DIR, SETTINGS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        value = json.load(f).get(MAX_PIXELS_KEY)
    return None if value is None else int(value)


def load_labels(version_dir: str) -> Optional[list]:
    """The class list saved with the export, or None."""
    path = os.path.join(version_dir, EXTRA_DIR, LABELS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_members(version_dir: str) -> Optional[list]:
    """An ensemble's members as `save_extras` wrote them, or None for a single model."""
    path = os.path.join(version_dir, EXTRA_DIR, ENSEMBLE_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["members"]
