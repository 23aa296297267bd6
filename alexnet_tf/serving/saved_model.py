"""A trained classifier as TF Serving loads it: two signatures, written as a new version.

`ServingModule` wraps a Keras model, or an ensemble of them (the mean of their softmax
outputs, `ensemble.py`), with the signatures that `layout.py` describes.
`serving_default` decodes and preprocesses the image bytes in the graph with
`preprocessing.preprocess_for_eval`, the function evaluation uses (not a copy), so a
served image reaches the network exactly as an evaluated one. Before anything is
decoded, every image's size is read from its header and a request holding an image over
the pixel limit (or of an unknown format) fails, naming the image by its index
(`image_header.check_pixel_limit`): a 48 KB PNG can declare 20000x20000 pixels, 1.2 GB
decoded. The limit is fixed at export and saved beside the model. `export` writes the
module as the next version of an export directory, with its warm-up requests, its
preprocessing settings, its labels and, for an ensemble, its members.

Each version is written under a hidden temporary name and renamed into place when it is
complete, so a watching server never loads half a model.
"""

import os
import shutil
from typing import Optional

import tensorflow as tf

from alexnet_tf import ensemble
from alexnet_tf import errors
from alexnet_tf.data import image_header
from alexnet_tf.data import preprocessing
from alexnet_tf.nn import lrn
from alexnet_tf.serving import layout
from alexnet_tf.serving import warmup

TOP_K = 5
_TMP_PREFIX = ".tmp-export-"


def label_strings(labels: Optional[list], num_classes: int):
    """Returns (synsets, names), two lists of `num_classes` strings, from labels.json entries.

    Args:
      labels: [{"index", "synset", "name"}, ...] as in `schema.LABELS_FILE`, or None.
      num_classes: the model's number of outputs.

    Raises:
      ValueError: `labels` does not describe exactly the indices 0..num_classes-1.
    """
    if labels is None:
        return [str(index) for index in range(num_classes)], [""] * num_classes
    by_index = {int(entry["index"]): entry for entry in labels}
    if sorted(by_index) != list(range(num_classes)):
        raise ValueError(f"labels.json must list indices 0..{num_classes - 1} once each (the "
                         f"model has {num_classes} classes), got {len(labels)} entries")
    return ([str(by_index[i].get("synset", "")) for i in range(num_classes)],
            [str(by_index[i].get("name", "")) for i in range(num_classes)])


def _check_not_empty(batch: tf.Tensor, input_name: str) -> None:
    # An empty batch would otherwise fail deep inside the convolutions with a shape error.
    tf.debugging.assert_positive(tf.shape(batch)[0], message=(
            f"{input_name}: expected a batch of at least one image, got an empty batch"))


