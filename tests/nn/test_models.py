"""Tests for alexnet_tf.nn.models: shapes, parameter counts, initialisation, gradients, saving."""

import functools
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import run_dir
from alexnet_tf.nn import init_presets
from alexnet_tf.nn import models

# A small paper-variant net for the tests that run data through it: every layer present,
# widths scaled by 1/8, 67x67 inputs (conv1 15x15 -> pool 7 -> 3 -> 1x1 pool5).
SMALL = dict(num_classes=5, width_multiplier=0.125, input_size=67)


@functools.lru_cache(maxsize=None)
def full_model(name="alexnet", **kwargs):
    """Full-size models are built once and shared by the tests (about a second each)."""
    return models.build_model(name, **kwargs)


def images(batch, size, seed=0):
    # Mean-subtracted 0..255-scale pixels, as the pipeline feeds the model.
    return np.random.RandomState(seed).uniform(-120, 120, (batch, size, size, 3)).astype(np.float32)


def output_shapes(model):
    return {layer.name: tuple(layer.output.shape[1:]) for layer in model.layers}


PAPER_SHAPES = {
    "conv1": (55, 55, 96), "norm1": (55, 55, 96), "pool1": (27, 27, 96),
    "conv2": (27, 27, 256), "norm2": (27, 27, 256), "pool2": (13, 13, 256),
    "conv3": (13, 13, 384), "conv4": (13, 13, 384), "conv5": (13, 13, 256),
    "pool5": (6, 6, 256), "flatten": (9216,), "fc6": (4096,), "dropout6": (4096,),
    "fc7": (4096,), "dropout7": (4096,), "fc8": (1000,)}


@pytest.mark.parametrize("input_size", [224, 227])
def test_paper_layer_shapes(input_size):
    shapes = output_shapes(full_model(input_size=input_size))
    assert shapes["images"] == (input_size, input_size, 3)
    for name, shape in PAPER_SHAPES.items():
        assert shapes[name] == shape, name
    # 224 reaches 55x55 through a (1, 2) zero padding to 227; 227 needs none.
    assert ("conv1_pad" in shapes) == (input_size == 224)


def test_one_tower_and_zfnet_layer_shapes():
    one_tower = output_shapes(full_model(variant="one_tower"))
    expected = {"conv1": (55, 55, 64), "pool1": (27, 27, 64), "conv2": (27, 27, 192),
                "pool2": (13, 13, 192), "conv3": (13, 13, 384), "conv4": (13, 13, 256),
                "conv5": (13, 13, 256), "pool5": (6, 6, 256), "fc8": (1000,)}
    assert {name: one_tower[name] for name in expected} == expected
    assert "norm1" not in one_tower and "norm2" not in one_tower
    zf = output_shapes(full_model("zfnet"))
    expected = {"conv1": (110, 110, 96), "pool1": (55, 55, 96), "norm1": (55, 55, 96),
                "conv2": (26, 26, 256), "pool2": (13, 13, 256), "norm2": (13, 13, 256),
                "conv3": (13, 13, 384), "conv4": (13, 13, 384), "conv5": (13, 13, 256),
                "pool5": (6, 6, 256), "fc6": (4096,), "fc8": (1000,)}
    assert {name: zf[name] for name in expected} == expected
    # The wide variant at a quarter width (full size is 107,627,624 parameters: slow to build).
    wide = output_shapes(models.zfnet(wide=True, width_multiplier=0.25))
    assert (wide["conv3"], wide["conv4"], wide["conv5"]) == ((13, 13, 128), (13, 13, 256),
                                                              (13, 13, 128))
    assert wide["pool5"] == (6, 6, 128) and wide["fc6"] == (1024,)


