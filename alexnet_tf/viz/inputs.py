"""What the visualisations read: images (files or TFRecords) and a trained model.

Images come from image files or the converter's TFRecord shards (parsed with
`schema.parse_example`) and go through `preprocessing.preprocess_for_eval`, the
evaluation path, for the network; `preprocessing.eval_crops` gives the same crop as uint8
for display. Nothing here preprocesses on its own.

A model comes from a training run (`--model_dir`, see model_dir.py: every tool works) or
a SavedModel written by `alexnet_tf.export` (`--saved_model`, with the preprocessing
settings export stores in assets.extra). A SavedModel's signatures only give
probabilities, enough for `predictions` and the probability map of `occlusion`.
Tools that need layer weights or activations (kernels, neighbors, deconv, occlusion's
feature map) rebuild the Keras model and load the SavedModel's variables into it; that
needs the model spec, from the training run's config.json (pass `--model_dir` as well).
"""

import dataclasses
import glob
import hashlib
import os
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from alexnet_tf.evaluation import classification as evaluation
from alexnet_tf import run_dir as model_dir_lib
from alexnet_tf.data import preprocessing
from alexnet_tf.data import schema
from alexnet_tf.data import stats as stats_lib

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")
PREPROCESSED_SIGNATURE = "preprocessed"  # serving.PREPROCESSED_SIGNATURE


@dataclasses.dataclass
class ImageRecord:
    """One encoded image and where it came from.

    Attributes:
      name: a display name (file name, or the record's stored file name).
      encoded: the encoded (JPEG/PNG...) bytes.
      label: the class index when known (TFRecords), else None.
      source: the image file or TFRecord shard path.
      index: the record's position in its shard (0 for an image file).
    """
    name: str
    encoded: bytes
    label: Optional[int]
    source: str
    index: int = 0


def is_tfrecord(path: str) -> bool:
    name = os.path.basename(path)
    return schema.parse_shard_name(name) is not None or name.endswith(TFRECORD_SUFFIXES)


def expand_paths(patterns: Sequence[str]) -> List[str]:
    """Expands globs and directories (every file in it) into a sorted-per-pattern path list.

    Raises:
      FileNotFoundError: a pattern matches nothing.
    """
    paths = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            matches = sorted(os.path.join(pattern, name) for name in os.listdir(pattern)
                             if os.path.isfile(os.path.join(pattern, name)))
        else:
            matches = sorted(glob.glob(pattern))
        if not matches:
            raise FileNotFoundError(f"{pattern!r} matches no image file or TFRecord shard")
        paths.extend(matches)
    return paths


def _record(path: str, index: int, serialized) -> ImageRecord:
    example = schema.parse_example(serialized)
    name = example[schema.IMAGE_FILENAME].numpy().decode() or f"{os.path.basename(path)}:{index}"
    return ImageRecord(name, example[schema.IMAGE_ENCODED].numpy(),
                       int(example[schema.LABEL].numpy()), path, index)


def _records_of_shard(path: str) -> Iterator[ImageRecord]:
    for index, serialized in enumerate(tf.data.TFRecordDataset(path)):
        yield _record(path, index, serialized)


def read_images(patterns: Sequence[str], limit: Optional[int] = None) -> List[ImageRecord]:
    """Reads images from files, directories, globs and TFRecord shards, in order.

    Args:
      patterns: image files, TFRecord shards, directories or globs of either.
      limit: stop after this many images (None: all).

    Raises:
      FileNotFoundError: a pattern matches nothing.
      ValueError: no image was found.
    """
    records = []
    for path in expand_paths(patterns):
        if limit is not None and len(records) >= limit:
            break
        if is_tfrecord(path):
            for record in _records_of_shard(path):
                records.append(record)
                if limit is not None and len(records) >= limit:
                    break
        else:
            with open(path, "rb") as f:
                records.append(ImageRecord(os.path.basename(path), f.read(), None, path))
    if not records:
        raise ValueError(f"no images in {list(patterns)}")
    return records


