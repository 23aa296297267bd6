"""Top-1 / top-5 error of a trained classifier on the validation records.

The paper (section 4.1) tests a network on the centre crop or by averaging its softmax
outputs over ten patches: the four corner patches and the centre patch of the 256x256
image, and their horizontal reflections. The input pipeline makes those crops with
`preprocessing.eval_crops` (the centre crop first); this module runs the model over them
and counts (`metrics.py`). Several models are evaluated in the same pass, each on its own
and as an ensemble: the mean of their softmax outputs (the paper, section 6).
"""

import dataclasses
import os
from typing import Callable, Iterable, List, Optional, Sequence, Tuple

from absl import logging
import tensorflow as tf
import tqdm

from alexnet_tf import ensemble
from alexnet_tf import model_source
from alexnet_tf import run_dir
from alexnet_tf.data import damaged_shards
from alexnet_tf.data import pipeline
from alexnet_tf.data import schema
from alexnet_tf.evaluation import metrics

CENTRE = metrics.CENTRE
TEN_CROP = metrics.TEN_CROP


def evaluate(probabilities_fn: Callable[[tf.Tensor], tf.Tensor], batches: Iterable, *,
             ten_crop: bool = False, centre_index: Optional[int] = None,
             max_batches: Optional[int] = None, progress=None) -> dict:
    """Runs a classifier over labelled batches and counts its hits.

    Args:
      probabilities_fn: preprocessed images [N, S, S, 3] -> probabilities [N, C].
      batches: (images, labels) pairs: images [B, S, S, 3] (centre crop) or, with
        `ten_crop`, [B, 10, S, S, 3]; labels int [B].
      ten_crop: whether `images` hold ten crops per image.
      centre_index: with `ten_crop`, which of the crops is the centre crop, to report the
        centre-crop error from the same pass; None to skip it.
      max_batches: stop after this many batches (None: all).
      progress: a tqdm bar advanced by the images of each batch, or None.

    Returns:
      {CENTRE: Counts} without `ten_crop`; {TEN_CROP: Counts, CENTRE: Counts} (centre only
      when `centre_index` is given) with it.

    Raises:
      ValueError: a batch has the wrong rank for the chosen mode.
    """
    return evaluate_members([probabilities_fn], batches, ten_crop=ten_crop,
                            centre_index=centre_index, max_batches=max_batches,
                            progress=progress)[1][0]


def evaluate_members(probabilities_fns: Sequence[Callable[[tf.Tensor], tf.Tensor]],
                     batches: Iterable, *, ten_crop: bool = False,
                     centre_index: Optional[int] = None, max_batches: Optional[int] = None,
                     progress=None) -> Tuple[Optional[dict], List[dict]]:
    """Runs several classifiers over the same batches: each one's hits and their ensemble's.

    The ensemble's probabilities are the mean of the members' softmax outputs
    (`ensemble.mean_probabilities`), per crop; its 10-crop average is therefore the mean
    over members and crops alike.

    Args:
      probabilities_fns: one function per member, as `evaluate`'s `probabilities_fn`.
      batches, ten_crop, centre_index, max_batches, progress: as for `evaluate`.

    Returns:
      (the ensemble's counts, or None for a single function; each function's counts), each
      a dict as `evaluate` returns.

    Raises:
      ValueError: a batch has the wrong rank for the chosen mode.
    """
    member_counts = [_new_counts(ten_crop, centre_index) for _ in probabilities_fns]
    ensemble_counts = _new_counts(ten_crop, centre_index) if len(probabilities_fns) > 1 else None
    expected_rank = 5 if ten_crop else 4
    for step, (images, labels) in enumerate(batches):
        if max_batches is not None and step >= max_batches:
            break
        if images.shape.rank != expected_rank:
            raise ValueError(f"with ten_crop={ten_crop} images must have rank {expected_rank}, "
                             f"got shape {images.shape}")
        if progress is not None:
            progress.update(int(tf.shape(labels)[0]))
        num_crops = images.shape[1] if ten_crop else None
        if ten_crop:  # (B, 10, S, S, 3) -> (B * 10, S, S, 3): one image's crops adjacent.
            images = tf.reshape(images, [-1, *images.shape[2:]])
        member_probabilities = [function(images) for function in probabilities_fns]
        for counts, probabilities in zip(member_counts, member_probabilities):
            _add_counts(counts, probabilities, labels, num_crops, centre_index)
        if ensemble_counts is not None:
            _add_counts(ensemble_counts, ensemble.mean_probabilities(member_probabilities),
                        labels, num_crops, centre_index)
    return ensemble_counts, member_counts


def _new_counts(ten_crop: bool, centre_index: Optional[int]) -> dict:
    counts = {TEN_CROP: metrics.Counts()} if ten_crop else {CENTRE: metrics.Counts()}
    if ten_crop and centre_index is not None:
        counts[CENTRE] = metrics.Counts()
    return counts


def _add_counts(counts: dict, probabilities: tf.Tensor, labels: tf.Tensor,
                num_crops: Optional[int], centre_index: Optional[int]) -> None:
    """Adds one batch: probabilities (B, C), or (B * num_crops, C) with `num_crops`."""
    batch_size = int(tf.shape(labels)[0])
    if num_crops is None:
        counts[CENTRE].add(batch_size, *metrics.count_correct(probabilities, labels))
        return
    averaged = metrics.average_crops(probabilities, num_crops)  # (B, C)
    counts[TEN_CROP].add(batch_size, *metrics.count_correct(averaged, labels))
    if centre_index is not None:
        centre = tf.reshape(probabilities, [batch_size, num_crops, -1])[:, centre_index]
        counts[CENTRE].add(batch_size, *metrics.count_correct(centre, labels))


