"""Tests for alexnet_tf.data.pipeline: shapes, repeatability, exactly-once resume, sharding,
bad records."""

import json
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from alexnet_tf.data import chunk_decode
from alexnet_tf.data import pipeline as input_pipeline
from alexnet_tf.data import preprocessing
from alexnet_tf.data import schema
from alexnet_tf.data import stats as stats_lib

CROP, RESIZE = 24, 32
NUM_RECORDS, NUM_SHARDS, BATCH = 48, 4, 8
SIZES = dict(crop_size=CROP, resize_size=RESIZE)


@pytest.fixture(scope="session")
def jpeg_bytes(random_image, encode_image):
    """jpeg_bytes(k): record k's image, RESIZE x RESIZE noise drawn with seed k."""
    def make(seed: int) -> bytes:
        return encode_image(random_image(RESIZE, RESIZE, seed), quality=90)
    return make


@pytest.fixture(scope="session")
def write_records(jpeg_bytes):
    """write_records(data_dir, bad=None): NUM_RECORDS records in NUM_SHARDS 'train' shards.

    Record k has label k (so every record is identifiable); `bad` maps k -> (bytes, label).
    """
    def write(data_dir, bad=None) -> str:
        os.makedirs(data_dir, exist_ok=True)
        writers = [tf.io.TFRecordWriter(
                           os.path.join(data_dir, schema.shard_name("train", i, NUM_SHARDS)))
                   for i in range(NUM_SHARDS)]
        for k in range(NUM_RECORDS):
            encoded, label = (bad or {}).get(k, (jpeg_bytes(k), k))
            writers[k % NUM_SHARDS].write(schema.make_example(
                    encoded=encoded, image_format="JPEG", height=RESIZE, width=RESIZE,
                    filename=f"{k}.JPEG", label=label, synset=f"n{k:08d}"))
        for writer in writers:
            writer.close()
        with open(os.path.join(data_dir, schema.LABELS_FILE), "w") as f:
            json.dump([{"index": k, "synset": f"n{k:08d}", "name": ""}
                       for k in range(NUM_RECORDS)], f)
        return str(data_dir)
    return write


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, write_records):
    return write_records(tmp_path_factory.mktemp("records"))


def build(data_dir, stats, **kwargs):
    options = dict(global_batch_size=BATCH, training=True, seed=3, stats=stats, **SIZES)
    options.update(kwargs)
    return input_pipeline.build_dataset(data_dir, "train", **options)


def test_training_batches_shapes_and_each_record_once_per_epoch(data_dir, stats, labels_of):
    batches = list(build(data_dir, stats, num_epochs=2))
    assert len(batches) == 2 * NUM_RECORDS // BATCH
    images, labels = batches[0]
    assert images.shape == (BATCH, CROP, CROP, 3) and images.dtype == tf.float32
    assert labels.shape == (BATCH,) and labels.dtype == tf.int32
    labels = labels_of(batches)
    for epoch in np.split(labels, 2):
        np.testing.assert_array_equal(np.sort(epoch), np.arange(NUM_RECORDS))
    assert not np.array_equal(*np.split(labels, 2)), "the two epochs should be shuffled differently"


def test_same_seed_same_batches_other_seed_differs(data_dir, stats, labels_of):
    first = list(build(data_dir, stats, num_epochs=1).take(3))
    second = list(build(data_dir, stats, num_epochs=1).take(3))
    for (a_images, a_labels), (b_images, b_labels) in zip(first, second):
        np.testing.assert_array_equal(a_labels, b_labels)
        np.testing.assert_array_equal(a_images, b_images)
    other = list(build(data_dir, stats, num_epochs=1, seed=4).take(3))
    assert not np.array_equal(labels_of(first), labels_of(other))


