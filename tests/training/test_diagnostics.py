"""Tests for alexnet_tf.training.diagnostics: layer statistics, update ratios, stalls."""

import math

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.nn import models
from alexnet_tf.training import diagnostics
from alexnet_tf.training import schedules


def _small_model(init="paper"):
    tf.keras.utils.set_random_seed(0)
    return models.alexnet(num_classes=4, input_size=67, width_multiplier=0.0625, init=init)


def _batch():
    images = tf.random.stateless_normal([6, 67, 67, 3], [1, 2], stddev=60.0)
    return images, np.arange(6) % 4


def test_layer_probe_matches_a_direct_computation():
    model = _small_model()
    images, labels = _batch()
    statistics = diagnostics.LayerProbe(model, images, labels)()
    assert list(statistics["activation_std"]) == list(diagnostics.LAYERS)
    # conv3's output std and fc8's weight-gradient norm, computed here without the probe.
    conv3 = tf.keras.Model(model.input, model.get_layer("conv3").output)(images)
    assert statistics["activation_std"]["conv3"] == pytest.approx(
            float(tf.math.reduce_std(conv3)), rel=1e-5)
    fc8 = model.get_layer("fc8").trainable_weights
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=model(images, training=False)))
    norm = float(tf.linalg.global_norm(tape.gradient(loss, fc8)))
    assert statistics["gradient_norm"]["fc8"] == pytest.approx(norm, rel=1e-4)
    assert statistics["loss"]["probe"] == pytest.approx(float(loss), rel=1e-5)


def test_signal_fades_less_with_the_released_initialisation():
    """What the diagnosis is about: under the paper's printed initialisation the deep
    layers' outputs hardly vary (the biases of 1 dominate); cuda-convnet2's 0.03 in
    conv3..conv5 carries more signal to the classifier."""
    images, labels = _batch()
    paper = diagnostics.LayerProbe(_small_model("paper"), images, labels)()
    released = diagnostics.LayerProbe(_small_model("cuda_convnet2"), images, labels)()
    for layer in ("conv4", "conv5"):
        assert released["activation_std"][layer] > 2 * paper["activation_std"][layer]


def test_update_ratios_against_numpy():
    model = _small_model()
    before = diagnostics.weights_snapshot(model)
    kernel, bias = model.get_layer("fc8").trainable_weights
    old_kernel, old_bias = kernel.numpy(), bias.numpy()
    kernel.assign(old_kernel * 1.5)
    ratios = diagnostics.update_ratios(before, model)
    expected = (np.linalg.norm(0.5 * old_kernel)
                / math.sqrt(np.sum(old_kernel ** 2) + np.sum(old_bias ** 2)))
    assert ratios["fc8"] == pytest.approx(expected, rel=1e-5)
    assert ratios["conv1"] == 0.0


def test_periodic_diagnostics_write_only_when_due(tmp_path):
    model = _small_model()
    writer = tf.summary.create_file_writer(str(tmp_path))
    periodic = diagnostics.PeriodicDiagnostics(model, 3, _batch, writer)
    written = []
    for step in range(7):
        periodic.before_step(step)
        written.append(periodic.after_step(step + 1))
    assert [i + 1 for i, value in enumerate(written) if value is not None] == [3, 6]
    assert set(written[2]) == {"loss", "activation_std", "gradient_norm", "update_ratio"}
    off = diagnostics.PeriodicDiagnostics(model, 0, _batch, writer)
    off.before_step(2)
    assert off.after_step(3) is None


def test_stall_detector_fires_once_on_a_stuck_run_and_not_on_a_learning_one():
    chance = math.log(10)
    stuck = diagnostics.StallDetector(10, num_steps=50)
    messages = [stuck.update(step, chance * (1 + 0.001 * (-1) ** step))
                for step in range(1, 121)]
    fired = [step for step, message in zip(range(1, 121), messages) if message]
    assert fired == [50]
    assert "not learning" in messages[49] and "--init" in messages[49]
    learning = diagnostics.StallDetector(10, num_steps=50)
    losses = [chance * (1 - step / 200) for step in range(1, 121)]  # leaves chance
    assert not any(learning.update(step, loss) for step, loss in enumerate(losses, 1))
    assert diagnostics.StallDetector(10, num_steps=0).update(1, chance) is None


def test_plateau_keeps_its_reductions_while_the_loss_is_at_chance():
    schedule = schedules.PlateauSchedule(0.01, patience=2, max_reductions=3)
    for _ in range(10):  # ten epochs at chance: not one counts
        assert not schedule.update(0.9, at_chance=True)
    assert schedule.learning_rate(10) == pytest.approx(0.01)
    assert int(schedule.num_reductions.numpy()) == 0
    schedule.update(0.5)
    assert not schedule.update(0.5) and schedule.update(0.5)  # a real plateau still counts
    assert schedule.learning_rate(13) == pytest.approx(0.001)
    assert diagnostics.at_chance(math.log(10) * 1.005, 10)
    assert not diagnostics.at_chance(math.log(10) * 0.95, 10)
