"""Tests for alexnet_tf.training.config (TrainConfig: validation, config.json round trip,
resume compatibility) and the train command's flags and flagfiles."""

import dataclasses
import json
import os

from absl import flags
import pytest

from alexnet_tf import run_dir
from alexnet_tf import train_flags
from alexnet_tf.training import config as config_lib


@pytest.fixture
def train_flag_values():
    """The train command's flags, defined on their own FlagValues (as train defines them
    on the global one), so this test runs beside the other commands' flags."""
    flag_values = flags.FlagValues()
    train_flags.define_flags(flag_values)
    return flag_values


@pytest.fixture
def parse_flags(train_flag_values):
    """Parses argv as train does and returns the TrainConfig."""
    def parse(*args):
        train_flag_values.unparse_flags()
        train_flag_values(["train", *args])
        return train_flags.config_from_flags(train_flag_values)
    return parse


def test_every_field_is_a_flag_with_help(train_flag_values):
    for field in dataclasses.fields(config_lib.TrainConfig):
        flag = train_flag_values[field.name]
        assert flag.help.endswith(field.metadata["help"])
        assert field.metadata["help"]


# flags/demo.cfg's values that differ from TrainConfig's defaults.
DEMO_VALUES = dict(make_demo_data=True, data_dir="demo/data", init="cuda_convnet2",
                   input_size=112, resize_size=128, width_multiplier=0.5, mean_mode="rgb",
                   train_images=256000, lr_schedule="step", lr_boundaries=(192000, 230400),
                   checkpoint_every_steps=200, keep_checkpoints=3, log_every_steps=10)


def test_flagfile_then_override(parse_flags, repo_root):
    defaults = config_lib.TrainConfig(data_dir="/d")
    for name, value in DEMO_VALUES.items():  # Otherwise the file could be ignored unseen.
        assert getattr(defaults, name) != value, name
    config = parse_flags(f"--flagfile={repo_root}/flags/demo.cfg")
    assert {name: getattr(config, name) for name in DEMO_VALUES} == DEMO_VALUES
    # Flags are read in order: a flag after the file wins over the file's value, the
    # file's value wins over a flag before it, and the file's other values stay.
    config = parse_flags("--input_size=64", f"--flagfile={repo_root}/flags/demo.cfg",
                         "--batch_size=256", "--lr_boundaries=7,10", "--data_dir=/data/x")
    assert (config.batch_size, config.lr_boundaries, config.data_dir) == (256, (7, 10), "/data/x")
    assert (config.input_size, config.init, config.train_images) == (112, "cuda_convnet2", 256000)


def test_demo_trains_with_the_papers_optimizer(parse_flags, repo_root):
    config = parse_flags(f"--flagfile={repo_root}/flags/demo.cfg")
    paper = config_lib.TrainConfig(data_dir="/d")
    assert (config.optimizer, config.learning_rate, config.momentum, config.weight_decay,
            config.batch_size) == ("paper_sgd", paper.learning_rate, paper.momentum,
                                   paper.weight_decay, 128)


def test_alexnet_flagfile_is_the_defaults_but_the_released_initialisation(parse_flags,
                                                                          repo_root):
    # The paper's recipe is TrainConfig's defaults: flags/alexnet.cfg departs from it only
    # in the initialisation, that of the authors' released code (its header says why).
    config = parse_flags(f"--flagfile={repo_root}/flags/alexnet.cfg", "--data_dir=/d",
                         "--model_dir=/m")
    defaults = config_lib.TrainConfig(data_dir="/d")
    differences = {field.name: getattr(config, field.name)
                   for field in dataclasses.fields(config)
                   if getattr(config, field.name) != getattr(defaults, field.name)}
    assert differences == {"init": "cuda_convnet2"}
    # The paper's section 5.
    assert config.batch_size == 128 and config.optimizer == "paper_sgd"
    assert (config.learning_rate, config.momentum, config.weight_decay) == (0.01, 0.9, 0.0005)
    assert config.lr_schedule == "plateau" and config.lr_max_reductions == 3
    assert config.num_epochs == 90 and config.dropout_rate == 0.5


def test_list_flags_become_tuples(parse_flags):
    config = parse_flags("--data_dir=/d", "--model_dir=/m", "--lr_schedule=step",
                         "--lr_boundaries=30,60,80", "--tower_devices=/GPU:0,/GPU:1")
    assert config.lr_boundaries == (30, 60, 80)
    assert config.tower_devices == ("/GPU:0", "/GPU:1")


@pytest.mark.parametrize("cfg", ["alexnet.cfg", "zfnet.cfg", "demo.cfg"])
def test_shipped_flagfiles_parse_and_open_with_a_command(parse_flags, repo_root, cfg):
    path = os.path.join(repo_root, "flags", cfg)
    with open(path) as f:
        text = f.read()
    assert text.startswith("#") and "python3 -m alexnet_tf.train --flagfile=flags/" in text
    config = parse_flags(f"--flagfile={path}", "--data_dir=/d", "--model_dir=/m")
    assert config.model in ("alexnet", "zfnet")


def test_finetune_flagfile_gives_its_commands_and_the_recipe(parse_flags, repo_root):
    path = os.path.join(repo_root, "flags", "finetune.cfg")
    with open(path) as f:
        header = f.read()
    for command in ("python3 tools/convert_imagenet.py", "python3 -m alexnet_tf.train "
                    "--flagfile=runs/imagenet/model_flags.cfg", "--flagfile=flags/finetune.cfg",
                    "python3 -m alexnet_tf.export", "python3 -m alexnet_tf.import_weights"):
        assert command in header, command
    config = parse_flags(f"--flagfile={path}", "--data_dir=/d", "--init_checkpoint=/i")
    assert config.new_layers == ("fc8",) and config.trainable_layers == ("fc6", "fc7", "fc8")
    assert config.learning_rate_multipliers() == {"fc6": 0.1, "fc7": 0.1}
    assert (config.optimizer, config.learning_rate, config.momentum, config.weight_decay) == (
            "paper_sgd", 0.01, 0.9, 0.0005)


