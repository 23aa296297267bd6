"""Tests for alexnet_tf.training.loop on tiny in-memory data: outputs, resume, NaN stop,
SIGTERM, transfer learning, precision and XLA."""

import json
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import run_dir
from alexnet_tf.training import checkpoints
from alexnet_tf.training import config as config_lib
from alexnet_tf.training import loop
from alexnet_tf.training import summaries

SIZE = 64  # The smallest input the paper variant takes.
BATCH = 8


def _examples(num, num_classes, seed, scale=20.0):
    """Images whose mean brightness gives the class (learnable), as a finite dataset."""
    def make(index):
        label = tf.cast(index % num_classes, tf.int32)
        noise = tf.random.stateless_normal([SIZE, SIZE, 3], seed=[seed, index]) * scale
        return noise + tf.cast(label, tf.float32) * 30.0 - 15.0, label
    return tf.data.Dataset.range(num).map(make)


def tiny_datasets(num_classes=3, num_train=32, on_element=None, scale=20.0):
    train = _examples(num_train, num_classes, 0, scale)
    if on_element is not None:
        train = train.map(on_element)
    train = train.shuffle(num_train, seed=1).repeat().batch(BATCH, drop_remainder=True)
    return loop.Datasets(train=train,
                            validation=lambda: _examples(12, num_classes, 7).batch(BATCH),
                            num_train_examples=num_train, num_classes=num_classes)


def tiny_config(**overrides):
    values = dict(data_dir="unused", input_size=SIZE, resize_size=SIZE, width_multiplier=0.05,
                  batch_size=BATCH, num_epochs=2, checkpoint_every_steps=3,
                  progress_bar=False, log_every_steps=2)
    values.update(overrides)
    return config_lib.TrainConfig(**values)


def _weights(model):
    return [w.numpy() for w in model.weights]


def test_run_writes_model_dir_and_restores(tmp_path):
    model_dir = str(tmp_path / "run")
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps([{"index": i, "synset": f"n{i}", "name": ""} for i in range(3)]))
    data = tiny_datasets()
    data.labels_file = str(labels)
    results = loop.train_and_evaluate(tiny_config(), model_dir, datasets=data)
    assert results["step"] == 8 and results["epoch"] == 2 and not results["preempted"]
    assert 0.0 <= results["top1_error"] <= 1.0 and results["num_examples"] == 12
    assert [entry["epoch"] for entry in results["history"]] == [1, 2]
    saved = run_dir.read_config(model_dir)
    assert saved["model"]["num_classes"] == 3  # resolved from the data
    assert run_dir.read_labels(model_dir)[2]["synset"] == "n2"
    checkpoints = tf.train.get_checkpoint_state(run_dir.checkpoint_dir(model_dir))
    assert checkpoints.model_checkpoint_path.endswith("ckpt-8")
    assert os.listdir(os.path.join(model_dir, summaries.LOG_DIR, "train"))
    # The model_dir contract other tools rely on: rebuild from the spec and restore.
    model, _, _ = run_dir.restore_model(model_dir)
    images = next(iter(data.validation()))[0]
    assert model(images).shape == (8, 3)


def test_rerun_resumes_and_extends(tmp_path):
    model_dir = str(tmp_path / "run")
    loop.train_and_evaluate(tiny_config(num_epochs=1), model_dir, datasets=tiny_datasets())
    results = loop.train_and_evaluate(tiny_config(num_epochs=2), model_dir,
                                         datasets=tiny_datasets())
    assert results["step"] == 8
    assert [entry["epoch"] for entry in results["history"]] == [1, 2]
    with pytest.raises(ValueError, match="(?s)incompatible.*batch_size"):
        loop.train_and_evaluate(tiny_config(batch_size=4), model_dir,
                                   datasets=tiny_datasets())


