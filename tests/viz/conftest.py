"""Tiny training runs and images for the visualisation tests.

A run is a small paper-variant AlexNet (67x67 input, 1/16 of the widths, classes red,
green and blue, per-channel mean) with random weights (make_run); its images are JPEG
files and one TFRecord shard of the same bytes.
"""

import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from alexnet_tf import model_source
from alexnet_tf.data import schema

CLASS_NAMES = ("red", "green", "blue")


@pytest.fixture(scope="session")
def write_viz_images(encode_image):
    """write_viz_images(directory, count) -> (JPEG files, one TFRecord shard of them).

    Image i (80x96) has one dominant colour, class i % 3, over a random texture.
    """
    def write(directory, count: int):
        directory = str(directory)
        os.makedirs(os.path.join(directory, "records"), exist_ok=True)
        files = []
        shard = os.path.join(directory, "records", schema.shard_name(schema.TRAIN, 0, 1))
        with tf.io.TFRecordWriter(shard) as writer:
            for index in range(count):
                pixels = np.random.default_rng(100 + index).uniform(0, 160, (80, 96, 3))
                pixels[..., index % 3] = 255
                pixels = pixels.astype(np.uint8)
                encoded = encode_image(pixels, quality=95)
                path = os.path.join(directory, f"image{index:02d}.jpg")
                with open(path, "wb") as f:
                    f.write(encoded)
                files.append(path)
                writer.write(schema.make_example(
                    encoded=encoded, image_format="JPEG", height=pixels.shape[0],
                    width=pixels.shape[1], filename=os.path.basename(path), label=index % 3,
                    synset=f"n{index % 3:08d}", class_name=CLASS_NAMES[index % 3]))
        return files, shard
    return write


@pytest.fixture(scope="session")
def make_viz_run(make_run, write_viz_images):
    """make_viz_run(root, num_images): a run under root/run, images under root/images.

    Returns {"root", "model_dir", "config", "loaded" (model_source.load), "files", "shard"}.
    """
    def make(root, num_images: int) -> dict:
        run = make_run(os.path.join(str(root), "run"), CLASS_NAMES, input_size=67,
                       resize_size=76, mean_mode="rgb")
        files, shard = write_viz_images(os.path.join(str(root), "images"), num_images)
        return dict(root=root, model_dir=run["model_dir"], config=run["config"],
                    loaded=model_source.load(model_dir=run["model_dir"]), files=files,
                    shard=shard)
    return make


@pytest.fixture(scope="session")
def viz_run(tmp_path_factory, make_viz_run):
    """One run with six images, shared by the tool and command tests."""
    return make_viz_run(tmp_path_factory.mktemp("visualize"), 6)


@pytest.fixture(scope="session")
def check_png():
    """check_png(path, min_size=(200, 150)): a PNG at least that large, not blank, written
    without leaving a temporary file beside it."""
    def check(path, min_size=(200, 150)) -> None:
        assert os.path.exists(path)
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
            assert np.asarray(image.convert("L")).std() > 5  # Not a blank canvas.
        assert not [name for name in os.listdir(os.path.dirname(path)) if ".tmp" in name]
    return check
