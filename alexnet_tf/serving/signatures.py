"""A trained model as a SavedModel for TF Serving: signatures, warm-up, versioned export.

The exported directory is what TF Serving's file-system source expects:

  export_dir/
    1/                                  one integer-named directory per version
      saved_model.pb  variables/
      assets.extra/tf_serving_warmup_requests   TFRecord of PredictionLog
      assets.extra/alexnet_tf_preprocessing.json, alexnet_tf_stats.npz
                                        the eval preprocessing settings, for
                                        `alexnet_tf.evaluate --saved_model` (ignored by TF Serving)
    2/ ...

Signatures:
  serving_default  image_bytes: string [N] (encoded JPEG or PNG, any size), preprocessed
                   in the graph by `preprocessing.preprocess_for_eval` (the eval path the
                   model was evaluated with, not a copy).
  preprocessed     images: float32 [N, S, S, 3], already mean-subtracted (0..255 scale).
Both return probabilities [N, C] and, for the top k = min(5, C) classes, classes (int64
indices), scores (their probabilities), synsets and names (strings from labels.json; the
index as a string and "" when the run has no labels).

Each version is written under a hidden temporary name and renamed into place when it is
complete, so a watching server never loads half a model; TF Serving ignores directory
names that are not integers, so a crashed export leaves nothing it would load.
"""

import os
import shutil
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from alexnet_tf.evaluation import classification as evaluation
from alexnet_tf.nn import lrn
from alexnet_tf import run_dir as model_dir_lib
from alexnet_tf.data import preprocessing

SERVING_SIGNATURE = "serving_default"
PREPROCESSED_SIGNATURE = "preprocessed"
IMAGE_BYTES_INPUT = "image_bytes"
IMAGES_INPUT = "images"
EXTRA_ASSETS_DIR = evaluation.SAVED_MODEL_EXTRA_DIR
WARMUP_FILE = "tf_serving_warmup_requests"
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
    """Wraps a Keras classifier with the two serving signatures.

    Attributes:
      serve_image_bytes: tf.function(image_bytes [N] string) -> output dict.
      serve_images: tf.function(images [N, S, S, 3] float32) -> output dict.
    """

    def __init__(self, model, settings: evaluation.EvalSettings, *,
                 labels: Optional[list] = None, top_k: int = TOP_K):
        """Args:
          model: a Keras model mapping mean-subtracted images [N, S, S, 3] to logits [N, C].
            Its LRN layers are switched to plain TF ops (`lrn.disable_xla`).
          settings: the run's test-time preprocessing (statistics, mean mode, sizes), as
            from `evaluation.eval_settings`.
          labels: labels.json entries, or None.
          top_k: how many classes to name per image (at most C).
        """
        super().__init__(name="alexnet_serving")
        num_classes = int(model.output_shape[-1])
        if tuple(model.input_shape[1:]) != (settings.crop_size, settings.crop_size, 3):
            raise ValueError(f"the model takes inputs {model.input_shape[1:]} but the settings "
                             f"crop {settings.crop_size}x{settings.crop_size}")
        # TF Serving's model server does not run XLA kernels by default: trace plain ops.
        lrn.disable_xla(model)
        self.model = model
        self.settings = settings
        self._top_k = min(int(top_k), num_classes)
        self._synsets, self._names = label_strings(labels, num_classes)
        size = settings.crop_size
        self.serve_image_bytes = tf.function(
                self._serve_image_bytes,
                input_signature=[tf.TensorSpec([None], tf.string, name=IMAGE_BYTES_INPUT)])
        self.serve_images = tf.function(
                self._serve_images,
                input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32,
                                               name=IMAGES_INPUT)])

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
        _check_not_empty(image_bytes, IMAGE_BYTES_INPUT)
        return self._outputs(self.preprocess(image_bytes))

    def _serve_images(self, images):
        _check_not_empty(images, IMAGES_INPUT)
        return self._outputs(images)

    def _outputs(self, images):
        logits = tf.cast(self.model(images, training=False), tf.float32)  # (N, C)
        probabilities = tf.nn.softmax(logits, axis=-1)
        scores, classes = tf.math.top_k(probabilities, k=self._top_k)  # (N, k) each
        return {
                "probabilities": probabilities,
                "classes": tf.cast(classes, tf.int64),
                "scores": scores,
                "synsets": tf.gather(tf.constant(self._synsets), classes),
                "names": tf.gather(tf.constant(self._names), classes),
        }

    def signatures(self) -> dict:
        return {SERVING_SIGNATURE: self.serve_image_bytes.get_concrete_function(),
                PREPROCESSED_SIGNATURE: self.serve_images.get_concrete_function()}


def module_from_model_dir(model_dir: str, checkpoint: Optional[str] = None, *,
                          stats_path: Optional[str] = None,
                          mean_mode: Optional[str] = None) -> ServingModule:
    """A ServingModule for a training run: weights, labels.json and preprocessing settings.

    Args:
      model_dir: a training run directory (see alexnet_tf.run_dir).
      checkpoint: a checkpoint prefix or name (e.g. "ckpt-12"); default the latest.
      stats_path, mean_mode: override what the run's config says (see
        `evaluation.eval_settings`).
    """
    model, config, _ = evaluation.restore_model(model_dir, checkpoint)
    settings = evaluation.eval_settings(config, stats_path=stats_path, mean_mode=mean_mode)
    return ServingModule(model, settings, labels=model_dir_lib.read_labels(model_dir))