def conv_params(kernel, in_channels, filters, groups=1):
    return groups * (kernel * kernel * in_channels // groups * filters // groups + filters // groups)


def fc_params(inputs, outputs):
    return inputs * outputs + outputs


def test_parameter_counts():
    assert full_model().count_params() == 60_965_224  # the paper's net, 1000 classes
    assert full_model(input_size=227).count_params() == 60_965_224
    assert full_model(variant="one_tower").count_params() == 61_100_840  # torchvision's
    classifier = fc_params(9216, 4096) + fc_params(4096, 4096) + fc_params(4096, 1000)
    zf = (conv_params(7, 3, 96) + conv_params(5, 96, 256) + conv_params(3, 256, 384)
          + conv_params(3, 384, 384) + conv_params(3, 384, 256) + classifier)
    assert full_model("zfnet").count_params() == zf
    # Wide ZFNet at a quarter width: 24-64-128-256-128 kernels, 1024-wide fc6/fc7.
    wide = (conv_params(7, 3, 24) + conv_params(5, 24, 64) + conv_params(3, 64, 128)
            + conv_params(3, 128, 256) + conv_params(3, 256, 128)
            + fc_params(6 * 6 * 128, 1024) + fc_params(1024, 1024) + fc_params(1024, 1000))
    assert models.zfnet(wide=True, width_multiplier=0.25).count_params() == wide
    # Grouping is what makes the paper's count: conv2, conv4, conv5 see half the maps.
    paper = (conv_params(11, 3, 96) + conv_params(5, 96, 256, 2) + conv_params(3, 256, 384)
             + conv_params(3, 384, 384, 2) + conv_params(3, 384, 256, 2) + classifier)
    assert paper == 60_965_224


@pytest.mark.parametrize("preset", ["paper", "cuda_convnet2", "caffe"])
def test_initialisation_presets_give_their_documented_statistics(preset):
    """Every layer's kernel has the table's standard deviation (a sample of millions of
    draws, so within 5%) and mean 0; every bias is the table's constant."""
    model = full_model(init=preset)
    table = init_presets.PRESETS[preset]
    for name in init_presets.LAYERS:
        layer = model.get_layer(name)
        kernels = [w.numpy() for w in layer.trainable_weights if w.name == "kernel"]
        biases = [w.numpy() for w in layer.trainable_weights if w.name == "bias"]
        assert kernels and biases, name
        if len(kernels) == 2:  # the towers are drawn independently, not copies
            assert not np.array_equal(kernels[0], kernels[1]), name
        kernel = np.concatenate([k.ravel() for k in kernels])
        assert abs(kernel.mean()) < 0.1 * table.stddev(name), name
        assert kernel.std() == pytest.approx(table.stddev(name), rel=0.05), name
        assert all(np.all(b == np.float32(table.bias(name))) for b in biases), name


def test_paper_preset_is_the_papers_text():
    paper = init_presets.PRESETS["paper"]
    assert {paper.stddev(name) for name in init_presets.LAYERS} == {0.01}
    assert [name for name in init_presets.LAYERS if paper.bias(name) == 1.0] == [
            "conv2", "conv4", "conv5", "fc6", "fc7"]
    with pytest.raises(ValueError, match="init must be one of"):
        models.alexnet(num_classes=3, input_size=64, width_multiplier=0.0625, init="he")


def test_zfnet_biases_are_zero():
    for weight in full_model("zfnet").trainable_weights:
        if weight.name == "bias":
            assert np.all(weight.numpy() == 0.0), weight.path


@pytest.mark.parametrize("name,kwargs", [
    ("alexnet", SMALL),
    ("alexnet", dict(SMALL, use_lrn=False, lrn_convention="caffe")),
    ("alexnet", dict(SMALL, variant="one_tower")),
    ("zfnet", dict(num_classes=5, width_multiplier=0.125, input_size=64)),
    ("zfnet", dict(num_classes=5, width_multiplier=0.0625, input_size=64, wide=True)),
])
def test_every_trainable_weight_gets_a_finite_gradient(name, kwargs):
    model = models.build_model(name, **kwargs)
    x = images(4, kwargs["input_size"])
    labels = np.arange(4) % 5
    with tf.GradientTape() as tape:
        logits = model(x, training=True)
        loss = tf.reduce_mean(
            keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
    gradients = tape.gradient(loss, model.trainable_weights)
    assert len(gradients) == len(model.trainable_weights) > 0
    for weight, gradient in zip(model.trainable_weights, gradients):
        assert gradient is not None, weight.path
        assert np.all(np.isfinite(gradient.numpy())), weight.path
        assert np.any(gradient.numpy() != 0), weight.path


def test_logits_are_float32_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    try:
        model = models.alexnet(**SMALL)
    finally:
        keras.config.set_dtype_policy("float32")
    assert model.get_layer("conv2").compute_dtype == "float16"
    assert model.get_layer("norm1").compute_dtype == "float16"
    logits = model(images(2, 67))
    assert logits.dtype == tf.float32 and logits.shape == (2, 5)
    assert np.all(np.isfinite(logits.numpy()))


def test_tower_devices_place_towers_and_match_one_device():
    plain = models.alexnet(**SMALL)
    towers = models.alexnet(**SMALL, tower_devices=("/CPU:0", "/CPU:1"))
    assert towers.count_params() == plain.count_params()
    towers.set_weights(plain.get_weights())
    x = images(2, 67, seed=1)
    np.testing.assert_allclose(towers(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-6)
    for name in ("conv1", "conv2", "conv4", "conv5"):
        for group, conv in enumerate(towers.get_layer(name).group_convs):
            assert conv.kernel.value.device.endswith(f"CPU:{group}"), (name, group)
    graph = tf.function(towers).get_concrete_function(tf.TensorSpec((2, 67, 67, 3))).graph
    conv_devices = [op.device for op in graph.get_operations() if op.type == "Conv2D"]
    # conv1, conv2, conv4, conv5 twice (one per tower) plus conv3 across both.
    assert sum(d.endswith("CPU:1") for d in conv_devices) == 4
    pool_devices = [op.device for op in graph.get_operations() if op.type == "MaxPool"]
    assert sum(d.endswith("CPU:1") for d in pool_devices) == 3  # pool1, pool2, pool5


def test_explicit_widths():
    paper = output_shapes(models.alexnet(num_classes=5, input_size=67,
                                         widths=(8, 12, 16, 12, 8, 16, 16)))
    assert [paper[name][-1] for name in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6",
                                         "fc7", "fc8")] == [8, 12, 16, 12, 8, 16, 16, 5]
    # One tower: any widths, odd ones too.
    one_tower = output_shapes(models.alexnet(num_classes=5, variant="one_tower",
                                             widths=(6, 8, 10, 8, 6, 8, 8)))
    assert one_tower["pool5"] == (6, 6, 6) and one_tower["fc7"] == (8,)


def test_caffe_lrn_options_reach_the_layers_and_keep_tower_placement():
    caffe = dict(SMALL, lrn_convention="caffe", lrn_k=1.0, lrn_across_towers=True)
    model = models.alexnet(**caffe)
    for name in ("norm1", "norm2"):
        layer = model.get_layer(name)
        assert (layer.groups, layer.k, layer.convention, layer.devices) == (1, 1.0, "caffe", None)
    paper = models.alexnet(**SMALL).get_layer("norm1")
    assert (paper.groups, paper.k, paper.convention) == (2, 2.0, "paper")
    towers = models.alexnet(**caffe, tower_devices=("/CPU:0", "/CPU:1"))
    towers.set_weights(model.get_weights())
    x = images(2, 67, seed=3)
    np.testing.assert_allclose(towers(x).numpy(), model(x).numpy(), rtol=1e-5, atol=1e-5)
    assert models.lrn_settings(dict(name="alexnet", **caffe)) == dict(
            use_lrn=True, lrn_convention="caffe", lrn_k=1.0, lrn_across_towers=True)
    assert models.lrn_settings(dict(name="alexnet", variant="one_tower")) == {}


def test_tf_checkpoint_restores_every_weight(tmp_path):
    # run_dir.restore_model uses tf.train.Checkpoint: the grouped convolutions' weights
    # must be tracked by it, not only by Keras.
    model = models.alexnet(**SMALL)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    restored = models.alexnet(**SMALL)
    status = tf.train.Checkpoint(model=restored).restore(path)
    status.assert_existing_objects_matched()
    for saved, loaded in zip(model.weights, restored.weights):
        assert saved.path == loaded.path
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy(), err_msg=saved.path)


def test_build_model_from_a_model_dir_spec():
    spec = {"name": "alexnet", "num_classes": 10, "variant": "paper", "input_size": 128,
            "width_multiplier": 0.25}
    model = run_dir.build_model(spec)
    assert model.output_shape == (None, 10)
    assert model.get_layer("pool5").output.shape[1:3] == (3, 3)  # 128 -> 31 -> 15 -> 7 -> 3


@pytest.mark.slow
def test_keras_file_reloads_in_a_fresh_process(tmp_path):
    model = models.alexnet(**SMALL)
    x = images(3, 67, seed=2)
    path, x_path, out_path = tmp_path / "model.keras", tmp_path / "x.npy", tmp_path / "out.npy"
    model.save(path)
    np.save(x_path, x)
    script = textwrap.dedent(f"""
        import numpy as np, keras
        import alexnet_tf.nn.layers  # registers the custom layers
        model = keras.models.load_model({str(path)!r})
        np.save({str(out_path)!r}, model.predict(np.load({str(x_path)!r}), verbose=0))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    np.testing.assert_array_equal(np.load(out_path), model.predict(x, verbose=0))


@pytest.mark.parametrize("kwargs,message", [
    (dict(variant="two_tower"), "variant must be one of .* received 'two_tower'"),
    (dict(input_size=225), "input_size=225"),
    (dict(input_size=60), "input_size=60 is too small"),
    (dict(num_classes=0), "num_classes must be an integer >= 1, received 0"),
    (dict(width_multiplier=0), "width_multiplier must be a number > 0, received 0"),
    (dict(dropout_rate=1.0), r"dropout_rate must be in \[0, 1\), received 1.0"),
    (dict(tower_devices=("/CPU:0",)), "tower_devices must be 2 device names"),
    (dict(variant="one_tower", tower_devices=("/CPU:0", "/CPU:1")), "needs variant='paper'"),
    (dict(lrn_convention="torch"), "received 'torch'"),
    (dict(lrn_k=0), "lrn_k must be a number > 0, received 0"),
    (dict(variant="one_tower", lrn_across_towers=True), "lrn_across_towers needs"),
    (dict(widths=(8, 12, 16)), r"widths must be 7 integers >= 1 .* received \(8, 12, 16\)"),
    (dict(widths=(7, 12, 16, 12, 8, 16, 16)), "needs even conv widths, received conv1=7"),
    (dict(widths=(8, 12, 16, 12, 8, 16, 16), width_multiplier=0.5), "not both"),
])
def test_alexnet_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        models.alexnet(**kwargs)


def test_zfnet_and_build_model_bad_arguments():
    with pytest.raises(ValueError, match="input_size=40 is too small"):
        models.zfnet(input_size=40)
    with pytest.raises(ValueError, match="lrn_convention must be one of .* received 'lua'"):
        models.zfnet(lrn_convention="lua")
    with pytest.raises(ValueError, match="name must be one of .* received 'vgg'"):
        models.build_model("vgg")
