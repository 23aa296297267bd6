"""Where a dataset's splits are, and the validation images held out of its training folders.

Two layouts of `--imagenet_dir` (DIR), told apart by DIR/train and DIR/val:

  DIR/train/<class>/...  [DIR/val/<class>/... or ImageNet's flat val/]   "splits"
  DIR/<class>/...                                                         "classes"

Without a validation folder, `validation_fraction` holds out part of the training
folders: a file goes to validation when a hash of its path relative to its class folder
(its file name), read as a number in [0, 1), is below the fraction. The choice is the
file's alone: every class gives about that fraction of its images, the same files on
every run, and adding or removing files never moves another file between the splits, so
a model validated on a grown dataset has still never trained on its validation images.
(Exact per-class counts would need a ranking, which a new file can shift.) A class of
only a few images may hold none back; the converter's summary warns about a class
without images in a split.
"""

import hashlib
import os
from typing import List, Sequence, Tuple

SPLITS_LAYOUT = "splits"  # DIR/train/<class>/, optional DIR/val/
CLASSES_LAYOUT = "classes"  # DIR/<class>/
TRAIN_DIR, VALIDATION_DIR = "train", "val"


def detect_layout(imagenet_dir: str) -> str:
    """SPLITS_LAYOUT when DIR has a train/ or val/ folder, else CLASSES_LAYOUT.

    A dataset with a class named "train" or "val" therefore needs the splits layout:
    DIR/train/train/, DIR/train/val/.
    """
    for name in (TRAIN_DIR, VALIDATION_DIR):
        if os.path.isdir(os.path.join(imagenet_dir, name)):
            return SPLITS_LAYOUT
    return CLASSES_LAYOUT


def has_folders(directory: str) -> bool:
    """Whether `directory` holds a folder (or a link to one)."""
    return any(os.path.isdir(os.path.join(directory, name)) for name in os.listdir(directory))


def holdout_position(path_in_class: str) -> float:
    """A number in [0, 1) fixed by the file's path relative to its class folder."""
    digest = hashlib.sha256(path_in_class.encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0 ** 64


def is_held_out(path: str, validation_fraction: float) -> bool:
    """Whether the file at `path` (a file directly inside its class folder) is validation."""
    return holdout_position(os.path.basename(path)) < validation_fraction


def hold_out(files: Sequence, validation_fraction: float) -> Tuple[List, List]:
    """Splits ImageFiles (files.py) into (train, validation) by `is_held_out`."""
    train, validation = [], []
    for image_file in files:
        held_out = is_held_out(image_file.path, validation_fraction)
        (validation if held_out else train).append(image_file)
    return train, validation
