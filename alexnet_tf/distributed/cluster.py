"""Multi-worker training: the TF_CONFIG cluster spec, the chief, chief-only output.

A multi-worker run is TensorFlow's MultiWorkerMirroredStrategy: every worker holds a
full copy of the model, computes gradients on its share of the global batch, and the
gradients are summed by collective all-reduce (RING over gRPC on CPU, NCCL on GPUs).
Each process learns its place from the standard `TF_CONFIG` environment variable:

  {"cluster": {"chief": ["host0:2222"], "worker": ["host1:2222", "host2:2222"]},
   "task": {"type": "worker", "index": 0}}

Without TF_CONFIG the same strategy runs on one machine (one worker), so one code path
serves one machine and many.

Output: every worker must take part in a checkpoint save (TensorFlow's rule: a save
may read sync-on-read variables, which is a collective), but only the chief's copy is
kept. Non-chief workers write
into a private temporary directory that is deleted afterwards (`write_dir` /
`discard_write_dir`), the pattern of TensorFlow's multi-worker tutorial. Each worker's
input position is its own and is saved separately (`WorkerIteratorCheckpoint`).
"""

import dataclasses
import json
import os
import shutil
import tempfile
from typing import Mapping, Optional, Tuple

import tensorflow as tf

from alexnet_tf import checkpoint_files

TF_CONFIG = "TF_CONFIG"
# Jobs MultiWorkerMirroredStrategy trains with; "chief" is worker 0 when present.
TRAINING_JOBS = ("chief", "worker")
COMMUNICATIONS = ("auto", "ring", "nccl")


def validate_host_port(address: Optional[str], name: str) -> Tuple[str, int]:
    """Checks that `address` is `host:port` and returns (host, port).

    Args:
      address: the text to check, e.g. "10.0.0.2:2222".
      name: what the address is (a flag or a TF_CONFIG entry), for the error message.

    Raises:
      ValueError: `address` is empty or not host:port with a port in 1..65535.
    """
    if not address or not isinstance(address, str):
        raise ValueError(f"{name}: expected host:port, got {address!r}")
    host, sep, port_text = address.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"{name}: expected host:port with a port in 1..65535, got {address!r}")
    return host, int(port_text)


@dataclasses.dataclass(frozen=True)
class Task:
    """This process's place in the cluster.

    Attributes:
      cluster: job name -> worker addresses; empty when there is no TF_CONFIG.
      task_type: "chief" or "worker"; None on a single machine without TF_CONFIG.
      task_index: index within the job.
    """
    cluster: Mapping[str, Tuple[str, ...]] = dataclasses.field(default_factory=dict)
    task_type: Optional[str] = None
    task_index: int = 0

    @property
    def num_workers(self) -> int:
        """How many processes train (chief included); 1 without TF_CONFIG."""
        return max(1, sum(len(self.cluster.get(job, ())) for job in TRAINING_JOBS))

    @property
    def worker_rank(self) -> int:
        """0..num_workers-1: the chief is 0; workers follow (the strategy's input id)."""
        if self.task_type == "worker" and self.cluster.get("chief"):
            return self.task_index + 1
        return self.task_index

    @property
    def is_chief(self) -> bool:
        """The chief writes checkpoints and logs: the "chief" task, else worker 0."""
        if self.task_type is None or self.task_type == "chief":
            return True
        return not self.cluster.get("chief") and self.task_index == 0

    @property
    def is_multi_worker(self) -> bool:
        return self.num_workers > 1


