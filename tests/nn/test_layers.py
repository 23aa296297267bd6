"""Tests for alexnet_tf.nn.layers: GroupedConv2D against a NumPy grouped convolution, the
per-tower pooling, FullyConnected against Dense, and each layer's Keras contract
(conftest.check_layer_contract). LRN: tests/nn/test_lrn.py."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.nn.layers import FullyConnected
from alexnet_tf.nn.layers import GroupedConv2D
from alexnet_tf.nn.layers import GroupedMaxPooling2D


def numpy_conv2d(x, kernel, bias, stride, padding):
    """Plain NHWC convolution with TensorFlow's padding rule, in float64."""
    kh, kw = kernel.shape[:2]
    if padding == "same":
        pads = []
        for size, k in ((x.shape[1], kh), (x.shape[2], kw)):
            out = -(-size // stride)
            total = max((out - 1) * stride + k - size, 0)
            pads.append((total // 2, total - total // 2))
        x = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    out_h = (x.shape[1] - kh) // stride + 1
    out_w = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]))
    for i in range(out_h):
        for j in range(out_w):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.einsum("bhwc,hwcf->bf", patch, kernel)
    return out + bias


def numpy_grouped_conv2d(x, kernels, biases, stride, padding, split_input=True):
    groups = len(kernels)
    group_channels = x.shape[-1] // groups
    outputs = []
    for g, (kernel, bias) in enumerate(zip(kernels, biases)):
        x_g = x[..., g * group_channels:(g + 1) * group_channels] if split_input else x
        outputs.append(numpy_conv2d(x_g.astype(np.float64), kernel, bias, stride, padding))
    return np.concatenate(outputs, axis=-1)


# ----------------------------------------------------------------------------- GroupedConv2D

@pytest.mark.parametrize("groups,strides,padding,split_input", [
    (2, 1, "same", True), (2, 2, "valid", True), (4, 1, "valid", True),
    (2, 2, "same", False), (1, 1, "valid", True)])
def test_grouped_conv_matches_numpy(groups, strides, padding, split_input):
    rng = np.random.RandomState(4)
    x = rng.normal(size=(2, 7, 7, 8)).astype(np.float32)
    layer = GroupedConv2D(12, 3, groups=groups, strides=strides, padding=padding,
                          split_input=split_input, bias_initializer="random_normal")
    out = layer(x).numpy()
    kernels = [conv.kernel.numpy() for conv in layer.group_convs]
    biases = [conv.bias.numpy() for conv in layer.group_convs]
    in_channels = 8 // groups if split_input else 8
    assert kernels[0].shape == (3, 3, in_channels, 12 // groups)
    expected = numpy_grouped_conv2d(x, kernels, biases, strides, padding, split_input)
    assert out.shape == expected.shape == tuple(layer.compute_output_shape(x.shape))
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)


def test_grouped_conv_group_only_sees_its_channels():
    # Changing the second half of the input channels must not change group 0's output.
    x = np.random.RandomState(5).normal(size=(1, 5, 5, 4)).astype(np.float32)
    layer = GroupedConv2D(4, 3, groups=2, activation="relu")
    changed = x.copy()
    changed[..., 2:] += 10.0
    a, b = layer(x).numpy(), layer(changed).numpy()
    np.testing.assert_array_equal(a[..., :2], b[..., :2])
    assert not np.allclose(a[..., 2:], b[..., 2:])


@pytest.mark.parametrize("initializer,seeded", [
    ("glorot_uniform", False), (keras.initializers.RandomNormal(stddev=0.01), False),
    (keras.initializers.RandomNormal(stddev=0.01, seed=3), True)])
def test_grouped_conv_groups_are_initialised_independently(initializer, seeded):
    # One shared Keras initializer instance would give every group the same kernel.
    def kernels():
        layer = GroupedConv2D(8, 3, groups=2, kernel_initializer=initializer)
        layer.build((1, 5, 5, 4))
        return [conv.kernel.numpy() for conv in layer.group_convs]
    first = kernels()
    assert not np.array_equal(first[0], first[1])
    # A user seed still makes the layer reproducible.
    assert all(np.array_equal(a, b) for a, b in zip(first, kernels())) == seeded


@pytest.mark.parametrize("split_input", [True, False])
def test_grouped_conv_devices_place_variables_and_ops(split_input):
    x = np.random.RandomState(6).normal(size=(2, 6, 6, 4)).astype(np.float32)
    placed = GroupedConv2D(6, 3, groups=2, devices=["/CPU:0", "/CPU:1"], split_input=split_input)
    plain = GroupedConv2D(6, 3, groups=2, split_input=split_input)
    placed.build(x.shape)
    plain.build(x.shape)
    for group, conv in enumerate(placed.group_convs):
        for variable in (conv.kernel, conv.bias):
            assert variable.value.device.endswith(f"CPU:{group}"), variable.value.device
    plain.set_weights(placed.get_weights())
    np.testing.assert_allclose(placed(x).numpy(), plain(x).numpy(), rtol=1e-5, atol=1e-5)
    graph = tf.function(placed).get_concrete_function(tf.TensorSpec(x.shape)).graph
    conv_devices = sorted(op.device for op in graph.get_operations() if op.type == "Conv2D")
    assert len(conv_devices) == 2
    assert conv_devices[0].endswith("CPU:0") and conv_devices[1].endswith("CPU:1")


