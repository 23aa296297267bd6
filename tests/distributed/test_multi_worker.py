"""Multi-worker training on loopback: `python -m alexnet_tf.train --strategy=multi_worker`.

Two worker processes on 127.0.0.1 form a MultiWorkerMirroredStrategy cluster from
TF_CONFIG. Every launch runs under `timeout -s KILL` and is killed (process group) when
the test ends, so nothing outlives the test even if it fails.

The data makes one process on the global batch comparable with two workers on half of
it each: 4 training images in 2 shards (one shard per worker), global batch 4, so each
step (= one epoch) every worker sees exactly its shard and one process sees all 4;
images are horizontal stripes (a flip leaves them unchanged), the crop is the whole
image (input_size = resize_size) and the PCA eigenvalues are 0, so augmentation
changes nothing; dropout is off.
"""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from alexnet_tf import run_dir
from alexnet_tf.data import stats as stats_lib
from alexnet_tf.data.imagenet import convert as imagenet_convert

SIZE = 64  # the paper network's smallest input
PROCESS_LIFETIME = 240  # seconds before `timeout` kills a worker, whatever happens
TRAIN_FLAGS = [
        "--strategy=multi_worker", "--model=alexnet", "--variant=paper",
        "--width_multiplier=0.0625", f"--input_size={SIZE}", f"--resize_size={SIZE}",
        "--dropout_rate=0", "--batch_size=4", "--learning_rate=0.025", "--seed=7",
        "--nosummary_images", "--noprogress_bar",
]

# Runs train.main in a worker and saves that worker's final weights (worker 1 keeps no
# checkpoint of its own, so this is the only way to see its copy of the model).
WEIGHTS_SCRIPT = r"""
import json, os, sys
import numpy as np
from absl import flags
from alexnet_tf import train
from alexnet_tf.training import loop
index = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
weights_path = f"{sys.argv.pop()}{index}.npz"
flags.FLAGS(sys.argv)
run_loop = loop._loop
def loop_and_save_weights(state, *args):
    results = run_loop(state, *args)
    np.savez(weights_path, *[variable.numpy() for variable in state.model.weights])
    return results
loop._loop = loop_and_save_weights
sys.exit(train.main([]))
"""


def _stripes(class_index: int, image_index: int) -> Image.Image:
    """A SIZE x SIZE image constant along each row: left-right symmetric, even as JPEG."""
    rng = np.random.default_rng(10 * class_index + image_index)
    rows = rng.integers(0, 256, (SIZE, 1, 3), dtype=np.uint8)
    rows[:, :, class_index % 3] = 255  # Classes differ in colour.
    return Image.fromarray(np.repeat(rows, SIZE, axis=1))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, make_stats):
    """4 training images in 2 shards; 5 validation images in shards of 2 and 3 (so
    the workers have unequal numbers of validation batches); lighting off."""
    root = tmp_path_factory.mktemp("imagenet")
    for split, per_class in (("train", (2, 2)), ("val", (3, 2))):
        for class_index in range(2):
            folder = root / split / f"n{class_index:08d}"
            folder.mkdir(parents=True)
            for i in range(per_class[class_index]):
                _stripes(class_index, i + 10 * (split == "val")).save(
                        folder / f"{split}_{class_index}_{i}.JPEG", quality=95)
    output = str(tmp_path_factory.mktemp("records"))
    imagenet_convert.convert(imagenet_convert.ConvertOptions(
            imagenet_dir=str(root), output_dir=output, train_shards=2, validation_shards=2,
            resize=SIZE, val_layout="by_class", show_progress=False))
    stats_lib.save_stats(make_stats(eigval=np.zeros(3)),  # No PCA lighting.
                         os.path.join(output, stats_lib.STATS_FILE))
    return output


