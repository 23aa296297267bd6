"""Counting top-1 / top-5 hits, and averaging the paper's 10 crops of one image.

Used by the training loop's validation and by `classification.py`. A prediction is top-k correct when the true label is among the k classes with the highest
probability; ties are broken by `tf.math.top_k` (lower index first), so a constant output
is not counted correct for every label, as `tf.math.in_top_k` would.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from alexnet_tf import atomic

CENTRE = "centre_crop"
TEN_CROP = "ten_crop_average"


def error_rate(num_correct: int, num_examples: int) -> float:
    """(n - correct) / n: exact for the counts, with no 1 - x rounding (0.002, not
    0.0020000000000000018); NaN for no examples."""
    if not num_examples:
        return float("nan")
    return (num_examples - num_correct) / num_examples


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
        return error_rate(self.top1_correct, self.num_examples)

    @property
    def top5_error(self) -> float:
        return error_rate(self.top5_correct, self.num_examples)

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


def format_table(counts: dict) -> str:
    """A small text table of the errors."""
    lines = [f"{'':20s} {'top-1 error':>12s} {'top-5 error':>12s} {'images':>8s}"]
    for name in (CENTRE, TEN_CROP):
        if name in counts:
            c = counts[name]
            lines.append(f"{name.replace('_', ' '):20s} {100 * c.top1_error:11.2f}% "
                         f"{100 * c.top5_error:11.2f}% {c.num_examples:8d}")
    return "\n".join(lines)


def format_members_table(member_counts, ensemble_counts: dict) -> str:
    """A text table of each member's errors and the ensemble's (one row each), with one
    top-1/top-5 column pair per way of testing."""
    tests = [name for name in (CENTRE, TEN_CROP) if name in ensemble_counts]
    rows = [(f"member {index + 1}", counts) for index, counts in enumerate(member_counts)]
    rows.append(("ensemble", ensemble_counts))
    lines = [(f"{'':12s}" + "".join(f" {name.replace('_', ' '):^25s}" for name in tests)).rstrip(),
             f"{'':12s}" + f" {'top-1 error':>12s} {'top-5 error':>12s}" * len(tests)
             + f" {'images':>8s}"]
    for label, counts in rows:
        cells = "".join(f" {100 * counts[name].top1_error:11.2f}% "
                        f"{100 * counts[name].top5_error:11.2f}%" for name in tests)
        lines.append(f"{label:12s}{cells} {counts[tests[0]].num_examples:8d}")
    return "\n".join(lines)


def write_json(path: str, counts: dict, **metadata) -> None:
    """Writes the counts (and `metadata`, e.g. the checkpoint) to `path` atomically."""
    result = dict(metadata, **{name: c.as_dict() for name, c in counts.items()})
    atomic.write_json(path, result, default=_json_default)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")
