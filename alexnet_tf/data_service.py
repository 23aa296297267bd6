r"""Starts a tf.data service server: the dispatcher or a worker that runs preprocessing.

The tf.data service moves the CPU-heavy part of the input pipeline (JPEG decode, crop,
flip, PCA lighting) off the training host onto separate CPU machines. One dispatcher
hands out work; any number of workers run the pipeline and stream finished batches to
the trainers. Training then points at the dispatcher:

  # on the dispatcher machine (one per cluster)
  python -m alexnet_tf.data_service --role=dispatcher --port=5050 \
      --work_dir=/shared/tf_data_dispatcher
  # on each CPU machine (as many as it takes to feed the accelerators)
  python -m alexnet_tf.data_service --role=worker --port=5051 \
      --dispatcher_address=dispatcher-host:5050 --worker_host=$(hostname)
  # on the training host(s)
  python -m alexnet_tf.train ... --data_service=grpc://dispatcher-host:5050

Workers read the TFRecord shards themselves, so `--data_dir` must name a path every
worker can read (a shared filesystem or gs://). The server runs until killed (SIGTERM
or SIGINT). Once the server listens it prints one line to stdout, e.g.
`dispatcher listening on grpc://localhost:5050`, so a script that starts a dispatcher
with `--port=0` learns the port the system picked.

Security: the servers listen on every interface with no authentication (TensorFlow's
tf.data service has none), so anyone who reaches the port can send work or read
batches. Run them only inside a trusted network with the ports firewalled (BUILD.md,
"Open ports").
"""

from alexnet_tf import startup  # noqa: F401 (first: quiets TensorFlow's start-up notices)

import sys  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from alexnet_tf import errors  # noqa: E402

ROLES = ("dispatcher", "worker")

FLAGS = flags.FLAGS
flags.DEFINE_enum("role", None, ROLES, "Which server to run: the dispatcher (one per cluster) "
                  "or a worker (one per CPU machine that runs preprocessing).")
flags.DEFINE_integer("port", 5050, "Port to listen on; 0 lets the system pick a free one "
                     "(printed on stdout).", lower_bound=0, upper_bound=65535)
flags.DEFINE_string("dispatcher_address", None, "host:port of the dispatcher (worker only).")
flags.DEFINE_string("worker_host", "localhost", "Host name or IP the worker advertises to the "
                    "dispatcher; trainers connect to HOST:PORT, so it must be reachable from them "
                    "(worker only).")
flags.DEFINE_string("work_dir", None, "Dispatcher only: directory for the dispatcher's journal. "
                    "With it the dispatcher runs in fault-tolerant mode and recovers its jobs "
                    "after a restart; without it a restarted dispatcher forgets running jobs.")
flags.DEFINE_integer("worker_timeout_ms", None, "Dispatcher only: how long a silent worker is "
                     "kept before its work is reassigned (default: TensorFlow's).", lower_bound=1)


def _start_dispatcher(port: int, work_dir, worker_timeout_ms):
    import tensorflow as tf  # Imported late: `--help` and flag errors stay instant.
    config = tf.data.experimental.service.DispatcherConfig(
            port=port, work_dir=work_dir, fault_tolerant_mode=bool(work_dir),
            worker_timeout_ms=worker_timeout_ms)
    server = tf.data.experimental.service.DispatchServer(config)
    return server, server.target


def _start_worker(port: int, dispatcher_address: str, worker_host: str):
    import tensorflow as tf
    # "%port%" is replaced by the bound port, which matters with --port=0.
    worker_address = f"{worker_host}:%port%"
    config = tf.data.experimental.service.WorkerConfig(
            dispatcher_address=dispatcher_address, worker_address=worker_address, port=port)
    server = tf.data.experimental.service.WorkerServer(config)
    # The public API does not expose a worker's bound port; the dispatcher learns it.
    port_text = str(port) if port else "<picked by the system>"
    return server, f"grpc://{worker_host}:{port_text} (dispatcher {dispatcher_address})"


def _validate(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if FLAGS.role is None:
        raise app.UsageError("--role is required: one of " + ", ".join(ROLES))
    if FLAGS.role == "worker":
        from alexnet_tf.distributed import cluster
        try:
            cluster.validate_host_port(FLAGS.dispatcher_address, "--dispatcher_address")
        except ValueError as error:
            raise app.UsageError(str(error)) from None
    elif FLAGS.dispatcher_address:
        raise app.UsageError("--dispatcher_address is for --role=worker only")


def main(argv) -> None:
    _validate(argv)
    if FLAGS.role == "dispatcher":
        server, target = _start_dispatcher(FLAGS.port, FLAGS.work_dir, FLAGS.worker_timeout_ms)
    else:
        server, target = _start_worker(FLAGS.port, FLAGS.dispatcher_address, FLAGS.worker_host)
    print(f"{FLAGS.role} listening on {target}", flush=True)
    sys.stdout.flush()
    server.join()  # Blocks until the process is killed.


if __name__ == "__main__":
    errors.run_command(main)
