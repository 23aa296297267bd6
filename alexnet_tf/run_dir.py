"""The layout of a training run's `model_dir`, shared by train, evaluate, export, visualize.

  model_dir/
    config.json        the resolved run configuration (written once by train; see config.py).
                       Its "model" entry is the model spec below.
    labels.json        copied from the data directory (schema.LABELS_FILE), when known
    checkpoints/       tf.train.CheckpointManager directory; each checkpoint holds at least
                       `model=` (plus optimizer, step, iterator... written by the trainer)

A model spec is a JSON-able dict: {"name": "alexnet" | "zfnet", **builder kwargs},
e.g. {"name": "alexnet", "num_classes": 10, "variant": "paper", "input_size": 224}.
"""

import json
import os
from typing import Optional

import tensorflow as tf

from alexnet_tf.data import schema

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"


def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINT_DIR)


def read_config(model_dir: str) -> dict:
    """Returns the run configuration saved in `model_dir`.

    Raises:
      FileNotFoundError: `model_dir` holds no config.json (not a training run directory).
    """
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path!r} not found: --model_dir must be a directory written by "
                                "`python -m alexnet_tf.train`")
    with open(path) as f:
        return json.load(f)


def read_labels(model_dir: str) -> Optional[list]:
    """Returns the label list [{"index", "synset", "name"}, ...] or None when unknown."""
    path = os.path.join(model_dir, schema.LABELS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def build_model(spec: dict):
    """Builds the (untrained) Keras model a spec describes."""
    from alexnet_tf.nn import models  # Local import: models pulls in Keras.
    return models.build_model(**spec)


def latest_checkpoint(model_dir: str) -> str:
    path = tf.train.latest_checkpoint(checkpoint_dir(model_dir))
    if path is None:
        raise FileNotFoundError(f"no checkpoint in {checkpoint_dir(model_dir)!r}")
    return path


def restore_model(model_dir: str, checkpoint: Optional[str] = None):
    """Builds the model saved in `model_dir` and restores its weights.

    Args:
      model_dir: a training run directory.
      checkpoint: a checkpoint prefix (e.g. `.../checkpoints/ckpt-12`); default the latest.

    Returns:
      (keras.Model, config dict).
    """
    config = read_config(model_dir)
    model = build_model(config["model"])
    path = checkpoint or latest_checkpoint(model_dir)
    tf.train.Checkpoint(model=model).restore(path).expect_partial().assert_existing_objects_matched()
    return model, config