def test_resume_with_another_input_pipeline_is_a_clear_error(tmp_path):
    model_dir = str(tmp_path / "run")
    loop.train_and_evaluate(tiny_config(num_epochs=1), model_dir, datasets=tiny_datasets())
    other = tiny_datasets()
    other.train = other.train.map(lambda images, labels: (images * 1.0, labels))
    with pytest.raises(RuntimeError, match="input pipeline's position"):
        loop.train_and_evaluate(tiny_config(num_epochs=2), model_dir, datasets=other)


@pytest.mark.parametrize("learning_rate", [1e39, 1000.0])
def test_no_checkpoint_ever_holds_non_finite_weights(tmp_path, learning_rate):
    """Weights can overflow while the loss still looks finite: the save refuses them, so
    every checkpoint kept (and the one named "last good") is finite; a lower learning
    rate is then an allowed change on resume, recorded in config_history.json."""
    model_dir = str(tmp_path / "run")
    config = tiny_config(learning_rate=learning_rate, num_epochs=50, checkpoint_every_steps=1,
                         dropout_rate=0.0)
    with pytest.raises(loop.NonFiniteLossError,
                       match="last good checkpoint|no checkpoint is kept") as error:
        loop.train_and_evaluate(config, model_dir, datasets=tiny_datasets())
    manager_dir = run_dir.checkpoint_dir(model_dir)
    prefixes = tf.train.get_checkpoint_state(manager_dir)
    kept = list(prefixes.all_model_checkpoint_paths) if prefixes else []
    for prefix in kept:
        model, _, _ = run_dir.restore_model(model_dir, prefix)
        assert all(np.all(np.isfinite(w)) for w in _weights(model)), prefix
        reader = tf.train.load_checkpoint(prefix)  # the optimizer's slots too
        for name, dtype in reader.get_variable_to_dtype_map().items():
            if dtype.is_floating and name.startswith(("model", "optimizer")):
                assert np.all(np.isfinite(reader.get_tensor(name))), (prefix, name)
    latest = tf.train.latest_checkpoint(manager_dir)
    assert (str(latest) if latest else "no checkpoint is kept") in str(error.value)
    if latest is not None:
        # The resume is accepted (before, a changed learning rate was refused).
        results = loop.train_and_evaluate(tiny_config(learning_rate=1e-4, num_epochs=50,
                                                      max_steps=int(latest.split("-")[-1]),
                                                      dropout_rate=0.0),
                                          model_dir, datasets=tiny_datasets())
        assert results["step"] == int(latest.split("-")[-1])
        with open(os.path.join(model_dir, run_dir.CONFIG_HISTORY_FILE)) as f:
            history = json.load(f)
        assert history[-1]["changes"]["learning_rate"] == [learning_rate, 1e-4]


def _loss(model, datasets):
    images, labels = next(iter(datasets.validation()))
    return float(tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(
            labels, model(images, training=False), from_logits=False)))


@pytest.mark.parametrize("learning_rate", [1000.0, 1e12])
def test_nan_loss_sets_aside_the_checkpoint_that_gave_it(tmp_path, learning_rate):
    """Finite weights can be so large that the next loss overflows: that checkpoint is set
    aside as diverged-ckpt-<step>, and the last good one named gives a finite loss."""
    model_dir = str(tmp_path / "run")
    config = tiny_config(learning_rate=learning_rate, num_epochs=50, checkpoint_every_steps=1,
                         dropout_rate=0.0)
    with pytest.raises(loop.NonFiniteLossError, match=r"training loss is (nan|inf) at step (\d+)") \
            as error:
        loop.train_and_evaluate(config, model_dir, datasets=tiny_datasets())
    failed_step = int(error.value.args[0].split(" at step ")[1].split(":")[0])
    directory = run_dir.checkpoint_dir(model_dir)
    # The weights of the step before gave the non-finite loss: set aside, not deleted.
    assert _checkpoint_names(directory, "diverged-ckpt-*.index") == [
            f"diverged-ckpt-{failed_step - 1}"]
    latest = tf.train.latest_checkpoint(directory)
    if latest is None:
        assert "no checkpoint is kept" in str(error.value)
        return
    assert latest.endswith(f"ckpt-{failed_step - 2}")
    assert f"the last good checkpoint is {latest}" in str(error.value)
    model, _, _ = run_dir.restore_model(model_dir)
    assert all(np.all(np.isfinite(w)) for w in _weights(model))
    assert np.isfinite(_loss(model, tiny_datasets()))


