"""Tests for alexnet_tf.nn.lrn: LocalResponseNormalization against a NumPy version of the
paper's formula, tf.nn.local_response_normalization, precision, devices, config."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.nn import lrn as lrn_module
from alexnet_tf.nn.lrn import LocalResponseNormalization


def numpy_lrn(x, size, k, alpha, beta, convention="paper", groups=1):
    """The paper's formula, written channel by channel: b[i] = a[i] / (k + a' * sum a[j]^2)^beta."""
    x = x.astype(np.float64)
    num_channels = x.shape[-1]
    group_channels = num_channels // groups
    scale_alpha = alpha / size if convention == "caffe" else alpha
    out = np.empty_like(x)
    for i in range(num_channels):
        first = (i // group_channels) * group_channels
        last = first + group_channels - 1  # the window never leaves channel i's group
        lo, hi = max(first, i - size // 2), min(last, i + size // 2)
        window = np.sum(x[..., lo:hi + 1] ** 2, axis=-1)
        out[..., i] = x[..., i] / (k + scale_alpha * window) ** beta
    return out



# ----------------------------------------------------------------- LocalResponseNormalization

@pytest.mark.parametrize("xla", [True, False])
@pytest.mark.parametrize("convention", ["paper", "caffe"])
@pytest.mark.parametrize("size,groups", [(5, 1), (3, 1), (1, 1), (5, 2), (9, 1)])
def test_lrn_matches_numpy_paper_formula(convention, size, groups, xla):
    # 8 channels with size up to 9: windows are clipped at both edges (and at the group
    # boundary for groups=2). Large activations make the normalisation far from identity.
    x = np.random.RandomState(0).normal(0, 30, (2, 3, 4, 8)).astype(np.float32)
    layer = LocalResponseNormalization(size=size, k=2.0, alpha=1e-3, beta=0.75,
                                       convention=convention, groups=groups, xla=xla)
    expected = numpy_lrn(x, size, 2.0, 1e-3, 0.75, convention, groups)
    assert not np.allclose(expected, x / 2.0 ** 0.75, rtol=1e-2)  # the sum matters
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("xla", [True, False])
@pytest.mark.parametrize("beta", [0.0, 0.5, 0.75, 1.0, 0.6, 2.0])
def test_lrn_every_beta_path_matches_numpy(beta, xla):
    # beta 0.5, 0.75 and 1 have fast paths (rsqrt, reciprocal); others use exp(-beta log).
    x = np.random.RandomState(8).normal(0, 50, (2, 3, 3, 6)).astype(np.float32)
    layer = LocalResponseNormalization(size=3, k=1.5, alpha=1e-3, beta=beta, xla=xla)
    np.testing.assert_allclose(layer(x).numpy(), numpy_lrn(x, 3, 1.5, 1e-3, beta),
                               rtol=2e-5, atol=1e-6)


def test_lrn_edge_channels_use_clipped_window():
    # Channel 0's window is channels 0..2 only (not wrapped around): check by hand.
    x = np.zeros((1, 1, 1, 6), np.float32)
    x[..., :] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
    out = LocalResponseNormalization(size=5, k=1.0, alpha=0.1, beta=1.0)(x).numpy()[0, 0, 0]
    assert out[0] == pytest.approx(1.0 / (1.0 + 0.1 * (1 + 4 + 9)), rel=1e-6)
    assert out[5] == pytest.approx(6.0 / (1.0 + 0.1 * (16 + 25 + 36)), rel=1e-6)
    assert out[2] == pytest.approx(3.0 / (1.0 + 0.1 * (1 + 4 + 9 + 16 + 25)), rel=1e-6)


@pytest.mark.parametrize("convention", ["paper", "caffe"])
def test_lrn_matches_tf_nn_lrn(convention):
    x = np.random.RandomState(1).normal(0, 20, (2, 5, 5, 16)).astype(np.float32)
    size, k, alpha, beta = 5, 2.0, 1e-4, 0.75
    layer = LocalResponseNormalization(size, k, alpha, beta, convention=convention)
    # TF's depth_radius is the half width; its alpha multiplies the sum like the paper's.
    tf_alpha = alpha / size if convention == "caffe" else alpha
    expected = tf.nn.local_response_normalization(x, depth_radius=size // 2, bias=k,
                                                  alpha=tf_alpha, beta=beta)
    np.testing.assert_allclose(layer(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_lrn_computes_in_float32_under_mixed_precision():
    # 400^2 = 160000 overflows float16 (max 65504): a float16 computation would give 0s.
    x = np.full((1, 2, 2, 4), 400.0, np.float32)
    layer = LocalResponseNormalization(dtype="mixed_float16")
    out = layer(x)
    assert out.dtype == tf.float16
    expected = numpy_lrn(x, 5, 2.0, 1e-4, 0.75)
    np.testing.assert_allclose(out.numpy().astype(np.float32), expected, rtol=2e-3)


@pytest.mark.parametrize("xla", [True, False])
@pytest.mark.parametrize("groups,beta", [(1, 0.75), (2, 0.75), (2, 0.6)])
def test_lrn_hand_written_gradient_matches_tf_nn_lrn(groups, beta, xla):
    """The layer's hand-written gradient equals TF's LRNGrad, tower by tower."""
    x = tf.constant(np.random.RandomState(4).normal(0, 60, (2, 3, 3, 16)).astype(np.float32))
    weights = tf.constant(np.random.RandomState(5).normal(0, 1, x.shape).astype(np.float32))
    layer = LocalResponseNormalization(beta=beta, groups=groups, xla=xla)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        ours = tf.reduce_sum(layer(x) * weights)
        reference = tf.reduce_sum(weights * tf.concat(
            [tf.nn.local_response_normalization(block, 2, 2.0, 1e-4, beta)
             for block in tf.split(x, groups, axis=-1)], axis=-1))
    expected = tape.gradient(reference, x).numpy()
    np.testing.assert_allclose(tape.gradient(ours, x).numpy(), expected,
                               atol=1e-5 * np.abs(expected).max())


def test_lrn_mixed_precision_is_the_float32_result_rounded_once():
    """Under mixed_float16 / mixed_bfloat16 LRN computes in float32."""
    x = np.random.RandomState(9).normal(0, 60, (2, 3, 3, 16)).astype(np.float32)
    for policy, dtype in (("mixed_bfloat16", tf.bfloat16), ("mixed_float16", tf.float16)):
        out = LocalResponseNormalization(groups=2, dtype=policy)(x)
        assert out.dtype == dtype
        # The same low-precision input normalised in float32, then rounded once.
        rounded_input = tf.cast(tf.cast(x, dtype), tf.float32)
        expected = tf.cast(LocalResponseNormalization(groups=2)(rounded_input), dtype)
        np.testing.assert_array_equal(tf.cast(out, tf.float32).numpy(),
                                      tf.cast(expected, tf.float32).numpy())


def test_lrn_bfloat16_compute_stays_close_to_float32():
    x = tf.constant(np.random.RandomState(6).normal(0, 60, (2, 3, 3, 16)).astype(np.float32))
    weights = tf.constant(np.random.RandomState(7).normal(0, 1, x.shape).astype(np.float32))
    results = []
    for dtype in ("float32", "mixed_bfloat16"):
        layer = LocalResponseNormalization(groups=2, dtype=dtype, bfloat16_compute=True)
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x)
            loss = tf.reduce_sum(tf.cast(out, tf.float32) * weights)
        results.append((out, tape.gradient(loss, x).numpy()))
    (out32, grad32), (out16, grad16) = results
    assert out16.dtype == tf.bfloat16
    np.testing.assert_allclose(tf.cast(out16, tf.float32).numpy(), out32.numpy(), rtol=0.02,
                               atol=0.02)
    assert np.abs(grad16 - grad32).max() < 0.02 * np.abs(grad32).max()


@pytest.mark.parametrize("xla", [True, False])
def test_lrn_with_devices_places_each_group_and_matches(xla):
    x = np.random.RandomState(2).normal(0, 30, (2, 3, 3, 8)).astype(np.float32)
    placed = LocalResponseNormalization(groups=2, devices=["/CPU:0", "/CPU:1"], xla=xla)
    np.testing.assert_allclose(placed(x).numpy(), numpy_lrn(x, 5, 2.0, 1e-4, 0.75, groups=2),
                               rtol=2e-5)
    graph = tf.function(placed).get_concrete_function(tf.TensorSpec(x.shape)).graph
    # The per-group computation: the band GEMM, or the call of the XLA kernel.
    kinds = (("PartitionedCall", "StatefulPartitionedCall") if xla else
             ("MatMul", "BatchMatMulV2", "BatchMatMulV3"))
    devices = {op.device for op in graph.get_operations() if op.type in kinds}
    assert any(d.endswith("CPU:0") for d in devices) and any(d.endswith("CPU:1") for d in devices)


# Each layer compiles its own XLA kernels per dtype (the contract builds several), so
# one case checks the XLA path and the others the plain ops; XLA kernels placed on devices
# are checked by test_lrn_with_devices_places_each_group_and_matches.
@pytest.mark.parametrize("kwargs", [
    dict(),
    dict(groups=2, devices=["/CPU:0", "/CPU:1"], xla=False),
    dict(size=3, k=1.0, alpha=2e-4, beta=0.5, convention="caffe", groups=2, name="norm",
         xla=False),
    dict(xla=False, bfloat16_compute=True),
], ids=["paper", "on_devices", "caffe_groups_plain_ops", "bfloat16_compute"])
def test_lrn_layer_contract(check_layer_contract, kwargs):
    # Under mixed precision LRN computes in float32 and returns the policy's compute dtype.
    check_layer_contract(LocalResponseNormalization, kwargs, (2, 3, 3, 8))


@pytest.mark.parametrize("kwargs,message", [
    (dict(size=4), "size must be an odd integer >= 1, received 4"),
    (dict(size=0), "received 0"),
    (dict(size=2.5), "received 2.5"),
    (dict(alpha=-1e-4), "alpha must be >= 0, received -0.0001"),
    (dict(k=0.0), "k must be > 0, received 0.0"),
    (dict(beta=-1.0), "beta must be >= 0, received -1.0"),
    (dict(convention="pytorch"), "received 'pytorch'"),
    (dict(groups=2, devices=["/CPU:0"]), "devices must be a list of 2"),
])
def test_lrn_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        LocalResponseNormalization(**kwargs)


def test_lrn_groups_must_divide_channels():
    with pytest.raises(ValueError, match=r"divisible by groups=2.*\(1, 2, 2, 5\)"):
        LocalResponseNormalization(groups=2)(np.zeros((1, 2, 2, 5), np.float32))


def test_disable_xla_leaves_plain_ops_and_the_same_result():
    inputs = keras.Input((6, 6, 8))
    model = keras.Model(inputs, LocalResponseNormalization(groups=2)(inputs))
    x = np.random.RandomState(9).normal(0, 40, (2, 6, 6, 8)).astype(np.float32)
    fused = model(x).numpy()

    def op_types():
        graph = tf.function(model).get_concrete_function(tf.TensorSpec(x.shape)).graph
        types = set()
        for function in graph.as_graph_def().library.function:
            if function.attr["_XlaMustCompile"].b:
                types.add("xla")
        return types

    assert op_types() == {"xla"}
    assert lrn_module.disable_xla(model) == 1
    assert op_types() == set()
    np.testing.assert_allclose(model(x).numpy(), fused, rtol=1e-5, atol=1e-6)