@pytest.mark.parametrize("kwargs, message", [
        (dict(batch_size=0), "batch_size"),
        (dict(precision="fp8"), "precision"),
        (dict(lr_schedule="step"), "lr_boundaries"),
        (dict(dropout_rate=1.0), "dropout_rate"),
        (dict(tower_devices=("/GPU:0",)), "tower_devices"),
        (dict(data_dir=""), "data_dir"),
        (dict(input_size=300), "resize_size"),
        (dict(lrn_k=0.0), "lrn_k must be > 0"),
        (dict(lrn_convention="torch"), "lrn_convention must be one of"),
        (dict(widths=(8, 12, 16)), "widths must be 7 integers"),
        (dict(widths=(8, 12, 16, 12, 8, 16, 16), width_multiplier=0.5), "width_multiplier 1"),
        (dict(model="zfnet", lrn_across_towers=True), "lrn_across_towers needs"),
        (dict(lr_multipliers=("fc8",)), "layer=factor"),
        (dict(lr_multipliers=("fc8=x",)), "layer=factor"),
        (dict(lr_multipliers=("fc8=-1",)), "factors >= 0"),
        (dict(lr_multipliers=("fc8=10", "fc8=1")), "distinct"),
        (dict(lr_multipliers=("fc8=10",), optimizer="adam"), "need --optimizer=paper_sgd"),
])
def test_bad_settings_name_the_setting(kwargs, message):
    values = dict(data_dir="/d")
    values.update(kwargs)
    with pytest.raises(ValueError, match=message):
        config_lib.TrainConfig(**values)


def test_lr_multipliers_parse_per_layer(parse_flags):
    config = parse_flags("--data_dir=/d", "--lr_multipliers=fc6=0.1, fc7=0.1,fc8=10")
    assert config.lr_multipliers == ("fc6=0.1", "fc7=0.1", "fc8=10")
    assert config.learning_rate_multipliers() == {"fc6": 0.1, "fc7": 0.1, "fc8": 10.0}
    assert config_lib.TrainConfig(data_dir="/d").learning_rate_multipliers() == {}


def test_save_round_trip_with_model_spec(tmp_path):
    config = config_lib.TrainConfig(data_dir="/d", num_classes=10, input_size=227,
                                    lr_schedule="step", lr_boundaries=(2, 4))
    config_lib.save(config, str(tmp_path))
    saved = run_dir.read_config(str(tmp_path))
    assert saved["model"] == dict(name="alexnet", num_classes=10, input_size=227,
                                  dropout_rate=0.5, use_lrn=True, width_multiplier=1.0,
                                  variant="paper")
    assert saved["stats_path"] is None
    assert config_lib.TrainConfig.from_dict(saved) == config
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_model_spec_carries_lrn_and_widths_only_when_set():
    spec = config_lib.TrainConfig(data_dir="/d", num_classes=10).model_spec()
    assert not {"widths", "lrn_convention", "lrn_k", "lrn_across_towers"} & set(spec)
    config = config_lib.TrainConfig(data_dir="/d", num_classes=10, input_size=227,
                                    widths=(8, 12, 16, 12, 8, 16, 16), lrn_convention="caffe",
                                    lrn_k=1.0, lrn_across_towers=True)
    spec = config.model_spec()
    assert (spec["widths"], spec["lrn_convention"], spec["lrn_k"], spec["lrn_across_towers"]) \
        == ([8, 12, 16, 12, 8, 16, 16], "caffe", 1.0, True)
    assert run_dir.build_model(spec).get_layer("norm2").groups == 1
    assert config_lib.TrainConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_model_spec_needs_num_classes():
    with pytest.raises(ValueError, match="num_classes"):
        config_lib.TrainConfig(data_dir="/d").model_spec()


def test_resume_compatibility():
    saved = config_lib.TrainConfig(data_dir="/d", num_classes=10).to_dict()
    saved = json.loads(json.dumps(saved))  # as read back from config.json
    # Where and how long may change ...
    config_lib.check_compatible(saved, config_lib.TrainConfig(
            data_dir="/elsewhere", num_classes=10, num_epochs=120, strategy="mirrored"))
    # ... so may the learning rate and the schedule's settings (the way out of a diverged
    # or stalled run), which are recorded ...
    lowered = config_lib.TrainConfig(data_dir="/d", num_classes=10, learning_rate=0.001,
                                     lr_patience=2)
    config_lib.check_compatible(saved, lowered)
    assert config_lib.changed_settings(saved, lowered) == {
            "learning_rate": [0.01, 0.001], "lr_patience": [5, 2]}
    # ... what is learned may not.
    with pytest.raises(ValueError, match=r"init: saved .paper., now .caffe.(.|\n)*batch_size"):
        config_lib.check_compatible(saved, config_lib.TrainConfig(
                data_dir="/d", num_classes=10, batch_size=64, init="caffe"))
    with pytest.raises(ValueError, match="deterministic"):  # changes the pipeline's graph
        config_lib.check_compatible(saved, config_lib.TrainConfig(
                data_dir="/d", num_classes=10, deterministic=True))
    with pytest.raises(ValueError, match="model"):
        config_lib.check_compatible(saved, config_lib.TrainConfig(
                data_dir="/d", num_classes=10, width_multiplier=0.5))
