r"""Benchmarks. Usage: `python -m alexnet_tf.benchmark COMMAND [--flags]`.

Commands:
  input   images/s per CPU core of the input pipeline: raw JPEG decoding (the limit),
          the full training pipeline, and a plain Pillow+NumPy pipeline, on 1 and 2 cores
          (see alexnet_tf/bench/pipeline.py):

            python -m alexnet_tf.benchmark input --data_dir=/data/imagenet_tfrecords
            python -m alexnet_tf.benchmark input --make_images=2048   # generated records

  model   training and inference images/s of a network on synthetic data, the achieved
          GFLOP/s and its fraction of this machine's matmul rate measured in the same run,
          the peak memory of each row's process (see alexnet_tf/bench/model.py):

            python -m alexnet_tf.benchmark model --precisions=fp32,mixed_bfloat16 \
                --train_batch_sizes=32,128 --inference_batch_sizes=1,128 --num_runs=5
            python -m alexnet_tf.benchmark model --precisions=fp32,mixed_bfloat16 \
                --interleave   # all rows round-robin in one process: fair ratios
            python -m alexnet_tf.benchmark model --precisions=fp32,mixed_bfloat16 \
                --modes= --loss_curve_steps=30 --train_batch_sizes=32   # bf16 loss parity

  trainability  whether and how fast the paper's SGD leaves chance: trains the network with
          `python -m alexnet_tf.train` for a fixed number of steps per initialisation
          preset, width and seed, and prints per-layer statistics at initialisation and
          a table of steps to leave chance, final top-1 error and wall time (see
          alexnet_tf/bench/trainability.py):

            python -m alexnet_tf.benchmark trainability --train_flagfile=flags/demo.cfg \
                --inits=paper,cuda_convnet2,caffe --widths=0.5,1.0 --seeds=0,1,2 \
                --train_steps=300

  pixel_limit  peak memory and time of a 48 KB PNG bomb (20000x20000) and of an image
          at the limit, through the serving signature and the converter, with and
          without the pixel limit, each in a fresh process (see
          alexnet_tf/bench/pixel_limit.py):

            python -m alexnet_tf.benchmark pixel_limit

To add a command, write its logic in its own module (e.g. bench/model.py) and add a
small function to COMMANDS below.
"""

from alexnet_tf import startup  # First: quiets TensorFlow's start-up notices.

import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from alexnet_tf import errors  # noqa: E402
from alexnet_tf.bench import model as bench_model  # noqa: E402
from alexnet_tf.bench import pipeline as bench_pipeline  # noqa: E402
from alexnet_tf.bench import report as bench_report  # noqa: E402

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
flags.DEFINE_list("kinds", list(bench_pipeline.KINDS), f"Which pipelines: {', '.join(bench_pipeline.KINDS)}.")
flags.DEFINE_bool("pin", True, "Pin each measurement process to its cores with taskset.")
flags.DEFINE_string("worker", None, "Internal: KIND:CORES, run one measurement and print it.")
# The model command (bench/model.py).
flags.DEFINE_string("model_name", "alexnet", "Model builder: alexnet or zfnet.")
flags.DEFINE_string("variant", "paper", "AlexNet variant: paper or one_tower.")
flags.DEFINE_list("precisions", ["fp32"], "Any of fp32, mixed_bfloat16, mixed_float16.")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the forward/backward (or inference) step.")
flags.DEFINE_list("modes", ["train", "inference"], "train and/or inference.")
flags.DEFINE_list("train_batch_sizes", ["32", "128"], "Batch sizes of the training rows.")
flags.DEFINE_list("inference_batch_sizes", ["1", "128"], "Batch sizes of the inference rows.")
flags.DEFINE_integer("steps_per_run", 5, "Steps per timed model run (x10 at batch 1).")
flags.DEFINE_integer("model_warmup", 3, "Untimed model steps before the first run.")
flags.DEFINE_integer("input_size", 224, "Image side S of the (S, S, 3) input.")
flags.DEFINE_integer("num_classes", 1000, "Number of logits.")
flags.DEFINE_float("width_multiplier", 1.0, "Scales every width (1.0 is the paper).")
flags.DEFINE_bool("lrn_bfloat16", False, "Under mixed_bfloat16, compute LRN in bfloat16 "
                  "(models' lrn_bfloat16) instead of float32.")