def read_record(source: str, index: int) -> ImageRecord:
    """Reads one image back given its `source` and `index` (as stored in a feature cache)."""
    if not is_tfrecord(source):
        with open(source, "rb") as f:
            return ImageRecord(os.path.basename(source), f.read(), None, source)
    # skip() reads past the earlier records without parsing them.
    for serialized in tf.data.TFRecordDataset(source).skip(index).take(1):
        return _record(source, index, serialized)
    raise IndexError(f"{source!r} has no record {index}")


def sources_digest(paths: Sequence[str]) -> str:
    """A hash of the files' paths, sizes and modification times (a cache key part)."""
    digest = hashlib.sha256()
    for path in paths:
        info = os.stat(path)
        digest.update(f"{os.path.abspath(path)}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


@dataclasses.dataclass
class LoadedModel:
    """A trained classifier as the visualisations use it.

    Attributes:
      keras_model: the Keras model with trained weights, or None (SavedModel without spec).
      preprocessed_fn: the SavedModel's `preprocessed` signature, or None.
      settings: the run's test-time preprocessing (evaluation.EvalSettings).
      labels: labels.json entries [{"index", "synset", "name"}], or None.
      identity: a string naming the exact weights (for cache keys).
      description: what was loaded, for figure titles.
    """
    keras_model: Optional[object]
    preprocessed_fn: Optional[Callable]
    settings: evaluation.EvalSettings
    labels: Optional[list]
    identity: str
    description: str

    @property
    def crop_size(self) -> int:
        return self.settings.crop_size

    def require_keras(self, tool: str):
        """Returns the Keras model, or raises a ValueError saying why `tool` needs one."""
        if self.keras_model is None:
            raise ValueError(
                f"`{tool}` needs the network's layers (weights and activations), which a "
                "SavedModel's signatures do not expose: pass --model_dir=<the training run> as "
                "well (its config.json gives the model spec; the SavedModel's variables are "
                "loaded into it), or use the training run's checkpoint alone")
        return self.keras_model

    def probabilities(self, images, batch_size: int = 32) -> np.ndarray:
        """Softmax probabilities (N, C) for mean-subtracted images (N, S, S, 3)."""
        outputs = []
        for start in range(0, len(images), batch_size):
            batch = tf.constant(images[start:start + batch_size], tf.float32)
            if self.keras_model is not None:
                outputs.append(tf.nn.softmax(self.keras_model(batch, training=False)).numpy())
            else:
                outputs.append(self.preprocessed_fn(images=batch)["probabilities"].numpy())
        return np.concatenate(outputs)

    def preprocess(self, records: Sequence[ImageRecord], ten_crop: bool = False):
        """(network inputs float32 (N, S, S, 3) or (N, 10, S, S, 3), display uint8 (N, S, S, 3))."""
        settings = self.settings
        inputs, display = [], []
        for record in records:
            encoded = tf.constant(record.encoded)
            inputs.append(preprocessing.preprocess_for_eval(
                encoded, stats=settings.stats, crop_size=settings.crop_size,
                resize_size=settings.resize_size, ten_crop=ten_crop,
                mean_mode=settings.mean_mode).numpy())
            display.append(preprocessing.eval_crops(
                encoded, crop_size=settings.crop_size,
                resize_size=settings.resize_size)[preprocessing.IMAGE_KEY][0].numpy())
        return np.stack(inputs), np.stack(display)


def _checkpoint_identity(path: str) -> str:
    index = path + ".index"
    info = os.stat(index) if os.path.exists(index) else None
    return f"{os.path.abspath(path)}|{info.st_size if info else 0}|{info.st_mtime_ns if info else 0}"


def load_model_dir(model_dir: str, checkpoint: Optional[str] = None,
                   stats_path: Optional[str] = None) -> LoadedModel:
    """Loads a training run's model (latest or given checkpoint) and its eval settings."""
    model, config, path = evaluation.restore_model(model_dir, checkpoint)
    settings = evaluation.eval_settings(config, stats_path=stats_path)
    return LoadedModel(model, None, settings, model_dir_lib.read_labels(model_dir),
                       _checkpoint_identity(path),
                       f"{config['model'].get('name', 'model')} {os.path.basename(path)}")


def _keras_from_saved_model(saved_model: str, model_dir: str, signature, crop_size: int):
    """Rebuilds the run's Keras model and loads the SavedModel's variables into it."""
    config = model_dir_lib.read_config(model_dir)
    spec = {key: value for key, value in config["model"].items() if key != "tower_devices"}
    keras_model = model_dir_lib.build_model(spec)
    # The export's module tracks the Keras model as `model`: its variables are a checkpoint.
    tf.train.Checkpoint(model=keras_model).restore(
        os.path.join(saved_model, "variables", "variables")).expect_partial()
    probe = tf.random.stateless_normal([1, crop_size, crop_size, 3], [1, 2], stddev=50.0)
    expected = signature(images=probe)["probabilities"].numpy()
    got = tf.nn.softmax(keras_model(probe, training=False)).numpy()
    if got.shape != expected.shape or not np.allclose(got, expected, atol=1e-5):
        raise ValueError(f"the model spec in {model_dir!r}/config.json does not reproduce "
                         f"{saved_model!r}: pass the --model_dir it was exported from")
    return keras_model


def load_saved_model(saved_model: str, model_dir: Optional[str] = None,
                     stats_path: Optional[str] = None) -> LoadedModel:
    """Loads a SavedModel version directory; with `model_dir`, also as a Keras model.

    The preprocessing settings come from the export's assets.extra (written by
    alexnet_tf.export), else from `model_dir`'s config.json.

    Raises:
      FileNotFoundError: not a SavedModel directory, or no settings anywhere.
      ValueError: no `preprocessed` signature, or the rebuilt Keras model does not
        reproduce the SavedModel's probabilities (a different model spec).
    """
    if not os.path.exists(os.path.join(saved_model, "saved_model.pb")):
        raise FileNotFoundError(f"--saved_model={saved_model!r} holds no saved_model.pb (give a "
                                "version directory written by `python -m alexnet_tf.export`)")
    loaded = tf.saved_model.load(saved_model)
    if PREPROCESSED_SIGNATURE not in loaded.signatures:
        raise ValueError(f"{saved_model!r} has no {PREPROCESSED_SIGNATURE!r} signature")
    signature = loaded.signatures[PREPROCESSED_SIGNATURE]
    extra_dir = os.path.join(saved_model, evaluation.SAVED_MODEL_EXTRA_DIR)
    if os.path.exists(os.path.join(extra_dir, evaluation.SETTINGS_FILE)) or not model_dir:
        settings = evaluation.load_settings(extra_dir)
        if stats_path:
            settings = dataclasses.replace(settings, stats=stats_lib.load_stats(stats_path))
    else:
        settings = evaluation.eval_settings(model_dir_lib.read_config(model_dir),
                                            stats_path=stats_path)
    keras_model = (_keras_from_saved_model(saved_model, model_dir, signature, settings.crop_size)
                   if model_dir else None)
    labels = model_dir_lib.read_labels(model_dir) if model_dir else None
    return LoadedModel(keras_model, signature, settings, labels,
                       _checkpoint_identity(os.path.join(saved_model, "variables", "variables")),
                       f"SavedModel {os.path.basename(os.path.normpath(saved_model))}")


def class_names(labels: Optional[list], num_classes: int) -> List[str]:
    """A display name per class: labels.json's name (or synset), else the index."""
    names = [str(index) for index in range(num_classes)]
    for entry in labels or []:
        index = int(entry["index"])
        if 0 <= index < num_classes:
            names[index] = entry.get("name") or entry.get("synset") or names[index]
    return names


def read_label_file(path: str) -> list:
    """Reads a label list: labels.json format, or a text file with one class name a line."""
    import json  # Local: only this reader needs it.
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        labels = json.loads(text)
        if not isinstance(labels, list) or not all("index" in entry for entry in labels):
            raise ValueError(f"{path!r} must be a list of {{'index', 'synset', 'name'}} entries")
        return labels
    names = [line.strip() for line in text.splitlines() if line.strip()]
    return [{"index": index, "name": name} for index, name in enumerate(names)]
