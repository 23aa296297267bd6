"""A prepared tensorflow-datasets ImageNet build read through the project's input pipeline.

`--data_source=tfds --tfds_data_dir=DIR` trains on a TFDS `imagenet2012` build instead of
the converter's records. Its records are read directly (no `as_dataset`), so the
sharding, seeded order, checkpointable iterator and preprocessing are those of
`input_pipeline.build_from_files`: one preprocessing path for every data source.
TFDS's imagenet2012 labels are indices into the sorted synsets, the same labels as
this project's records (schema.LABEL_BASE = 0).
"""

import os
from typing import Optional

import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf.data import pipeline as input_pipeline
from alexnet_tf.data import stats as stats_lib


def _tfds_builder(tfds_data_dir: str, dataset_name: str, split: str):
    """The builder of a PREPARED build that has `split`.

    Raises:
      FileNotFoundError: no prepared build. ValueError: the build has no such split.
    """
    import tensorflow_datasets as tfds  # Local import: only this data source needs it.
    expected = (f"expected {tfds_data_dir}/{dataset_name}/<version>/dataset_info.json, or a "
                f"version directory itself")
    if os.path.exists(os.path.join(tfds_data_dir, "dataset_info.json")):
        builder = tfds.builder_from_directory(tfds_data_dir)
    else:
        try:
            builder = tfds.builder(dataset_name, data_dir=tfds_data_dir)
        except Exception as error:  # TFDS raises several types for a missing build.
            raise errors.MissingInputError(
                    f"no prepared tensorflow-datasets {dataset_name!r} build "
                    f"under {tfds_data_dir!r} ({expected}): {error}") from error
    if not builder.info.splits:  # tfds.builder succeeds on an empty directory.
        raise errors.MissingInputError(
                f"no prepared tensorflow-datasets {dataset_name!r} build under "
                f"{tfds_data_dir!r} ({expected})")
    if split not in builder.info.splits:
        raise errors.InvalidInputError(
                f"split {split!r} not in the TFDS build at {tfds_data_dir!r}; it has "
                f"{sorted(builder.info.splits)}")
    return builder


def build_tfds_dataset(tfds_data_dir: str, split: str, *, global_batch_size: int,
                       training: bool, seed: int, stats: stats_lib.ImageStats,
                       num_classes: Optional[int] = None, dataset_name: str = "imagenet2012",
                       **kwargs) -> tf.data.Dataset:
    """`input_pipeline.build_dataset` over a tensorflow-datasets build of ImageNet (already prepared).

    The TFDS records are read directly (no `as_dataset`), so the same sharding, seeded
    order, checkpointable iterator and preprocessing apply. TFDS's imagenet2012 labels are
    indices into the sorted synsets: the same labels as this project's records.

    Args:
      tfds_data_dir: the `data_dir` given to TFDS (holding imagenet2012/<version>/), or
        the version directory itself.
      split: a split of the build, e.g. "train" or "validation".
      dataset_name: the TFDS name (a build with "image" and "label" features).
      global_batch_size, training, seed, stats, num_classes, **kwargs: as for `build_dataset`.

    Raises:
      FileNotFoundError: no such build. ValueError: no such split.
    """
    import tensorflow_datasets as tfds  # Local import: only this data source needs it.
    builder = _tfds_builder(tfds_data_dir, dataset_name, split)
    features = builder.info.features
    files = sorted(str(path) for path in builder.info.splits[split].filepaths)
    if num_classes is None:
        num_classes = features["label"].num_classes

    def parse_one(serialized):
        # SkipDecoding keeps the JPEG bytes, so the crop window is all that gets decoded.
        example = features.deserialize_example(
                serialized, decoders={"image": tfds.decode.SkipDecoding()})
        return example["image"], tf.cast(example["label"], tf.int64)

    def parse(serialized):  # (n,) records; TFDS's own deserializer, one record at a time
        return tf.map_fn(parse_one, serialized, fn_output_signature=(tf.string, tf.int64))

    return input_pipeline.build_from_files(
            files, parse, global_batch_size=global_batch_size, training=training, seed=seed,
            stats=stats, num_classes=num_classes, **kwargs)


def split_info(tfds_data_dir: str, split: str, dataset_name: str = "imagenet2012"):
    """Returns (num_examples, num_classes, class names) of `split` of a prepared build.

    Raises:
      FileNotFoundError: no such build. ValueError: no such split.
    """
    builder = _tfds_builder(tfds_data_dir, dataset_name, split)
    label = builder.info.features["label"]
    return builder.info.splits[split].num_examples, label.num_classes, list(label.names)
