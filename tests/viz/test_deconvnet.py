"""Tests for alexnet_tf.viz.deconvnet: against a NumPy deconvnet for conv+ReLU+pool, and more."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.nn import layers as alexnet_layers
from alexnet_tf.nn import lrn
from alexnet_tf.viz import deconvnet


def _numpy_conv(image, kernel, stride):
    """VALID convolution of (H, W, C) with (k, k, C, F) -> (h, w, F)."""
    size = kernel.shape[0]
    out = (image.shape[0] - size) // stride + 1
    result = np.zeros((out, out, kernel.shape[3]), np.float64)
    for i in range(out):
        for j in range(out):
            patch = image[i * stride:i * stride + size, j * stride:j * stride + size, :]
            result[i, j] = np.tensordot(patch, kernel, axes=([0, 1, 2], [0, 1, 2]))
    return result


def _numpy_pool(maps, size, stride):
    """VALID max pool of (H, W, F) -> (values (h, w, F), switches (h, w, F, 2) as (y, x))."""
    out = (maps.shape[0] - size) // stride + 1
    values = np.zeros((out, out, maps.shape[2]))
    switches = np.zeros((out, out, maps.shape[2], 2), np.int64)
    for i in range(out):
        for j in range(out):
            for f in range(maps.shape[2]):
                window = maps[i * stride:i * stride + size, j * stride:j * stride + size, f]
                dy, dx = np.unravel_index(np.argmax(window), window.shape)
                values[i, j, f] = window[dy, dx]
                switches[i, j, f] = (i * stride + dy, j * stride + dx)
    return values, switches


def _numpy_down(signal, switches, pre_pool_shape, kernel, stride, image_shape):
    """Unpool (summing shared switches), rectify, transposed filtering -> (H, W, C)."""
    unpooled = np.zeros(pre_pool_shape)
    for i, j, f in np.ndindex(signal.shape):
        y, x = switches[i, j, f]
        unpooled[y, x, f] += signal[i, j, f]
    rectified = np.maximum(unpooled, 0)
    size = kernel.shape[0]
    image = np.zeros(image_shape)
    for i, j in np.ndindex(rectified.shape[:2]):
        # Each output position spreads its value back over the window it was computed from.
        image[i * stride:i * stride + size, j * stride:j * stride + size, :] += np.tensordot(
            kernel, rectified[i, j], axes=([3], [0]))
    return image


def _conv_relu_pool_model(kernel, stride):
    inputs = keras.Input((17, 17, 3))
    conv = keras.layers.Conv2D(kernel.shape[3], kernel.shape[0], strides=stride,
                               activation="relu", use_bias=False, name="conv1")
    x = keras.layers.MaxPooling2D(3, 2, name="pool1")(conv(inputs))  # overlapping, as the paper
    model = keras.Model(inputs, x)
    conv.kernel.assign(kernel)
    return model


@pytest.fixture(scope="module")
def single_layer():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    image = rng.normal(size=(17, 17, 3)).astype(np.float32)
    model = _conv_relu_pool_model(kernel, stride=2)
    conv = np.maximum(_numpy_conv(image.astype(np.float64), kernel.astype(np.float64), 2), 0)
    pooled, switches = _numpy_pool(conv, 3, 2)
    return dict(kernel=kernel, image=image, model=model, conv=conv, pooled=pooled,
                switches=switches)


def test_single_layer_projection_matches_numpy(single_layer):
    s = single_layer
    projection, = deconvnet.visualize_layer(s["model"], s["image"][None], "pool1", num_maps=1)
    channel = int(np.argmax(s["pooled"].max(axis=(0, 1))))
    y, x = np.unravel_index(np.argmax(s["pooled"][..., channel]), s["pooled"].shape[:2])
    assert (projection.feature_map, projection.position) == (channel, (y, x))
    np.testing.assert_allclose(projection.activation, s["pooled"][y, x, channel], rtol=1e-5)
    signal = np.zeros_like(s["pooled"])
    signal[y, x, channel] = s["pooled"][y, x, channel]
    expected = _numpy_down(signal, s["switches"], s["conv"].shape, s["kernel"], 2, (17, 17, 3))
    assert np.abs(expected).max() > 0
    np.testing.assert_allclose(projection.reconstruction, expected, rtol=1e-4, atol=1e-4)


def test_full_signal_projection_sums_shared_switches(single_layer):
    # The whole pool output at once: overlapping 3x3/2 windows share switches, so this checks
    # that unpooling adds the values that land on the same position.
    s = single_layer
    activations, steps = deconvnet.forward(s["model"], s["image"][None], "pool1")
    np.testing.assert_allclose(activations[0], s["pooled"], rtol=1e-4, atol=1e-5)
    shared = len({tuple(v) for v in s["switches"].reshape(-1, 2)}) < s["switches"][..., 0].size
    assert shared, "the fixture should exercise windows sharing a switch"
    got = deconvnet.project(steps, activations, [0])[0]
    expected = _numpy_down(s["pooled"], s["switches"], s["conv"].shape, s["kernel"], 2,
                           (17, 17, 3))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("split_input", [True, False])
def test_grouped_transposed_filter_is_the_adjoint(split_input):
    # For a linear conv y = K x, transposed filtering of s is K^T s = d<y, s>/dx.
    layer = alexnet_layers.GroupedConv2D(8, 3, groups=2, strides=2, padding="same",
                                         use_bias=False, split_input=split_input)
    x = tf.random.normal([2, 9, 9, 4], seed=1)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        signal = tf.random.normal(y.shape, seed=2)
        inner = tf.reduce_sum(y * signal)
    expected = tape.gradient(inner, x)
    got = deconvnet.transposed_filter(signal, layer, (9, 9, 4))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def _alexnet_like(input_size=67):
    """A small chain with the paper's layer kinds and names (LRN, padding, dropout...)."""
    inputs = keras.Input((input_size, input_size, 3))
    x = keras.layers.Conv2D(6, 11, strides=4, activation="relu", name="conv1")(inputs)
    x = lrn.LocalResponseNormalization(name="norm1")(x)
    x = keras.layers.MaxPooling2D(3, 2, name="pool1")(x)
    x = alexnet_layers.GroupedConv2D(8, 5, groups=2, padding="same", activation="relu",
                                     name="conv2")(x)
    x = keras.layers.ZeroPadding2D(1, name="pad3")(x)
    x = keras.layers.Conv2D(8, 3, name="conv3")(x)
    x = keras.layers.ReLU(name="relu3")(x)
    x = keras.layers.Dropout(0.5, name="dropout")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="fc8")(x))


