"""Tests for alexnet_tf.data.tfds_input: a prepared TFDS build through the project's own
pipeline."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data import tfds_input

CROP, RESIZE = 24, 32
SIZES = dict(crop_size=CROP, resize_size=RESIZE)


def write_fake_tfds_build(version_dir, num_examples=10, num_classes=5, size=RESIZE,
                          splits=("train",)):
    """A tiny prepared TFDS build with imagenet2012's features (image, label, file_name)."""
    import tensorflow_datasets as tfds
    os.makedirs(version_dir)
    features = tfds.features.FeaturesDict({
            "image": tfds.features.Image(encoding_format="jpeg"),
            "label": tfds.features.ClassLabel(num_classes=num_classes),
            "file_name": tfds.features.Text()})
    for split, shard in [(split, shard) for split in splits for shard in range(2)]:
        name = f"imagenet2012-{split}.tfrecord-{shard:05d}-of-00002"
        with tf.io.TFRecordWriter(os.path.join(version_dir, name)) as writer:
            for k in range(shard, num_examples, 2):
                writer.write(features.serialize_example({
                        "image": np.full((size, size + 8, 3), 20 * k, np.uint8),
                        "label": k % num_classes, "file_name": f"{k}.JPEG"}))
    tfds.folder_dataset.write_metadata(
            data_dir=version_dir, features=features,
            filename_template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}")


def test_tfds_build_goes_through_the_same_preprocessing(tmp_path, stats, labels_of):
    write_fake_tfds_build(str(tmp_path / "imagenet2012" / "5.1.0"))
    batches = list(tfds_input.build_tfds_dataset(
            str(tmp_path), "train", global_batch_size=4, training=False, seed=0, stats=stats,
            mean_mode="rgb", **SIZES))
    labels = labels_of(batches)
    pixels = np.concatenate([images.numpy() for images, _ in batches]) + stats.mean_rgb
    colours = pixels.mean(axis=(1, 2, 3))
    np.testing.assert_array_equal(labels, np.round(colours / 20).astype(int) % 5)
    assert sorted(np.round(colours / 20).astype(int)) == list(range(10))
    train = next(iter(tfds_input.build_tfds_dataset(
            str(tmp_path), "train", global_batch_size=4, training=True, seed=0, stats=stats,
            **SIZES)))
    assert train[0].shape == (4, CROP, CROP, 3)
    with pytest.raises(ValueError, match="split 'validation'"):
        tfds_input.build_tfds_dataset(str(tmp_path), "validation", global_batch_size=4,
                                      training=False, seed=0, stats=stats)


def test_split_info(tmp_path):
    write_fake_tfds_build(str(tmp_path / "imagenet2012" / "5.1.0"), num_examples=6,
                          num_classes=3)
    # The version directory itself: the build's own metadata (3 classes).
    version_dir = str(tmp_path / "imagenet2012" / "5.1.0")
    num_examples, num_classes, names = tfds_input.split_info(version_dir, "train")
    assert (num_examples, num_classes, len(names)) == (6, 3, 3)
    # The TFDS data_dir: the registered imagenet2012 builder's features (1000 synsets).
    num_examples, num_classes, names = tfds_input.split_info(str(tmp_path), "train")
    assert (num_examples, num_classes) == (6, 1000) and names[0] == "n01440764"
    with pytest.raises(FileNotFoundError, match="no prepared tensorflow-datasets"):
        tfds_input.split_info(str(tmp_path / "nothing"), "train")


@pytest.mark.slow
def test_trainer_trains_on_a_tfds_build(tmp_path):
    # --data_source=tfds end to end: two epochs of a tiny paper net, labels.json written.
    from alexnet_tf.training import config as config_lib
    from alexnet_tf.training import loop
    version_dir = str(tmp_path / "imagenet2012" / "5.1.0")
    write_fake_tfds_build(version_dir, num_examples=8, num_classes=4, size=64,
                          splits=("train", "validation"))
    config = config_lib.TrainConfig(
            data_source="tfds", tfds_data_dir=version_dir, input_size=64, resize_size=64,
            width_multiplier=0.05, batch_size=4, num_epochs=2, progress_bar=False,
            mean_mode="rgb")
    model_dir = str(tmp_path / "run")
    results = loop.train_and_evaluate(config, model_dir)
    assert results["step"] == 4 and results["num_examples"] == 8
    with open(os.path.join(model_dir, "labels.json")) as f:
        assert [entry["index"] for entry in json.load(f)] == [0, 1, 2, 3]
    with open(os.path.join(model_dir, "config.json")) as f:
        assert json.load(f)["model"]["num_classes"] == 4


def test_tfds_source_needs_its_directory():
    from alexnet_tf.training import config as config_lib
    with pytest.raises(ValueError, match="tfds_data_dir"):
        config_lib.TrainConfig(data_source="tfds")
