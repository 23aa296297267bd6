"""Tests for alexnet_tf.bench.trainability's reading of runs (no training here)."""

import math

import tensorflow as tf

from alexnet_tf.bench import trainability


def test_left_chance_is_the_first_step_below_ninety_percent_of_chance():
    chance = math.log(10)
    losses = {1: chance, 2: chance * 0.95, 3: chance * 0.89, 4: chance * 0.5}
    assert trainability.left_chance_step(losses, 10) == 3
    assert trainability.left_chance_step({1: chance, 2: chance}, 10) is None


def test_scalars_are_read_back_from_a_tensorboard_log(tmp_path):
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        for step, value in ((1, 2.3), (2, 1.5)):
            tf.summary.scalar("loss", value, step=step)
    writer.flush()
    values = trainability.read_scalars(str(tmp_path), "loss")
    assert sorted(values) == [1, 2] and abs(values[2] - 1.5) < 1e-6


def test_outcome_table_counts_the_seeds_that_left_chance():
    rows = [trainability.Row("paper", 0.5, seed) for seed in range(3)]
    outcomes = [trainability.Outcome(rows[0], None, 0.9, 2.30, 10.0, 100),
                trainability.Outcome(rows[1], 40, 0.1, 0.3, 11.0, 100),
                trainability.Outcome(rows[2], 60, 0.2, 0.5, 12.0, 100)]
    table = trainability.format_outcomes(outcomes, 100)
    assert "never (> 100)" in table
    assert "| paper | 0.5 | 2 of 3 | 50 | 0.200 | 11 |" in table