@contextlib.contextmanager
def _cluster_launcher(log_dir, cwd, free_ports):
    """Yields launch(command_args, name_prefix) -> [Popen per worker]; kills all at exit."""
    processes = []

    def launch(args, name, num_workers=2):
        addresses = [f"127.0.0.1:{port}" for port in free_ports(num_workers)]
        launched = []
        for index in range(num_workers):
            tf_config = json.dumps({"cluster": {"worker": addresses},
                                    "task": {"type": "worker", "index": index}})
            log = open(os.path.join(log_dir, f"{name}-worker{index}.log"), "w")
            process = subprocess.Popen(
                    ["timeout", "-s", "KILL", str(PROCESS_LIFETIME), sys.executable, *args],
                    stdout=log, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
                    env=dict(os.environ, TF_CONFIG=tf_config, TF_CPP_MIN_LOG_LEVEL="2"))
            log.close()
            process.log_path = log.name
            processes.append(process)
            launched.append(process)
        return launched

    try:
        yield launch
    finally:
        for process in processes:
            _kill(process)


def _kill(process) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _read(process) -> str:
    with open(process.log_path) as f:
        return f.read()


def _wait_all(processes, timeout: float) -> None:
    """Waits for every process to exit with status 0, at most `timeout` seconds in all."""
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
        if process.returncode != 0:
            logs = "\n".join(f"--- {p.log_path}\n{_read(p)[-3000:]}" for p in processes)
            raise AssertionError(f"worker exited with {process.returncode}:\n{logs}")


def _weights_of_checkpoint(model_dir: str, checkpoint=None) -> list:
    model, _, _ = run_dir.restore_model(model_dir, checkpoint)
    return [variable.numpy() for variable in model.weights]


@pytest.mark.slow
def test_two_workers_equal_one_process_on_the_same_global_batch(data_dir, tmp_path, repo_root,
                                                                free_ports):
    from alexnet_tf.training import config as config_lib
    from alexnet_tf.training import loop
    num_steps = 3
    model_dir = str(tmp_path / "two_workers")
    # The large-batch recipe, scaled down: k = 4 / 2, so the rate warms up from 0.025
    # to 0.05 over 2 epochs (one step each).
    recipe = dict(lr_scaling="linear", lr_base_batch_size=2, warmup_epochs=2.0)
    flags = [*TRAIN_FLAGS, f"--data_dir={data_dir}", f"--model_dir={model_dir}",
             f"--num_epochs={num_steps}", "--checkpoint_every_steps=1",
             *[f"--{name}={value}" for name, value in recipe.items()]]
    weights_prefix = str(tmp_path / "weights")
    with _cluster_launcher(str(tmp_path), repo_root, free_ports) as launch:
        workers = launch(["-c", WEIGHTS_SCRIPT, *flags, weights_prefix], "weights")
        _wait_all(workers, timeout=PROCESS_LIFETIME - 20)
    # Each worker validated its own shard; the counts were summed over both.
    assert "on 5 images" in _read(workers[0])
    worker_weights = [list(np.load(f"{weights_prefix}{index}.npz").values()) for index in (0, 1)]

    # One process, default strategy, the whole global batch, same settings.
    single_dir = str(tmp_path / "one_process")
    config = config_lib.TrainConfig(
            data_dir=data_dir, strategy="default", model="alexnet", variant="paper",
            width_multiplier=0.0625, input_size=SIZE, resize_size=SIZE, dropout_rate=0.0,
            batch_size=4, learning_rate=0.025, seed=7, summary_images=False,
            progress_bar=False, num_epochs=num_steps, checkpoint_every_steps=1, **recipe)
    results = loop.train_and_evaluate(config, single_dir)
    assert results["step"] == num_steps and results["num_examples"] == 5
    # The rate used by each epoch's (only) step: warm-up, then the scaled rate.
    rates = [entry["learning_rate"] for entry in results["history"]]
    np.testing.assert_allclose(rates, [0.025, 0.0375, 0.05], rtol=1e-6)
    single = _weights_of_checkpoint(single_dir)

    chief = _weights_of_checkpoint(model_dir)
    first_step = _weights_of_checkpoint(
            model_dir, os.path.join(run_dir.checkpoint_dir(model_dir), "ckpt-1"))
    assert any(not np.allclose(a, b) for a, b in zip(chief, first_step)), "weights did not move"
    for a, b, c, d in zip(worker_weights[0], worker_weights[1], chief, single):
        np.testing.assert_array_equal(a, b)  # The all-reduce gives both workers one model.
        np.testing.assert_array_equal(a, c)  # The chief's checkpoint holds that model.
        np.testing.assert_allclose(a, d, rtol=1e-4, atol=1e-6)
    # Only the chief wrote model checkpoints; each worker kept its own input position.
    checkpoint_dir = run_dir.checkpoint_dir(model_dir)
    assert tf.train.latest_checkpoint(checkpoint_dir).endswith(f"ckpt-{num_steps}")
    assert sorted(os.listdir(os.path.join(checkpoint_dir, "iterators"))) == [
            "worker-00000", "worker-00001"]