def test_sigterm_saves_and_stops(tmp_path, monkeypatch):
    model_dir = str(tmp_path / "run")
    update = summaries.Progress.update

    def update_then_sigterm_at_step_6(self, step, loss, learning_rate):
        if step == 6:
            os.kill(os.getpid(), signal.SIGTERM)  # as a preempting scheduler would
        return update(self, step, loss, learning_rate)

    monkeypatch.setattr(summaries.Progress, "update", update_then_sigterm_at_step_6)
    handler = signal.getsignal(signal.SIGTERM)
    config = tiny_config(num_epochs=20, checkpoint_every_steps=1000)
    results = loop.train_and_evaluate(config, model_dir, datasets=tiny_datasets())
    assert results["preempted"] and results["step"] == 6
    latest = tf.train.latest_checkpoint(run_dir.checkpoint_dir(model_dir))
    assert latest.endswith("ckpt-6")
    assert signal.getsignal(signal.SIGTERM) == handler  # handler restored


def test_sigterm_on_the_last_step_of_an_epoch_finishes_the_epoch_first(tmp_path, monkeypatch):
    update = summaries.Progress.update

    def update_then_sigterm_at_step_4(self, step, loss, learning_rate):
        if step == 4:  # 32 images / batch 8: the last step of epoch 1
            os.kill(os.getpid(), signal.SIGTERM)
        return update(self, step, loss, learning_rate)

    monkeypatch.setattr(summaries.Progress, "update", update_then_sigterm_at_step_4)
    results = loop.train_and_evaluate(tiny_config(num_epochs=3), str(tmp_path),
                                         datasets=tiny_datasets())
    assert results["preempted"] and results["step"] == 4
    # The epoch was validated and counted before stopping, so a rerun starts epoch 2.
    assert [entry["epoch"] for entry in results["history"]] == [1]


def test_transfer_learning_retrains_only_fc8(tmp_path):
    source_dir = str(tmp_path / "source")
    loop.train_and_evaluate(tiny_config(num_epochs=1), source_dir, datasets=tiny_datasets())
    source, _, _ = run_dir.restore_model(source_dir)
    target_dir = str(tmp_path / "target")
    config = tiny_config(num_epochs=1, init_checkpoint=source_dir, trainable_layers=("fc8",))
    loop.train_and_evaluate(config, target_dir, datasets=tiny_datasets(num_classes=5))
    target, saved, _ = run_dir.restore_model(target_dir)
    assert saved["model"]["num_classes"] == 5
    for name in ("conv1", "conv3", "fc6", "fc7"):
        for before, after in zip(source.get_layer(name).get_weights(),
                                 target.get_layer(name).get_weights()):
            np.testing.assert_array_equal(before, after)  # copied, then frozen
    assert target.get_layer("fc8").get_weights()[0].shape[-1] == 5


def test_new_layers_keep_their_fresh_weights_for_as_many_classes(tmp_path):
    source_dir = str(tmp_path / "source")
    loop.train_and_evaluate(tiny_config(num_epochs=1), source_dir, datasets=tiny_datasets())
    source, _, _ = run_dir.restore_model(source_dir)
    spec = tiny_config(num_classes=3).model_spec()
    for new_layers, copied_fc8 in (((), True), (("fc8",), False)):
        model = run_dir.build_model(spec)
        fresh = model.get_layer("fc8").get_weights()[0]
        copied = checkpoints.initialize_from(model, source_dir, run_dir.build_model,
                                             new_layers=new_layers)
        kernel = model.get_layer("fc8").get_weights()[0]
        assert ("fc8" in copied) == copied_fc8 and "fc7" in copied
        np.testing.assert_array_equal(
                kernel, source.get_layer("fc8").get_weights()[0] if copied_fc8 else fresh)
    with pytest.raises(ValueError, match=r"new_layers: \['fc9'\]"):
        checkpoints.initialize_from(model, source_dir, run_dir.build_model,
                                    new_layers=("fc9",))
    with pytest.raises(ValueError, match="needs --init_checkpoint"):
        tiny_config(new_layers=("fc8",))


