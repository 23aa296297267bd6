"""Top-1 / top-5 error of a classifier, on the centre crop and the paper's 10-crop average.

The paper (Section 4.1) tests a network by averaging its softmax outputs over ten 224x224
patches: the four corner patches and the centre patch of the 256x256 image, and their
horizontal reflections. `preprocessing.preprocess_for_eval(..., ten_crop=True)` makes those
patches; this module only runs a model over them and counts.

A prediction is top-k correct when the true label is among the k classes with the highest
probability; ties are broken by `tf.math.top_k` (lower index first), so a constant output
is not counted correct for every label, as `tf.math.in_top_k` would.
"""

import dataclasses
import json
import os
from typing import Callable, Iterable, Optional

import numpy as np
import tensorflow as tf

CENTRE = "centre_crop"
TEN_CROP = "ten_crop_average"


@dataclasses.dataclass
class Counts:
    """Running counts for one way of testing (centre crop, 10-crop average)."""
    num_examples: int = 0
    top1_correct: int = 0
    top5_correct: int = 0

    def add(self, num_examples: int, top1_correct: int, top5_correct: int) -> None:
        self.num_examples += int(num_examples)
        self.top1_correct += int(top1_correct)
        self.top5_correct += int(top5_correct)

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1_correct / self.num_examples if self.num_examples else float("nan")

    @property
    def top5_error(self) -> float:
        return 1.0 - self.top5_correct / self.num_examples if self.num_examples else float("nan")

    def as_dict(self) -> dict:
        return dict(num_examples=self.num_examples, top1_correct=self.top1_correct,
                    top5_correct=self.top5_correct, top1_error=self.top1_error,
                    top5_error=self.top5_error)


def count_correct(probabilities: tf.Tensor, labels: tf.Tensor, k: int = 5):
    """Counts top-1 and top-k hits.

    Args:
      probabilities: float [B, C] scores (probabilities or logits: only the order matters).
      labels: int [B] true class indices.
      k: the k of top-k; capped at C.

    Returns:
      (top1_correct, topk_correct) as int32 scalars.

    Raises:
      ValueError: the shapes do not agree (when known while tracing).
    """
    probabilities = tf.convert_to_tensor(probabilities)
    labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
    if probabilities.shape.rank != 2 or labels.shape.rank != 1:
        raise ValueError(f"expected probabilities [B, C] and labels [B], got "
                         f"{probabilities.shape} and {labels.shape}")
    num_classes = probabilities.shape[-1]
    k = min(k, num_classes) if num_classes is not None else k
    top = tf.math.top_k(probabilities, k=k).indices  # (B, k)
    hits = tf.equal(top, labels[:, None])  # (B, k)
    top1 = tf.reduce_sum(tf.cast(hits[:, 0], tf.int32))
    topk = tf.reduce_sum(tf.cast(tf.reduce_any(hits, axis=1), tf.int32))
    return top1, topk


def average_crops(probabilities: tf.Tensor, num_crops: int) -> tf.Tensor:
    """[B * num_crops, C] crop probabilities (crops of one image adjacent) -> [B, C] mean."""
    num_classes = tf.shape(probabilities)[-1]
    return tf.reduce_mean(tf.reshape(probabilities, [-1, num_crops, num_classes]), axis=1)


def keras_probabilities(model) -> Callable[[tf.Tensor], tf.Tensor]:
    """A compiled function: preprocessed images [N, S, S, 3] -> softmax [N, C] of a Keras model."""
    @tf.function(reduce_retracing=True)
    def probabilities(images):
        logits = tf.cast(model(images, training=False), tf.float32)
        return tf.nn.softmax(logits, axis=-1)
    return probabilities


def saved_model_probabilities(loaded, signature: str = "preprocessed"):
    """The same for a SavedModel written by `alexnet_tf.serving.signatures` (its preprocessed signature)."""
    if signature not in loaded.signatures:
        raise ValueError(f"the SavedModel has no {signature!r} signature (it has "
                         f"{sorted(loaded.signatures)}); was it written by alexnet_tf.export?")
    # The closure holds `loaded`: its variables must outlive the signature's use.
    return lambda images: loaded.signatures[signature](images=images)["probabilities"]


