"""Tests for alexnet_tf.viz.inputs: reading images and labels, preprocessing for the figures."""

import json
import os

import numpy as np
import pytest

from alexnet_tf.viz import inputs as viz_inputs


@pytest.fixture(scope="module")
def images(tmp_path_factory, write_viz_images):
    return write_viz_images(tmp_path_factory.mktemp("inputs"), 4)


def test_read_images_from_files_globs_and_shards(images):
    files, shard = images
    from_files = viz_inputs.read_images([os.path.join(os.path.dirname(files[0]), "*.jpg")])
    assert [record.name for record in from_files] == [os.path.basename(f) for f in files]
    assert all(record.label is None for record in from_files)
    from_shard = viz_inputs.read_images([shard])
    assert [record.label for record in from_shard] == [0, 1, 2, 0]
    assert [record.index for record in from_shard] == [0, 1, 2, 3]
    assert [r.encoded for r in from_shard] == [r.encoded for r in from_files]
    assert len(viz_inputs.read_images([shard] + files, limit=6)) == 6
    again = viz_inputs.read_record(shard, 2)
    assert again.encoded == from_shard[2].encoded and again.label == 2
    with pytest.raises(IndexError, match="no record 9"):
        viz_inputs.read_record(shard, 9)


def test_missing_inputs_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-here"):
        viz_inputs.read_images([str(tmp_path / "nothing-here*.jpg")])


def test_sources_digest_changes_with_the_files(images):
    files, _ = images
    digest = viz_inputs.sources_digest(files)
    assert digest == viz_inputs.sources_digest(files)
    assert digest != viz_inputs.sources_digest(files[:-1])
    os.utime(files[0], ns=(1, 1))
    assert digest != viz_inputs.sources_digest(files)


def test_label_files_and_class_names(tmp_path):
    text = tmp_path / "names.txt"
    text.write_text("tench\n\ngoldfish\n")
    labels = viz_inputs.read_label_file(str(text))
    assert labels == [{"index": 0, "name": "tench"}, {"index": 1, "name": "goldfish"}]
    assert viz_inputs.class_names(labels, 3) == ["tench", "goldfish", "2"]
    as_json = tmp_path / "labels.json"
    as_json.write_text(json.dumps([{"index": 1, "synset": "n01443537", "name": ""}]))
    assert viz_inputs.class_names(viz_inputs.read_label_file(str(as_json)), 2) == [
        "0", "n01443537"]
    as_json.write_text(json.dumps({"tench": 0}))
    with pytest.raises(ValueError, match="index"):
        viz_inputs.read_label_file(str(as_json))


def test_preprocess_gives_network_input_and_display_crop(viz_run, images):
    loaded = viz_run["loaded"]
    records = viz_inputs.read_images(images[0][:2])
    inputs, display = viz_inputs.preprocess(loaded.settings, records)
    size = viz_run["config"].input_size
    assert inputs.shape == (2, size, size, 3) and inputs.dtype == np.float32
    assert display.shape == (2, size, size, 3) and display.dtype == np.uint8
    # Mean subtraction is all that separates them (per-channel mean, "rgb" mode).
    np.testing.assert_allclose(display - inputs, np.broadcast_to(
        loaded.settings.stats.mean_rgb, inputs.shape), rtol=1e-5, atol=1e-3)
    assert viz_inputs.preprocess(loaded.settings, records[:1], ten_crop=True)[0].shape == (1, 10, size, size, 3)
