"""Published AlexNet weights -> a run directory that every command reads.

`import_weights(format, weights, model_dir, mean=None)` reads Caffe's bvlc_alexnet
.caffemodel (caffe.py) or torchvision's alexnet-owt-*.pth (torchvision.py), infers the
widths from the file's shapes, checks every layer (mapping.py), builds the model the
run's config describes, copies the weights in, and writes

  model_dir/
    config.json       the model spec and preprocessing (run_dir.py's contract) and where
                      the weights came from (file, SHA-256)
    checkpoints/      ckpt-0, holding `model=` as a training run's checkpoints do
    labels.json       the 1000 ILSVRC-2012 classes (data/imagenet/classes.py)
    stats.npz         the mean the weights were trained with (data/stats.py's format;
                      PCA values are the shipped ImageNet ones, for fine-tuning)
    model_flags.cfg   train's flags for this network and preprocessing, for
                      `train --flagfile=model_dir/model_flags.cfg --init_checkpoint=model_dir`

into a hidden directory renamed onto model_dir when complete: a failed import leaves
nothing that looks like a run.

The two nets, as this project's models:

  caffe        variant "paper" at input 227 (no padding), towers = Caffe's 2 groups,
               LRN alpha/n with Caffe's k (1) across all maps (lrn_across_towers);
               mean image (--mean, 256x256 BGR -> RGB, cropped at the crop's window)
               or Caffe's per-channel mean; conv1's channels reversed (BGR -> RGB).
  torchvision  variant "one_tower" at input 224; per-channel mean 255 * mean, with
               1 / (255 * std) folded into conv1 (see torchvision.py).
"""

import dataclasses
import hashlib
import os
import shutil
from typing import Optional

import numpy as np

from alexnet_tf import atomic
from alexnet_tf import checkpoint_files
from alexnet_tf import errors
from alexnet_tf import run_dir
from alexnet_tf.data import stats as stats_lib
from alexnet_tf.data.imagenet import classes
from alexnet_tf.pretrained import caffe
from alexnet_tf.pretrained import mapping
from alexnet_tf.pretrained import torchvision
from alexnet_tf.training import config as config_lib

FORMATS = ("caffe", "torchvision")
MODEL_FLAGS_FILE = run_dir.MODEL_FLAGS_FILE
# TrainConfig fields that describe the network and its preprocessing: config.json
# records them, model_flags.cfg passes them to train.
MODEL_FIELDS = ("model", "variant", "input_size", "resize_size", "widths", "use_lrn",
                "lrn_convention", "lrn_k", "lrn_across_towers", "mean_mode", "stats_path")


@dataclasses.dataclass
class Imported:
    """A weight file read and checked, not yet written.

    Attributes:
      config: the TrainConfig whose model spec and preprocessing fields describe the net.
      weights: the weights in NCHW layout (mapping.SourceWeights), checked.
      stats: the colour statistics of its preprocessing.
      source: provenance for config.json.
    """
    config: config_lib.TrainConfig
    weights: mapping.SourceWeights
    stats: stats_lib.ImageStats
    source: dict


def _file_digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_finite(weights: mapping.SourceWeights) -> None:
    for layer in mapping.LAYERS:
        for part, array in zip(("weights", "bias"), weights.arrays[layer]):
            if not np.all(np.isfinite(array)):
                raise errors.InvalidInputError(f"{weights.path}: {weights.name(layer)} {part} "
                                               "hold NaN or Inf values")


def _stats(mean_rgb: np.ndarray, mean_image: Optional[np.ndarray], source: str):
    shipped = stats_lib.load_stats(None)  # PCA lighting for fine-tuning.
    return stats_lib.ImageStats(mean_rgb=mean_rgb, eigval=shipped.eigval, eigvec=shipped.eigvec,
                                mean_image=mean_image, source=source)


def _config(num_classes: int, widths, stats_path: str, **settings) -> config_lib.TrainConfig:
    """The settings as TrainConfig builds the model spec from them (so train, given the
    same flags, builds the same net). synthetic_data only meets its data requirement:
    this config is never trained."""
    try:
        return config_lib.TrainConfig(synthetic_data=True, num_classes=num_classes,
                                      widths=tuple(int(w) for w in widths),
                                      stats_path=stats_path, **settings)
    except ValueError as error:
        raise errors.InvalidInputError(str(error)) from None


