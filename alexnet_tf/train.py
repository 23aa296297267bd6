r"""Trains AlexNet (or ZFNet): `python -m alexnet_tf.train --flagfile=flags/alexnet.cfg`.

Every flag is a field of `alexnet_tf.training.config.TrainConfig` (defaults and help live there);
`--flagfile` works and later flags override it:

  python -m alexnet_tf.train --flagfile=flags/alexnet.cfg --data_dir=/data/imagenet \
      --model_dir=/runs/alexnet --strategy=mirrored

A rerun with the same --model_dir resumes from its latest checkpoint. Exit status: 0 when
done, 143 after a SIGTERM (a checkpoint was saved: rerun to continue), 1 on a NaN loss or
a bad setting.
"""

import dataclasses
import os
import sys
import typing

from absl import app
from absl import flags
from absl import logging

from alexnet_tf.training import config as config_lib
from alexnet_tf import startup as malloc_tuning

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Directory of the run: config.json, "
                                 "checkpoints/, logs/ (TensorBoard), labels.json.",
                                 required=True)
# Demo data: 300 training and 50 validation images for each of 10 classes.
_DEMO_SHARDS = dict(train_shards=8, validation_shards=2)


def _define_flags() -> None:
    """One absl flag per TrainConfig field, with the field's default and help."""
    for field in dataclasses.fields(config_lib.TrainConfig):
        help_text = field.metadata["help"]
        choices = field.metadata.get("choices")
        if choices:
            flags.DEFINE_enum(field.name, field.default, list(choices), help_text)
        elif field.type is bool:
            flags.DEFINE_boolean(field.name, field.default, help_text)
        elif field.type is int:
            flags.DEFINE_integer(field.name, field.default, help_text)
        elif field.type is float:
            flags.DEFINE_float(field.name, field.default, help_text)
        elif typing.get_origin(field.type) is tuple:
            flags.DEFINE_list(field.name, list(field.default), help_text)
        else:
            flags.DEFINE_string(field.name, field.default, help_text)


def config_from_flags(values=flags.FLAGS) -> config_lib.TrainConfig:
    """Builds the (validated) TrainConfig from parsed flags."""
    kwargs = {}
    for field in dataclasses.fields(config_lib.TrainConfig):
        value = getattr(values, field.name)
        if typing.get_origin(field.type) is tuple:
            item_type = typing.get_args(field.type)[0]
            value = tuple(item_type(item) for item in value)
        kwargs[field.name] = value
    return config_lib.TrainConfig(**kwargs)


def prepare_demo_data(config: config_lib.TrainConfig) -> None:
    """Makes the demo images and converts them into config.data_dir, unless already done."""
    from alexnet_tf.data.imagenet import demo as demo_data
    from alexnet_tf.data.imagenet import convert as imagenet_convert
    from alexnet_tf.data import schema
    if os.path.exists(os.path.join(config.data_dir, schema.MANIFEST_FILE)):
        logging.info("Demo records already in %s", config.data_dir)
        return
    path, _ = demo_data.make_demo_data(config.demo_dir, seed=config.seed)
    logging.info("Demo images in %s; converting to %s", path, config.data_dir)
    imagenet_convert.convert(imagenet_convert.ConvertOptions(
            imagenet_dir=path, output_dir=config.data_dir, resize=config.resize_size,
            num_workers=os.cpu_count() or 1, seed=config.seed, show_progress=config.progress_bar,
            **_DEMO_SHARDS))


def main(argv):
    del argv  # Unused.
    malloc_tuning.tune_malloc()  # reuse large buffers between steps (see the module)
    from alexnet_tf.training import loop as trainer  # Imports TensorFlow: after flag parsing (fast --help).
    config = config_from_flags()
    if config.deterministic:
        import tensorflow as tf  # Process-wide: set here, before any op runs.
        tf.config.experimental.enable_op_determinism()
    if config.make_demo_data:
        prepare_demo_data(config)
    try:
        results = trainer.train_and_evaluate(config, _MODEL_DIR.value)
    except trainer.NonFiniteLossError as error:
        logging.error("%s", error)
        return 1
    if results["preempted"]:
        print(f"Stopped by SIGTERM at step {results['step']}; checkpoint saved in "
              f"{_MODEL_DIR.value}. Rerun the same command to continue.")
        return 143
    print(f"step {results['step']}: validation top-1 error {results['top1_error']:.4f} "
          f"(accuracy {1 - results['top1_error']:.2%}), top-5 error "
          f"{results['top5_error']:.4f} on {results['num_examples']} images")
    print(f"model_dir: {_MODEL_DIR.value}  (export: python -m alexnet_tf.export "
          f"--model_dir={_MODEL_DIR.value} --export_dir=...)")
    return 0


_define_flags()

if __name__ == "__main__":
    app.run(lambda argv: sys.exit(main(argv)))
