"""Strategy creation, device checks and per-replica batch splitting.

The trainer asks for a strategy by name; this module is the one place that knows how
each is made:

  default      TensorFlow's default strategy: one device (the first GPU if any)
  one_device   tf.distribute.OneDeviceStrategy on `devices[0]` (default /GPU:0 or /CPU:0)
  mirrored     tf.distribute.MirroredStrategy over `devices` (default: all local GPUs, or
               the CPU when there are none); data parallel, gradients all-reduced
  multi_worker tf.distribute.MultiWorkerMirroredStrategy over the cluster in TF_CONFIG
               (every local GPU, or the CPU, of each worker; see cluster.py); without
               TF_CONFIG it trains on this machine alone, through the same code path

The input is one tf.data iterator of GLOBAL batches per worker (a plain iterator, so its
position can be saved in a checkpoint: distributed iterators cannot be), and each replica
takes its slice with `replica_slice`.

The paper's model parallelism (`tower_devices`) pins each tower to a named device; it
combines with one replica only, since every replica would pin to the same two devices.
"""

from typing import Sequence

import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf.distributed import cluster

STRATEGY_NAMES = ("default", "one_device", "mirrored", "multi_worker")


def check_devices(devices: Sequence[str], what: str = "devices") -> None:
    """Raises ValueError if a name in `devices` is not a logical device of this process.

    Args:
      devices: names such as "/GPU:0" or "/job:localhost/replica:0/task:0/device:CPU:1".
      what: the flag name, for the message.
    """
    known = [device.name for device in tf.config.list_logical_devices()]
    short = {name.split("device:")[-1].upper(): name for name in known}
    for device in devices:
        key = device.split("device:")[-1].lstrip("/").upper()
        if device not in known and key not in short:
            raise errors.InvalidInputError(
                    f"{what}: {device!r} is not a device of this machine; known: "
                    f"{sorted(short)}")


def create_strategy(name: str, devices: Sequence[str] = (),
                    communication: str = "auto") -> tf.distribute.Strategy:
    """Returns the tf.distribute.Strategy called `name`.

    Args:
      name: one of STRATEGY_NAMES.
      devices: device names for one_device / mirrored; empty = TensorFlow's choice.
      communication: multi_worker's all-reduce ("auto", "ring" or "nccl").

    Raises:
      ValueError: unknown name or device, devices given to the default or multi_worker
        strategy, or a malformed TF_CONFIG.
    """
    devices = tuple(devices)
    if name == "multi_worker":
        # Before anything else: the strategy must configure collectives at start-up.
        if devices:
            raise errors.InvalidInputError(
                    f"--devices={','.join(devices)} does not apply to "
                    "--strategy=multi_worker, which uses every local GPU (or the CPU)")
        return cluster.multi_worker_strategy(communication)
    if devices:
        check_devices(devices)
    if name == "default":
        if devices:
            raise errors.InvalidInputError(
                    f"--devices={','.join(devices)} needs --strategy=one_device or "
                    "mirrored, got --strategy=default")
        return tf.distribute.get_strategy()
    if name == "one_device":
        if len(devices) > 1:
            raise errors.InvalidInputError(
                    f"--strategy=one_device takes one device, got {devices!r}")
        default = "/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"
        return tf.distribute.OneDeviceStrategy(devices[0] if devices else default)
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(devices=list(devices) or None)
    raise errors.InvalidInputError(f"strategy must be one of {STRATEGY_NAMES}, got {name!r}")


def check_tower_devices(strategy: tf.distribute.Strategy, tower_devices: Sequence[str]) -> None:
    """Raises ValueError when tower placement cannot work with `strategy`."""
    if not tower_devices:
        return
    check_devices(tower_devices, "tower_devices")
    if strategy.num_replicas_in_sync > 1:
        raise errors.InvalidInputError(
                f"--tower_devices={','.join(tower_devices)} pins both towers to fixed devices, "
                f"so it needs a single replica; got {strategy.num_replicas_in_sync} replicas "
                "(use --strategy=default)")


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """True for the one process that writes checkpoints, config and summaries."""
    return cluster.task_of_strategy(strategy).is_chief


def num_workers(strategy: tf.distribute.Strategy) -> int:
    """Number of worker processes in the cluster (1 on one machine)."""
    return cluster.task_of_strategy(strategy).num_workers


def worker_rank(strategy: tf.distribute.Strategy) -> int:
    """This worker's input pipeline id, 0..num_workers-1 (the chief is 0)."""
    return cluster.task_of_strategy(strategy).worker_rank


def replica_slice(batch, num_replicas: int):
    """Inside `strategy.run`: this replica's slice of a per-worker global batch.

    The slice is taken on the host CPU so only this replica's share is copied to its
    device. Each tensor's leading dimension must divide by `num_replicas`.

    Args:
      batch: a nested structure of tensors, leading dimension the worker's batch.
      num_replicas: replicas on this worker.

    Returns:
      The same structure holding rows [r * n / R, (r + 1) * n / R) for replica r.
    """
    if num_replicas == 1:
        return batch
    replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
    local_id = replica_id % num_replicas

    def take(tensor):
        with tf.device("/CPU:0"):
            size = tf.shape(tensor)[0] // num_replicas
            return tensor[local_id * size:(local_id + 1) * size]

    return tf.nest.map_structure(take, batch)
