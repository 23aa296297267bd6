r"""Top-1 / top-5 error on the validation records: centre crop and the paper's 10-crop average.

  python -m alexnet_tf.evaluate --model_dir=/tmp/alexnet_run --data_dir=/tmp/imagenet_tf \
      [--checkpoint=ckpt-12] [--ten_crop]
  python -m alexnet_tf.evaluate --saved_model=/tmp/alexnet_export/1 --data_dir=... [--ten_crop]

Prints a table and writes the counts as JSON (--output; default
model_dir/eval/<checkpoint>[-10crop].json, or <saved_model>-eval[-10crop].json). The
preprocessing (statistics, mean mode, sizes) is the one recorded with the run or the export.
"""

from absl import app
from absl import flags

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Training run directory; evaluates its "
                                 "latest checkpoint unless --checkpoint is given.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint prefix or name (e.g. "
                                  "ckpt-12) inside model_dir/checkpoints.")
_SAVED_MODEL = flags.DEFINE_string("saved_model", None, "Evaluate this exported version "
                                   "directory (E/<version>) instead of a checkpoint.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Directory of converted records "
                                "(validation-*-of-*, labels.json).")
_TEN_CROP = flags.DEFINE_boolean("ten_crop", False, "Also report the paper's 10-crop average "
                                 "(4 corners + centre, and their mirror images); ~10x slower.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per step.", lower_bound=1)
_MAX_BATCHES = flags.DEFINE_integer("max_batches", None, "Stop after this many batches "
                                    "(a quick check); default: the whole split.", lower_bound=1)
_STATS_PATH = flags.DEFINE_string("stats_path", None, "Override the recorded colour "
                                  "statistics (must match training).")
_MEAN_MODE = flags.DEFINE_enum("mean_mode", None, ["image", "rgb"], "Override the recorded "
                               "mean subtraction mode (must match training).")
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the JSON result.")

flags.mark_flag_as_required("data_dir")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if bool(_MODEL_DIR.value) == bool(_SAVED_MODEL.value):
        raise app.UsageError("give exactly one of --model_dir and --saved_model")
    if _CHECKPOINT.value and not _MODEL_DIR.value:
        raise app.UsageError("--checkpoint needs --model_dir")
    from alexnet_tf.evaluation import classification as evaluation  # Local: keep --help fast.
    from alexnet_tf import startup as malloc_tuning
    malloc_tuning.tune_malloc()

    counts, output = evaluation.run(
            _DATA_DIR.value, model_dir=_MODEL_DIR.value, checkpoint=_CHECKPOINT.value,
            saved_model=_SAVED_MODEL.value, ten_crop=_TEN_CROP.value,
            batch_size=_BATCH_SIZE.value, stats_path=_STATS_PATH.value,
            mean_mode=_MEAN_MODE.value, max_batches=_MAX_BATCHES.value, output=_OUTPUT.value)
    print(evaluation.format_table(counts))
    print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)
