"""Tests for alexnet_tf.checkpoint_files on real checkpoints, damaged as a disk fault would."""

import glob
import os
import re

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import checkpoint_files
from alexnet_tf import errors
from alexnet_tf import run_dir


@pytest.fixture
def directory(tmp_path):
    """A checkpoint directory holding ckpt-10, ckpt-20, ckpt-30 of a few variables and an
    input iterator (a variant tensor), written by a CheckpointManager."""
    weights = tf.Variable(np.arange(5000, dtype=np.float32))
    iterator = iter(tf.data.Dataset.range(100).shuffle(10, seed=1))
    checkpoint = tf.train.Checkpoint(weights=weights, iterator=iterator)
    manager = tf.train.CheckpointManager(checkpoint, str(tmp_path / "checkpoints"),
                                         max_to_keep=3,
                                         checkpoint_name=checkpoint_files.CHECKPOINT_NAME)
    for step in (10, 20, 30):
        next(iterator)
        weights.assign_add(tf.ones_like(weights))
        manager.save(checkpoint_number=step)
    return str(tmp_path / "checkpoints")


def test_an_intact_checkpoint_has_no_problem(directory):
    assert checkpoint_files.on_disk(directory) == [
            os.path.join(directory, f"ckpt-{step}") for step in (10, 20, 30)]
    assert checkpoint_files.problem(os.path.join(directory, "ckpt-30")) is None
    assert checkpoint_files.newest_intact(directory) == (os.path.join(directory, "ckpt-30"), [])


@pytest.mark.parametrize("how, expected", [
    ("truncate-data", "its data does not read at .*Read less bytes than requested"),
    ("truncate-index", "its .index file does not read .*not an sstable"),
])
def test_a_damaged_checkpoint_is_found_and_skipped(directory, corrupt_checkpoint, how,
                                                   expected):
    latest = os.path.join(directory, "ckpt-30")
    corrupt_checkpoint(latest, how)
    found = checkpoint_files.problem(latest)
    assert found is not None and "\n" not in found
    assert re.search(expected, found), found
    path, damaged = checkpoint_files.newest_intact(directory)
    assert path == os.path.join(directory, "ckpt-20")
    assert [bad.prefix for bad in damaged] == [latest]


def test_a_flipped_byte_fails_the_checksum(directory):
    latest = os.path.join(directory, "ckpt-30")
    data = latest + ".data-00000-of-00001"
    content = bytearray(open(data, "rb").read())
    content[len(content) // 2] ^= 0x10
    with open(data, "wb") as f:
        f.write(content)
    assert "checksum" in checkpoint_files.problem(latest).lower()


def test_a_garbage_state_file_does_not_hide_the_checkpoints(directory, corrupt_checkpoint):
    corrupt_checkpoint(os.path.join(directory, "ckpt-30"), "garbage-state")
    state, problem = checkpoint_files.read_state(directory)
    assert state is None and "utf-8" in problem
    assert checkpoint_files.newest_intact(directory)[0] == os.path.join(directory, "ckpt-30")


def test_none_readable_is_an_error_naming_each(directory, corrupt_checkpoint):
    for step in (10, 20, 30):
        corrupt_checkpoint(os.path.join(directory, f"ckpt-{step}"), "truncate-data")
    with pytest.raises(errors.CorruptCheckpointError, match="ckpt-30: .*ckpt-20: .*ckpt-10"):
        checkpoint_files.newest_intact(directory)
    assert checkpoint_files.newest_intact(directory + "-none") == (None, [])


def test_set_aside_renames_and_never_overwrites(directory):
    moved = checkpoint_files.set_aside(os.path.join(directory, "ckpt-30"))
    assert moved == os.path.join(directory, "corrupt-ckpt-30")
    assert sorted(os.path.basename(path) for path in glob.glob(moved + ".*")) == [
            "corrupt-ckpt-30.data-00000-of-00001", "corrupt-ckpt-30.index"]
    assert checkpoint_files.on_disk(directory)[-1].endswith("ckpt-20")
    # A second damaged ckpt-30 (written again after the fallback) gets another name.
    for path in glob.glob(moved + ".*"):
        tf.io.gfile.copy(path, os.path.join(directory, os.path.basename(path)[8:]))
    again = checkpoint_files.set_aside(os.path.join(directory, "ckpt-30"))
    assert again == os.path.join(directory, "corrupt-ckpt-30-2")
    assert len(glob.glob(os.path.join(directory, "corrupt-*"))) == 4


def test_commands_skip_a_damaged_latest_but_never_a_named_one(tmp_path, make_run,
                                                              corrupt_checkpoint):
    run = make_run(tmp_path / "run", ("a", "b"))
    run["manager"].save()  # ckpt-2
    directory = run_dir.checkpoint_dir(run["model_dir"])
    corrupt_checkpoint(os.path.join(directory, "ckpt-2"), "truncate-data")
    corrupt_checkpoint(os.path.join(directory, "ckpt-2"), "garbage-state")
    assert run_dir.latest_checkpoint(run["model_dir"]) == os.path.join(directory, "ckpt-1")
    with pytest.raises(errors.CorruptCheckpointError, match=r"'ckpt-2' \(.*ckpt-2\) is damaged"):
        run_dir.restore_model(run["model_dir"], "ckpt-2")
    corrupt_checkpoint(os.path.join(directory, "ckpt-1"), "truncate-index")
    with pytest.raises(errors.CorruptCheckpointError, match="no checkpoint in .* reads whole"):
        run_dir.restore_model(run["model_dir"])