flags.DEFINE_bool("lrn_xla", True, "Run LRN as XLA kernels (the layer's default); false = "
                  "plain TF ops, as in an exported SavedModel.")
flags.DEFINE_string("device", None, "Device for the model, e.g. /GPU:0 (default: TF's choice).")
flags.DEFINE_bool("isolate", True, "Measure each row in its own process (own peak memory).")
flags.DEFINE_bool("interleave", False, "Measure all rows in this process, round-robin, and "
                  "print the bf16/fp32 ratio of paired runs (peak memory is then the total).")
flags.DEFINE_integer("row_timeout", 7200, "Seconds before an isolated row is killed.")
flags.DEFINE_integer("loss_curve_steps", 0, "If > 0, also train this many steps in each "
                     "precision from the same weights and data and compare the losses.")
flags.DEFINE_float("loss_curve_learning_rate", 0.01, "Learning rate of the loss curves.")
flags.DEFINE_string("model_worker", None, "Internal: one model row as JSON.")
# The trainability command (bench/trainability.py); --data_dir is shared with `input`.
flags.DEFINE_string("train_flagfile", "flags/demo.cfg", "trainability: the recipe to train "
                    "with (its data and model directories are replaced).")
flags.DEFINE_list("train_flags", [], "trainability: more train flags, e.g. "
                  "--optimizer=paper_sgd,--learning_rate=0.01 (after the flagfile).")