def default_output(loaded, model_dir: Optional[str], ten_crop: bool) -> str:
    """Where results go unless --output says: model_dir/eval/<checkpoint>[-10crop].json for a
    run; for a SavedModel, eval-<export>-<version>[-10crop].json in the current directory
    (never inside the export directory, which TF Serving watches); for an ensemble (a list
    of several `model_source.LoadedModel`s), eval-ensemble-<hash of the members>[-10crop].json
    in the current directory."""
    suffix = "-10crop" if ten_crop else ""
    members = list(loaded) if isinstance(loaded, (list, tuple)) else [loaded]
    if len(members) > 1:
        return f"eval-ensemble-{ensemble.identity(members)}{suffix}.json"
    loaded = members[0]
    if loaded.saved_model is None:
        return os.path.join(model_dir, run_dir.EVAL_DIR,
                            os.path.basename(loaded.path) + suffix + ".json")
    version_dir = os.path.normpath(loaded.path)
    export_name = os.path.basename(os.path.dirname(version_dir)) or "export"
    return f"eval-{export_name}-{os.path.basename(version_dir)}{suffix}.json"


def run(data_dir: str, loaded: model_source.LoadedModel, *, output: str, **kwargs) -> dict:
    """Evaluates one model (`run_members` with one member); returns its counts."""
    return run_members(data_dir, [loaded], output=output, **kwargs)[1][0]


def run_members(data_dir: str, members: Sequence[model_source.LoadedModel], *, output: str,
                ten_crop: bool = False, batch_size: int = 64,
                max_batches: Optional[int] = None, show_progress: bool = False,
                accept_changed_data: bool = False,
                skip_bad_records: bool = False) -> Tuple[Optional[dict], List[dict]]:
    """Evaluates one model, or several and their ensemble, on the validation records of
    `data_dir` in one pass, and writes the counts.

    Args:
      data_dir: converted records (validation-*-of-*, labels.json).
      members: the classifiers and their preprocessing (`model_source.load`); several must
        agree on classes and preprocessing (`ensemble.check_members`).
      output: the JSON file to write: the counts (the ensemble's, for several) and, for
        several, each member's under "members".
      ten_crop: also report the paper's 10-crop average (one pass: the centre crop is one
        of the ten).
      batch_size: images per step (x10 crops with `ten_crop`).
      max_batches: evaluate only this many batches (a quick check; None = all).
      show_progress: draw a progress bar on stderr.
      accept_changed_data: evaluate shards that differ from the converter's manifest
        (otherwise a ValueError names the first that does, `pipeline.verify_shards`).
      skip_bad_records: skip undecodable records and the rest of damaged shards, log
        them and record them in the output (otherwise the first is a user error naming
        its shard: DamagedShardError or BadRecordError).

    Returns:
      (the ensemble's counts or None for one member, each member's counts), as
      `evaluate_members` returns them.

    Raises:
      errors.InvalidInputError: members that disagree on classes or preprocessing.
    """
    ensemble.check_members(members)
    if not accept_changed_data:
        pipeline.verify_shards(data_dir, schema.VALIDATION)
    settings = members[0].settings
    skipped = damaged_shards.SkippedData() if skip_bad_records else None
    dataset = pipeline.build_dataset(
            data_dir, schema.VALIDATION, global_batch_size=batch_size, training=False, seed=0,
            stats=settings.stats, crop_size=settings.crop_size,
            resize_size=settings.resize_size, mean_mode=settings.mean_mode, ten_crop=ten_crop,
            skip_bad_records=skip_bad_records, skipped=skipped)
    total = pipeline.num_records(data_dir, schema.VALIDATION)
    if total is not None and max_batches is not None:
        total = min(total, max_batches * batch_size)
    with tqdm.tqdm(total=total, unit="image", desc="evaluating", disable=not show_progress,
                   leave=False) as progress, damaged_shards.user_errors():
        # The 10 crops come in `preprocessing.eval_crops` order: the centre crop first.
        ensemble_counts, member_counts = evaluate_members(
                [member.probabilities_fn() for member in members], dataset, ten_crop=ten_crop,
                centre_index=0 if ten_crop else None, max_batches=max_batches,
                progress=progress)
    metadata = dict(data_dir=data_dir, split=schema.VALIDATION, crop_size=settings.crop_size,
                    resize_size=settings.resize_size, mean_mode=settings.mean_mode,
                    max_batches=max_batches, **_skipped_summary(skipped))
    if ensemble_counts is None:
        metrics.write_json(output, member_counts[0], source=members[0].path, **metadata)
    else:
        described = ensemble.describe(members)
        for entry, counts in zip(described, member_counts):
            entry.update({name: c.as_dict() for name, c in counts.items()})
        metrics.write_json(output, ensemble_counts, source=[m.path for m in members],
                           ensemble="mean of the members' softmax outputs", members=described,
                           **metadata)
    return ensemble_counts, member_counts


def _skipped_summary(skipped: Optional[damaged_shards.SkippedData]) -> dict:
    """What was skipped, for the output file; each damaged shard is also logged."""
    if skipped is None:
        return {}
    damaged = skipped.damaged()
    for damage in damaged:
        logging.warning("Skipped the rest of a damaged shard (--skip_bad_records): %s",
                        damage.describe())
    if skipped.num_bad_records():
        logging.warning("Skipped %d bad record(s) (--skip_bad_records; each named on stderr)",
                        skipped.num_bad_records())
    return dict(skipped_bad_records=skipped.num_bad_records(),
                damaged_shards=[dataclasses.asdict(damage) for damage in damaged])