def sample_images(size: int = 300) -> list:
    """Two small encoded images (a JPEG and a PNG, not square) for warm-up requests."""
    rows = np.linspace(0, 255, size, dtype=np.float32)[:, None]
    cols = np.linspace(255, 0, size * 4 // 3, dtype=np.float32)[None, :]
    # (size, 4/3 size, 3): a colour gradient, so resize and crop both have work to do.
    pixels = np.stack(np.broadcast_arrays(rows, cols, (rows + cols) / 2), axis=-1)
    pixels = tf.constant(pixels.astype(np.uint8))
    return [tf.io.encode_jpeg(pixels).numpy(), tf.io.encode_png(pixels).numpy()]


def warmup_records(crop_size: int, model_name: str,
                   images: Optional[Sequence[bytes]] = None) -> list:
    """Serialized PredictionLog records: Predict requests for both signatures.

    Args:
      crop_size: S, the input size of the `preprocessed` signature.
      model_name: the name TF Serving serves the model under (--model_name).
      images: encoded images for `serving_default`; default `sample_images()`.

    Returns:
      A list of serialized `tensorflow.serving.PredictionLog` protos.
    """
    # Imported here: only export needs TF Serving's protos.
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    images = list(images) if images is not None else sample_images()
    requests = []
    # One request per image and one with the whole batch: TF Serving warms each batch size.
    for batch in [[image] for image in images] + [images]:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = SERVING_SIGNATURE
        request.inputs[IMAGE_BYTES_INPUT].CopyFrom(
                tf.make_tensor_proto(batch, dtype=tf.string, shape=[len(batch)]))
        requests.append(request)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = PREPROCESSED_SIGNATURE
    request.inputs[IMAGES_INPUT].CopyFrom(
            tf.make_tensor_proto(np.zeros([1, crop_size, crop_size, 3], np.float32)))
    requests.append(request)
    return [prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString()
            for request in requests]


def replay_warmup(saved_model_dir: str, loaded=None) -> int:
    """Runs every warm-up request against the SavedModel, as TF Serving does at load time.

    Args:
      saved_model_dir: one version directory.
      loaded: the already loaded SavedModel, or None to load it.

    Returns:
      The number of requests run.

    Raises:
      FileNotFoundError: the version has no warm-up file.
      tf.errors.OpError: a request fails.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(saved_model_dir, EXTRA_ASSETS_DIR, WARMUP_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no warm-up file at {path!r}")
    loaded = loaded if loaded is not None else tf.saved_model.load(saved_model_dir)
    count = 0
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        signature = loaded.signatures[request.model_spec.signature_name]
        signature(**{key: tf.make_ndarray(value) for key, value in request.inputs.items()})
        count += 1
    return count


def existing_versions(export_dir: str) -> list:
    """The sorted integer version numbers already in `export_dir` (temporaries ignored)."""
    if not os.path.isdir(export_dir):
        return []
    return sorted(int(name) for name in os.listdir(export_dir)
                  if name.isdigit() and os.path.isdir(os.path.join(export_dir, name)))


def next_version(export_dir: str) -> int:
    versions = existing_versions(export_dir)
    return versions[-1] + 1 if versions else 1


def export(module: ServingModule, export_dir: str, version: Optional[int] = None, *,
           model_name: str = "alexnet", verify: bool = True) -> str:
    """Writes `module` to `export_dir/<version>/` atomically.

    Args:
      module: the ServingModule to save.
      export_dir: the model's base directory (TF Serving's --model_base_path).
      version: a positive integer; default one more than the largest existing version.
      model_name: the model name written into the warm-up requests.
      verify: load the written SavedModel and replay its warm-up requests before the
        version is made visible.

    Returns:
      The path of the new version directory.

    Raises:
      ValueError: `version` is not a positive integer.
      FileExistsError: `export_dir/<version>` already exists (versions are never overwritten).
    """
    version = next_version(export_dir) if version is None else version
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}")
    final_dir = os.path.join(export_dir, str(version))
    if os.path.exists(final_dir):
        raise FileExistsError(f"{final_dir!r} already exists: choose another --version or "
                              "leave it out to take the next free number")
    os.makedirs(export_dir, exist_ok=True)
    tmp_dir = os.path.join(export_dir, f"{_TMP_PREFIX}{version}-{os.getpid()}")
    try:
        tf.saved_model.save(module, tmp_dir, signatures=module.signatures())
        extra_dir = os.path.join(tmp_dir, EXTRA_ASSETS_DIR)
        os.makedirs(extra_dir)
        with tf.io.TFRecordWriter(os.path.join(extra_dir, WARMUP_FILE)) as writer:
            for record in warmup_records(module.settings.crop_size, model_name):
                writer.write(record)
        evaluation.save_settings(module.settings, extra_dir)
        if verify:
            replay_warmup(tmp_dir)
        if os.path.exists(final_dir):  # Another export took the number meanwhile.
            raise FileExistsError(f"{final_dir!r} appeared during the export")
        os.rename(tmp_dir, final_dir)  # Atomic on one file system.
    finally:
        if os.path.exists(tmp_dir):
            shutil.rmtree(tmp_dir, ignore_errors=True)
    return final_dir
