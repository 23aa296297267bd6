"""Tests for alexnet_tf.distributed.cluster: TF_CONFIG parsing, the chief, chief-only output."""

import json
import os

import pytest
import tensorflow as tf

from alexnet_tf.distributed import cluster


def _tf_config(cluster_spec, task_type, index):
    return json.dumps({"cluster": cluster_spec, "task": {"type": task_type, "index": index}})


CHIEF_AND_WORKERS = {"chief": ["10.0.0.1:2222"], "worker": ["10.0.0.2:2222", "10.0.0.3:2222"]}
WORKERS_ONLY = {"worker": ["127.0.0.1:5001", "127.0.0.1:5002"]}


@pytest.mark.parametrize("spec, task_type, index, rank, is_chief", [
        (CHIEF_AND_WORKERS, "chief", 0, 0, True),
        (CHIEF_AND_WORKERS, "worker", 0, 1, False),
        (CHIEF_AND_WORKERS, "worker", 1, 2, False),
        (WORKERS_ONLY, "worker", 0, 0, True),
        (WORKERS_ONLY, "worker", 1, 1, False),
])
def test_parse_tf_config_ranks_and_chief(spec, task_type, index, rank, is_chief):
    task = cluster.parse_tf_config(_tf_config(spec, task_type, index))
    assert task.task_type == task_type and task.task_index == index
    assert task.worker_rank == rank
    assert task.is_chief == is_chief
    assert task.num_workers == sum(len(v) for v in spec.values())
    assert task.is_multi_worker


@pytest.mark.parametrize("text", [None, "", "   "])
def test_no_tf_config_is_a_single_chief(text):
    task = cluster.parse_tf_config(text)
    assert task.task_type is None and task.is_chief
    assert task.num_workers == 1 and task.worker_rank == 0 and not task.is_multi_worker


def test_task_from_env_reads_tf_config(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", _tf_config(WORKERS_ONLY, "worker", 1))
    assert cluster.task_from_env().worker_rank == 1
    monkeypatch.delenv("TF_CONFIG")
    assert cluster.task_from_env().task_type is None


@pytest.mark.parametrize("text, message", [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "'cluster' must be"),
        (_tf_config({"ps": ["a:1"], "worker": ["b:2"]}, "worker", 0), "not supported"),
        (_tf_config({"worker": ["a:1"]}, "chief", 0), "not a job of the cluster"),
        (_tf_config({"worker": ["a:1"]}, "worker", 1), "out of range"),
        (_tf_config({"worker": ["a:1", "a:1"]}, "worker", 0), "appears twice"),
        (_tf_config({"worker": ["no-port"]}, "worker", 0), "host:port"),
        (_tf_config({"worker": ["host:99999"]}, "worker", 0), "1..65535"),
        (_tf_config({"chief": ["a:1", "b:2"]}, "chief", 0), "at most one chief"),
        (_tf_config({"worker": []}, "worker", 0), "non-empty list"),
        (json.dumps({"cluster": WORKERS_ONLY, "task": "worker"}), "'task' must be"),
])
def test_parse_tf_config_rejects_malformed(text, message):
    with pytest.raises(ValueError, match=message):
        cluster.parse_tf_config(text)


def test_write_dir_chief_writes_in_place_others_in_a_discarded_temp(tmp_path):
    chief = cluster.parse_tf_config(_tf_config(WORKERS_ONLY, "worker", 0))
    other = cluster.parse_tf_config(_tf_config(WORKERS_ONLY, "worker", 1))
    directory = str(tmp_path / "checkpoints")
    assert cluster.write_dir(directory, chief) == directory
    scratch = cluster.write_dir(directory, other)
    assert scratch != directory and os.path.isdir(scratch)
    with open(os.path.join(scratch, "file"), "w") as f:
        f.write("x")
    cluster.discard_write_dir(scratch, directory)
    assert not os.path.exists(scratch)
    os.makedirs(directory)
    cluster.discard_write_dir(directory, directory)  # The chief's own is never deleted.
    assert os.path.isdir(directory)


def test_worker_iterator_checkpoint_resumes_each_workers_own_position(tmp_path):
    checkpoint_dir = str(tmp_path / "checkpoints")
    saved = {}
    for rank in (0, 1):
        task = cluster.parse_tf_config(_tf_config(WORKERS_ONLY, "worker", rank))
        iterator = iter(tf.data.Dataset.range(rank * 100, rank * 100 + 10))
        state = cluster.WorkerIteratorCheckpoint(iterator, checkpoint_dir, task, max_to_keep=2)
        next(iterator), next(iterator), next(iterator)
        state.save(step=3)
        saved[rank] = [int(next(iterator)) for _ in range(7)]
    for rank in (1, 0):  # Each worker gets back its own position, not another's.
        task = cluster.parse_tf_config(_tf_config(WORKERS_ONLY, "worker", rank))
        iterator = iter(tf.data.Dataset.range(rank * 100, rank * 100 + 10))
        state = cluster.WorkerIteratorCheckpoint(iterator, checkpoint_dir, task, max_to_keep=2)
        state.restore(step=3)
        assert [int(value) for value in iterator] == saved[rank]
        with pytest.raises(FileNotFoundError, match="same number of workers"):
            state.restore(step=4)


def test_any_worker_on_one_machine():
    strategy = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"])
    assert cluster.any_worker(strategy, True) is True
    assert cluster.any_worker(strategy, False) is False


def test_communication_options():
    ring = cluster.communication_options("ring", timeout_seconds=30)
    assert ring.implementation == tf.distribute.experimental.CommunicationImplementation.RING
    assert ring.timeout_seconds == 30
    auto = cluster.communication_options("auto")
    expected = ("NCCL" if tf.config.list_physical_devices("GPU") else "RING")
    assert auto.implementation.name == expected
    with pytest.raises(ValueError, match="communication"):
        cluster.communication_options("mpi")


def test_task_of_a_single_machine_strategy():
    strategy = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"])
    assert cluster.task_of_strategy(strategy) == cluster.Task()


def test_lockstep_batches_pass_through_on_one_worker():
    strategy = tf.distribute.MirroredStrategy(["/CPU:0", "/CPU:1"])
    dataset = tf.data.Dataset.range(7).batch(3)
    batches = [batch.numpy().tolist() for batch in cluster.lockstep_batches(dataset, strategy, None)]
    assert batches == [[0, 1, 2], [3, 4, 5], [6]]
