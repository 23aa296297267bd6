r"""Exports a training run as a SavedModel for TF Serving.

  python -m alexnet_tf.export --model_dir=/tmp/alexnet_run --export_dir=/tmp/alexnet_export

writes /tmp/alexnet_export/<version>/ (one more than the highest existing version unless
--version is given; an existing version is never overwritten) through a temporary
directory renamed when complete, so a TF Serving instance watching --export_dir only
ever loads whole models. Serve it with

  tensorflow_model_server --rest_api_port=8501 --model_name=alexnet \
      --model_base_path=/tmp/alexnet_export

See alexnet_tf/serving/signatures.py for the signatures and the warm-up requests.
"""

from absl import app
from absl import flags

_MODEL_DIR = flags.DEFINE_string("model_dir", None, "Training run directory (config.json, "
                                 "checkpoints/, labels.json).")
_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "Base directory of the exported "
                                  "versions (TF Serving's --model_base_path).")
_VERSION = flags.DEFINE_integer("version", None, "Version number to write; default: one "
                                "more than the highest existing version (1 if none).",
                                lower_bound=1)
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "Checkpoint prefix or name (e.g. "
                                  "ckpt-12); default: the latest in model_dir/checkpoints.")
_STATS_PATH = flags.DEFINE_string("stats_path", None, "Override the run's colour statistics "
                                  "(normally read from config.json; must match training).")
_MEAN_MODE = flags.DEFINE_enum("mean_mode", None, ["image", "rgb"], "Override the run's "
                               "mean subtraction mode (must match training).")
_MODEL_NAME = flags.DEFINE_string("model_name", "alexnet", "Model name written into the "
                                  "warm-up requests (TF Serving's --model_name).")
_VERIFY = flags.DEFINE_boolean("verify", True, "Load the written SavedModel and replay its "
                               "warm-up requests before making the version visible.")

flags.mark_flags_as_required(["model_dir", "export_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from alexnet_tf.serving import signatures as serving  # Local: keep --help fast.

    module = serving.module_from_model_dir(_MODEL_DIR.value, _CHECKPOINT.value,
                                           stats_path=_STATS_PATH.value,
                                           mean_mode=_MEAN_MODE.value)
    path = serving.export(module, _EXPORT_DIR.value, _VERSION.value,
                          model_name=_MODEL_NAME.value, verify=_VERIFY.value)
    print(f"exported {path}")


if __name__ == "__main__":
    app.run(main)
