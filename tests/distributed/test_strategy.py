"""Strategies on two logical CPUs: mirrored == one device; the paper's towers where asked."""

import re

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import run_dir
from alexnet_tf.distributed import strategy as strategy_lib
from alexnet_tf.training import config as config_lib
from alexnet_tf.training import loop

SIZE = 64
GLOBAL_BATCH = 8


def _fixed_datasets():
    """Deterministic batches (no shuffle, no augmentation) of a learnable 3-class task."""
    def make(index):
        label = tf.cast(index % 3, tf.int32)
        image = tf.random.stateless_normal([SIZE, SIZE, 3], seed=[3, index]) * 20.0
        return image + tf.cast(label, tf.float32) * 25.0, label
    examples = tf.data.Dataset.range(32).map(make)
    return loop.Datasets(train=examples.repeat().batch(GLOBAL_BATCH, drop_remainder=True),
                            validation=lambda: examples.take(16).batch(GLOBAL_BATCH),
                            num_train_examples=32, num_classes=3)


def _train(tmp_path, name, **overrides):
    values = dict(data_dir="unused", input_size=SIZE, resize_size=SIZE, width_multiplier=0.05,
                  batch_size=GLOBAL_BATCH, num_epochs=1, dropout_rate=0.0,  # no randomness
                  learning_rate=0.005, progress_bar=False, summary_images=False, seed=5)
    values.update(overrides)
    model_dir = str(tmp_path / name)
    loop.train_and_evaluate(config_lib.TrainConfig(**values), model_dir,
                               datasets=_fixed_datasets())
    model, _, _ = run_dir.restore_model(model_dir)
    return [w.numpy() for w in model.weights]


def test_mirrored_on_two_cpus_equals_one_device(tmp_path):
    single = _train(tmp_path, "single")
    mirrored = _train(tmp_path, "mirrored", strategy="mirrored", devices=("/CPU:0", "/CPU:1"))
    assert len(single) == len(mirrored)
    # Guard against comparing two untrained networks: the run moved the weights away
    # from the initial ones (same seed, same builder as the trainer).
    import keras
    keras.utils.set_random_seed(5)
    initial = run_dir.build_model(run_dir.read_config(str(tmp_path / "single"))
                                        ["model"])
    assert any(not np.allclose(w.numpy(), s, atol=1e-6)
               for w, s in zip(initial.weights, single))
    for a, b in zip(single, mirrored):
        # Same global batch, loss averaged over it: identical up to float summation order.
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_tower_devices_place_each_tower(tmp_path):
    from alexnet_tf.nn import models
    model = models.alexnet(num_classes=3, input_size=SIZE, width_multiplier=0.05,
                           tower_devices=("/CPU:0", "/CPU:1"))
    devices = {w.path: w.value.device for w in model.weights}
    for layer in ("conv2", "conv4", "conv5"):
        assert devices[f"{layer}/group0/kernel"].endswith("CPU:0")
        assert devices[f"{layer}/group1/kernel"].endswith("CPU:1")
    # The ops too: each tower's convolutions run on its device (forward pass as traced).
    graph = tf.function(model).get_concrete_function(
            tf.TensorSpec([2, SIZE, SIZE, 3], tf.float32)).graph
    convolutions = [op for op in graph.get_operations() if op.type == "Conv2D"]
    for layer in ("conv1", "conv2", "conv4", "conv5"):
        for tower, device in (("group0", "CPU:0"), ("group1", "CPU:1")):
            pattern = re.compile(rf"/{layer}[^/]*/{tower}[^/]*/")  # e.g. .../conv2_1/group0_1/
            placed = [op.device for op in convolutions if pattern.search(op.name)]
            assert len(placed) == 1 and placed[0].endswith(device), (layer, tower, placed)
    # And a run with towers trains (the trainer passes tower_devices to the model).
    weights = _train(tmp_path, "towers", tower_devices=("/CPU:0", "/CPU:1"))
    assert all(np.all(np.isfinite(w)) for w in weights)


def test_tower_devices_need_one_replica():
    strategy = strategy_lib.create_strategy("mirrored", ("/CPU:0", "/CPU:1"))
    with pytest.raises(ValueError, match="single replica"):
        strategy_lib.check_tower_devices(strategy, ("/CPU:0", "/CPU:1"))


def test_create_strategy_names_and_errors():
    assert strategy_lib.create_strategy("default").num_replicas_in_sync == 1
    assert strategy_lib.create_strategy("one_device", ("/CPU:1",)).num_replicas_in_sync == 1
    assert strategy_lib.create_strategy("mirrored", ("/CPU:0", "/CPU:1")) \
        .num_replicas_in_sync == 2
    with pytest.raises(ValueError, match="not a device"):
        strategy_lib.create_strategy("mirrored", ("/GPU:7",))
    with pytest.raises(ValueError, match="strategy must be one of"):
        strategy_lib.create_strategy("tpu")
    with pytest.raises(ValueError, match="needs --strategy"):
        strategy_lib.create_strategy("default", ("/CPU:0",))


def test_replica_slice_gives_each_replica_its_rows():
    strategy = strategy_lib.create_strategy("mirrored", ("/CPU:0", "/CPU:1"))
    batch = tf.reshape(tf.range(8), [8, 1])

    @tf.function
    def run():
        parts = strategy.run(lambda: strategy_lib.replica_slice(batch, 2))
        return strategy.experimental_local_results(parts)

    first, second = run()
    np.testing.assert_array_equal(first[:, 0], [0, 1, 2, 3])
    np.testing.assert_array_equal(second[:, 0], [4, 5, 6, 7])
    assert strategy_lib.is_chief(strategy) and strategy_lib.num_workers(strategy) == 1
