"""Training on a damaged shard (real records from the real converter, then truncated or
with bytes flipped): the run stops naming the shard and the byte; with
--skip_bad_records it finishes, and the skipped shard is logged and in TensorBoard."""

import glob
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from alexnet_tf.data import damaged_shards
from alexnet_tf.data import schema
from alexnet_tf.training import config as config_lib
from alexnet_tf.training import loop
from alexnet_tf.training import summaries

DAMAGED = schema.shard_name(schema.TRAIN, 1, 2)


@pytest.fixture
def records(tiny_records):
    """The session's tiny records (conftest): 3 classes, converted by the real converter."""
    return tiny_records


@pytest.fixture
def damaged_records(records, tmp_path, damage_shard):
    """damaged_records(how) -> (a copy of the records with DAMAGED damaged, where)."""
    def make(how):
        data_dir = str(tmp_path / "records")
        shutil.copytree(records, data_dir)
        return data_dir, damage_shard(os.path.join(data_dir, DAMAGED), how)
    return make


def _config(data_dir, **overrides):
    # A truncated shard is refused at start-up (its size differs from the manifest's):
    # accept_changed_data lets the run reach it.
    values = dict(data_dir=data_dir, input_size=64, resize_size=72, width_multiplier=0.05,
                  batch_size=4, mean_mode="rgb", progress_bar=False, summary_images=False,
                  max_steps=2, log_every_steps=1, eval_steps=1, accept_changed_data=True)
    values.update(overrides)
    return config_lib.TrainConfig(**values)


def _scalars(model_dir, split, tag):
    values = []
    for path in glob.glob(os.path.join(model_dir, summaries.LOG_DIR, split, "events*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            values += [float(tf.make_ndarray(value.tensor)) for value in event.summary.value
                       if value.tag == tag]
    return values


@pytest.mark.parametrize("how, reason", [("truncate", "truncated"), ("flip", "corrupted")])
def test_a_damaged_shard_stops_the_run_by_name_and_the_flag_skips_it(
        damaged_records, tmp_path, how, reason, caplog):
    data_dir, where = damaged_records(how)
    shard = os.path.join(data_dir, DAMAGED)
    model_dir = str(tmp_path / "run")
    with pytest.raises(damaged_shards.DamagedShardError,
                       match=f"^{shard}: .*record {where['record']} \\(at byte "
                             f"{where['offset']}\\) is {reason}"):
        loop.train_and_evaluate(_config(data_dir), model_dir)
    # The same run goes on with the flag (an allowed change, recorded).
    results = loop.train_and_evaluate(_config(data_dir, skip_bad_records=True), model_dir)
    assert results["step"] == 2
    warnings = [record.getMessage() for record in caplog.records
                if record.levelname == "WARNING"]
    assert any(f"{shard}: damaged TFRecord shard: record {where['record']} (at byte "
               f"{where['offset']})" in message for message in warnings), warnings
    assert _scalars(model_dir, "train", "data/damaged_shards")[-1] == 1
    assert _scalars(model_dir, "train", "data/bad_records")[-1] == 0
    assert _scalars(model_dir, "validation", "data/damaged_shards")[-1] == 0


def test_train_command_reports_a_damaged_shard_in_one_line(damaged_records, tmp_path,
                                                           repo_root):
    data_dir, where = damaged_records("flip")
    process = subprocess.run(
            [sys.executable, "-m", "alexnet_tf.train", f"--data_dir={data_dir}",
             f"--model_dir={tmp_path / 'run'}", "--input_size=64", "--resize_size=72",
             "--width_multiplier=0.05", "--batch_size=4", "--mean_mode=rgb", "--max_steps=2",
             "--noprogress_bar", "--nosummary_images"],
            cwd=repo_root, capture_output=True, text=True, timeout=180,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert process.returncode == 2, process.stderr[-3000:]
    [line] = [line for line in process.stderr.splitlines() if "error" in line]
    assert line.startswith(f"alexnet_tf.train: error: {os.path.join(data_dir, DAMAGED)}: ")
    assert f"(at byte {where['offset']}) is corrupted" in line and "--skip_bad_records" in line
