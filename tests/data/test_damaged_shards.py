"""Tests for alexnet_tf.data.damaged_shards: the frame checksum, a truncated and a corrupted
shard named with their byte, and skipping them through the input pipeline."""

import os
import struct

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf.data import damaged_shards
from alexnet_tf.data import pipeline as input_pipeline
from alexnet_tf.data import schema

CROP, RESIZE = 24, 32
NUM_SHARDS, PER_SHARD, BATCH = 3, 8, 4
NUM_RECORDS = NUM_SHARDS * PER_SHARD
DAMAGED = schema.shard_name("train", 1, NUM_SHARDS)


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory, random_image, encode_image):
    """NUM_SHARDS 'train' shards; record k (label k) is in shard k % NUM_SHARDS."""
    data_dir = tmp_path_factory.mktemp("clean")
    writers = [tf.io.TFRecordWriter(str(data_dir / schema.shard_name("train", i, NUM_SHARDS)))
               for i in range(NUM_SHARDS)]
    for k in range(NUM_RECORDS):
        encoded = encode_image(random_image(RESIZE, RESIZE + k, seed=k), quality=90)
        writers[k % NUM_SHARDS].write(schema.make_example(
                encoded=encoded, image_format="JPEG", height=RESIZE, width=RESIZE + k,
                filename=f"{k}.JPEG", label=k, synset=f"n{k:08d}"))
    for writer in writers:
        writer.close()
    return data_dir


@pytest.fixture
def damaged_dir(clean_dir, tmp_path, damage_shard):
    """damaged_dir(how): a copy of the shards with DAMAGED damaged -> (dir, damage info)."""
    def make(how):
        for name in os.listdir(clean_dir):
            (tmp_path / name).write_bytes((clean_dir / name).read_bytes())
        return str(tmp_path), damage_shard(tmp_path / DAMAGED, how)
    return make


def build(data_dir, stats, **kwargs):
    options = dict(global_batch_size=BATCH, training=False, seed=3, stats=stats,
                   crop_size=CROP, resize_size=RESIZE, num_classes=NUM_RECORDS)
    options.update(kwargs)
    return input_pipeline.build_dataset(data_dir, "train", **options)


def _labels(dataset):
    return sorted(int(label) for _, labels in dataset for label in labels.numpy())


def test_masked_crc32c_is_the_checksum_tensorflow_writes(clean_dir):
    with open(clean_dir / DAMAGED, "rb") as f:
        header = f.read(12)
        (length,) = struct.unpack("<Q", header[:8])
        data = f.read(length)
        (data_crc,) = struct.unpack("<I", f.read(4))
    assert struct.unpack("<I", header[8:])[0] == damaged_shards.masked_crc32c(header[:8])
    assert data_crc == damaged_shards.masked_crc32c(data)
    assert damaged_shards.masked_crc32c(data + b"x") != data_crc


@pytest.mark.parametrize("how, reason, unread", [
        ("truncate", "is truncated", 0),
        ("flip", "is corrupted: its data does not match its checksum", "after"),
        ("flip_length", "is corrupted: its length does not match its checksum", None)])
def test_inspect_says_why_a_frame_cannot_be_read(damaged_dir, how, reason, unread):
    data_dir, where = damaged_dir(how)
    damage = damaged_shards.inspect(os.path.join(data_dir, DAMAGED), where["offset"],
                                    where["record"])
    assert reason in damage.reason
    if unread == "after":
        unread = where["num_records"] - where["record"] - 1
    assert damage.unread_records == unread
    assert damage.describe().startswith(f"{os.path.join(data_dir, DAMAGED)}: damaged TFRecord "
                                        f"shard: record {where['record']} (at byte "
                                        f"{where['offset']})")


@pytest.mark.parametrize("how, reason", [("truncate", "truncated"), ("flip", "corrupted")])
def test_a_damaged_shard_is_a_one_line_error_naming_shard_and_byte(damaged_dir, stats, how,
                                                                   reason):
    data_dir, where = damaged_dir(how)
    with pytest.raises(damaged_shards.DamagedShardError) as raised, \
            damaged_shards.user_errors():
        list(build(data_dir, stats))
    message = str(raised.value)
    assert isinstance(raised.value, errors.InvalidInputError) and "\n" not in message
    assert message.startswith(os.path.join(data_dir, DAMAGED))
    assert f"record {where['record']} (at byte {where['offset']}) is {reason}" in message
    assert "--skip_bad_records" in message


@pytest.mark.parametrize("how", ["truncate", "flip"])
def test_skipping_keeps_every_readable_record_and_notes_the_shard(damaged_dir, stats, how,
                                                                  capfd):
    data_dir, where = damaged_dir(how)
    skipped = damaged_shards.SkippedData()
    labels = _labels(build(data_dir, stats, skip_bad_records=True, skipped=skipped))
    # Shard 1 holds records 1, 4, 7...: its records from the damaged one on are lost.
    lost = {1 + NUM_SHARDS * index for index in range(where["record"], PER_SHARD)}
    assert labels == [k for k in range(NUM_RECORDS) if k not in lost]
    [damage] = skipped.damaged()
    assert (damage.path, damage.offset, damage.record) == (
            os.path.join(data_dir, DAMAGED), where["offset"], where["record"])
    assert skipped.num_bad_records() == 0
    assert (f"skipping the rest of damaged shard {os.path.join(data_dir, DAMAGED)} from byte "
            f"{where['offset']}") in capfd.readouterr().err


def test_training_skips_the_damaged_shard_every_epoch_and_counts_bad_records(
        damaged_dir, stats, encode_image, random_image):
    data_dir, where = damaged_dir("flip")
    # Also a bad record in another shard: record 0's image cut short.
    shard = os.path.join(data_dir, schema.shard_name("train", 0, NUM_SHARDS))
    records = [r.numpy() for r in tf.data.TFRecordDataset(shard)]
    with tf.io.TFRecordWriter(shard) as writer:
        writer.write(schema.make_example(encoded=b"\xff\xd8 not a jpeg", image_format="JPEG",
                                         height=RESIZE, width=RESIZE, filename="0.JPEG",
                                         label=0, synset="n0"))
        for record in records[1:]:
            writer.write(record)
    skipped = damaged_shards.SkippedData()
    labels = _labels(build(data_dir, stats, training=True, num_epochs=2, skip_bad_records=True,
                           skipped=skipped))
    readable = NUM_RECORDS - 1 - (PER_SHARD - where["record"])
    assert len(labels) == 2 * readable // BATCH * BATCH and 0 not in labels
    assert skipped.num_bad_records() == 2  # once per epoch
    assert [damage.record for damage in skipped.damaged()] == [where["record"]]


def test_a_run_resumes_with_skipping_turned_on(clean_dir, stats, tmp_path):
    """The pipeline has the same structure with and without skipping: an iterator saved
    without it restores with it (a run stopped by a damaged shard goes on)."""
    data_dir = str(clean_dir)
    options = dict(training=True, num_epochs=2, shuffle_buffer=8)
    iterator = iter(build(data_dir, stats, **options))
    next(iterator)
    path = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "ckpt"))
    rest = [labels.numpy() for _, labels in iterator]
    restored = iter(build(data_dir, stats, **options, skip_bad_records=True,
                          skipped=damaged_shards.SkippedData()))
    tf.train.Checkpoint(iterator=restored).read(path).assert_consumed()
    rest_restored = [labels.numpy() for _, labels in restored]
    np.testing.assert_array_equal(np.concatenate(rest), np.concatenate(rest_restored))
