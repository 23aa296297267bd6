"""Tests for alexnet_tf.model_source: which model a command loads, and errors that name why."""

import pytest

from alexnet_tf import model_source


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, make_run):
    return make_run(tmp_path_factory.mktemp("model_source") / "run", ("a", "b"))["model_dir"]


def test_a_run_loads_with_its_checkpoint_settings_and_labels(model_dir):
    loaded = model_source.load(model_dir=model_dir, checkpoint="ckpt-1")
    assert loaded.path.endswith("ckpt-1")
    assert loaded.keras_model.output_shape == (None, 2)
    assert [label["name"] for label in loaded.labels] == ["a", "b"]
    assert loaded.settings.crop_size == 64


def test_bad_model_sources_are_named(model_dir, tmp_path):
    with pytest.raises(ValueError, match="--model_dir"):
        model_source.load()
    with pytest.raises(FileNotFoundError, match="ckpt-99"):
        model_source.load(model_dir=model_dir, checkpoint="ckpt-99")
    with pytest.raises(FileNotFoundError, match="export directory"):
        model_source.load(saved_model=model_dir)
    with pytest.raises(ValueError, match="--checkpoint"):
        model_source.load(saved_model=model_dir, checkpoint="ckpt-1")
    with pytest.raises(FileNotFoundError, match="saved_model.pb"):
        model_source.load(saved_model=str(tmp_path))