def _latest_step(model_dir: str) -> int:
    path = tf.train.latest_checkpoint(run_dir.checkpoint_dir(model_dir))
    return int(path.rsplit("-", 1)[1]) if path else 0


def _wait_for_checkpoint(model_dir: str, at_least: int, workers) -> int:
    deadline = time.monotonic() + PROCESS_LIFETIME - 60
    while _latest_step(model_dir) < at_least:
        assert time.monotonic() < deadline, f"no checkpoint at step >= {at_least} in time"
        for worker in workers:
            assert worker.poll() is None, _read(worker)[-3000:]
        time.sleep(0.2)
    return _latest_step(model_dir)


@pytest.mark.slow
def test_killed_worker_cluster_restarts_from_the_last_checkpoint(data_dir, tmp_path, repo_root,
                                                                 free_ports):
    """MWMS cannot lose a worker: the survivor fails at its next all-reduce. The
    recovery is to restart every worker; the cluster resumes at the last checkpoint,
    each worker at its own input position. Then a SIGTERM to ONE worker (preemption)
    stops both at the same step with a checkpoint there."""
    model_dir = str(tmp_path / "run")
    flags = [*TRAIN_FLAGS, f"--data_dir={data_dir}", f"--model_dir={model_dir}",
             "--steps_per_epoch=20", "--num_epochs=1000", "--checkpoint_every_steps=4"]
    with _cluster_launcher(str(tmp_path), repo_root, free_ports) as launch:
        workers = launch(["-m", "alexnet_tf.train", *flags], "first")
        _wait_for_checkpoint(model_dir, 8, workers)
        _kill(workers[1])
        # The survivor cannot go on alone: it blocks in its next all-reduce until
        # TensorFlow's heartbeat check fails it (about 9 s here), and never finishes.
        try:
            workers[0].wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
        if workers[0].returncode is not None:
            assert workers[0].returncode != 0
            assert "UnavailableError" in _read(workers[0]), _read(workers[0])[-3000:]
        _kill(workers[0])
        saved_step = _latest_step(model_dir)
        assert saved_step >= 8 and saved_step % 4 == 0

        workers = launch(["-m", "alexnet_tf.train", *flags], "restarted")
        _wait_for_checkpoint(model_dir, saved_step + 4, workers)
        os.killpg(workers[1].pid, signal.SIGTERM)  # `timeout` passes it on to Python.
        for worker in workers:
            worker.wait(timeout=60)
    logs = [_read(worker) for worker in workers]
    assert re.search(rf"Resumed from \S*ckpt-{saved_step}\b", logs[0]), logs[0][-3000:]
    for rank, log in enumerate(logs):
        assert re.search(rf"worker-{rank:05d}/ckpt-{saved_step}\b", log), log[-3000:]
    stops = [re.search(r"Stopped by SIGTERM at step (\d+)", log) for log in logs]
    assert all(stops), logs[0][-3000:] + logs[1][-3000:]
    stop_step = int(stops[0].group(1))
    assert int(stops[1].group(1)) == stop_step and stop_step > saved_step
    assert [worker.returncode for worker in workers] == [143, 143]
    assert _latest_step(model_dir) == stop_step