def evaluate(probabilities_fn: Callable[[tf.Tensor], tf.Tensor], batches: Iterable, *,
             ten_crop: bool = False, centre_index: Optional[int] = None,
             max_batches: Optional[int] = None) -> dict:
    """Runs a classifier over labelled batches and counts its hits.

    Args:
      probabilities_fn: preprocessed images [N, S, S, 3] -> probabilities [N, C].
      batches: (images, labels) pairs: images [B, S, S, 3] (centre crop) or, with
        `ten_crop`, [B, 10, S, S, 3]; labels int [B].
      ten_crop: whether `images` hold ten crops per image.
      centre_index: with `ten_crop`, which of the crops is the centre crop, to report the
        centre-crop error from the same pass; None to skip it.
      max_batches: stop after this many batches (None: all).

    Returns:
      {CENTRE: Counts} without `ten_crop`; {TEN_CROP: Counts, CENTRE: Counts} (centre only
      when `centre_index` is given) with it.

    Raises:
      ValueError: a batch has the wrong rank for the chosen mode.
    """
    counts = {TEN_CROP: Counts()} if ten_crop else {CENTRE: Counts()}
    if ten_crop and centre_index is not None:
        counts[CENTRE] = Counts()
    expected_rank = 5 if ten_crop else 4
    for step, (images, labels) in enumerate(batches):
        if max_batches is not None and step >= max_batches:
            break
        if images.shape.rank != expected_rank:
            raise ValueError(f"with ten_crop={ten_crop} images must have rank {expected_rank}, "
                             f"got shape {images.shape}")
        batch_size = int(tf.shape(labels)[0])
        if not ten_crop:
            counts[CENTRE].add(batch_size, *count_correct(probabilities_fn(images), labels))
            continue
        num_crops = images.shape[1]
        # (B, 10, S, S, 3) -> (B * 10, S, S, 3): the crops of one image stay adjacent.
        crop_probabilities = probabilities_fn(tf.reshape(images, [-1, *images.shape[2:]]))
        averaged = average_crops(crop_probabilities, num_crops)  # (B, C)
        counts[TEN_CROP].add(batch_size, *count_correct(averaged, labels))
        if centre_index is not None:
            centre = tf.reshape(crop_probabilities, [batch_size, num_crops, -1])[:, centre_index]
            counts[CENTRE].add(batch_size, *count_correct(centre, labels))
    return counts


def format_table(counts: dict) -> str:
    """A small text table of the errors."""
    lines = [f"{'':20s} {'top-1 error':>12s} {'top-5 error':>12s} {'images':>8s}"]
    for name in (CENTRE, TEN_CROP):
        if name in counts:
            c = counts[name]
            lines.append(f"{name.replace('_', ' '):20s} {100 * c.top1_error:11.2f}% "
                         f"{100 * c.top5_error:11.2f}% {c.num_examples:8d}")
    return "\n".join(lines)


