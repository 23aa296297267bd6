"""The layout of a training run's directory (`--model_dir`), shared by every command.

  model_dir/
    config.json          the resolved run configuration, written by train
                         (training/config.py); its "model" entry is the model spec
    labels.json          the class list [{"index", "synset", "name"}, ...] (data.schema)
    stats.npz            the colour statistics of imported weights (import_weights);
                         config.json's "stats_path" names it relative to model_dir
    model_flags.cfg      an import's train flags for its net and preprocessing, for
                         `train --flagfile=<it> --init_checkpoint=model_dir`
    checkpoints/         tf.train.CheckpointManager directory, ckpt-<step>; each
                         checkpoint holds at least `model=`; damaged ones the trainer
                         set aside are corrupt-ckpt-<step>.* (checkpoint_files.py)
    train_history.json   validation results per epoch
    config_history.json  the settings a resumed run changed, and from which checkpoint
    logs/train, logs/validation   TensorBoard
    eval/                evaluate's results, one JSON per checkpoint

A model spec is a JSON-able dict {"name": "alexnet" | "zfnet", **builder kwargs}, e.g.
{"name": "alexnet", "num_classes": 10, "variant": "paper", "input_size": 224}.
Evaluate, export, visualize and `train --init_checkpoint` read this layout.
"""

import json
import os
from typing import Optional

from alexnet_tf import atomic
from alexnet_tf import checkpoint_files
from alexnet_tf import errors
from alexnet_tf.data import schema
from alexnet_tf.data import stats as stats_lib

CONFIG_FILE = "config.json"
LABELS_FILE = schema.LABELS_FILE
MODEL_FLAGS_FILE = "model_flags.cfg"
CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "train_history.json"
CONFIG_HISTORY_FILE = "config_history.json"  # settings changed when the run resumed
LOG_DIR = "logs"
EVAL_DIR = "eval"


def checkpoint_dir(model_dir: str) -> str:
    return os.path.join(model_dir, CHECKPOINT_DIR)


def read_config(model_dir: str) -> dict:
    """Returns the run configuration saved in `model_dir`.

    Raises:
      errors.MissingInputError: `model_dir` does not exist or holds no config.json (not a
        run directory); errors.InvalidInputError: it is a file.
    """
    errors.check_directory(model_dir, "--model_dir",
                           "a run written by `python -m alexnet_tf.train` (config.json, "
                           "checkpoints/)")
    path = os.path.join(model_dir, CONFIG_FILE)
    if not os.path.exists(path):
        raise errors.MissingInputError(
                f"{path!r} not found: --model_dir must be a directory written by "
                "`python -m alexnet_tf.train`")
    with open(path) as f:
        return json.load(f)