class ServingModule(tf.Module):
    """Wraps a Keras classifier, or several as an ensemble, with the two serving signatures.

    Attributes:
      serve_image_bytes: tf.function(image_bytes [N] string) -> output dict.
      serve_images: tf.function(images [N, S, S, 3] float32) -> output dict.
    """

    def __init__(self, model, settings: preprocessing.EvalSettings, *,
                 labels: Optional[list] = None, top_k: int = TOP_K,
                 max_pixels: int = image_header.DEFAULT_MAX_PIXELS):
        """Args:
          model: a Keras model mapping mean-subtracted images [N, S, S, 3] to logits [N, C],
            or a list of such models (an ensemble: its probabilities are the mean of theirs).
            Their LRN layers are switched to plain TF ops (`lrn.disable_xla`).
          settings: the run's test-time preprocessing (statistics, mean mode, sizes), as
            from `run_dir.eval_settings`.
          labels: labels.json entries, or None.
          top_k: how many classes to name per image (at most C).
          max_pixels: `serving_default` refuses images whose header declares more
            pixels (width x height); a constant of the graph.

        Raises:
          errors.InvalidInputError: `max_pixels` is not a positive integer.
          ValueError: a model whose input does not match `settings` or whose number of
            classes differs from the first's.
        """
        super().__init__(name="alexnet_serving")
        models = list(model) if isinstance(model, (list, tuple)) else [model]
        if not models:
            raise ValueError("ServingModule needs at least one model")
        num_classes = int(models[0].output_shape[-1])
        for index, member in enumerate(models):
            if tuple(member.input_shape[1:]) != (settings.crop_size, settings.crop_size, 3):
                raise ValueError(f"model {index + 1} takes inputs {member.input_shape[1:]} but "
                                 f"the settings crop {settings.crop_size}x{settings.crop_size}")
            if int(member.output_shape[-1]) != num_classes:
                raise ValueError(f"model {index + 1} scores {member.output_shape[-1]} classes, "
                                 f"model 1 {num_classes}")
            # TF Serving's model server does not run XLA kernels by default: plain ops.
            lrn.disable_xla(member)
        if len(models) == 1:
            self.model = models[0]  # Its variables are the checkpoint's `model` (model_source).
        else:
            # One attribute per member, so each is a tracked child of the SavedModel.
            for index, member in enumerate(models):
                setattr(self, f"member{index}", member)
        self._num_models = len(models)
        self.settings = settings
        self.labels = labels
        self._top_k = min(int(top_k), num_classes)
        self.max_pixels = image_header.check_max_pixels(max_pixels)
        self._synsets, self._names = label_strings(labels, num_classes)
        size = settings.crop_size
        self.serve_image_bytes = tf.function(
                self._serve_image_bytes,
                input_signature=[tf.TensorSpec([None], tf.string, name=layout.IMAGE_BYTES_INPUT)])
        self.serve_images = tf.function(
                self._serve_images,
                input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32,
                                               name=layout.IMAGES_INPUT)])

    def preprocess(self, image_bytes: tf.Tensor) -> tf.Tensor:
        """Encoded images [N] -> float32 [N, S, S, 3] through the eval preprocessing."""
        settings = self.settings
        size = settings.crop_size
        return tf.map_fn(
                lambda one: preprocessing.preprocess_for_eval(
                        one, stats=settings.stats, crop_size=size,
                        resize_size=settings.resize_size, mean_mode=settings.mean_mode),
                image_bytes, fn_output_signature=tf.TensorSpec([size, size, 3], tf.float32))

    def _serve_image_bytes(self, image_bytes):
        _check_not_empty(image_bytes, layout.IMAGE_BYTES_INPUT)
        # Decoding depends on the checked tensor, so nothing is decoded before the check.
        image_bytes = image_header.check_pixel_limit(image_bytes, self.max_pixels,
                                                     layout.IMAGE_BYTES_INPUT)
        return self._outputs(self.preprocess(image_bytes))

    def _serve_images(self, images):
        _check_not_empty(images, layout.IMAGES_INPUT)
        return self._outputs(images)

    def _outputs(self, images):
        probabilities = ensemble.mean_probabilities([  # (N, C)
                tf.nn.softmax(tf.cast(model(images, training=False), tf.float32), axis=-1)
                for model in self.models()])
        scores, classes = tf.math.top_k(probabilities, k=self._top_k)  # (N, k) each
        return {
                "probabilities": probabilities,
                "classes": tf.cast(classes, tf.int64),
                "scores": scores,
                "synsets": tf.gather(tf.constant(self._synsets), classes),
                "names": tf.gather(tf.constant(self._names), classes),
        }

    def models(self) -> list:
        """The Keras model, or the ensemble's members in order."""
        if self._num_models == 1:
            return [self.model]
        return [getattr(self, f"member{index}") for index in range(self._num_models)]

    def signatures(self) -> dict:
        return {layout.SERVING_SIGNATURE: self.serve_image_bytes.get_concrete_function(),
                layout.PREPROCESSED_SIGNATURE: self.serve_images.get_concrete_function()}


def export(module: ServingModule, export_dir: str, version: Optional[int] = None, *,
           model_name: str = "alexnet", verify: bool = True,
           members: Optional[list] = None) -> str:
    """Writes `module` to `export_dir/<version>/` atomically.

    Args:
      module: the ServingModule to save.
      export_dir: the model's base directory (TF Serving's --model_base_path).
      version: a positive integer; default one more than the largest existing version.
      model_name: the model name written into the warm-up requests.
      verify: load the written SavedModel and replay its warm-up requests before the
        version is made visible.
      members: for an ensemble, what each member is (`ensemble.describe`), written to
        assets.extra/alexnet_tf_ensemble.json.

    Returns:
      The path of the new version directory.

    Raises:
      ValueError: `version` is not a positive integer.
      FileExistsError: `export_dir/<version>` already exists (versions are never overwritten).
    """
    version = layout.next_version(export_dir) if version is None else version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise errors.InvalidInputError(f"version must be a positive integer, got {version!r}")
    final_dir = os.path.join(export_dir, str(version))
    if os.path.exists(final_dir):
        raise errors.ExistingOutputError(
                f"{final_dir!r} already exists: choose another --version or "
                "leave it out to take the next free number")
    os.makedirs(export_dir, exist_ok=True)
    tmp_dir = os.path.join(export_dir, f"{_TMP_PREFIX}{version}-{os.getpid()}")
    try:
        tf.saved_model.save(module, tmp_dir, signatures=module.signatures())
        warmup.write_warmup(tmp_dir, module.settings.crop_size, model_name)
        layout.save_extras(tmp_dir, module.settings, module.labels, module.max_pixels,
                           members)
        if verify:
            warmup.replay_warmup(tmp_dir)
        if os.path.exists(final_dir):  # Another export took the number meanwhile.
            raise errors.ExistingOutputError(f"{final_dir!r} appeared during the export")
        os.rename(tmp_dir, final_dir)  # Atomic on one file system.
    finally:
        if os.path.exists(tmp_dir):
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return final_dir
