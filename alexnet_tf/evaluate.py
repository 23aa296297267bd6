r"""Top-1 / top-5 error on the validation records: centre crop and the paper's 10-crop average.

  python -m alexnet_tf.evaluate --model_dir=runs/alexnet --data_dir=/data/imagenet \
      [--checkpoint=ckpt-12] [--ten_crop]
  python -m alexnet_tf.evaluate --saved_model=exports/alexnet --data_dir=... [--ten_crop]
  python -m alexnet_tf.evaluate --model_dir=runs/a,runs/b --data_dir=... [--ten_crop]

Prints a table and writes the counts as JSON (--output; default
model_dir/eval/<checkpoint>[-10crop].json, or eval-<export>-<version>[-10crop].json in
the current directory for a SavedModel). The preprocessing (statistics, mean mode,
sizes) is the one recorded with the run or the export.

Several runs (or several exports, --saved_model=E,F) are evaluated in one pass over the
data, each on its own and as an ensemble averaging their softmax outputs (the paper,
section 6); they must agree on classes and preprocessing. The JSON then holds the
ensemble's counts, and each member's under "members" (default
eval-ensemble-<hash>[-10crop].json in the current directory).
"""

from alexnet_tf import startup  # First: quiets TensorFlow's start-up notices.

from absl import flags  # noqa: E402

from alexnet_tf import errors  # noqa: E402
from alexnet_tf import model_flags  # noqa: E402

_DATA_DIR = flags.DEFINE_string("data_dir", None, "Directory of converted records "
                                "(validation-*-of-*, labels.json).")
_TEN_CROP = flags.DEFINE_boolean("ten_crop", False, "Also report the paper's 10-crop average "
                                 "(4 corners + centre, and their mirror images); ~10x slower.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per step.", lower_bound=1)
_MAX_BATCHES = flags.DEFINE_integer("max_batches", None, "Stop after this many batches "
                                    "(a quick check); default: the whole split.", lower_bound=1)
_OUTPUT = flags.DEFINE_string("output", None, "Where to write the JSON result.")
_PROGRESS_BAR = flags.DEFINE_boolean("progress_bar", True, "Show a progress bar.")
_ACCEPT_CHANGED_DATA = flags.DEFINE_boolean(
        "accept_changed_data", False, "Evaluate shards that differ from what the converter's "
        "manifest records; by default that is an error naming the file.")

_SKIP_BAD_RECORDS = flags.DEFINE_boolean(
        "skip_bad_records", False, "Skip and count records that cannot be decoded and the "
        "rest of shards that are truncated or corrupted (logged with the shards' names and "
        "recorded in the output); by default each is an error naming the shard.")

flags.mark_flag_as_required("data_dir")


def main(argv):
    if len(argv) > 1:
        raise errors.InvalidInputError(f"unexpected arguments: {argv[1:]}")
    from alexnet_tf.evaluation import classification
    from alexnet_tf.evaluation import metrics
    startup.tune_malloc()
    errors.check_directory(_DATA_DIR.value, "--data_dir",
                           "validation shards written by tools/convert_imagenet.py")
    members = model_flags.load_members("evaluate")
    output = _OUTPUT.value or classification.default_output(
            members, model_flags.MODEL_DIR.value, _TEN_CROP.value)
    ensemble_counts, member_counts = classification.run_members(
            _DATA_DIR.value, members, output=output, ten_crop=_TEN_CROP.value,
            batch_size=_BATCH_SIZE.value, max_batches=_MAX_BATCHES.value,
            show_progress=_PROGRESS_BAR.value, accept_changed_data=_ACCEPT_CHANGED_DATA.value,
            skip_bad_records=_SKIP_BAD_RECORDS.value)
    if ensemble_counts is None:
        print(f"{members[0].description} on {_DATA_DIR.value}")
        print(metrics.format_table(member_counts[0]))
    else:
        print(f"ensemble of {len(members)} (mean of their softmax outputs) on "
              f"{_DATA_DIR.value}")
        for index, member in enumerate(members):
            print(f"  member {index + 1}: {member.description} ({member.path})")
        print(metrics.format_members_table(member_counts, ensemble_counts))
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    errors.run_command(main)
