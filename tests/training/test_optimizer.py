"""Tests for alexnet_tf.training.optimizer: PaperSGD against the paper's update rule in
NumPy, fused and under a strategy, checkpointed, configured."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.training import optimizer as optimizer_lib


def _numpy_paper_sgd(weights, gradients, learning_rate, momentum=0.9, weight_decay=0.0005):
    """v <- m v - wd lr w - lr g ; w <- w + v, step by step (the paper, section 5)."""
    w = weights.astype(np.float64)
    v = np.zeros_like(w)
    for grad in gradients:
        v = momentum * v - weight_decay * learning_rate * w - learning_rate * grad
        w = w + v
    return w, v


def test_update_equals_paper_rule_in_numpy():
    rng = np.random.default_rng(0)
    initial = rng.normal(size=(5, 7)).astype(np.float32)
    gradients = [rng.normal(size=(5, 7)).astype(np.float32) for _ in range(4)]
    variable = keras.Variable(initial)
    # A large decay makes the decay term visible above float32 round-off.
    opt = optimizer_lib.PaperSGD(learning_rate=0.1, momentum=0.9, weight_decay=0.05)
    for grad in gradients:
        opt.apply_gradients([(tf.constant(grad), variable)])
    expected_w, expected_v = _numpy_paper_sgd(initial, gradients, 0.1, 0.9, 0.05)
    np.testing.assert_allclose(variable.numpy(), expected_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(opt.velocities[0].numpy(), expected_v, rtol=1e-5, atol=1e-6)
    assert int(opt.iterations.numpy()) == 4


def test_fused_update_in_place_and_under_a_strategy_agree():
    """The XLA kernel (no strategy) and the plain ops (under a strategy) agree."""
    rng = np.random.default_rng(1)
    initial = rng.normal(size=(6, 4)).astype(np.float32)
    gradients = [rng.normal(size=(6, 4)).astype(np.float32) for _ in range(3)]
    plain = keras.Variable(initial)
    plain_opt = optimizer_lib.PaperSGD(learning_rate=0.1, weight_decay=0.05)
    # No collectives: their process-wide instance keys would clash with later tests'.
    strategy = tf.distribute.MirroredStrategy(
            ["/CPU:0", "/CPU:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    with strategy.scope():
        mirrored = keras.Variable(initial)
        mirrored_opt = optimizer_lib.PaperSGD(learning_rate=0.1, weight_decay=0.05)
        mirrored_opt.build([mirrored])  # slots are made in the scope, not in a replica

    @tf.function
    def mirrored_step(grad):
        # Two replicas each hold half the gradient: the all-reduce sums it back.
        strategy.run(lambda: mirrored_opt.apply_gradients([(grad / 2.0, mirrored)]))

    for grad in gradients:
        plain_opt.apply_gradients([(tf.constant(grad), plain)])
        mirrored_step(tf.constant(grad))
    expected_w, _ = _numpy_paper_sgd(initial, gradients, 0.1, 0.9, 0.05)
    np.testing.assert_allclose(plain.numpy(), expected_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(mirrored.numpy(), plain.numpy(), rtol=1e-6, atol=1e-6)


def test_fused_update_keeps_same_shaped_variables_apart_across_optimizers():
    for _ in range(2):  # a second optimizer and new variables after the first are gone
        a, b = keras.Variable(np.ones(3, np.float32)), keras.Variable(np.ones(3, np.float32))
        opt = optimizer_lib.PaperSGD(learning_rate=1.0, weight_decay=0.0)

        @tf.function
        def step(grad_a, grad_b):
            opt.apply_gradients([(grad_a, a), (grad_b, b)])

        step(tf.fill([3], 1.0), tf.fill([3], 2.0))
        step(tf.fill([3], 1.0), tf.fill([3], 2.0))
        # v_a: -1, then 0.9 * -1 - 1 = -1.9; v_b: -2, then -3.8.
        np.testing.assert_allclose(a.numpy(), 1 - 1 - 1.9, rtol=1e-6)
        np.testing.assert_allclose(b.numpy(), 1 - 2 - 3.8, rtol=1e-6)
        del a, b, opt, step


def test_weight_decay_is_inside_momentum_not_decoupled():
    # With zero gradients, the paper's rule still shrinks w through the velocity, so the
    # second step shrinks more than the first; decoupled decay shrinks by the same
    # factor (1 - lr * wd) each step.
    variable = keras.Variable(np.ones((3,), np.float32))
    opt = optimizer_lib.PaperSGD(learning_rate=1.0, momentum=0.9, weight_decay=0.1)
    zero = tf.zeros((3,))
    opt.apply_gradients([(zero, variable)])
    np.testing.assert_allclose(variable.numpy(), 0.9, rtol=1e-6)  # v = -0.1
    opt.apply_gradients([(zero, variable)])
    # v = 0.9 * -0.1 - 0.1 * 0.9 = -0.18 ; w = 0.72 (decoupled decay would give 0.81).
    np.testing.assert_allclose(variable.numpy(), 0.72, rtol=1e-6)


def test_learning_rate_is_assignable_and_checkpointed(tmp_path):
    variable = keras.Variable(np.ones((2,), np.float32))
    opt = optimizer_lib.PaperSGD(learning_rate=0.01)
    opt.apply_gradients([(tf.ones((2,)), variable)])
    opt.learning_rate.assign(0.001)
    path = tf.train.Checkpoint(optimizer=opt, variable=variable).save(str(tmp_path / "ckpt"))
    variable2 = keras.Variable(np.zeros((2,), np.float32))
    opt2 = optimizer_lib.PaperSGD(learning_rate=0.5)
    opt2.build([variable2])
    tf.train.Checkpoint(optimizer=opt2, variable=variable2).restore(path).assert_consumed()
    assert float(opt2.learning_rate.numpy()) == pytest.approx(0.001)
    np.testing.assert_array_equal(opt2.velocities[0].numpy(), opt.velocities[0].numpy())
    assert int(opt2.iterations.numpy()) == 1


def test_get_config_round_trip():
    opt = optimizer_lib.PaperSGD(learning_rate=0.02, momentum=0.8, weight_decay=0.001)
    clone = optimizer_lib.PaperSGD.from_config(opt.get_config())
    assert (clone.momentum, clone.paper_weight_decay) == (0.8, 0.001)
    assert clone.weight_decay is None  # Keras' decoupled decay stays off.


@pytest.mark.parametrize("under_strategy", [False, True])
def test_layer_multipliers_scale_the_rate_as_caffes_lr_mult(under_strategy):
    """Each layer's variables follow the paper's rule with lr x its multiplier (weight
    decay included, as Caffe's lr_mult with decay_mult 1); unlisted layers use lr."""
    rng = np.random.default_rng(2)
    multipliers = {"fc6": 0.1, "fc8": 10.0}  # fc7 unlisted: x 1
    strategy = (tf.distribute.MirroredStrategy(
            ["/CPU:0", "/CPU:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
            if under_strategy else tf.distribute.get_strategy())
    with strategy.scope():
        model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="fc7"),
                                  keras.layers.Dense(3, name="fc6"),
                                  keras.layers.Dense(2, name="fc8")])
        opt = optimizer_lib.make_optimizer(
                "paper_sgd", learning_rate=0.05, weight_decay=0.05,
                learning_rate_multipliers=optimizer_lib.layer_multipliers(model, multipliers))
        opt.build(model.trainable_variables)
    initial = [variable.numpy() for variable in model.trainable_variables]
    gradients = [[rng.normal(size=v.shape).astype(np.float32) for v in initial]
                 for _ in range(3)]

    @tf.function
    def step(grads):
        pairs = list(zip(grads, model.trainable_variables))
        strategy.run(lambda: opt.apply_gradients(
                [(g / strategy.num_replicas_in_sync, v) for g, v in pairs]))

    for grads in gradients:
        step([tf.constant(g) for g in grads])
    for index, variable in enumerate(model.trainable_variables):
        layer = next(name for name in ("fc6", "fc7", "fc8") if f"/{name}/" in variable.path)
        rate = 0.05 * multipliers.get(layer, 1.0)
        expected, _ = _numpy_paper_sgd(initial[index], [g[index] for g in gradients], rate,
                                       0.9, 0.05)
        np.testing.assert_allclose(variable.numpy(), expected, rtol=1e-5, atol=1e-6,
                                   err_msg=variable.path)
    assert not np.allclose(model.get_layer("fc8").kernel.numpy(),
                           _numpy_paper_sgd(initial[4], [g[4] for g in gradients], 0.05, 0.9,
                                            0.05)[0], atol=1e-3)  # x 10 is not x 1


def test_layer_multipliers_are_checked():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, name="fc8")])
    assert optimizer_lib.layer_multipliers(model, {"fc8": 10}) == {
            variable.path: 10.0 for variable in model.get_layer("fc8").weights}
    with pytest.raises(ValueError, match=r"\['fc9'\] are not layers"):
        optimizer_lib.layer_multipliers(model, {"fc9": 10.0})
    with pytest.raises(ValueError, match="adam takes none"):
        optimizer_lib.make_optimizer("adam", learning_rate=0.1,
                                     learning_rate_multipliers={"fc8": 10.0})
    clone = optimizer_lib.PaperSGD.from_config(optimizer_lib.PaperSGD(
            learning_rate_multipliers={"fc8/kernel": 10}).get_config())
    assert clone.learning_rate_multipliers == {"fc8/kernel": 10.0}


@pytest.mark.parametrize("kwargs", [dict(momentum=1.0), dict(momentum=-0.1),
                                    dict(weight_decay=-1e-4),
                                    dict(learning_rate_multipliers={"fc8": -1.0})])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="PaperSGD"):
        optimizer_lib.PaperSGD(**kwargs)
