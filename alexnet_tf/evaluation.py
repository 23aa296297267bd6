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
    """The same for a SavedModel written by `alexnet_tf.serving` (its preprocessed signature)."""
    if signature not in loaded.signatures:
        raise ValueError(f"the SavedModel has no {signature!r} signature (it has "
                         f"{sorted(loaded.signatures)}); was it written by alexnet_tf.export?")
    function = loaded.signatures[signature]
    return lambda images: function(images=images)["probabilities"]


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
