"""The data a training run sees: `Datasets`, built from the config by the input pipeline.

The trainer iterates one tf.data iterator of this worker's share of the global batch
(plain, so its position can be checkpointed) and validates on a fresh finite dataset
after each epoch. Tests and custom data pass their own `Datasets`.
"""

import dataclasses
import os
from typing import Callable, Optional

import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf.data import schema
from alexnet_tf.distributed import strategy as strategy_lib
from alexnet_tf.training import config as config_lib


@dataclasses.dataclass
class Datasets:
    """The data a run trains and validates on.

    Attributes:
      train: tf.data.Dataset of (images float32 (B, S, S, 3), labels int (B,)) where B is
        this worker's share of the global batch; it may repeat forever (it is iterated
        epoch after epoch through one checkpointed iterator).
      validation: function returning a finite dataset of (images, labels) batches.
      num_train_examples: images per training epoch.
      num_classes: number of labels.
      labels_file: the data's labels.json to copy into model_dir, or None.
      labels: the label list itself ([{"index", "synset", "name"}, ...]) when the data
        has no labels.json (a TFDS build), or None.
      train_augment: None when `train` yields float images; with --augment_on=device,
        `train` yields `preprocessing.device_augment` dicts of uint8 crops and this maps
        one (a replica's slice) to float images, inside the training step.
      skipped: with --skip_bad_records, {"train": SkippedData, "validation": ...}: what
        each split's pipeline skipped (a split read by the tf.data service has none).
    """
    train: tf.data.Dataset
    validation: Callable[[], tf.data.Dataset]
    num_train_examples: int
    num_classes: int
    labels_file: Optional[str] = None
    labels: Optional[list] = None
    train_augment: Optional[Callable] = None
    skipped: dict = dataclasses.field(default_factory=dict)


def _input_context(strategy):
    """One input pipeline per worker, yielding the worker's share of the global batch."""
    workers = strategy_lib.num_workers(strategy)
    if workers == 1:
        return None
    # num_replicas_in_sync=workers: the "per replica" batch is the per-worker batch,
    # which the train step slices further per local replica.
    return tf.distribute.InputContext(num_input_pipelines=workers,
                                      input_pipeline_id=strategy_lib.worker_rank(strategy),
                                      num_replicas_in_sync=workers)


def _num_train_examples(data_dir: str) -> int:
    from alexnet_tf.data import pipeline
    count = pipeline.num_records(data_dir, schema.TRAIN)
    if count is None:
        raise errors.MissingInputError(
                f"no {schema.MANIFEST_FILE} with a {schema.TRAIN!r} split in "
                f"{data_dir!r}: --data_dir must be the output of "
                "tools/convert_imagenet.py")
    return count


def make_datasets(config: config_lib.TrainConfig, strategy, model_dir: str = "") -> Datasets:
    """The training and validation data of `config` through the project's input pipeline."""
    from alexnet_tf.data import (
        pipeline as input_pipeline,  # Local import: tests may bring their own data.
    )
    context = _input_context(strategy)
    if config.synthetic_data:
        num_classes = config.num_classes or 1000
        synthetic = input_pipeline.synthetic_dataset(
                global_batch_size=config.batch_size, crop_size=config.input_size,
                num_classes=num_classes, seed=config.seed, input_context=context)
        return Datasets(train=synthetic, validation=lambda: synthetic.take(1),
                        num_train_examples=config.batch_size * (config.steps_per_epoch or 100),
                        num_classes=num_classes)
    if config.data_source == "tfds":
        return _tfds_datasets(config, context, model_dir)
    errors.check_directory(config.data_dir, "--data_dir",
                           "the output of tools/convert_imagenet.py")
    if not config.accept_changed_data:
        for split in (schema.TRAIN, schema.VALIDATION):
            input_pipeline.verify_shards(config.data_dir, split)
    num_classes = input_pipeline.read_num_classes(config.data_dir) or config.num_classes
    if not num_classes:
        raise errors.InvalidInputError(
                f"no {schema.LABELS_FILE} in {config.data_dir!r}: set --num_classes")
    common = _pipeline_args(config, num_classes, context)
    service = _service_args(config, model_dir)
    skipped = _skipped(config)
    train = input_pipeline.build_dataset(config.data_dir, schema.TRAIN, training=True,
                                         **common, **_augment_args(config), **service,
                                         **_skip_args(skipped, schema.TRAIN))
    return Datasets(train_augment=_train_augment(config, common),
            train=train,
            validation=lambda: input_pipeline.build_dataset(
                    config.data_dir, config.eval_split, training=False, **common,
                    **_skip_args(skipped, config.eval_split)),
            num_train_examples=_num_train_examples(config.data_dir), num_classes=num_classes,
            labels_file=os.path.join(config.data_dir, schema.LABELS_FILE),
            skipped=skipped or {})


