"""Tests for alexnet_tf.serving.layout: what an export directory holds besides the model."""

import numpy as np
import pytest

from alexnet_tf.data import image_header
from alexnet_tf.data import preprocessing
from alexnet_tf.serving import layout


def test_settings_saved_with_the_export(serving_run, exported):
    settings = layout.load_settings(exported["version_dir"])
    assert (settings.crop_size, settings.resize_size, settings.mean_mode) == (
            serving_run["config"].input_size, preprocessing.RESIZE_SIZE, "image")
    np.testing.assert_allclose(settings.stats.mean_image, serving_run["stats"].mean_image)
    assert layout.load_labels(exported["version_dir"]) == serving_run["labels"]
    assert layout.load_max_pixels(exported["version_dir"]) == image_header.DEFAULT_MAX_PIXELS
    assert layout.load_max_pixels(str(serving_run["root"])) is None
    with pytest.raises(FileNotFoundError, match="alexnet_tf.export"):
        layout.load_settings(str(serving_run["root"]))