def test_init_checkpoint_with_other_lrn_stops_before_writing(tmp_path, make_run):
    source = make_run(tmp_path / "source", ["a", "b", "c"], input_size=SIZE,
                      width_multiplier=0.05, lrn_convention="caffe", lrn_k=1.0,
                      lrn_across_towers=True)
    target_dir = tmp_path / "target"
    with pytest.raises(ValueError, match="pass --lrn_convention=caffe --lrn_k=1 "
                                         "--lrn_across_towers"):
        loop.train_and_evaluate(tiny_config(init_checkpoint=source["model_dir"]),
                                str(target_dir), datasets=tiny_datasets())
    assert not target_dir.exists() or not os.listdir(target_dir)


def test_unknown_trainable_layer_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="fc9"):
        loop.train_and_evaluate(tiny_config(trainable_layers=("fc9",)), str(tmp_path),
                                   datasets=tiny_datasets())


def test_unknown_lr_multiplier_layer_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"lr_multipliers: \['fc9'\]"):
        loop.train_and_evaluate(tiny_config(lr_multipliers=("fc8=10", "fc9=2")),
                                str(tmp_path), datasets=tiny_datasets())


@pytest.mark.parametrize("precision, jit_compile", [("mixed_float16", False), ("fp32", True)])
def test_precision_and_jit(tmp_path, precision, jit_compile):
    import keras
    model_dir = str(tmp_path / "run")
    seen = {}
    update = summaries.Progress.update

    def record_policy(self, step, loss, learning_rate):
        seen["policy"] = keras.mixed_precision.dtype_policy().name
        return update(self, step, loss, learning_rate)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(summaries.Progress, "update", record_policy)
        results = loop.train_and_evaluate(
                tiny_config(num_epochs=1, precision=precision, jit_compile=jit_compile),
                model_dir, datasets=tiny_datasets())
    assert np.isfinite(results["loss"]) and results["step"] == 4
    assert seen["policy"] == {"fp32": "float32"}.get(precision, precision)
    assert keras.mixed_precision.dtype_policy().name == "float32"  # restored afterwards
    model, _, _ = run_dir.restore_model(model_dir)  # float32 weights load as they are
    assert all(np.all(np.isfinite(w)) for w in _weights(model))


def test_a_budget_in_images_sets_the_steps_and_the_schedule(tmp_path):
    """--train_images: ceil(images / batch) steps whatever the epochs; the step schedule's
    boundaries count images (here the rate drops after 4 steps x 8 images)."""
    config = tiny_config(train_images=6 * BATCH + 1, num_epochs=1, lr_schedule="step",
                         lr_boundaries=(4 * BATCH,), learning_rate=0.01)
    results = loop.train_and_evaluate(config, str(tmp_path / "run"), datasets=tiny_datasets())
    assert results["step"] == 7  # ceil(49 / 8), past num_epochs=1 (4 steps an epoch)
    rates = summaries_scalars(str(tmp_path / "run"), "learning_rate")
    assert rates[2] == pytest.approx(0.01) and rates[6] == pytest.approx(0.001)


def summaries_scalars(model_dir, tag):
    from tensorboard.backend.event_processing import event_accumulator
    values = {}
    for name in os.listdir(os.path.join(model_dir, "logs", "train")):
        accumulator = event_accumulator.EventAccumulator(
                os.path.join(model_dir, "logs", "train", name),
                size_guidance={event_accumulator.TENSORS: 0})
        accumulator.Reload()
        for event in accumulator.Tensors(tag):
            values[event.step] = float(tf.make_ndarray(event.tensor_proto))
    return values


