"""A trained classifier, from wherever the user names it: a run directory or an export.

  load(model_dir=M)                  M's latest checkpoint (or `checkpoint`)
  load(saved_model=E)                an exported SavedModel: a version directory E/3, or
                                     the export directory E (its highest version)
  load(saved_model=E, model_dir=M)   the SavedModel's weights loaded into M's Keras model,
                                     for the tools that need the layers

Whatever the source, the result carries the preprocessing the model was trained with
(`preprocessing.EvalSettings`) and its class names, so evaluate, export, predict and
visualize all preprocess and label images the same way.
"""

import dataclasses
import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf import run_dir
from alexnet_tf.data import preprocessing
from alexnet_tf.data import stats as stats_lib
from alexnet_tf.serving import layout


@dataclasses.dataclass
class LoadedModel:
    """A trained classifier and what it needs to be used.

    Attributes:
      keras_model: the Keras model with trained weights, or None (a SavedModel alone).
      saved_model: the loaded SavedModel (`tf.saved_model.load`), or None (a checkpoint).
      settings: the test-time preprocessing (as in training).
      labels: labels.json entries [{"index", "synset", "name"}], or None.
      path: the checkpoint prefix or the SavedModel version directory.
      description: what was loaded, for logs and figure titles.
    """
    keras_model: Optional[object]
    saved_model: Optional[object]
    settings: preprocessing.EvalSettings
    labels: Optional[list]
    path: str
    description: str

    @property
    def crop_size(self) -> int:
        return self.settings.crop_size

    @property
    def num_classes(self) -> int:
        """C, the number of classes the model scores."""
        if self.keras_model is not None:
            return int(self.keras_model.output_shape[-1])
        return int(self.signature.structured_outputs["probabilities"].shape[-1])

    @property
    def signature(self) -> Optional[Callable]:
        """The SavedModel's `preprocessed` signature (images -> outputs), or None."""
        if self.saved_model is None:
            return None
        return self.saved_model.signatures[layout.PREPROCESSED_SIGNATURE]

    @property
    def identity(self) -> str:
        """A string naming these exact weights (path, size and time of their index)."""
        index = (self.path + ".index" if self.saved_model is None
                 else os.path.join(self.path, "variables", "variables.index"))
        info = os.stat(index) if os.path.exists(index) else None
        return (f"{os.path.abspath(self.path)}|{info.st_size if info else 0}|"
                f"{info.st_mtime_ns if info else 0}")

    def require_keras(self, tool: str):
        """Returns the Keras model, or raises a ValueError saying why `tool` needs one."""
        if self.keras_model is None:
            raise errors.InvalidInputError(
                    f"{tool} needs the network's layers (weights and activations), which a "
                    "SavedModel's signatures do not expose: pass --model_dir=<the training "
                    "run> as well (its config.json gives the model; the SavedModel's weights "
                    "are loaded into it), or use the run's checkpoint alone")
        return self.keras_model

    def probabilities_fn(self) -> Callable[[tf.Tensor], tf.Tensor]:
        """A function: preprocessed images float32 (N, S, S, 3) -> softmax (N, C)."""
        if self.keras_model is None:
            signature = self.signature
            return lambda images: signature(images=images)["probabilities"]
        model = self.keras_model

        @tf.function(reduce_retracing=True)
        def probabilities(images):
            logits = tf.cast(model(images, training=False), tf.float32)
            return tf.nn.softmax(logits, axis=-1)

        return probabilities

    def probabilities(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """Softmax probabilities (N, C) of preprocessed images (N, S, S, 3), in batches."""
        function = self.probabilities_fn()
        return np.concatenate([
                function(tf.constant(images[start:start + batch_size], tf.float32)).numpy()
                for start in range(0, len(images), batch_size)])


def load(*, model_dir: Optional[str] = None, checkpoint: Optional[str] = None,
         saved_model: Optional[str] = None, stats_path: Optional[str] = None,
         mean_mode: Optional[str] = None) -> LoadedModel:
    """Loads a trained classifier (see the module docstring for the combinations).

    Args:
      model_dir: a run directory.
      checkpoint: a checkpoint of model_dir, by prefix or name (e.g. ckpt-12).
      saved_model: a SavedModel version directory or an export directory.
      stats_path, mean_mode: override the recorded preprocessing (must match training).

    Raises:
      ValueError: no source, or `checkpoint` without `model_dir` or with `saved_model`;
        a model_dir whose model does not reproduce the SavedModel.
      FileNotFoundError: a missing run, checkpoint, SavedModel or statistics file.
    """
    if not (model_dir or saved_model):
        raise errors.InvalidInputError(
                "no model given: pass --model_dir (a training run) or --saved_model "
                "(an export)")
    if checkpoint and (saved_model or not model_dir):
        raise errors.InvalidInputError(
                "--checkpoint names a checkpoint of --model_dir; it cannot be used "
                "without --model_dir or with --saved_model")
    if not saved_model:
        model, config, path = run_dir.restore_model(model_dir, checkpoint)
        settings = run_dir.eval_settings(config, model_dir=model_dir, stats_path=stats_path,
                                         mean_mode=mean_mode)
        return LoadedModel(model, None, settings, run_dir.read_labels(model_dir), path,
                           f"{config['model'].get('name', 'model')} {os.path.basename(path)}")
    return _load_saved_model(layout.resolve_version(saved_model), model_dir, stats_path,
                             mean_mode)


def _load_saved_model(version_dir: str, model_dir: Optional[str], stats_path: Optional[str],
                      mean_mode: Optional[str]) -> LoadedModel:
    loaded = tf.saved_model.load(version_dir)
    if layout.PREPROCESSED_SIGNATURE not in loaded.signatures:
        raise errors.InvalidInputError(
                f"{version_dir!r} has no {layout.PREPROCESSED_SIGNATURE!r} signature "
                f"(it has {sorted(loaded.signatures)}): export it with "
                "`python -m alexnet_tf.export`")
    signature = loaded.signatures[layout.PREPROCESSED_SIGNATURE]
    has_settings = os.path.exists(os.path.join(version_dir, layout.EXTRA_DIR,
                                               layout.SETTINGS_FILE))
    if has_settings or not model_dir:
        settings = layout.load_settings(version_dir)
        if stats_path:
            settings = dataclasses.replace(settings, stats=stats_lib.load_stats(stats_path))
        if mean_mode:
            settings = dataclasses.replace(settings, mean_mode=mean_mode)
    else:
        settings = run_dir.eval_settings(run_dir.read_config(model_dir), model_dir=model_dir,
                                         stats_path=stats_path, mean_mode=mean_mode)
    labels = layout.load_labels(version_dir)
    members = layout.load_members(version_dir)
    if members and model_dir:
        raise errors.InvalidInputError(
                f"--saved_model={version_dir} is an ensemble of {len(members)} models, which "
                "has no single set of layers to load into --model_dir's model: give one "
                "member's --model_dir alone")
    keras_model = None
    if model_dir:
        keras_model = _keras_from_saved_model(version_dir, model_dir, signature,
                                              settings.crop_size)
        labels = labels or run_dir.read_labels(model_dir)
    name = os.path.basename(os.path.normpath(version_dir))
    parent = os.path.basename(os.path.dirname(os.path.normpath(version_dir)))
    ensemble = f" (ensemble of {len(members)})" if members else ""
    return LoadedModel(keras_model, loaded, settings, labels, version_dir,
                       f"SavedModel {parent}/{name}{ensemble}")


def _keras_from_saved_model(version_dir: str, model_dir: str, signature, crop_size: int):
    """Rebuilds the run's Keras model and loads the SavedModel's variables into it."""
    keras_model = run_dir.build_model(run_dir.read_config(model_dir)["model"])
    # The export's module tracks the Keras model as `model`: its variables are a checkpoint.
    tf.train.Checkpoint(model=keras_model).restore(
            os.path.join(version_dir, "variables", "variables")).expect_partial()
    probe = tf.random.stateless_normal([1, crop_size, crop_size, 3], [1, 2], stddev=50.0)
    expected = signature(images=probe)["probabilities"].numpy()
    got = tf.nn.softmax(keras_model(probe, training=False)).numpy()
    if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-5):
        raise errors.InvalidInputError(
                f"the model in {model_dir!r}/config.json does not reproduce "
                f"{version_dir!r}: pass the --model_dir it was exported from")
    return keras_model
