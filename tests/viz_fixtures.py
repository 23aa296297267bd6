"""Tiny training runs and images for the visualisation tests (not a test module).

`make_run` writes a model_dir per the model_dir.py contract: config.json with the model
spec, labels.json and one checkpoint of a small paper-variant AlexNet (67x67 input,
1/16 of the widths). Its weights are redrawn at He scale: the paper's N(0, 0.01) start
makes every image's fc7 nearly the same, too flat to test neighbours or occlusion on.
"""

import json
import os

import numpy as np
import tensorflow as tf

from alexnet_tf import run_dir as model_dir_lib
from alexnet_tf.nn import models
from alexnet_tf.data import schema

CLASS_NAMES = ("red", "green", "blue")
INPUT_SIZE = 67
RESIZE_SIZE = 76
SPEC = {"name": "alexnet", "variant": "paper", "num_classes": len(CLASS_NAMES),
        "input_size": INPUT_SIZE, "width_multiplier": 0.0625, "dropout_rate": 0.5}


def he_rescale(model, seed: int = 0) -> None:
    """Redraws every kernel N(0, 2 / fan_in) and every bias 0."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if len(shape) == 1:
            weight.assign(np.zeros(shape, np.float32))
        else:
            fan_in = int(np.prod(shape[:-1]))
            weight.assign(rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(np.float32))


def make_run(model_dir: str, spec: dict = None) -> str:
    """Writes a model_dir with one checkpoint; returns the checkpoint path."""
    spec = dict(spec or SPEC)
    os.makedirs(model_dir, exist_ok=True)
    with open(os.path.join(model_dir, model_dir_lib.CONFIG_FILE), "w") as f:
        json.dump({"model": spec, "resize_size": RESIZE_SIZE, "mean_mode": "rgb"}, f)
    with open(os.path.join(model_dir, schema.LABELS_FILE), "w") as f:
        json.dump([{"index": i, "synset": f"n{i:08d}", "name": name}
                   for i, name in enumerate(CLASS_NAMES)], f)
    model = models.build_model(**spec)
    he_rescale(model)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                         model_dir_lib.checkpoint_dir(model_dir), 2)
    return manager.save()


def image(index: int, size=(80, 96)) -> np.ndarray:
    """A distinct uint8 image: one dominant colour (index % 3) and a random texture."""
    rng = np.random.default_rng(100 + index)
    pixels = rng.uniform(0, 160, size + (3,))
    pixels[..., index % 3] = 255
    return pixels.astype(np.uint8)


def write_images(directory: str, count: int):
    """Writes `count` JPEGs and one TFRecord shard of the same images; returns (files, shard)."""
    os.makedirs(directory, exist_ok=True)
    files = []
    os.makedirs(os.path.join(directory, "records"), exist_ok=True)
    shard = os.path.join(directory, "records", schema.shard_name(schema.TRAIN, 0, 1))
    with tf.io.TFRecordWriter(shard) as writer:
        for index in range(count):
            pixels = image(index)
            encoded = tf.io.encode_jpeg(pixels, quality=95).numpy()
            path = os.path.join(directory, f"image{index:02d}.jpg")
            with open(path, "wb") as f:
                f.write(encoded)
            files.append(path)
            writer.write(schema.make_example(
                encoded=encoded, image_format="JPEG", height=pixels.shape[0],
                width=pixels.shape[1], filename=os.path.basename(path), label=index % 3,
                synset=f"n{index % 3:08d}", class_name=CLASS_NAMES[index % 3]))
    return files, shard


def run_with_images(root, num_images: int) -> dict:
    """A run under root/run and `num_images` images under root/images, loaded.

    Returns {"root", "model_dir", "loaded" (model_source.load), "files", "shard"}.
    """
    from alexnet_tf import model_source  # Local: only the fixtures that use it pay for it.
    model_dir = os.path.join(str(root), "run")
    make_run(model_dir)
    files, shard = write_images(os.path.join(str(root), "images"), num_images)
    return dict(root=root, model_dir=model_dir, loaded=model_source.load(model_dir=model_dir),
                files=files, shard=shard)
