"""Top-1 / top-5 error of a trained classifier on the validation records.

The paper (section 4.1) tests a network on the centre crop or by averaging its softmax
outputs over ten patches: the four corner patches and the centre patch of the 256x256
image, and their horizontal reflections. The input pipeline makes those crops with
`preprocessing.eval_crops` (the centre crop first); this module runs the model over them
and counts (`metrics.py`).
"""

import dataclasses
import os
from typing import Callable, Iterable, Optional

from absl import logging
import tensorflow as tf
import tqdm

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
    counts = {TEN_CROP: metrics.Counts()} if ten_crop else {CENTRE: metrics.Counts()}
    if ten_crop and centre_index is not None:
        counts[CENTRE] = metrics.Counts()
    expected_rank = 5 if ten_crop else 4
    for step, (images, labels) in enumerate(batches):
        if max_batches is not None and step >= max_batches:
            break
        if images.shape.rank != expected_rank:
            raise ValueError(f"with ten_crop={ten_crop} images must have rank {expected_rank}, "
                             f"got shape {images.shape}")
        batch_size = int(tf.shape(labels)[0])
        if progress is not None:
            progress.update(batch_size)
        if not ten_crop:
            counts[CENTRE].add(batch_size, *metrics.count_correct(probabilities_fn(images),
                                                                  labels))
            continue
        num_crops = images.shape[1]
        # (B, 10, S, S, 3) -> (B * 10, S, S, 3): the crops of one image stay adjacent.
        crop_probabilities = probabilities_fn(tf.reshape(images, [-1, *images.shape[2:]]))
        averaged = metrics.average_crops(crop_probabilities, num_crops)  # (B, C)
        counts[TEN_CROP].add(batch_size, *metrics.count_correct(averaged, labels))
        if centre_index is not None:
            centre = tf.reshape(crop_probabilities, [batch_size, num_crops, -1])[:, centre_index]
            counts[CENTRE].add(batch_size, *metrics.count_correct(centre, labels))
    return counts


def default_output(loaded: model_source.LoadedModel, model_dir: Optional[str],
                   ten_crop: bool) -> str:
    """Where results go unless --output says: model_dir/eval/<checkpoint>[-10crop].json for a
    run; for a SavedModel, eval-<export>-<version>[-10crop].json in the current directory
    (never inside the export directory, which TF Serving watches)."""
    suffix = "-10crop" if ten_crop else ""
    if loaded.saved_model is None:
        return os.path.join(model_dir, run_dir.EVAL_DIR,
                            os.path.basename(loaded.path) + suffix + ".json")
    version_dir = os.path.normpath(loaded.path)
    export_name = os.path.basename(os.path.dirname(version_dir)) or "export"
    return f"eval-{export_name}-{os.path.basename(version_dir)}{suffix}.json"


def run(data_dir: str, loaded: model_source.LoadedModel, *, output: str,
        ten_crop: bool = False, batch_size: int = 64, max_batches: Optional[int] = None,
        show_progress: bool = False, accept_changed_data: bool = False,
        skip_bad_records: bool = False) -> dict:
    """Evaluates `loaded` on the validation records of `data_dir` and writes the counts.

    Args:
      data_dir: converted records (validation-*-of-*, labels.json).
      loaded: the classifier and its preprocessing (`model_source.load`).
      output: the JSON file to write.
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
      The counts, as `evaluate` returns them.
    """
    if not accept_changed_data:
        pipeline.verify_shards(data_dir, schema.VALIDATION)
    settings = loaded.settings
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
        counts = evaluate(loaded.probabilities_fn(), dataset, ten_crop=ten_crop,
                          centre_index=0 if ten_crop else None, max_batches=max_batches,
                          progress=progress)
    metrics.write_json(output, counts, source=loaded.path, data_dir=data_dir,
                       split=schema.VALIDATION, crop_size=settings.crop_size,
                       resize_size=settings.resize_size, mean_mode=settings.mean_mode,
                       max_batches=max_batches, **_skipped_summary(skipped))
    return counts


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