def _skipped(config: config_lib.TrainConfig) -> Optional[dict]:
    """{split: SkippedData} with --skip_bad_records (training's only when read here), else
    None."""
    if not config.skip_bad_records:
        return None
    from alexnet_tf.data import damaged_shards
    splits = (schema.VALIDATION,) if config.data_service else (schema.TRAIN, schema.VALIDATION)
    return {split: damaged_shards.SkippedData() for split in splits}


def _skip_args(skipped: Optional[dict], split: str) -> dict:
    """The input pipeline's skip_bad_records and skipped arguments for `split`."""
    if skipped is None:
        return {}
    return dict(skip_bad_records=True, skipped=skipped.get(split))


def _pipeline_args(config: config_lib.TrainConfig, num_classes: int, context) -> dict:
    """Arguments every data source passes to the input pipeline."""
    from alexnet_tf.data import stats as stats_lib
    stats_path = stats_lib.resolve_path(config.stats_path, config.data_dir)
    return dict(global_batch_size=config.batch_size, seed=config.seed,
                stats=stats_lib.load_stats(stats_path), crop_size=config.input_size,
                resize_size=config.resize_size, mean_mode=config.mean_mode,
                num_classes=num_classes, input_context=context)


def _augment_args(config: config_lib.TrainConfig) -> dict:
    """The training-only augmentation settings of the pipeline."""
    return dict(augment_on_device=config.augment_on == "device", flip=config.flip,
                pca_std=config.pca_std)


def _train_augment(config: config_lib.TrainConfig, common: dict) -> Optional[Callable]:
    """The float stage for the training step when --augment_on=device, else None."""
    if config.augment_on != "device":
        return None
    from alexnet_tf.data import preprocessing
    stats, mean_mode, resize_size = common["stats"], common["mean_mode"], common["resize_size"]
    return lambda batch: preprocessing.device_augment(batch, stats=stats, mean_mode=mean_mode,
                                                      resize_size=resize_size)


def _service_args(config: config_lib.TrainConfig, model_dir: str) -> dict:
    # With the tf.data service the trainers of one run (the same --model_dir, as
    # typed on every worker) share one job: each batch goes to one of them.
    if not config.data_service:
        return {}
    return dict(data_service=config.data_service, data_service_job=f"alexnet_tf:{model_dir}")


def _tfds_datasets(config: config_lib.TrainConfig, context, model_dir: str) -> Datasets:
    """A prepared TFDS imagenet2012 build through the same pipeline (--data_source=tfds)."""
    from alexnet_tf.data import tfds_input
    num_train, num_classes, names = tfds_input.split_info(config.tfds_data_dir, schema.TRAIN)
    if config.num_classes and config.num_classes != num_classes:
        raise errors.InvalidInputError(f"num_classes={config.num_classes} but the TFDS build at "
                                       f"{config.tfds_data_dir!r} has {num_classes} classes")
    common = _pipeline_args(config, num_classes, context)
    skipped = _skipped(config)
    train = tfds_input.build_tfds_dataset(config.tfds_data_dir, schema.TRAIN, training=True,
                                          **common, **_augment_args(config),
                                          **_service_args(config, model_dir),
                                          **_skip_args(skipped, schema.TRAIN))
    # TFDS's imagenet2012 class names are the synset ids, in the same sorted order.
    labels = [dict(index=index, synset=name, name="") for index, name in enumerate(names)]
    return Datasets(
            train=train, train_augment=_train_augment(config, common),
            validation=lambda: tfds_input.build_tfds_dataset(
                    config.tfds_data_dir, config.eval_split, training=False, **common,
                    **_skip_args(skipped, config.eval_split)),
            num_train_examples=num_train, num_classes=num_classes, labels=labels,
            skipped=skipped or {})
