r"""Re-runs the paper's experiments as sets of ordinary training runs.

  python -m alexnet_tf.experiments figure1   --output_dir=O [--data_dir=D]
  python -m alexnet_tf.experiments ablations --output_dir=O [--data_dir=D]

figure1: the four-layer CNN of the paper's Figure 1 (nn/cnn4.py) with ReLU and with tanh,
same budget and seed; plots training error against epochs (O/figure1.png) and writes the
measured ratio of epochs to reach --target_error (O/results.md).

ablations: the paper's net with one switch flipped per run (no LRN, non-overlapping
pooling, the one-GPU net, no dropout, no PCA lighting, tanh, a sixth conv layer) under one
step budget; writes O/results.md (top-1/top-5 error per row, the delta to the baseline
and the paper's) and O/ablations.png.

Without --data_dir, the demo dataset is made and converted into O/data first (as
`train --make_demo_data` does); --data_dir takes any converter output. Each run is a run
directory O/<name> of `alexnet_tf.train`: a killed experiment resumes on rerun, and runs
that finished are not trained again. The defaults are small, to fit a CPU; the paper's
sizes are --input_size=224 --width_multiplier=1 (ablations).

Exit status: 0 when done, 143 after a SIGTERM (rerun to continue), 2 on bad input.
"""

from alexnet_tf import startup  # First: quiets TensorFlow's start-up notices.

import sys  # noqa: E402

from absl import flags  # noqa: E402

from alexnet_tf import errors  # noqa: E402

EXPERIMENTS = ("figure1", "ablations")

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Directory of the experiment: one run "
                                  "directory per run, results.md and the PNG.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Records of tools/convert_imagenet.py; "
                                "default: the demo dataset, made in output_dir/data.")
_INPUT_SIZE = flags.DEFINE_integer("input_size", 0, "Crop side; 0: figure1 32, "
                                   "ablations 96.")
_WIDTH = flags.DEFINE_float("width_multiplier", 0.0, "Scales every layer's width; 0: "
                            "figure1 1 (32-32-64), ablations 0.25.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 0, "Images per step; 0: figure1 128, "
                                   "ablations 64.")
_LEARNING_RATE = flags.DEFINE_float("learning_rate", 0.0, "SGD learning rate of every run; "
                                    "0: figure1 0.002, ablations 0.01 (the paper's).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of every run.")
_NUM_EPOCHS = flags.DEFINE_integer("num_epochs", 30, "figure1: epochs of each net.")
_TARGET_ERROR = flags.DEFINE_float("target_error", 0.25, "figure1: the training error "
                                   "whose first epoch is compared (paper: 0.25).")
_EVAL_STEPS = flags.DEFINE_integer("eval_steps", 0, "figure1: training-set batches "
                                   "measured per epoch (0: all).")
_STEPS = flags.DEFINE_integer("steps", 300, "ablations: training steps of each run.")
_ROWS = flags.DEFINE_list("rows", None, "ablations: the rows to run (the baseline always "
                          "runs); default all.")


def _positive(flag, allow_zero: bool = False) -> None:
    if flag.value < 0 or (flag.value == 0 and not allow_zero):
        raise errors.InvalidInputError(f"--{flag.name} must be > 0, got {flag.value}")


def _figure1_settings():
    from alexnet_tf.replication import figure1
    _positive(_NUM_EPOCHS)
    if not 0 < _TARGET_ERROR.value < 1:
        raise errors.InvalidInputError(f"--target_error must be in (0, 1), got "
                                       f"{_TARGET_ERROR.value}")
    defaults = figure1.Settings()
    return figure1.Settings(
            num_epochs=_NUM_EPOCHS.value, batch_size=_BATCH_SIZE.value or defaults.batch_size,
            learning_rate=_LEARNING_RATE.value or defaults.learning_rate,
            input_size=_INPUT_SIZE.value or defaults.input_size,
            width_multiplier=_WIDTH.value or defaults.width_multiplier, seed=_SEED.value,
            target_error=_TARGET_ERROR.value, eval_steps=_EVAL_STEPS.value)


def _ablation_settings():
    from alexnet_tf.replication import ablations
    _positive(_STEPS)
    defaults = ablations.Settings()
    rows = tuple(_ROWS.value) if _ROWS.value else defaults.rows
    ablations.check_rows(rows)
    return ablations.Settings(
            steps=_STEPS.value, batch_size=_BATCH_SIZE.value or defaults.batch_size,
            learning_rate=_LEARNING_RATE.value or defaults.learning_rate,
            input_size=_INPUT_SIZE.value or defaults.input_size,
            width_multiplier=_WIDTH.value or defaults.width_multiplier, seed=_SEED.value,
            rows=rows)


def main(argv) -> int:
    if len(argv) != 2 or argv[1] not in EXPERIMENTS:
        raise errors.InvalidInputError(f"expected one experiment, {' or '.join(EXPERIMENTS)}; "
                                       f"got {' '.join(argv[1:]) or 'none'}")
    if not _OUTPUT_DIR.value:
        raise errors.InvalidInputError("--output_dir is required: the experiment's directory")
    for flag in (_INPUT_SIZE, _WIDTH, _BATCH_SIZE, _EVAL_STEPS, _LEARNING_RATE):
        _positive(flag, allow_zero=True)
    startup.tune_malloc()  # As train does: reuse large buffers between steps.
    try:
        outcome = _run(argv[1])
    except (ValueError, FileNotFoundError) as error:  # A bad setting or missing data.
        if isinstance(error, errors.UsageError):
            raise
        raise errors.InvalidInputError(errors.one_line(error)) from error
    if outcome["preempted"]:
        print(f"Stopped by SIGTERM; checkpoints saved in {_OUTPUT_DIR.value}. Rerun the same "
              "command to continue.")
        return 143
    with open(outcome["results_path"]) as f:
        print(f.read())
    print(f"wrote {outcome['results_path']} and {outcome['plot_path']}")
    return 0


def _run(experiment: str) -> dict:
    """Prepares the data and runs `experiment`; returns its outcome."""
    from alexnet_tf.replication import ablations
    from alexnet_tf.replication import figure1
    from alexnet_tf.replication import runs
    if experiment == "figure1":
        settings = _figure1_settings()
        data_dir = runs.prepare_data(_DATA_DIR.value, _OUTPUT_DIR.value,
                                     resize=settings.input_size, seed=_SEED.value)
        outcome = figure1.run_figure1(data_dir, _OUTPUT_DIR.value, settings)
    else:
        settings = _ablation_settings()
        data_dir = runs.prepare_data(_DATA_DIR.value, _OUTPUT_DIR.value,
                                     resize=ablations.resize_size(settings.input_size),
                                     seed=_SEED.value)
        outcome = ablations.run_ablations(data_dir, _OUTPUT_DIR.value, settings)
    return outcome


if __name__ == "__main__":
    errors.run_command(main)
