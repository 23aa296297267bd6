"""alexnet_tf.training.loop end to end: tiny JPEGs -> the real converter -> the real
pipeline -> training.

All three tests are slow (subprocesses, real TFRecords): a 2-step run under
MirroredStrategy on two logical CPUs then reloaded in a fresh process; exactly-once
resume: SIGKILL in the middle of a run, rerun, and the final weights equal an
uninterrupted run's; and --augment_on=device, which must give the host's images.
"""

import os
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest

from alexnet_tf.distributed import strategy as strategy_lib
from alexnet_tf.training import config as config_lib
from alexnet_tf.training import loop

SUBPROCESS_TIMEOUT = 120  # seconds; a hung child fails the test instead of the suite


@pytest.fixture
def records(tiny_records):
    """The session's tiny records (conftest): 3 classes, converted by the real converter."""
    return tiny_records


def _tiny_config(data_dir, **overrides):
    values = dict(data_dir=data_dir, input_size=64, resize_size=72, width_multiplier=0.05,
                  batch_size=4, mean_mode="rgb", progress_bar=False, summary_images=False)
    values.update(overrides)
    return config_lib.TrainConfig(**values)


def _run_python(code, cwd, timeout=SUBPROCESS_TIMEOUT, **kwargs):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, timeout=timeout,
                          capture_output=True, text=True, **kwargs)


@pytest.mark.slow
def test_two_steps_mirrored_through_converter_and_pipeline(records, tmp_path, repo_root):
    model_dir = str(tmp_path / "run")
    config = _tiny_config(records, max_steps=2, strategy="mirrored",
                          devices=("/CPU:0", "/CPU:1"))
    results = loop.train_and_evaluate(config, model_dir)
    assert results["step"] == 2 and results["num_examples"] == 6  # 3 classes x 2
    assert os.path.exists(os.path.join(model_dir, "labels.json"))
    # A fresh process rebuilds the model from config.json and restores the checkpoint.
    done = _run_python(textwrap.dedent(f"""
        import numpy as np
        from alexnet_tf import run_dir as model_dir
        model, config, _ = model_dir.restore_model({model_dir!r})
        out = model(np.zeros((1, 64, 64, 3), np.float32))
        print("OK", out.shape, config["model"]["num_classes"], len(model_dir.read_labels({model_dir!r})))
    """), repo_root)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "OK (1, 3) 3 3" in done.stdout


# The child: trains through the real pipeline (shuffle, random crops, flips, lighting and
# dropout all active), prints each step, and saves the final weights.
_CHILD = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    tf.config.experimental.enable_op_determinism()
    from alexnet_tf.training import config as config_lib
    from alexnet_tf.training import summaries
    from alexnet_tf import run_dir as model_dir
    from alexnet_tf.training import loop
    data_dir, run_dir, out = sys.argv[1:4]
    update = summaries.Progress.update
    def update_and_print(self, step, loss, learning_rate):
        print("STEP", step, flush=True)
        return update(self, step, loss, learning_rate)
    summaries.Progress.update = update_and_print
    config = config_lib.TrainConfig(
        data_dir=data_dir, input_size=64, resize_size=72, width_multiplier=0.05,
        batch_size=4, mean_mode="rgb", num_epochs=2, checkpoint_every_steps=2,
        summary_images=False, seed=3)
    loop.train_and_evaluate(config, run_dir)
    model, _, _ = model_dir.restore_model(run_dir)
    np.savez(out, *[w.numpy() for w in model.weights])
    print("DONE", flush=True)
""")


def _child(records, run_dir, out, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    with open(out + ".log", "a") as log:  # stderr, for the failure message
        return subprocess.Popen([sys.executable, "-c", _CHILD, records, run_dir, out],
                                cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=log,
                                text=True)


def _wait(process, out):
    try:
        output, _ = process.communicate(timeout=SUBPROCESS_TIMEOUT)
    finally:
        process.kill()
    if process.returncode != 0 or "DONE" not in output:
        with open(out + ".log") as log:
            pytest.fail(f"child failed ({process.returncode}): {log.read()[-3000:]}")
    return output


@pytest.mark.slow
def test_sigkill_then_rerun_equals_uninterrupted_run(records, tmp_path, repo_root):
    # 24 training images / batch 4 = 6 steps per epoch, 12 steps in all.
    # The uninterrupted reference runs alongside the run that is killed (2 cores).
    reference = str(tmp_path / "reference.npz")
    uninterrupted = _child(records, str(tmp_path / "uninterrupted"), reference, repo_root)
    run_dir, resumed = str(tmp_path / "killed"), str(tmp_path / "resumed.npz")
    process = _child(records, run_dir, resumed, repo_root)
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT
    try:
        for line in process.stdout:  # Kill mid-epoch 2, between checkpoints 8 and 10.
            if line.strip() == "STEP 9" or time.monotonic() > deadline:
                break
    finally:
        process.kill()  # SIGKILL: no handler, no final save
        process.wait()
    assert not os.path.exists(resumed)
    _wait(_child(records, run_dir, resumed, repo_root), resumed)
    _wait(uninterrupted, reference)

    with np.load(reference) as expected, np.load(resumed) as actual:
        assert len(expected.files) == len(actual.files) > 0
        for name in expected.files:
            np.testing.assert_array_equal(actual[name], expected[name])


@pytest.mark.slow
def test_augment_on_device_gives_the_same_images_and_trains(records, tmp_path):
    """--augment_on=device: the float stage moves into the step; the images are the same."""
    batches, losses = {}, {}
    for where in ("host", "device"):
        config = _tiny_config(records, max_steps=2, augment_on=where, strategy="mirrored",
                              devices=("/CPU:0", "/CPU:1"), mean_mode="image", num_epochs=1)
        strategy = strategy_lib.create_strategy(config.strategy, config.devices)
        keras.utils.set_random_seed(config.seed)  # as train_and_evaluate does
        data = loop.make_datasets(config, strategy)
        batch, _ = next(iter(data.train))
        if where == "device":
            assert batch["image"].dtype == "uint8"
            batch = data.train_augment(batch)
        else:
            assert data.train_augment is None
        batches[where] = batch.numpy()
        results = loop.train_and_evaluate(config, str(tmp_path / where))
        assert results["step"] == 2
        losses[where] = results["loss"]  # validation loss after the 2 steps
    np.testing.assert_array_equal(batches["device"], batches["host"])
    assert batches["host"].dtype == np.float32 and batches["host"].std() > 1.0
    np.testing.assert_allclose(losses["device"], losses["host"], rtol=1e-3)