flags.DEFINE_list("inits", ["paper", "cuda_convnet2", "caffe"], "trainability: presets.")
flags.DEFINE_list("widths", ["0.5"], "trainability: width multipliers.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "trainability: seeds.")
flags.DEFINE_integer("train_steps", 300, "trainability: steps per run.")
flags.DEFINE_string("work_dir", None, "trainability: where runs (and the demo data, without "
                    "--data_dir) go; default a temporary directory, deleted after.")
flags.DEFINE_integer("run_timeout", 3600, "trainability: seconds before a run is killed.")
# The pixel_limit command (bench/pixel_limit.py).
flags.DEFINE_string("pixel_limit_worker", None, "Internal: one pixel_limit row as JSON.")


def _run_input_worker() -> None:
    kind, num_cores = FLAGS.worker.split(":")
    value = bench_pipeline.measure(kind, FLAGS.data_dir, num_cores=int(num_cores),
                                batch_size=FLAGS.batch_size, num_batches=FLAGS.num_batches,
                                warmup_batches=FLAGS.warmup_batches,
                                shuffle_buffer=FLAGS.shuffle_buffer)
    print(bench_pipeline.RESULT_PREFIX + json.dumps(value), flush=True)


def run_input() -> None:
    """The `input` command."""
    unknown = set(FLAGS.kinds) - set(bench_pipeline.KINDS)
    if unknown:
        raise app.UsageError(f"--kinds must be among {bench_pipeline.KINDS}, got {sorted(unknown)}")
    cores = [int(value) for value in FLAGS.cores]
    if FLAGS.worker:
        _run_input_worker()
        return
    with tempfile.TemporaryDirectory(prefix="bench_input_") as scratch:
        data_dir = FLAGS.data_dir
        if data_dir is None:
            data_dir = bench_pipeline.make_records(os.path.join(scratch, "records"), FLAGS.make_images)
            print(f"generated {FLAGS.make_images} 256x256 JPEG records in {data_dir}")
        worker_args = [f"--data_dir={data_dir}", f"--batch_size={FLAGS.batch_size}",
                       f"--num_batches={FLAGS.num_batches}",
                       f"--warmup_batches={FLAGS.warmup_batches}",
                       f"--shuffle_buffer={FLAGS.shuffle_buffer}"]
        results = bench_pipeline.run_benchmark(FLAGS.kinds, cores, num_runs=FLAGS.num_runs,
                                            worker_args=worker_args, pin=FLAGS.pin)
    print(f"\nmedians of {FLAGS.num_runs} runs, batch {FLAGS.batch_size}, "
          f"{FLAGS.num_batches} batches per run, os.cpu_count()={os.cpu_count()}:")
    print(bench_pipeline.format_report(results, FLAGS.kinds, cores))


def _model_spec(precision: str) -> bench_model.ModelSpec:
    return bench_model.ModelSpec(name=FLAGS.model_name, variant=FLAGS.variant,
                                 num_classes=FLAGS.num_classes, input_size=FLAGS.input_size,
                                 width_multiplier=FLAGS.width_multiplier, precision=precision,
                                 jit_compile=FLAGS.jit_compile,
                                 lrn_bfloat16=FLAGS.lrn_bfloat16, lrn_xla=FLAGS.lrn_xla)


def _model_rows():
    """(spec, mode, batch size, steps per run) for every requested row."""
    rows = []
    for precision in FLAGS.precisions:
        spec = _model_spec(precision)
        for mode in FLAGS.modes:
            sizes = FLAGS.train_batch_sizes if mode == "train" else FLAGS.inference_batch_sizes
            for batch_size in (int(size) for size in sizes):
                steps = FLAGS.steps_per_run * (10 if batch_size == 1 else 1)
                rows.append((spec, mode, batch_size, steps))
    return rows


def _print_loss_curves() -> None:
    """Losses of each precision and of fp32 with other dropout masks, step by step."""
    batch_size = int(FLAGS.train_batch_sizes[0])
    options = dict(num_steps=FLAGS.loss_curve_steps, batch_size=batch_size,
                   learning_rate=FLAGS.loss_curve_learning_rate)
    curves = {precision: bench_model.loss_curve(_model_spec(precision), **options)
              for precision in dict.fromkeys(["fp32"] + FLAGS.precisions)}
    noise = bench_model.loss_curve(_model_spec("fp32"), seed=1, **options)
    baseline = curves["fp32"]
    print(f"\nloss curves, batch {batch_size}, same weights and data; 'fp32 seed 1' "
          f"differs only by its dropout masks (the noise):")
    print("| step | " + " | ".join(curves) + " | fp32 seed 1 |")
    print("|---" * (len(curves) + 2) + "|")
    for index in range(FLAGS.loss_curve_steps):
        print(f"| {index + 1} | " + " | ".join(f"{c[index]:.4f}" for c in curves.values())
              + f" | {noise[index]:.4f} |")
    for name, curve in list(curves.items())[1:] + [("fp32 seed 1", noise)]:
        gaps = [abs(a - b) for a, b in zip(curve, baseline)]
        print(f"|{name} - fp32|: mean {sum(gaps) / len(gaps):.4f}, max {max(gaps):.4f}")


def run_model() -> None:
    """The `model` command."""
    if FLAGS.model_worker:
        bench_model.run_worker(FLAGS.model_worker)
        return
    rows = _model_rows()  # empty with --modes= (only the loss curves)
    options = dict(num_runs=FLAGS.num_runs, num_warmup=FLAGS.model_warmup, device=FLAGS.device)
    results = []
    if FLAGS.interleave and rows:
        results = bench_model.benchmark_interleaved(rows, **options)
        rows = []
    for spec, mode, batch_size, steps in rows:
        if FLAGS.isolate:
            result = bench_model.benchmark_in_subprocess(
                spec, mode, batch_size, FLAGS.row_timeout, steps_per_run=steps, **options)
        else:
            result = bench_model.benchmark(spec, mode, batch_size, steps_per_run=steps,
                                           **options)
        results.append(result)
        print(bench_report.format_table([result]).splitlines()[-1], flush=True)
    if results:
        command = "python -m alexnet_tf.benchmark " + " ".join(sys.argv[1:])
        print("\n" + bench_report.format_table(results, command=command))
        if FLAGS.interleave:
            print("\n".join([""] + bench_report.paired_ratios(results)))
    if FLAGS.loss_curve_steps > 0:
        _print_loss_curves()


def run_trainability() -> None:
    """The `trainability` command."""
    import shutil

    from alexnet_tf import train_flags
    from alexnet_tf.bench import trainability
    from alexnet_tf.data.imagenet import demo

    work_dir = FLAGS.work_dir or tempfile.mkdtemp(prefix="alexnet_tf_trainability_")
    recipe = train_flags.parse_flagfile(FLAGS.train_flagfile, *FLAGS.train_flags)
    data_dir = FLAGS.data_dir or os.path.join(work_dir, "data")
    if not FLAGS.data_dir:
        demo.prepare_records(data_dir, os.path.join(work_dir, "images"),
                             resize=recipe.resize_size, seed=0, show_progress=False)
    rows = [trainability.Row(init, float(width), int(seed))
            for width in FLAGS.widths for init in FLAGS.inits for seed in FLAGS.seeds]
    statistics = {
            f"{init}, {float(width):g}": trainability.initial_statistics(
                    data_dir=data_dir, init=init, width_multiplier=float(width),
                    seed=int(FLAGS.seeds[0]), input_size=recipe.input_size,
                    resize_size=recipe.resize_size, mean_mode=recipe.mean_mode)
            for width in FLAGS.widths for init in FLAGS.inits}
    print("At initialisation, on one validation batch: each layer's output std (after its "
          "ReLU; fc8: the logits) and weight-gradient norm\n")
    print(trainability.format_statistics(statistics) + "\n", flush=True)
    train_flags_list = [f"--flagfile={FLAGS.train_flagfile}", *FLAGS.train_flags,
                        "--nomake_demo_data"]
    outcomes = []
    for row in rows:
        outcome = trainability.train_row(row, data_dir=data_dir, work_dir=work_dir,
                                         steps=FLAGS.train_steps,
                                         train_flags=train_flags_list,
                                         timeout=FLAGS.run_timeout)
        outcomes.append(outcome)
        print(f"{row}: left chance at step {outcome.left_chance_step}, final top-1 error "
              f"{outcome.final_top1_error:.3f}, {outcome.wall_seconds:.0f} s", flush=True)
    command = "python -m alexnet_tf.benchmark " + " ".join(sys.argv[1:])
    print(f"\n{command}\n")
    print(trainability.format_outcomes(outcomes, FLAGS.train_steps))
    if not FLAGS.work_dir:
        shutil.rmtree(work_dir, ignore_errors=True)


def run_pixel_limit() -> None:
    """The `pixel_limit` command."""
    from alexnet_tf.bench import pixel_limit
    if FLAGS.pixel_limit_worker:
        pixel_limit.run_worker(FLAGS.pixel_limit_worker)
        return
    results = []
    for row in pixel_limit.default_rows():
        results.append(pixel_limit.measure_in_subprocess(row))
        print(pixel_limit.format_table(results[-1:]).splitlines()[-1], flush=True)
    print(f"\npython -m alexnet_tf.benchmark {' '.join(sys.argv[1:])}\n")
    print(pixel_limit.format_table(results))


COMMANDS = {"input": run_input, "model": run_model, "trainability": run_trainability,
            "pixel_limit": run_pixel_limit}


def main(argv):
    if len(argv) != 2 or argv[1] not in COMMANDS:
        raise app.UsageError(f"usage: python -m alexnet_tf.benchmark {{{','.join(COMMANDS)}}} "
                             f"[--flags]; got {argv[1:]}")
    if FLAGS.data_dir is not None:  # input and trainability read converted records
        errors.check_directory(FLAGS.data_dir, "--data_dir",
                               "the output of tools/convert_imagenet.py")
    startup.tune_malloc()  # as the trainer does: measure what training runs
    COMMANDS[argv[1]]()


if __name__ == "__main__":
    errors.run_command(main)