def read(weight_format: str, weights_path: str, mean_path: Optional[str] = None,
         stats_path: str = stats_lib.STATS_FILE) -> Imported:
    """Reads and checks a weight file (and Caffe's mean file).

    Args:
      weight_format: "caffe" or "torchvision".
      weights_path: the .caffemodel or .pth file.
      mean_path: Caffe's mean .binaryproto; None: the per-channel mean.
      stats_path: the stats_path the config records.

    Raises:
      InvalidInputError, MissingInputError: a bad or missing file (one-line message).
    """
    if weight_format not in FORMATS:
        raise errors.InvalidInputError(f"--format must be one of {FORMATS}, got "
                                       f"{weight_format!r}")
    if not os.path.isfile(weights_path):
        raise errors.MissingInputError(f"--weights={weights_path} does not exist")
    if mean_path and weight_format != "caffe":
        raise errors.InvalidInputError("--mean is Caffe's mean file; torchvision's weights "
                                       "carry their normalisation (omit --mean)")
    if mean_path and not os.path.isfile(mean_path):
        raise errors.MissingInputError(f"--mean={mean_path} does not exist")
    source = dict(format=weight_format, weights=os.path.abspath(weights_path),
                  sha256=_file_digest(weights_path))
    if weight_format == "caffe":
        mean_image = caffe.read_mean(mean_path) if mean_path else None
        net = caffe.read_alexnet(weights_path)
        weights = net.weights
        resize_size = mean_image.shape[0] if mean_image is not None else 256
        settings = dict(variant="paper", input_size=caffe.INPUT_SIZE, resize_size=resize_size,
                        lrn_convention="caffe", lrn_k=net.lrn_k, lrn_across_towers=True,
                        mean_mode="image" if mean_image is not None else "rgb")
        stats = _stats(caffe.mean_rgb(mean_image), mean_image,
                       f"Caffe mean image {os.path.abspath(mean_path)}" if mean_path else
                       "Caffe's ILSVRC-2012 per-channel mean")
        if mean_path:
            source["mean"] = os.path.abspath(mean_path)
    else:
        weights = torchvision.read_alexnet(weights_path)
        settings = dict(variant="one_tower", input_size=torchvision.INPUT_SIZE,
                        resize_size=256, mean_mode="rgb")
        stats = _stats(torchvision.mean_rgb(), None,
                       "torchvision's ImageNet normalisation mean (x255); its std is "
                       "folded into conv1")
    widths, num_classes = mapping.check(weights)
    _check_finite(weights)
    if num_classes != classes.NUM_CLASSES:
        raise errors.InvalidInputError(
                f"{weights_path}: fc8 has {num_classes} outputs; ImageNet weights have "
                f"{classes.NUM_CLASSES}, one per ILSVRC-2012 class")
    config = _config(num_classes, widths, stats_path, model="alexnet", **settings)
    return Imported(config=config, weights=weights, stats=stats, source=source)


def build_model(imported: Imported):
    """The Keras model of the imported config, holding the file's weights.

    Raises:
      InvalidInputError: the file's widths do not make this project's net (e.g. odd
        widths for the two towers).
    """
    try:
        model = run_dir.build_model(imported.config.model_spec())
    except ValueError as error:
        raise errors.InvalidInputError(f"{imported.weights.path}: {error}") from None
    mapping.assign(model, mapping.keras_arrays(imported.weights))
    return model


def model_flags(config: config_lib.TrainConfig, description: str) -> str:
    """model_flags.cfg: train's flags for the network and preprocessing of `config`."""
    values = config.to_dict()
    lines = [f"# {description}",
             "# python3 -m alexnet_tf.train --flagfile=THIS_FILE --init_checkpoint=THIS_DIR "
             "--data_dir=... --model_dir=...", "# (later flags override these)"]
    for name in MODEL_FIELDS:
        value = values[name] if name != "model" else config.model
        if isinstance(value, bool):
            lines.append(f"--{'' if value else 'no'}{name}")
        elif isinstance(value, list):
            if value:
                lines.append(f"--{name}={','.join(str(v) for v in value)}")
        elif isinstance(value, float):
            lines.append(f"--{name}={value:g}")
        elif value is not None:
            lines.append(f"--{name}={value}")
    return "\n".join(lines) + "\n"


def _write(imported: Imported, model, directory: str, final_dir: str) -> None:
    import tensorflow as tf  # Local import: reading and checking files needs no TF.
    stats_lib.save_stats(imported.stats, os.path.join(directory, stats_lib.STATS_FILE))
    run_dir.write_labels(directory, classes.imagenet_labels())
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                         run_dir.checkpoint_dir(directory), max_to_keep=1,
                                         checkpoint_name=checkpoint_files.CHECKPOINT_NAME)
    manager.save(checkpoint_number=0)
    flags_config = dataclasses.replace(
            imported.config, stats_path=os.path.join(os.path.abspath(final_dir),
                                                     stats_lib.STATS_FILE))
    atomic.write_text(os.path.join(directory, MODEL_FLAGS_FILE), model_flags(
            flags_config, f"AlexNet imported from {imported.source['weights']} "
                          f"({imported.source['format']})"))
    values = imported.config.to_dict()
    config = {name: values[name] for name in MODEL_FIELDS + ("num_classes", "dropout_rate")}
    config["imported_from"] = imported.source
    atomic.write_json(os.path.join(directory, run_dir.CONFIG_FILE), config, sort_keys=True)


def _check_output(model_dir: str) -> None:
    if os.path.exists(model_dir) and (not os.path.isdir(model_dir) or os.listdir(model_dir)):
        raise errors.ExistingOutputError(f"--model_dir={model_dir} exists and is not empty: "
                                         "imports go to a new directory")


def import_weights(weight_format: str, weights_path: str, model_dir: str,
                   mean_path: Optional[str] = None) -> Imported:
    """Imports a weight file into a new run directory (see the module docstring).

    Args:
      weight_format: "caffe" or "torchvision".
      weights_path: the .caffemodel or .pth file.
      model_dir: the run directory to write; must not exist or be empty.
      mean_path: Caffe's mean .binaryproto (optional).

    Returns:
      The Imported (config, weights, stats, source).

    Raises:
      InvalidInputError, MissingInputError, ExistingOutputError: bad input or output.
    """
    _check_output(model_dir)
    imported = read(weight_format, weights_path, mean_path)
    model = build_model(imported)
    parent, name = os.path.split(os.path.abspath(model_dir))
    os.makedirs(parent, exist_ok=True)
    temporary = os.path.join(parent, f".{name}.import-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    try:
        _write(imported, model, temporary, model_dir)
        _check_output(model_dir)
        if os.path.isdir(model_dir):
            os.rmdir(model_dir)  # Empty (checked): replaced by the complete directory.
        os.rename(temporary, model_dir)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return imported
