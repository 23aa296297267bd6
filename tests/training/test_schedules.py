"""Tests for alexnet_tf.training.schedules: plateau and step schedules, large-batch scaling
and warm-up."""

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.training import schedules


def test_plateau_divides_by_ten_after_patience_at_most_three_times():
    schedule = schedules.PlateauSchedule(0.01, factor=0.1, patience=2, max_reductions=3)
    errors = [0.9, 0.8, 0.8, 0.81,   # two epochs without improvement -> 0.001
              0.7, 0.7, 0.7,         # -> 0.0001
              0.75, 0.75,            # -> 0.00001
              0.8, 0.8, 0.8, 0.8]    # no fourth reduction
    rates, reduced = [], []
    for epoch, error in enumerate(errors):
        rates.append(schedule.learning_rate(epoch))
        reduced.append(schedule.update(error))
    assert [i for i, r in enumerate(reduced) if r] == [3, 6, 8]
    assert rates[:4] == [0.01] * 4
    assert rates[4] == pytest.approx(0.001)
    assert rates[7] == pytest.approx(0.0001)
    assert rates[-1] == pytest.approx(0.00001)
    assert int(schedule.num_reductions.numpy()) == 3


def test_plateau_min_delta_and_checkpoint(tmp_path):
    schedule = schedules.PlateauSchedule(0.01, patience=1, min_delta=0.01)
    schedule.update(0.5)
    assert schedule.update(0.495)  # an improvement smaller than min_delta does not count
    path = tf.train.Checkpoint(schedule=schedule).save(str(tmp_path / "ckpt"))
    restored = schedules.PlateauSchedule(0.01, patience=1, min_delta=0.01)
    tf.train.Checkpoint(schedule=restored).restore(path).assert_consumed()
    assert restored.learning_rate(0) == pytest.approx(0.001)
    assert float(restored.best_error.numpy()) == pytest.approx(0.5)


def test_step_schedule():
    schedule = schedules.make_schedule("step", initial_learning_rate=0.01,
                                           boundaries=(2, 4))
    rates = [schedule.learning_rate(epoch) for epoch in range(6)]
    np.testing.assert_allclose(rates, [0.01, 0.01, 0.001, 0.001, 0.0001, 0.0001])
    assert not schedule.update(0.3)
    with pytest.raises(ValueError, match="boundaries"):
        schedules.make_schedule("step", initial_learning_rate=0.01, boundaries=(4, 2))
    with pytest.raises(ValueError, match="lr_schedule"):
        schedules.make_schedule("cosine", initial_learning_rate=0.01)


@pytest.mark.parametrize("rule, expected", [("none", 0.01), ("linear", 0.08),
                                            ("sqrt", 0.01 * 8 ** 0.5)])
def test_scaled_learning_rate(rule, expected):
    assert schedules.scaled_learning_rate(0.01, 1024, 128, rule) == pytest.approx(expected)


def test_scaled_learning_rate_rejects_bad_input():
    with pytest.raises(ValueError, match="lr_scaling"):
        schedules.scaled_learning_rate(0.01, 256, 128, "cubic")
    with pytest.raises(ValueError, match="batch sizes"):
        schedules.scaled_learning_rate(0.01, 0, 128, "linear")


def test_warmup_multiplier_ramps_linearly_then_holds():
    values = [schedules.warmup_multiplier(step, 4, start_fraction=0.2) for step in range(7)]
    assert values == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0])
    assert schedules.warmup_multiplier(0, 0) == 1.0  # No warm-up.
    with pytest.raises(ValueError, match="warm-up"):
        schedules.warmup_multiplier(0, 4, start_fraction=1.5)