@pytest.mark.parametrize("kwargs", [
    dict(filters=8, kernel_size=3, groups=2, padding="same", activation="relu"),
    dict(filters=6, kernel_size=3, groups=2, strides=2, split_input=False),  # One fused conv.
    dict(filters=8, kernel_size=(3, 5), groups=2, strides=(1, 2), padding="same",
         activation="relu", kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
         bias_initializer=keras.initializers.Constant(1.0),
         kernel_regularizer=keras.regularizers.L2(5e-4), devices=["/CPU:0", "/CPU:1"],
         name="conv2"),
], ids=["towers", "shared_input", "paper_conv2_on_devices"])
def test_grouped_conv_layer_contract(check_layer_contract, kwargs):
    layer = check_layer_contract(GroupedConv2D, kwargs, (2, 6, 6, 4))
    if "bias_initializer" in kwargs:
        assert layer.group_convs[0].bias.numpy().tolist() == [1.0] * 4


@pytest.mark.parametrize("kwargs,message", [
    (dict(filters=5, kernel_size=3, groups=2), "filters=5 must be divisible by groups=2"),
    (dict(filters=4, kernel_size=3, groups=0), "groups must be an integer >= 1, received 0"),
    (dict(filters=4, kernel_size=3, devices=["/CPU:0"]), "devices must be a list of 2"),
    (dict(filters=4, kernel_size=3, data_format="nhwc"), "received 'nhwc'"),
])
def test_grouped_conv_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GroupedConv2D(**kwargs)


def test_grouped_conv_groups_must_divide_input_channels():
    with pytest.raises(ValueError, match=r"divisible by groups=2.*\(1, 4, 4, 3\)"):
        GroupedConv2D(4, 3, groups=2)(np.zeros((1, 4, 4, 3), np.float32))


# ----------------------------------------------------------------------- GroupedMaxPooling2D

def test_grouped_max_pooling_matches_max_pooling_and_places_groups():
    x = np.random.RandomState(9).normal(size=(2, 13, 13, 6)).astype(np.float32)
    placed = GroupedMaxPooling2D(3, 2, groups=2, devices=["/CPU:0", "/CPU:1"])
    expected = keras.layers.MaxPooling2D(3, 2)(x).numpy()
    np.testing.assert_array_equal(placed(x).numpy(), expected)
    np.testing.assert_array_equal(GroupedMaxPooling2D(3, 2)(x).numpy(), expected)
    assert placed(x).shape == tuple(placed.compute_output_shape(x.shape)) == (2, 6, 6, 6)
    graph = tf.function(placed).get_concrete_function(tf.TensorSpec(x.shape)).graph
    pool_devices = sorted(op.device for op in graph.get_operations() if op.type == "MaxPool")
    assert len(pool_devices) == 2
    assert pool_devices[0].endswith("CPU:0") and pool_devices[1].endswith("CPU:1")


@pytest.mark.parametrize("kwargs", [dict(), dict(pool_size=3, strides=2, groups=2,
                                             devices=["/CPU:0", "/CPU:1"])],
                         ids=["one_device", "on_devices"])
def test_grouped_max_pooling_layer_contract(check_layer_contract, kwargs):
    check_layer_contract(GroupedMaxPooling2D, kwargs, (2, 13, 13, 6))


def test_grouped_max_pooling_bad_arguments():
    with pytest.raises(ValueError, match="devices must be a list of 2"):
        GroupedMaxPooling2D(devices=["/CPU:0", "/CPU:1", "/CPU:1"])
    with pytest.raises(ValueError, match=r"divisible by groups=2.*\(1, 5, 5, 3\)"):
        GroupedMaxPooling2D(groups=2)(np.zeros((1, 5, 5, 3), np.float32))


# ----------------------------------------------------------------------------- FullyConnected

@pytest.mark.parametrize("dtype", ["float32", "mixed_bfloat16"])
def test_fully_connected_equals_dense_forward_and_backward(dtype):
    """Same outputs and gradients as keras.layers.Dense, whose input gradient it computes
    another way."""
    x = tf.constant(np.random.RandomState(8).normal(0, 1, (4, 12)).astype(np.float32))
    ours = FullyConnected(6, activation="relu", dtype=dtype)
    dense = keras.layers.Dense(6, activation="relu", dtype=dtype)
    ours.build(x.shape)
    dense.build(x.shape)
    dense.set_weights(ours.get_weights())
    results = []
    for layer in (ours, dense):
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x)
            loss = tf.reduce_sum(tf.cast(out, tf.float32) ** 2)
        grads = tape.gradient(loss, [x] + layer.trainable_variables)
        results.append([np.asarray(v, np.float32) for v in [out] + grads])
    assert results[0][0].dtype == np.float32 and ours(x).dtype == dense(x).dtype
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs,input_shape", [
    (dict(units=6, activation="relu"), (4, 12)),
    (dict(units=5), (4, 12)),
    (dict(units=5, activation="relu"), (2, 3, 12)),  # Rank 3: keras.layers.Dense's call.
], ids=["relu", "linear", "rank_3"])
def test_fully_connected_layer_contract(check_layer_contract, kwargs, input_shape):
    check_layer_contract(FullyConnected, kwargs, input_shape)