def _validate_cluster(cluster) -> dict:
    if not isinstance(cluster, dict) or not cluster:
        raise ValueError(f"{TF_CONFIG}: 'cluster' must be a non-empty object mapping job names "
                         f"to lists of host:port, got {cluster!r}")
    unknown = set(cluster) - set(TRAINING_JOBS)
    if unknown:
        raise ValueError(f"{TF_CONFIG}: jobs {sorted(unknown)} are not supported; "
                         f"MultiWorkerMirroredStrategy trains with {TRAINING_JOBS} only (run "
                         "evaluation with `python -m alexnet_tf.evaluate`)")
    seen = set()
    result = {}
    for job, addresses in cluster.items():
        if not isinstance(addresses, list) or not addresses:
            raise ValueError(f"{TF_CONFIG}: cluster[{job!r}] must be a non-empty list of "
                             f"host:port, got {addresses!r}")
        for i, address in enumerate(addresses):
            validate_host_port(address, f"{TF_CONFIG} cluster[{job!r}][{i}]")
            if address in seen:
                raise ValueError(f"{TF_CONFIG}: address {address!r} appears twice in the cluster")
            seen.add(address)
        result[job] = tuple(addresses)
    if len(result.get("chief", ())) > 1:
        raise ValueError(f"{TF_CONFIG}: at most one chief, got {list(result['chief'])}")
    return result


def parse_tf_config(text: Optional[str]) -> Task:
    """Parses and validates a TF_CONFIG value.

    Args:
      text: the JSON text of TF_CONFIG; None or empty means a single machine.

    Returns:
      The Task it describes.

    Raises:
      ValueError: the text is not JSON, or the cluster or task is malformed (the message
        names the entry and what was expected).
    """
    if not text or not text.strip():
        return Task()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{TF_CONFIG} is not valid JSON ({error}): {text!r}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{TF_CONFIG}: expected a JSON object, got {text!r}")
    cluster = _validate_cluster(config.get("cluster"))
    task = config.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise ValueError(f"{TF_CONFIG}: 'task' must be an object like "
                         f'{{"type": "worker", "index": 0}}, got {task!r}')
    task_type, task_index = task["type"], task.get("index", 0)
    if task_type not in cluster:
        raise ValueError(f"{TF_CONFIG}: task type {task_type!r} is not a job of the cluster "
                         f"{sorted(cluster)}")
    if not isinstance(task_index, int) or not 0 <= task_index < len(cluster[task_type]):
        raise ValueError(f"{TF_CONFIG}: task index {task_index!r} out of range for "
                         f"{len(cluster[task_type])} {task_type!r} task(s)")
    return Task(cluster=cluster, task_type=task_type, task_index=task_index)


def task_from_env() -> Task:
    """The Task of this process, from the TF_CONFIG environment variable."""
    return parse_tf_config(os.environ.get(TF_CONFIG))


def communication_options(communication: str = "auto",
                          timeout_seconds: Optional[float] = None):
    """The collective all-reduce implementation: NCCL on GPUs, RING otherwise.

    Args:
      communication: "auto" (NCCL when this machine has a GPU, else RING), "ring" or "nccl".
      timeout_seconds: a collective waiting longer than this fails instead of hanging
        (e.g. when a peer died); None waits forever.

    Raises:
      ValueError: unknown `communication`.
    """
    if communication not in COMMUNICATIONS:
        raise ValueError(f"communication must be one of {COMMUNICATIONS}, got {communication!r}")
    if communication == "auto":
        communication = "nccl" if tf.config.list_physical_devices("GPU") else "ring"
    implementation = (tf.distribute.experimental.CommunicationImplementation.NCCL
                      if communication == "nccl"
                      else tf.distribute.experimental.CommunicationImplementation.RING)
    return tf.distribute.experimental.CommunicationOptions(
            implementation=implementation, timeout_seconds=timeout_seconds)


def multi_worker_strategy(communication: str = "auto",
                          timeout_seconds: Optional[float] = None):
    """MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (or this machine alone).

    Must run before any other TensorFlow op of the process: the strategy starts the
    worker's gRPC server and fixes the collective configuration.

    Raises:
      ValueError: TF_CONFIG is malformed (checked here first for a readable message).
    """
    task_from_env()  # Validates TF_CONFIG; TensorFlow's own errors are less clear.
    return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=communication_options(communication, timeout_seconds))


