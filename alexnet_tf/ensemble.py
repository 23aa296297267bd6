"""Several trained classifiers used as one: the mean of their softmax outputs.

The paper (section 6) averages the predictions of five similar CNNs: top-5 error on the
ILSVRC-2012 validation set falls from 18.2% (one CNN) to 16.4%. Evaluate reports each
member and their average in one pass over the data; export writes the average as one
SavedModel (`serving/saved_model.py`).

Averaging is only meaningful when every member scores the same classes in the same order
and sees the same input, so `check_members` requires equal class lists and equal test-time
preprocessing (input and resize sizes, the mean subtracted), and names the first member
that differs and how.
"""

import hashlib
import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf import model_source
from alexnet_tf.data import preprocessing


def member_name(index: int, member: model_source.LoadedModel) -> str:
    """"member 2 (runs/b/checkpoints/ckpt-40)": index 1 is the second member."""
    return f"member {index + 1} ({member.path})"


def check_members(members: Sequence[model_source.LoadedModel]) -> None:
    """Raises unless every member scores the same classes from the same preprocessing.

    Raises:
      errors.InvalidInputError: no members, or a member whose classes, labels, input size,
        resize size or subtracted mean differ from the first member's (the message names
        it and the difference).
    """
    if not members:
        raise errors.InvalidInputError("an ensemble needs at least one model")
    first = members[0]
    for index, member in enumerate(members[1:], start=1):
        difference = (_class_difference(first, member)
                      or _preprocessing_difference(first.settings, member.settings))
        if difference:
            raise errors.InvalidInputError(
                    f"{member_name(index, member)} cannot be averaged with "
                    f"{member_name(0, first)}: {difference}")


def _label_text(entry: dict) -> str:
    name = entry.get("name")
    return f"{entry.get('synset')!r}" + (f" ({name})" if name else "")


def _class_difference(first: model_source.LoadedModel,
                      member: model_source.LoadedModel) -> Optional[str]:
    if member.num_classes != first.num_classes:
        return f"it scores {member.num_classes} classes, member 1 {first.num_classes}"
    if (member.labels is None) != (first.labels is None):
        which = "member 1 has" if first.labels is None else "it has"
        return (f"{which} no class list (labels.json), so their class orders cannot be "
                "compared; give both the same labels.json")
    if member.labels is None:
        return None
    ours = {int(entry["index"]): entry for entry in first.labels}
    theirs = {int(entry["index"]): entry for entry in member.labels}
    for index in sorted(set(ours) | set(theirs)):
        if index not in ours or index not in theirs:
            return f"class {index} is listed by {'it' if index in theirs else 'member 1'} only"
        if ours[index].get("synset") != theirs[index].get("synset"):
            return (f"its class {index} is {_label_text(theirs[index])}, member 1's is "
                    f"{_label_text(ours[index])}")
    return None


def _mean_text(mean: np.ndarray) -> str:
    if mean.ndim == 1:
        return "the per-channel mean [" + ", ".join(f"{value:.2f}" for value in mean) + "]"
    return f"a {mean.shape[0]}x{mean.shape[1]} mean image"


def _preprocessing_difference(first: preprocessing.EvalSettings,
                              settings: preprocessing.EvalSettings) -> Optional[str]:
    if settings.crop_size != first.crop_size:
        return (f"its input is {settings.crop_size}x{settings.crop_size} pixels, member 1's "
                f"{first.crop_size}x{first.crop_size}")
    if settings.resize_size != first.resize_size:
        return (f"it resizes images to {settings.resize_size} pixels before cropping, member "
                f"1 to {first.resize_size}")
    ours = preprocessing.subtracted_mean(first.stats, first.mean_mode)
    theirs = preprocessing.subtracted_mean(settings.stats, settings.mean_mode)
    if ours.shape != theirs.shape or not np.allclose(ours, theirs, rtol=0, atol=1e-3):
        detail = ("" if ours.shape != theirs.shape or ours.ndim == 1 else
                  f" (differing by up to {np.abs(ours - theirs).max():.3g})")
        return (f"it subtracts {_mean_text(theirs)}{detail}, member 1 {_mean_text(ours)} "
                "(--mean_mode or the statistics differ)")
    return None


def mean_probabilities(member_probabilities: Sequence[tf.Tensor]) -> tf.Tensor:
    """The ensemble's output: the mean of the members' softmax outputs, (N, C)."""
    member_probabilities = list(member_probabilities)
    if len(member_probabilities) == 1:
        return member_probabilities[0]
    return tf.reduce_mean(tf.stack(member_probabilities), axis=0)


def describe(members: Sequence[model_source.LoadedModel]) -> list:
    """What each member is, for the files that record an ensemble (JSON-able)."""
    return [{"source": os.path.abspath(member.path), "description": member.description}
            for member in members]


def identity(members: Sequence[model_source.LoadedModel]) -> str:
    """A short hash naming these members' weights, in order (for default file names)."""
    text = "\n".join(member.identity for member in members)
    return hashlib.sha256(text.encode()).hexdigest()[:8]