def test_receptive_field_bounds_the_reconstruction():
    model = _alexnet_like()
    for layer in model.layers:  # Positive weights: nothing cancels, supports are exact.
        for weight in layer.weights:
            weight.assign(tf.abs(weight) + 0.01)
    images = np.abs(np.random.default_rng(3).normal(size=(2, 67, 67, 3))).astype(np.float32)
    for layer_name, size in (("conv1", 11), ("pool1", 19), ("conv2", 51)):
        for projection in deconvnet.visualize_layer(model, images, layer_name, num_maps=2):
            top, left, bottom, right = projection.box
            assert max(bottom - top, right - left) <= size, layer_name
            support = np.argwhere(np.abs(projection.reconstruction).sum(-1) > 0)
            assert len(support), layer_name
            low, high = support.min(0).tolist(), (support.max(0) + 1).tolist()
            if layer_name == "conv1":  # No pool below: the projection fills the whole field.
                assert (low, high) == ([top, left], [bottom, right])
            else:  # Unpooling keeps one position per window: inside the field.
                assert low[0] >= top and low[1] >= left and high[0] <= bottom and high[1] <= right


def test_visualize_layer_shapes_and_order():
    model = _alexnet_like()
    images = np.random.default_rng(4).normal(size=(3, 67, 67, 3)).astype(np.float32) * 50
    projections = deconvnet.visualize_layer(model, images, "relu3", num_maps=4, num_per_map=2)
    assert len(projections) == 8
    assert all(p.reconstruction.shape == (67, 67, 3) for p in projections)
    best = [p.activation for p in projections[::2]]
    assert best == sorted(best, reverse=True)
    assert all(a.activation >= b.activation for a, b in zip(projections[::2], projections[1::2]))