def write_json(path: str, counts: dict, **metadata) -> None:
    """Writes the counts (and `metadata`, e.g. the checkpoint) to `path` atomically."""
    result = dict(metadata, **{name: c.as_dict() for name, c in counts.items()})
    tmp_path = f"{path}.tmp-{os.getpid()}"
    with open(tmp_path, "w") as f:
        json.dump(result, f, indent=2, default=_json_default)
        f.write("\n")
    os.replace(tmp_path, path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """How a run's images are preprocessed at test time (as in training)."""
    stats: object  # alexnet_tf.data.stats.ImageStats
    mean_mode: str
    crop_size: int
    resize_size: int


def eval_settings(config: dict, *, stats_path: Optional[str] = None,
                  mean_mode: Optional[str] = None) -> EvalSettings:
    """Resolves the test-time preprocessing of a run from its config.json.

    Args:
      config: the run configuration (`model_dir.read_config`, written by config.py): the
        "model" spec gives the crop size (input_size); "stats_path", "data_dir",
        "mean_mode" and "resize_size" are read when present. Statistics come from
        stats_path, else data_dir/stats.npz, else the shipped ImageNet values, as in training.
      stats_path: overrides the statistics file.
      mean_mode: overrides the mean mode ("image" or "rgb").

    Returns:
      EvalSettings.

    Raises:
      FileNotFoundError: the statistics file does not exist.
      ValueError: a bad mean mode.
    """
    from alexnet_tf.data import preprocessing
    from alexnet_tf.data import schema
    from alexnet_tf.data import stats as stats_lib

    stats_path = stats_path or config.get("stats_path")
    data_dir = config.get("data_dir")
    if not stats_path and data_dir and os.path.exists(os.path.join(data_dir, schema.STATS_FILE)):
        stats_path = os.path.join(data_dir, schema.STATS_FILE)
    mean_mode = mean_mode or config.get("mean_mode") or "image"
    if mean_mode not in preprocessing.MEAN_MODES:
        raise ValueError(f"mean_mode must be one of {preprocessing.MEAN_MODES}, got {mean_mode!r}")
    return EvalSettings(
            stats=stats_lib.load_stats(stats_path or None), mean_mode=mean_mode,
            crop_size=int(config["model"].get("input_size", preprocessing.CROP_SIZE)),
            resize_size=int(config.get("resize_size") or preprocessing.RESIZE_SIZE))


# Where a SavedModel keeps extra files (TF Serving's name); export puts the settings there.
SAVED_MODEL_EXTRA_DIR = "assets.extra"
SETTINGS_FILE = "alexnet_tf_preprocessing.json"
SETTINGS_STATS_FILE = "alexnet_tf_stats.npz"


def save_settings(settings: EvalSettings, directory: str) -> None:
    """Writes `settings` (sizes, mean mode, and the statistics) into `directory`.

    Export stores them in a SavedModel's assets.extra, so a SavedModel alone can be
    evaluated with the same preprocessing (TF Serving ignores these files).
    """
    from alexnet_tf.data import stats as stats_lib

    stats_lib.save_stats(settings.stats, os.path.join(directory, SETTINGS_STATS_FILE))
    values = dict(crop_size=settings.crop_size, resize_size=settings.resize_size,
                  mean_mode=settings.mean_mode, stats_file=SETTINGS_STATS_FILE)
    tmp_path = os.path.join(directory, f"{SETTINGS_FILE}.tmp-{os.getpid()}")
    with open(tmp_path, "w") as f:
        json.dump(values, f, indent=2)
    os.replace(tmp_path, os.path.join(directory, SETTINGS_FILE))


def load_settings(directory: str) -> EvalSettings:
    """Reads what `save_settings` wrote.

    Raises:
      FileNotFoundError: `directory` holds no settings (e.g. a SavedModel not written by
        alexnet_tf.export).
    """
    from alexnet_tf.data import stats as stats_lib

    path = os.path.join(directory, SETTINGS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no {SETTINGS_FILE} in {directory!r}: evaluate a SavedModel "
                                "written by `python -m alexnet_tf.export`, or pass --model_dir")
    with open(path) as f:
        values = json.load(f)
    return EvalSettings(stats=stats_lib.load_stats(os.path.join(directory, values["stats_file"])),
                        mean_mode=values["mean_mode"], crop_size=int(values["crop_size"]),
                        resize_size=int(values["resize_size"]))


def resolve_checkpoint(model_dir: str, checkpoint: Optional[str] = None) -> str:
    """A checkpoint prefix: the latest, a full prefix, or a name inside model_dir/checkpoints.

    Raises:
      FileNotFoundError: no such checkpoint.
    """
    from alexnet_tf import run_dir as model_dir_lib

    if checkpoint is None:
        return model_dir_lib.latest_checkpoint(model_dir)
    for path in (checkpoint, os.path.join(model_dir_lib.checkpoint_dir(model_dir), checkpoint)):
        if tf.io.gfile.exists(path + ".index"):
            return path
    raise FileNotFoundError(f"checkpoint {checkpoint!r} not found (expected a prefix such as "
                            f"{model_dir_lib.checkpoint_dir(model_dir)}/ckpt-12, or its name "
                            "ckpt-12)")


def restore_model(model_dir: str, checkpoint: Optional[str] = None):
    """Builds a run's model without device placement and restores its weights.

    The paper variant may have been trained with `tower_devices`; evaluation and exported
    graphs must not pin GPUs, so the model is rebuilt without them (same variables).

    Args:
      model_dir: a training run directory (see alexnet_tf.run_dir).
      checkpoint: a checkpoint prefix or name; default the latest.

    Returns:
      (keras.Model, config dict, checkpoint path).
    """
    from alexnet_tf import run_dir as model_dir_lib

    config = model_dir_lib.read_config(model_dir)
    spec = {key: value for key, value in config["model"].items() if key != "tower_devices"}
    model = model_dir_lib.build_model(spec)
    path = resolve_checkpoint(model_dir, checkpoint)
    tf.train.Checkpoint(model=model).restore(path).expect_partial() \
        .assert_existing_objects_matched()
    return model, config, path


def _load_classifier(model_dir, checkpoint, saved_model, stats_path, mean_mode):
    """(probabilities function, EvalSettings, description of the weights) for a source."""
    from alexnet_tf.data import stats as stats_lib

    if not saved_model:
        model, config, path = restore_model(model_dir, checkpoint)
        settings = eval_settings(config, stats_path=stats_path, mean_mode=mean_mode)
        return keras_probabilities(model), settings, path
    if not os.path.exists(os.path.join(saved_model, "saved_model.pb")):
        raise FileNotFoundError(f"saved_model={saved_model!r} holds no saved_model.pb: give "
                                "an exported version directory such as E/1")
    loaded = tf.saved_model.load(saved_model)
    settings = load_settings(os.path.join(saved_model, SAVED_MODEL_EXTRA_DIR))
    if stats_path:
        settings = dataclasses.replace(settings, stats=stats_lib.load_stats(stats_path))
    if mean_mode:
        settings = dataclasses.replace(settings, mean_mode=mean_mode)
    return saved_model_probabilities(loaded), settings, saved_model


def run(data_dir: str, *, model_dir: Optional[str] = None, checkpoint: Optional[str] = None,
        saved_model: Optional[str] = None, ten_crop: bool = False, batch_size: int = 64,
        stats_path: Optional[str] = None, mean_mode: Optional[str] = None,
        max_batches: Optional[int] = None, output: Optional[str] = None):
    """Evaluates a checkpoint or a SavedModel on the validation records of `data_dir`.

    Args:
      data_dir: converted records (validation-*-of-*, labels.json).
      model_dir: a training run; its latest checkpoint unless `checkpoint` names one.
      checkpoint: a checkpoint prefix or name inside model_dir/checkpoints.
      saved_model: a version directory written by alexnet_tf.export (instead of model_dir).
      ten_crop: also report the paper's 10-crop average (one pass; the centre crop is
        one of the ten).
      batch_size: images per step (x10 crops with `ten_crop`).
      stats_path, mean_mode: override the recorded preprocessing (must match training).
      max_batches: evaluate only this many batches (a quick check; None = all).
      output: the JSON path; default model_dir/eval/<checkpoint>[-10crop].json, or
        <saved_model>-eval[-10crop].json next to the SavedModel.

    Returns:
      (counts dict as `evaluate` returns it, path of the JSON written).

    Raises:
      ValueError: neither or both of model_dir and saved_model given.
    """
    from alexnet_tf.data import pipeline as input_pipeline
    from alexnet_tf.data import schema

    if bool(model_dir) == bool(saved_model):
        raise ValueError("give exactly one of model_dir (a training run) and saved_model "
                         f"(an exported version); got model_dir={model_dir!r}, "
                         f"saved_model={saved_model!r}")
    probabilities, settings, source = _load_classifier(model_dir, checkpoint, saved_model,
                                                       stats_path, mean_mode)
    dataset = input_pipeline.build_dataset(
            data_dir, schema.VALIDATION, global_batch_size=batch_size, training=False, seed=0,
            stats=settings.stats, crop_size=settings.crop_size,
            resize_size=settings.resize_size, mean_mode=settings.mean_mode, ten_crop=ten_crop)
    # The 10 crops come in `preprocessing.eval_crops` order: the centre crop first.
    counts = evaluate(probabilities, dataset, ten_crop=ten_crop,
                      centre_index=0 if ten_crop else None, max_batches=max_batches)
    suffix = "-10crop" if ten_crop else ""
    if output is None and saved_model:
        output = os.path.normpath(saved_model) + f"-eval{suffix}.json"
    elif output is None:
        os.makedirs(os.path.join(model_dir, "eval"), exist_ok=True)
        output = os.path.join(model_dir, "eval", os.path.basename(source) + suffix + ".json")
    write_json(output, counts, source=source, data_dir=data_dir, split=schema.VALIDATION,
               crop_size=settings.crop_size, resize_size=settings.resize_size,
               mean_mode=settings.mean_mode, max_batches=max_batches)
    return counts, output
