"""The tf.data service: training images decoded and augmented on other machines.

A dispatcher (`python -m alexnet_tf.data_service --role=dispatcher`) hands out the
input pipeline's work to any number of service workers, which stream finished batches
to the trainers. The trainers define the same pipeline as they would locally and
`distribute_over_service` sends it to the service.
"""

from typing import Optional

import tensorflow as tf

from alexnet_tf.distributed import cluster


def parse_service_address(address: str, name: str = "--data_service") -> str:
    """Normalises a tf.data service dispatcher address to `grpc://host:port`.

    Raises:
      ValueError: `address` is not `grpc://host:port` (or bare host:port).
    """
    if not isinstance(address, str):
        raise ValueError(f"{name}: expected grpc://host:port, got {address!r}")
    protocol, sep, rest = address.partition("://")
    if not sep:
        protocol, rest = "grpc", address
    if protocol != "grpc":
        raise ValueError(f"{name}: only the grpc protocol is supported, got {address!r}")
    cluster.validate_host_port(rest, name)
    return f"grpc://{rest}"


def service_input_context(input_context):
    """An input context with one input pipeline, keeping the per-replica batch size."""
    if input_context is None:
        return None
    return tf.distribute.InputContext(num_input_pipelines=1, input_pipeline_id=0,
                                      num_replicas_in_sync=input_context.num_replicas_in_sync)


def distribute_over_service(dataset: tf.data.Dataset, service: str,
                            job_name: Optional[str] = None) -> tf.data.Dataset:
    """Runs `dataset` on tf.data service workers; this process only receives its batches.

    Sharding is DYNAMIC: the dispatcher hands each service worker the next file when it
    asks, so within an epoch every record reaches one trainer at most once (a service
    worker restarted mid-file loses the rest of that file for the epoch). The order is
    not deterministic, and an iterator over the service cannot be saved in a checkpoint.

    Args:
      dataset: the pipeline, defined as if it ran locally (graph-only: no Python state).
      service: the dispatcher, `grpc://host:port` (started with
        `python -m alexnet_tf.data_service --role=dispatcher`).
      job_name: trainers giving the same name share one stream of batches (each batch
        goes to one of them); None gives this process a private job.

    Raises:
      ValueError: `service` is not grpc://host:port.
    """
    service = parse_service_address(service)
    return dataset.apply(tf.data.experimental.service.distribute(
            processing_mode=tf.data.experimental.service.ShardingPolicy.DYNAMIC,
            service=service, job_name=job_name))
