"""The training command's flags: one absl flag per field of `TrainConfig`.

`train.py` defines them on the global flags; a tool that needs a run's configuration
without being the training command (the trainability benchmark) defines them on a
`flags.FlagValues` of its own and parses a flagfile into a `TrainConfig` the same way.
"""

import dataclasses
import typing

from absl import flags

from alexnet_tf.training import config as config_lib


MODEL_DIR_HELP = ("Directory of the run: config.json, checkpoints/, logs/ (TensorBoard), "
                  "labels.json.")


def define_flags(flag_values: flags.FlagValues) -> None:
    """train's flags: --model_dir and one absl flag per TrainConfig field, with the
    field's default, help and choices."""
    flags.DEFINE_string("model_dir", None, MODEL_DIR_HELP, flag_values=flag_values)
    for field in dataclasses.fields(config_lib.TrainConfig):
        help_text = field.metadata["help"]
        choices = field.metadata.get("choices")
        options = dict(flag_values=flag_values)
        if choices:
            flags.DEFINE_enum(field.name, field.default, list(choices), help_text, **options)
        elif field.type is bool:
            flags.DEFINE_boolean(field.name, field.default, help_text, **options)
        elif field.type is int:
            flags.DEFINE_integer(field.name, field.default, help_text, **options)
        elif field.type is float:
            flags.DEFINE_float(field.name, field.default, help_text, **options)
        elif typing.get_origin(field.type) is tuple:
            flags.DEFINE_list(field.name, list(field.default), help_text, **options)
        else:
            flags.DEFINE_string(field.name, field.default, help_text, **options)


def config_from_flags(flag_values: flags.FlagValues) -> config_lib.TrainConfig:
    """Builds the (validated) TrainConfig from parsed flags.

    Raises:
      ValueError: a setting is out of range (TrainConfig.validate says which).
    """
    kwargs = {}
    for field in dataclasses.fields(config_lib.TrainConfig):
        value = getattr(flag_values, field.name)
        if typing.get_origin(field.type) is tuple:
            item_type = typing.get_args(field.type)[0]
            value = tuple(item_type(item) for item in value)
        kwargs[field.name] = value
    return config_lib.TrainConfig(**kwargs)


def parse_flagfile(path: str, *extra_flags: str) -> config_lib.TrainConfig:
    """The TrainConfig of `--flagfile=path` followed by `extra_flags`, as train reads it."""
    flag_values = flags.FlagValues()
    define_flags(flag_values)
    flag_values(["train", f"--flagfile={path}", *extra_flags])
    return config_from_flags(flag_values)