def task_of_strategy(strategy) -> Task:
    """The Task of this process under `strategy` (single machine for non-MWMS ones)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return Task()
    cluster = {job: tuple(addresses)
               for job, addresses in resolver.cluster_spec().as_dict().items()
               if job in TRAINING_JOBS}
    return Task(cluster=cluster, task_type=resolver.task_type, task_index=resolver.task_id or 0)


def write_dir(directory: str, task: Task) -> str:
    """Where `task` writes output meant for `directory`.

    The chief writes into `directory` itself; any other worker gets a fresh private
    temporary directory (on local disk), to be removed with `discard_write_dir`.
    """
    if task.is_chief:
        return directory
    return tempfile.mkdtemp(prefix=f"alexnet_tf_{task.task_type}{task.task_index}_")


def discard_write_dir(path: str, directory: str) -> None:
    """Deletes a non-chief worker's temporary directory (no-op for the chief's own)."""
    if path != directory and os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)


def any_worker(strategy, flag: bool) -> bool:
    """True when `flag` is True on any worker. A collective: every worker must call it.

    Used where workers must agree before they diverge (stop after a SIGTERM seen by one
    of them; stop evaluating when every worker's shard is exhausted). With one worker
    it costs nothing but a local sum.
    """
    values = strategy.experimental_distribute_values_from_function(
            lambda _: tf.constant(1.0 if flag else 0.0))
    return bool(strategy.reduce(tf.distribute.ReduceOp.SUM, values, axis=None).numpy() > 0)


class WorkerIteratorCheckpoint:
    """Each worker's own input position, saved next to the chief's checkpoints.

    Only the chief's checkpoint is kept, but every worker reads its own shard files, so
    its tf.data iterator state is its own: each worker saves it under
    `checkpoints/iterators/worker-<rank>/ckpt-<step>` (so `model_dir` must be on storage
    every worker can write, as it must be readable by all for a resume), and on resume
    restores the one with the step of the restored model checkpoint. The pipeline's
    seeded, stateless per-element randomness then makes the resumed run see exactly
    the images an uninterrupted run would have.

    Args:
      iterator: this worker's tf.data iterator (plain, not distributed).
      checkpoint_dir: the run's checkpoint directory (model_dir/checkpoints).
      task: this worker's Task.
      max_to_keep: how many to keep; one more than the model checkpoints is safe.
    """

    SUBDIR = "iterators"

    def __init__(self, iterator, checkpoint_dir: str, task: Task, max_to_keep: int):
        self.directory = os.path.join(checkpoint_dir, self.SUBDIR,
                                      f"worker-{task.worker_rank:05d}")
        self._checkpoint = tf.train.Checkpoint(iterator=iterator)
        self._manager = tf.train.CheckpointManager(self._checkpoint, self.directory,
                                                   max_to_keep=max_to_keep,
                                                   checkpoint_name=checkpoint_files.CHECKPOINT_NAME)

    def save(self, step: int) -> str:
        return self._manager.save(checkpoint_number=step)

    def restore(self, step: int) -> str:
        """Restores the iterator saved at `step`.

        Raises:
          FileNotFoundError: no iterator checkpoint for `step` (the number of workers
            changed since the save, or this worker's files were deleted).
        """
        path = os.path.join(self.directory, f"{checkpoint_files.CHECKPOINT_NAME}-{step}")
        if not tf.io.gfile.exists(path + ".index"):
            raise FileNotFoundError(
                    f"no input-iterator checkpoint {path!r} to resume step {step}: a "
                    "multi-worker run must resume with the same number of workers (each "
                    "worker's position in its own shards is saved separately)")
        self._checkpoint.restore(path).assert_consumed()
        return path


def lockstep_batches(dataset, strategy, padding):
    """Yields `dataset`'s elements so that every worker yields equally many.

    A step that ends in a collective (e.g. metrics summed over workers) must run on
    every worker. When the workers' shards hold different numbers of batches, a worker
    that is done yields `padding` until every worker is done. With one worker the
    dataset passes through unchanged, at no cost.

    Args:
      dataset: this worker's batches.
      strategy: the tf.distribute strategy.
      padding: an element the step ignores, e.g. one image labelled -1. (Not an empty
        batch: TensorFlow's grouped convolutions reject a batch of 0 on CPU.)
    """
    if task_of_strategy(strategy).num_workers == 1:
        yield from dataset
        return
    iterator = iter(dataset)
    while True:
        element = next(iterator, None)
        if not any_worker(strategy, element is not None):
            return
        yield padding if element is None else element