def read_labels(model_dir: str) -> Optional[list]:
    """Returns the label list [{"index", "synset", "name"}, ...] or None when unknown."""
    path = os.path.join(model_dir, LABELS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_labels(model_dir: str, labels: list) -> None:
    """Writes the label list to model_dir/labels.json atomically."""
    atomic.write_json(os.path.join(model_dir, LABELS_FILE), labels, indent=1)


def build_model(spec: dict, tower_devices=None):
    """Builds the (untrained) Keras model a spec describes.

    Args:
      spec: a model spec (see the module docstring).
      tower_devices: the paper variant's two tower devices, or None for the default
        device. Weights are the same either way.
    """
    from alexnet_tf.nn import models  # Local import: models pulls in Keras.
    spec = {key: value for key, value in spec.items() if key != "tower_devices"}
    if tower_devices:
        spec["tower_devices"] = tuple(tower_devices)
    return models.build_model(**spec)


def latest_checkpoint(model_dir: str) -> str:
    """The newest checkpoint prefix in model_dir/checkpoints that reads whole.

    The checkpoints are found from their files (an unreadable state file does not matter);
    a newer one that does not read is skipped with a warning naming it and what is wrong.

    Raises:
      errors.MissingInputError: there is no checkpoint.
      errors.CorruptCheckpointError: there are checkpoints, but none reads.
    """
    from absl import logging
    directory = checkpoint_dir(model_dir)
    _, state_problem = checkpoint_files.read_state(directory)
    if state_problem:
        logging.warning("The checkpoint state file %s does not read (%s): using the "
                        "checkpoint files found beside it", os.path.join(
                                directory, checkpoint_files.STATE_FILE), state_problem)
    path, damaged = checkpoint_files.newest_intact(directory)
    if path is None:
        raise errors.MissingInputError(f"no checkpoint in {directory!r}: --model_dir must be "
                                       "a run that `python -m alexnet_tf.train` has saved")
    for bad in damaged:
        logging.warning("Skipping damaged checkpoint %s: %s. Using %s, the newest one that "
                        "reads whole", bad.prefix, bad.problem, path)
    return path


def resolve_checkpoint(model_dir: str, checkpoint: Optional[str] = None) -> str:
    """A checkpoint prefix: the latest, a full prefix, or a name inside model_dir/checkpoints.

    A checkpoint named explicitly is checked too, and never replaced by another.

    Raises:
      errors.MissingInputError: no such checkpoint (or none at all).
      errors.CorruptCheckpointError: the named checkpoint, or every one, does not read.
    """
    import tensorflow as tf
    if not checkpoint:
        return latest_checkpoint(model_dir)
    for path in (checkpoint, os.path.join(checkpoint_dir(model_dir), checkpoint)):
        if tf.io.gfile.exists(path + ".index"):
            problem = checkpoint_files.problem(path)
            if problem:
                raise errors.CorruptCheckpointError(
                        f"checkpoint {checkpoint!r} ({path}) is damaged: {problem}; name "
                        "another, or omit it to use the newest one that reads whole")
            return path
    raise errors.MissingInputError(
            f"checkpoint {checkpoint!r} not found (expected a prefix such as "
            f"{checkpoint_dir(model_dir)}/ckpt-12, or its name ckpt-12)")


def restore_model(model_dir: str, checkpoint: Optional[str] = None):
    """Builds a run's model on the default device and restores its weights.

    A paper-variant run may have been trained with tower devices; evaluation and
    exported graphs must not pin GPUs, so the model is rebuilt without them (the
    variables are the same).

    Args:
      model_dir: a run directory.
      checkpoint: a checkpoint prefix or name; default the newest that reads whole.

    Returns:
      (keras.Model, config dict, checkpoint path).

    Raises:
      errors.MissingInputError, errors.CorruptCheckpointError: see `resolve_checkpoint`.
    """
    import tensorflow as tf
    config = read_config(model_dir)
    model = build_model(config["model"])
    path = resolve_checkpoint(model_dir, checkpoint)
    tf.train.Checkpoint(model=model).restore(path).expect_partial() \
        .assert_existing_objects_matched()
    return model, config, path


def eval_settings(config: dict, *, model_dir: Optional[str] = None,
                  stats_path: Optional[str] = None, mean_mode: Optional[str] = None):
    """The test-time preprocessing of a run, from its config.json: the same as in training.

    Args:
      config: the run configuration (`read_config`): the model spec's input_size gives the
        crop; "resize_size" and "mean_mode" are read when present; the statistics are
        "stats_path", else data_dir/stats.npz, else the shipped ImageNet values, as in
        training (`stats.resolve_path`).
      model_dir: the run directory; a relative "stats_path" naming a file inside it (an
        import's stats.npz) is read from there, wherever the directory has moved.
      stats_path: use this statistics file instead.
      mean_mode: use this mean mode instead ("image" or "rgb").

    Returns:
      preprocessing.EvalSettings.

    Raises:
      FileNotFoundError: the statistics file does not exist.
      ValueError: a bad mean mode.
    """
    from alexnet_tf.data import preprocessing  # Local import: preprocessing pulls in TF.
    recorded = config.get("stats_path")
    if (recorded and model_dir and not os.path.isabs(recorded)
            and os.path.isfile(os.path.join(model_dir, recorded))):
        recorded = os.path.join(model_dir, recorded)
    stats_path = stats_lib.resolve_path(stats_path or recorded, config.get("data_dir"))
    mean_mode = mean_mode or config.get("mean_mode") or "image"
    if mean_mode not in preprocessing.MEAN_MODES:
        raise errors.InvalidInputError(
                f"mean_mode must be one of {preprocessing.MEAN_MODES}, got {mean_mode!r}")
    return preprocessing.EvalSettings(
            stats=stats_lib.load_stats(stats_path), mean_mode=mean_mode,
            crop_size=int(config["model"].get("input_size", preprocessing.CROP_SIZE)),
            resize_size=int(config.get("resize_size") or preprocessing.RESIZE_SIZE))