def test_a_save_that_died_leaves_nothing_after_the_next_start(tmp_path):
    model_dir = str(tmp_path / "run")
    loop.train_and_evaluate(tiny_config(num_epochs=1), model_dir, datasets=tiny_datasets())
    stale = os.path.join(run_dir.checkpoint_dir(model_dir), "ckpt-50_temp")
    os.makedirs(stale)
    with open(os.path.join(stale, "part-00000-of-00001.data-00000-of-00001"), "wb") as f:
        f.write(b"\0" * 4096)  # what a kill or a full disk leaves mid-save
    results = loop.train_and_evaluate(tiny_config(num_epochs=2), model_dir,
                                      datasets=tiny_datasets())
    assert results["epoch"] == 2 and not os.path.exists(stale)


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    """A finished 2-epoch run keeping 3 checkpoints (ckpt-4, 6, 8); tests damage copies."""
    model_dir = str(tmp_path_factory.mktemp("damaged") / "run")
    loop.train_and_evaluate(tiny_config(keep_checkpoints=3), model_dir,
                            datasets=tiny_datasets())
    return model_dir


def _checkpoint_names(directory, pattern="ckpt-*.index"):
    import glob
    return sorted(os.path.basename(path)[:-len(".index")]
                  for path in glob.glob(os.path.join(directory, pattern)))


@pytest.mark.parametrize("how, resumed, set_aside", [
    ("truncate-data", "ckpt-6", ["corrupt-ckpt-8"]),
    ("truncate-index", "ckpt-6", ["corrupt-ckpt-8"]),
    ("garbage-state", "ckpt-8", []),
])
def test_resume_falls_back_past_a_damaged_checkpoint(two_epoch_run, tmp_path, caplog,
                                                     corrupt_checkpoint, how, resumed,
                                                     set_aside):
    """The newest checkpoint that reads is resumed; a damaged one is moved aside (not
    deleted), the state file is rewritten, and the manager keeps its 3 as before."""
    import shutil
    model_dir = str(tmp_path / "run")
    shutil.copytree(two_epoch_run, model_dir)
    directory = run_dir.checkpoint_dir(model_dir)
    corrupt_checkpoint(os.path.join(directory, "ckpt-8"), how)
    with caplog.at_level("WARNING"):
        results = loop.train_and_evaluate(tiny_config(num_epochs=3, keep_checkpoints=3),
                                          model_dir, datasets=tiny_datasets())
    assert f"Resuming from {os.path.join(directory, resumed)}," in caplog.text
    assert results["step"] == 12 and [entry["epoch"] for entry in results["history"]] == [1, 2, 3]
    assert _checkpoint_names(directory, "corrupt-ckpt-*.index") == set_aside
    # ckpt-8 written again after the fallback (or kept), 9 and 12; the oldest deleted.
    assert _checkpoint_names(directory) == ["ckpt-12", "ckpt-8", "ckpt-9"]
    state = tf.train.get_checkpoint_state(directory)
    assert [os.path.basename(path) for path in state.all_model_checkpoint_paths] == [
            "ckpt-8", "ckpt-9", "ckpt-12"]
    assert os.path.exists(os.path.join(directory, "corrupt-checkpoint")) == (
            how == "garbage-state")
    model, _, path = run_dir.restore_model(model_dir)
    assert path.endswith("ckpt-12") and all(np.all(np.isfinite(w)) for w in _weights(model))


def test_no_readable_checkpoint_refuses_to_start_afresh(two_epoch_run, tmp_path,
                                                        corrupt_checkpoint):
    import shutil
    from alexnet_tf import errors
    model_dir = str(tmp_path / "run")
    shutil.copytree(two_epoch_run, model_dir)
    directory = run_dir.checkpoint_dir(model_dir)
    for step in (4, 6, 8):
        corrupt_checkpoint(os.path.join(directory, f"ckpt-{step}"), "truncate-index")
    before = sorted(os.listdir(directory))
    with pytest.raises(errors.CorruptCheckpointError, match="Not starting afresh"):
        loop.train_and_evaluate(tiny_config(num_epochs=3), model_dir, datasets=tiny_datasets())
    assert sorted(os.listdir(directory)) == before  # nothing moved or written