def test_bad_layers_are_named():
    model = _alexnet_like()
    with pytest.raises(ValueError, match="conv9"):
        deconvnet.visualize_layer(model, np.zeros((1, 67, 67, 3), np.float32), "conv9")
    with pytest.raises(ValueError, match="gap"):
        deconvnet.visualize_layer(model, np.zeros((1, 67, 67, 3), np.float32), "gap")
    inputs = keras.Input((9, 9, 3))
    tanh = keras.Model(inputs, keras.layers.Conv2D(2, 3, activation="tanh", name="conv1")(inputs))
    with pytest.raises(ValueError, match="tanh"):
        deconvnet.visualize_layer(tanh, np.zeros((1, 9, 9, 3), np.float32), "conv1")


def test_paper_alexnet_with_tower_devices_projects_like_one_device():
    # The paper variant on two (logical) devices pools per tower (GroupedMaxPooling2D) and
    # convolves per group; the deconvnet must give what the single-device net gives.
    from alexnet_tf.nn import models
    kwargs = dict(num_classes=3, input_size=67, width_multiplier=0.0625)
    single = models.alexnet(**kwargs)
    towers = models.alexnet(tower_devices=("/CPU:0", "/CPU:1"), **kwargs)
    towers.set_weights(single.get_weights())
    images = np.random.default_rng(5).normal(size=(2, 67, 67, 3)).astype(np.float32) * 60
    expected = deconvnet.visualize_layer(single, images, "conv5", num_maps=3)
    got = deconvnet.visualize_layer(towers, images, "conv5", num_maps=3)
    assert [(p.feature_map, p.image_index, p.position) for p in got] == [
        (p.feature_map, p.image_index, p.position) for p in expected]
    for a, b in zip(got, expected):
        assert a.box == b.box
        # N(0, 0.01) weights make tiny reconstructions: compare relative to their scale.
        scale = np.abs(b.reconstruction).max()
        assert scale > 0
        np.testing.assert_allclose(a.reconstruction, b.reconstruction, rtol=1e-4,
                                   atol=1e-4 * scale)


@pytest.mark.parametrize("name,kwargs", [("zfnet", {}), ("alexnet", {"variant": "one_tower"})])
def test_other_networks_project_inside_their_receptive_fields(name, kwargs):
    # ZFNet pools with "same" padding and pads conv1; one-tower AlexNet pads conv1 by 2.
    from alexnet_tf.nn import models
    model = models.build_model(name, num_classes=3, input_size=67, width_multiplier=0.0625,
                               **kwargs)
    for weight in model.weights:  # Positive weights: every projection is non-zero.
        weight.assign(tf.abs(weight) + 0.001)
    images = np.abs(np.random.default_rng(6).normal(size=(2, 67, 67, 3))).astype(np.float32)
    for layer_name in ("conv1", "conv2", "conv5"):
        for projection in deconvnet.visualize_layer(model, images, layer_name, num_maps=2):
            top, left, bottom, right = projection.box
            support = np.argwhere(np.abs(projection.reconstruction).sum(-1) > 0)
            assert len(support), (name, layer_name)
            low, high = support.min(0).tolist(), (support.max(0) + 1).tolist()
            if layer_name == "conv1":  # The kernel's window exactly (clipped to the image).
                assert (low, high) == ([top, left], [bottom, right]), name
            else:
                assert low[0] >= top and low[1] >= left, (name, layer_name)
                assert high[0] <= bottom and high[1] <= right, (name, layer_name)
