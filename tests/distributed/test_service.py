"""Tests for the tf.data service: alexnet_tf.distributed.service, the data_service command
(alexnet_tf/data_service.py) and the pipeline's data_service option.

A dispatcher and two workers run as `python -m alexnet_tf.data_service` subprocesses on
127.0.0.1; every launch has a hard time limit and is killed (process group) at the end.
"""

import contextlib
import faulthandler
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from alexnet_tf import run_dir
from alexnet_tf.data import pipeline as input_pipeline
from alexnet_tf.data.imagenet import convert as imagenet_convert
from alexnet_tf.distributed import service

NUM_CLASSES, PER_CLASS, NUM_SHARDS = 3, 5, 4
CROP, RESIZE = 56, 64  # 64: the smallest input of the paper network (the training run)
START_TIMEOUT = 60  # seconds for a server to come up (TensorFlow import included)
SERVER_LIFETIME = 240  # seconds: `timeout` kills a server even if the test process dies
TEST_TIMEOUT = 300  # seconds: the test process dumps its stacks and exits after this


def _run_entry_point(*args, cwd, timeout=30):
    return subprocess.run([sys.executable, "-m", "alexnet_tf.data_service", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=cwd)


@contextlib.contextmanager
def _servers(cwd):
    """Yields start(args, name) -> (Popen, log path); kills every process group at exit."""
    processes = []
    log_dir = tempfile.mkdtemp(prefix="data_service_test_")

    def start(args, name):
        log_path = os.path.join(log_dir, f"{name}.log")
        with open(log_path, "w") as log:
            process = subprocess.Popen(
                    ["timeout", "-s", "KILL", str(SERVER_LIFETIME), sys.executable, "-m",
                     "alexnet_tf.data_service", *args], stdout=log,
                    stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True,
                    env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
        processes.append(process)
        return process, log_path

    # A hung gRPC call cannot be interrupted from Python: bound the test from outside.
    faulthandler.dump_traceback_later(TEST_TIMEOUT, exit=True)
    try:
        yield start
    finally:
        faulthandler.cancel_dump_traceback_later()
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        shutil.rmtree(log_dir, ignore_errors=True)


def _wait_for_line(process, log_path, pattern):
    """The first match of `pattern` in the server's output, waiting at most START_TIMEOUT."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        with open(log_path) as f:
            match = re.search(pattern, f.read())
        if match:
            return match
        if process.poll() is not None:
            break
        time.sleep(0.2)
    with open(log_path) as f:
        raise AssertionError(f"server did not print {pattern!r} in time; output:\n{f.read()[-3000:]}")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Tiny JPEGs in ImageNet folder layout, converted by the real converter."""
    root = tmp_path_factory.mktemp("imagenet")
    for split, per_class in (("train", PER_CLASS), ("val", 1)):
        for class_index in range(NUM_CLASSES):
            folder = root / split / f"n{class_index:08d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                rng = np.random.default_rng(100 * class_index + i + 50 * (split == "val"))
                pixels = rng.integers(0, 256, (70, 80, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{split}_{class_index}_{i}.JPEG")
    output = str(tmp_path_factory.mktemp("records"))
    imagenet_convert.convert(imagenet_convert.ConvertOptions(
            imagenet_dir=str(root), output_dir=output, train_shards=NUM_SHARDS,
            validation_shards=1, resize=RESIZE, val_layout="by_class", show_progress=False))
    return output


def _labels_and_hashes(dataset):
    """Sorted (label, hash of the image) of every image the dataset yields."""
    result = []
    for images, labels in dataset:
        for image, label in zip(images.numpy(), labels.numpy()):
            result.append((int(label), hashlib.sha1(image.tobytes()).hexdigest()))
    return sorted(result)


def test_parse_service_address():
    assert service.parse_service_address("grpc://dispatcher:5050") == "grpc://dispatcher:5050"
    assert service.parse_service_address("localhost:5050") == "grpc://localhost:5050"
    with pytest.raises(ValueError, match="grpc"):
        service.parse_service_address("http://host:5050")
    with pytest.raises(ValueError, match="--data_service"):
        service.parse_service_address("grpc://host")


def test_role_is_required(repo_root):
    result = _run_entry_point("--port=0", cwd=repo_root)
    assert result.returncode != 0 and "--role" in result.stderr


def test_pipeline_rejects_bad_service_options(data_dir, stats):
    options = dict(global_batch_size=2, training=True, seed=0, stats=stats, crop_size=CROP,
                   resize_size=RESIZE)
    with pytest.raises(ValueError, match="--data_service"):
        input_pipeline.build_dataset(data_dir, "train", data_service="grpc://no-port", **options)
    with pytest.raises(ValueError, match="bad_record_counter"):
        input_pipeline.build_dataset(data_dir, "train", data_service="grpc://localhost:1",
                                     bad_record_counter=tf.Variable(0, dtype=tf.int64),
                                     **options)


@pytest.mark.slow
def test_dispatcher_and_two_workers_feed_the_local_pipelines_images(data_dir, tmp_path, stats,
                                                                    repo_root, free_ports):
    from alexnet_tf.training import config as config_lib
    from alexnet_tf.training import loop
    with _servers(repo_root) as start:
        # All three start at once (each pays TensorFlow's start-up); workers retry
        # until the dispatcher listens.
        dispatcher_address = f"127.0.0.1:{free_ports(1)[0]}"
        launched = [start(["--role=dispatcher", f"--port={dispatcher_address.split(':')[1]}"],
                          "dispatcher")]
        for index in range(2):
            launched.append(start(["--role=worker", "--port=0", "--worker_host=127.0.0.1",
                                   f"--dispatcher_address={dispatcher_address}"],
                                  f"worker{index}"))
        for (process, log), role in zip(launched, ("dispatcher", "worker", "worker")):
            _wait_for_line(process, log, f"{role} listening")
        dispatcher = launched[0][0]
        service = f"grpc://{dispatcher_address}"
        sizes = dict(crop_size=CROP, resize_size=RESIZE, stats=stats, seed=5, num_epochs=1)

        # Evaluation preprocessing is deterministic: the same images, pixel for pixel.
        def eval_pipeline(**kwargs):
            return input_pipeline.build_dataset(data_dir, "train", global_batch_size=4,
                                                training=False, **sizes, **kwargs)
        local = _labels_and_hashes(eval_pipeline())
        remote = _labels_and_hashes(eval_pipeline(data_service=service, data_service_job="eval"))
        assert len(local) == NUM_CLASSES * PER_CLASS
        assert remote == local

        # Training: augmentation seeds follow each worker's stream position, so compare
        # which records arrive (batch 1: no remainder is dropped), once each per epoch.
        def train_labels(**kwargs):
            dataset = input_pipeline.build_dataset(data_dir, "train", global_batch_size=1,
                                                   training=True, **sizes, **kwargs)
            return sorted(int(label) for _, labels in dataset for label in labels.numpy())
        expected = sorted(label for label in range(NUM_CLASSES) for _ in range(PER_CLASS))
        assert train_labels() == expected
        assert train_labels(data_service=service, data_service_job="train") == expected

        # The service feeds a training run (tiny network, 3 steps); the checkpoint holds
        # no iterator, since one over the service cannot be saved.
        model_dir = str(tmp_path / "run")
        config = config_lib.TrainConfig(
                data_dir=data_dir, data_service=service, width_multiplier=0.0625,
                input_size=RESIZE, resize_size=RESIZE, batch_size=4, max_steps=3,
                summary_images=False, progress_bar=False)
        results = loop.train_and_evaluate(config, model_dir)
        assert results["step"] == 3 and np.isfinite(results["loss"])
        saved = dict(tf.train.list_variables(run_dir.latest_checkpoint(model_dir)))
        assert "step/.ATTRIBUTES/VARIABLE_VALUE" in saved
        assert not any(name.startswith("iterator") for name in saved)
        assert dispatcher.poll() is None, "the dispatcher died during the run"