def test_iterator_checkpoint_mid_epoch_restores_exactly_the_rest(data_dir, stats, tmp_path,
                                                                 labels_of):
    iterator = iter(build(data_dir, stats, num_epochs=2, shuffle_buffer=16))
    seen = [next(iterator) for _ in range(3)]
    path = tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "ckpt"))
    rest = list(iterator)
    restored = iter(build(data_dir, stats, num_epochs=2, shuffle_buffer=16))
    tf.train.Checkpoint(iterator=restored).read(path).assert_consumed()
    rest_after_restore = list(restored)
    assert len(rest_after_restore) == len(rest) == 2 * NUM_RECORDS // BATCH - 3
    for (images, labels), (images_restored, labels_restored) in zip(rest, rest_after_restore):
        np.testing.assert_array_equal(labels, labels_restored)
        np.testing.assert_array_equal(images, images_restored)
    first_epoch = labels_of(seen + rest[:NUM_RECORDS // BATCH - 3])
    np.testing.assert_array_equal(np.sort(first_epoch), np.arange(NUM_RECORDS))


def test_chunking_does_not_change_the_batches(data_dir, stats, monkeypatch):
    default = list(build(data_dir, stats, num_epochs=2))
    monkeypatch.setattr(chunk_decode, "CHUNK_SIZE", 3)
    monkeypatch.setattr(chunk_decode, "MAX_CHUNK_SIZE", 4)  # batches of 8: chunks of 4
    assert chunk_decode.chunk_size(BATCH) == 4
    small_chunks = list(build(data_dir, stats, num_epochs=2))
    assert len(default) == len(small_chunks) == 2 * NUM_RECORDS // BATCH
    for (images, labels), (images_small, labels_small) in zip(default, small_chunks):
        np.testing.assert_array_equal(labels, labels_small)
        np.testing.assert_array_equal(images, images_small)


def test_records_beside_a_bad_one_are_decoded_as_in_a_clean_run(data_dir, tmp_path, stats,
                                                                write_records):
    # The bad record's chunk is decoded record by record: its good records must come out
    # exactly as when the chunk is decoded whole (same position, same draws).
    def by_label(batches):
        return {int(label): image for images, labels in batches
                for image, label in zip(images.numpy(), labels.numpy())}

    clean = by_label(build(data_dir, stats, num_epochs=1))
    broken_dir = write_records(tmp_path, bad={9: (b"garbage", 9)})
    skipped = by_label(build(broken_dir, stats, num_epochs=1, skip_bad_records=True))
    # 47 good records in batches of 8, the remainder dropped: 40 seen, all of them clean.
    assert len(clean) == NUM_RECORDS and len(skipped) == 5 * BATCH and 9 not in skipped
    for label in skipped:
        np.testing.assert_array_equal(skipped[label], clean[label])


def test_eval_keeps_every_record_and_ten_crops(data_dir, stats, labels_of, jpeg_bytes):
    batches = list(build(data_dir, stats, training=False, global_batch_size=10))
    assert [int(labels.shape[0]) for _, labels in batches] == [10, 10, 10, 10, 8]
    np.testing.assert_array_equal(np.sort(labels_of(batches)), np.arange(NUM_RECORDS))
    images, labels = next(iter(build(data_dir, stats, training=False, ten_crop=True)))
    assert images.shape == (BATCH, 10, CROP, CROP, 3)
    record = jpeg_bytes(int(labels[0]))
    expected = preprocessing.preprocess_for_eval(record, stats=stats, ten_crop=True, **SIZES)
    np.testing.assert_allclose(images[0], expected, atol=1e-4)


def test_augment_on_device_matches_host(data_dir, stats):
    host_images, host_labels = next(iter(build(data_dir, stats)))
    batch, labels = next(iter(build(data_dir, stats, augment_on_device=True)))
    assert batch[preprocessing.IMAGE_KEY].dtype == tf.uint8
    np.testing.assert_array_equal(labels, host_labels)
    images = preprocessing.device_augment(batch, stats=stats, resize_size=RESIZE)
    np.testing.assert_allclose(images, host_images, atol=1e-4)


def test_input_context_shards_by_file_and_batches_per_replica(data_dir, stats, labels_of):
    labels = []
    for pipeline_id in range(2):
        context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=pipeline_id,
                                             num_replicas_in_sync=4)
        batches = list(build(data_dir, stats, training=False, input_context=context))
        assert all(int(batch_labels.shape[0]) <= BATCH // 4 for _, batch_labels in batches)
        labels.append(set(labels_of(batches).tolist()))
    assert labels[0].isdisjoint(labels[1])
    assert labels[0] | labels[1] == set(range(NUM_RECORDS))
    # Shards 0 and 2 go to pipeline 0: records k with k % 4 in (0, 2).
    assert labels[0] == {k for k in range(NUM_RECORDS) if k % NUM_SHARDS in (0, 2)}
    with pytest.raises(ValueError, match="shard files cannot feed"):
        build(data_dir, stats, input_context=tf.distribute.InputContext(8, 0, 8))


def test_distribute_datasets_from_function(data_dir, stats):
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dataset = strategy.distribute_datasets_from_function(
            lambda context: build(data_dir, stats, input_context=context))
    images, labels = next(iter(dataset))
    per_replica = strategy.experimental_local_results(images)
    assert [tuple(x.shape) for x in per_replica] == [(BATCH // 2, CROP, CROP, 3)] * 2


@pytest.mark.parametrize("bad", ["jpeg", "label"])
def test_bad_record_error_names_the_shard(tmp_path, stats, bad, write_records, jpeg_bytes):
    broken = {5: (b"\xff\xd8\xff\xe0 truncated", 5)} if bad == "jpeg" else {5: (jpeg_bytes(5), 999)}
    data_dir = write_records(tmp_path, bad=broken)
    bad_shard = schema.shard_name("train", 5 % NUM_SHARDS, NUM_SHARDS)
    with pytest.raises(tf.errors.InvalidArgumentError, match=bad_shard):
        list(build(data_dir, stats, training=False))


def test_skip_bad_records_skips_and_counts(tmp_path, stats, labels_of, write_records, jpeg_bytes):
    broken = {5: (b"not a jpeg at all", 5), 6: (jpeg_bytes(6), -1), 7: (jpeg_bytes(7)[:60], 7)}
    data_dir = write_records(tmp_path, bad=broken)
    counter = tf.Variable(0, dtype=tf.int64)
    batches = list(build(data_dir, stats, training=False, skip_bad_records=True,
                         bad_record_counter=counter))
    assert sorted(labels_of(batches)) == [k for k in range(NUM_RECORDS) if k not in broken]
    assert int(counter.numpy()) == len(broken)


def test_missing_shards_raise(tmp_path, stats):
    with pytest.raises(FileNotFoundError, match="no 'train' shards"):
        build(str(tmp_path), stats)


def test_synthetic_dataset():
    images, labels = next(iter(input_pipeline.synthetic_dataset(global_batch_size=4, crop_size=8,
                                                                num_classes=3)))
    assert images.shape == (4, 8, 8, 3) and labels.shape == (4,)
    assert labels.dtype == tf.int32 and 0 <= labels.numpy().min() and labels.numpy().max() < 3


def test_labels_survive_the_real_converter(tmp_path, stats, labels_of):
    from alexnet_tf.data.imagenet import convert as imagenet_convert
    # Class k: solid colour 30 + 50 k, sizes that need resizing and cropping.
    synsets = ["n00000003", "n00000001", "n00000002"]  # sorted order gives the labels
    colours = {synset: 30 + 50 * i for i, synset in enumerate(sorted(synsets))}
    for synset in synsets:
        os.makedirs(tmp_path / "imagenet" / "train" / synset)
        for j, size in enumerate([(40, 50), (64, 36), (33, 33)]):
            Image.new("RGB", size, (colours[synset],) * 3).save(
                    tmp_path / "imagenet" / "train" / synset / f"{synset}_{j}.JPEG")
    options = imagenet_convert.ConvertOptions(
            imagenet_dir=str(tmp_path / "imagenet"), output_dir=str(tmp_path / "records"),
            splits=("train",), train_shards=2, resize=RESIZE, show_progress=False)
    imagenet_convert.convert(options)
    batches = list(input_pipeline.build_dataset(
            str(tmp_path / "records"), "train", global_batch_size=4, training=False, seed=0,
            stats=stats, mean_mode="rgb", **SIZES))
    labels = labels_of(batches)
    assert sorted(labels) == sorted([0, 1, 2] * 3)
    expected_colour = np.array([colours[s] for s in sorted(synsets)])
    pixels = np.concatenate([images.numpy() for images, _ in batches]) + stats.mean_rgb
    np.testing.assert_allclose(pixels.mean(axis=(1, 2, 3)), expected_colour[labels], atol=3)


@pytest.mark.parametrize("mean_mode", ["image", "rgb"])
def test_xla_float_stage_equals_the_eager_ops(mean_mode):
    rng = np.random.default_rng(11)
    mean_image = rng.uniform(0, 255, (RESIZE, RESIZE, 3)).astype(np.float32)
    stats = stats_lib.ImageStats(mean_rgb=mean_image.mean((0, 1)), mean_image=mean_image,
                                 eigval=np.array([5.0, 2.0, 1.0], np.float32),
                                 eigvec=np.linalg.qr(rng.normal(size=(3, 3)))[0].astype(np.float32))
    batch = {preprocessing.IMAGE_KEY: tf.constant(rng.integers(0, 256, (6, CROP, CROP, 3)), tf.uint8),
             preprocessing.OFFSET_KEY: tf.constant(rng.integers(0, RESIZE - CROP + 1, (6, 2)), tf.int32),
             preprocessing.FLIP_KEY: tf.constant([True, False, True, True, False, False]),
             preprocessing.ALPHA_KEY: tf.constant(rng.normal(0, 0.1, (6, 3)), tf.float32)}
    compiled = input_pipeline._float_stage(stats=stats, mean_mode=mean_mode, resize_size=RESIZE)
    eager = preprocessing.device_augment(batch, stats=stats, mean_mode=mean_mode,
                                         resize_size=RESIZE)
    np.testing.assert_array_equal(compiled(batch), eager)
    # And the mirror really happened where asked: crop 0 is mirrored, crop 1 is not.
    plain = preprocessing.device_augment({**batch, preprocessing.FLIP_KEY: tf.zeros([6], tf.bool)},
                                         stats=stats, mean_mode="rgb", resize_size=RESIZE)
    if mean_mode == "rgb":
        np.testing.assert_array_equal(eager[0], plain[0][:, ::-1])
        np.testing.assert_array_equal(eager[1], plain[1])


def test_bad_last_record_of_an_eval_stream_is_reported(tmp_path, stats, labels_of, write_records):
    # Record 47 is read last from its shard; with 4 shards interleaved it is the very
    # last of the stream, so only the end-of-stream sentinel can reveal it.
    data_dir = write_records(tmp_path, bad={NUM_RECORDS - 1: (b"\xff\xd8\xff broken", 1)})
    bad_shard = schema.shard_name("train", (NUM_RECORDS - 1) % NUM_SHARDS, NUM_SHARDS)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"{bad_shard}.*\n?.*11"):
        list(build(data_dir, stats, training=False))
    counter = tf.Variable(0, dtype=tf.int64)
    batches = list(build(data_dir, stats, training=False, skip_bad_records=True,
                         bad_record_counter=counter))
    assert sorted(labels_of(batches)) == list(range(NUM_RECORDS - 1))
    assert int(counter.numpy()) == 1
    # 47 records in batches of 8: the sentinel never shows, the last batch is short.
    assert [int(labels.shape[0]) for _, labels in batches] == [8] * 5 + [7]


def test_bad_record_in_training_names_the_shard_and_skips_count(tmp_path, stats, labels_of,
                                                                write_records):
    broken = {k: (b"garbage", k) for k in (3, 17, 18)}
    data_dir = write_records(tmp_path, bad=broken)
    with pytest.raises(tf.errors.InvalidArgumentError, match="train-0000[0-3]-of-00004"):
        list(build(data_dir, stats, num_epochs=1))
    counter = tf.Variable(0, dtype=tf.int64)
    labels = labels_of(build(data_dir, stats, num_epochs=2, skip_bad_records=True,
                             bad_record_counter=counter))
    # 2 x 45 good records, in batches of 8 with the remainder dropped: 88 seen.
    assert len(labels) == 88 and not set(labels) & set(broken)
    assert int(counter.numpy()) == 6


def test_a_whole_chunk_of_bad_records_is_counted(tmp_path, stats, monkeypatch, labels_of,
                                                 write_records):
    monkeypatch.setattr(chunk_decode, "CHUNK_SIZE", 4)
    monkeypatch.setattr(chunk_decode, "MAX_CHUNK_SIZE", 4)  # batches of 8: chunks of 4
    broken = {k: (b"garbage", k) for k in range(4, 16)}  # interleaved: 3 whole chunks
    data_dir = write_records(tmp_path, bad=broken)
    counter = tf.Variable(0, dtype=tf.int64)
    labels = labels_of(build(data_dir, stats, training=False, skip_bad_records=True,
                             bad_record_counter=counter))
    assert sorted(labels) == [k for k in range(NUM_RECORDS) if k not in broken]
    assert int(counter.numpy()) == len(broken)
    with pytest.raises(tf.errors.InvalidArgumentError, match="bad record"):
        list(build(data_dir, stats, training=False))


def test_pipeline_image_k_is_preprocess_for_train_of_record_k(tmp_path, random_image,
                                                               encode_image):
    """The training pipeline gives, for the record at stream position k, exactly
    preprocess_for_train(record, seed=(augment_seed(seed), k)): the documented reference.
    One shard and a shuffle buffer of 1 put record k at position k."""
    images = [encode_image(random_image(40 + 7 * index, 52, seed=index)) for index in range(6)]
    with tf.io.TFRecordWriter(str(tmp_path / schema.shard_name(schema.TRAIN, 0, 1))) as writer:
        for index, encoded in enumerate(images):
            writer.write(schema.make_example(encoded=encoded, image_format="JPEG", height=0,
                                             width=0, filename=f"{index}.jpg",
                                             label=index % 2, synset="n0"))
    rng = np.random.default_rng(3)
    stats = stats_lib.ImageStats(mean_rgb=np.array([120.0, 110.0, 100.0]),
                                 eigval=np.array([50.0, 5.0, 1.0]), eigvec=np.eye(3),
                                 mean_image=rng.uniform(80, 160, (40, 40, 3)))
    seed = 5
    dataset = input_pipeline.build_dataset(
            str(tmp_path), schema.TRAIN, global_batch_size=3, training=True, seed=seed,
            stats=stats, crop_size=24, resize_size=32, mean_mode="image", shuffle_buffer=1,
            num_epochs=1, num_classes=2)
    got = np.concatenate([batch.numpy() for batch, _ in dataset])
    assert got.shape == (6, 24, 24, 3)
    first = input_pipeline.augment_seed(seed)
    for position, encoded in enumerate(images):
        expected = preprocessing.preprocess_for_train(
                tf.constant(encoded), tf.constant([first, position], tf.int64), stats=stats,
                crop_size=24, resize_size=32, mean_mode="image").numpy()
        np.testing.assert_array_equal(got[position], expected)


def test_shards_are_checked_against_the_converters_manifest(tmp_path):
    """An emptied, truncated, missing or extra shard is refused, naming the file; the
    data as converted passes; accepting changed data is the caller's choice."""
    import shutil

    from alexnet_tf.data.imagenet import convert as imagenet_convert
    for synset in ("n00000001", "n00000002"):
        os.makedirs(tmp_path / "imagenet" / "train" / synset)
        for j in range(4):
            Image.new("RGB", (40 + j, 36), (40 * j, 90, 10)).save(
                    tmp_path / "imagenet" / "train" / synset / f"{synset}_{j}.JPEG")
    records = tmp_path / "records"
    imagenet_convert.convert(imagenet_convert.ConvertOptions(
            imagenet_dir=str(tmp_path / "imagenet"), output_dir=str(records),
            splits=("train",), train_shards=2, resize=RESIZE, show_progress=False))
    input_pipeline.verify_shards(str(records), "train")  # as converted: fine
    shard = records / schema.shard_name("train", 1, 2)
    original = shard.read_bytes()
    for changed, message in ((b"", "bytes, but the converter wrote"),
                             (original[:len(original) // 2], "the shard was changed")):
        shard.write_bytes(changed)
        with pytest.raises(ValueError, match=f"{shard}: .*{message}.*--accept_changed_data"):
            input_pipeline.verify_shards(str(records), "train")
    shard.write_bytes(original)
    shutil.copy(shard, records / schema.shard_name("train", 1, 3))  # a stray extra shard
    with pytest.raises(ValueError, match="train-00001-of-00003: a train shard the converter"):
        input_pipeline.verify_shards(str(records), "train")
    os.remove(records / schema.shard_name("train", 1, 3))
    # The trainer checks at start-up; --accept_changed_data takes the data as it is.
    from alexnet_tf.training import config as config_lib
    from alexnet_tf.training import datasets
    shard.write_bytes(b"")
    strategy = tf.distribute.get_strategy()
    with pytest.raises(ValueError, match=f"{shard}: "):
        datasets.make_datasets(config_lib.TrainConfig(data_dir=str(records)), strategy)
    accepted = datasets.make_datasets(
            config_lib.TrainConfig(data_dir=str(records), accept_changed_data=True), strategy)
    assert accepted.num_classes == 2
    os.remove(shard)
    with pytest.raises(ValueError, match=f"{shard}: missing"):
        input_pipeline.verify_shards(str(records), "train")
