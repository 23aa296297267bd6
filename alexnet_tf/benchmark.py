r"""Benchmarks. Usage: `python -m alexnet_tf.benchmark COMMAND [--flags]`.

Commands:
  input   images/s per CPU core of the input pipeline: raw JPEG decoding (the limit),
          the full training pipeline, and a plain Pillow+NumPy pipeline, on 1 and 2 cores
          (see alexnet_tf/bench_input.py):

            python -m alexnet_tf.benchmark input --data_dir=/data/imagenet_tfrecords
            python -m alexnet_tf.benchmark input --make_images=2048   # generated records

To add a command, write its logic in its own module (e.g. bench_model.py) and add a
small function to COMMANDS below.
"""

import json
import os
import tempfile

from absl import app
from absl import flags

from alexnet_tf import bench_input

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Directory of converted TFRecords (train-* shards). "
                    "Default: generate --make_images records in a temporary directory.")
flags.DEFINE_integer("make_images", 2048, "Records to generate when --data_dir is not given.")
flags.DEFINE_integer("batch_size", 128, "Batch size of the tf.data pipelines.")
flags.DEFINE_integer("num_batches", 20, "Batches timed per measurement (after the warm-up).")
flags.DEFINE_integer("warmup_batches", 5, "Batches run before timing starts.")
flags.DEFINE_integer("shuffle_buffer", 4096, "Shuffle buffer of the training pipeline.")
flags.DEFINE_integer("num_runs", 3, "Runs per measurement; the median is reported.")
flags.DEFINE_list("cores", ["1", "2"], "Core counts to measure (each run pinned with taskset).")
flags.DEFINE_list("kinds", list(bench_input.KINDS), "Which pipelines: decode, train, pillow.")
flags.DEFINE_bool("pin", True, "Pin each measurement process to its cores with taskset.")
flags.DEFINE_string("worker", None, "Internal: KIND:CORES, run one measurement and print it.")


def _run_input_worker() -> None:
    kind, num_cores = FLAGS.worker.split(":")
    value = bench_input.measure(kind, FLAGS.data_dir, num_cores=int(num_cores),
                                batch_size=FLAGS.batch_size, num_batches=FLAGS.num_batches,
                                warmup_batches=FLAGS.warmup_batches,
                                shuffle_buffer=FLAGS.shuffle_buffer)
    print(bench_input.RESULT_PREFIX + json.dumps(value), flush=True)


def run_input() -> None:
    """The `input` command."""
    unknown = set(FLAGS.kinds) - set(bench_input.KINDS)
    if unknown:
        raise app.UsageError(f"--kinds must be among {bench_input.KINDS}, got {sorted(unknown)}")
    cores = [int(value) for value in FLAGS.cores]
    if FLAGS.worker:
        _run_input_worker()
        return
    with tempfile.TemporaryDirectory(prefix="bench_input_") as scratch:
        data_dir = FLAGS.data_dir
        if data_dir is None:
            data_dir = bench_input.make_records(os.path.join(scratch, "records"), FLAGS.make_images)
            print(f"generated {FLAGS.make_images} 256x256 JPEG records in {data_dir}")
        worker_args = [f"--data_dir={data_dir}", f"--batch_size={FLAGS.batch_size}",
                       f"--num_batches={FLAGS.num_batches}",
                       f"--warmup_batches={FLAGS.warmup_batches}",
                       f"--shuffle_buffer={FLAGS.shuffle_buffer}"]
        results = bench_input.run_benchmark(FLAGS.kinds, cores, num_runs=FLAGS.num_runs,
                                            worker_args=worker_args, pin=FLAGS.pin)
    print(f"\nmedians of {FLAGS.num_runs} runs, batch {FLAGS.batch_size}, "
          f"{FLAGS.num_batches} batches per run, os.cpu_count()={os.cpu_count()}:")
    print(bench_input.format_report(results, FLAGS.kinds, cores))


COMMANDS = {"input": run_input}


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: python -m alexnet_tf.benchmark {{{','.join(COMMANDS)}}} "
                             f"[--flags]; got {argv[1:]}")
    COMMANDS[argv[1]]()


if __name__ == "__main__":
    app.run(main)
