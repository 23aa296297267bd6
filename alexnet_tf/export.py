r"""Exports a training run as a SavedModel for TF Serving.

  python -m alexnet_tf.export --model_dir=runs/alexnet --export_dir=exports/alexnet
  python -m alexnet_tf.export --model_dir=runs/a,runs/b --export_dir=exports/ensemble

writes exports/alexnet/<version>/ (one more than the highest existing version unless
--version is given; an existing version is never overwritten) under a temporary name
renamed when complete, so a TF Serving instance watching --export_dir only ever loads
whole models. Serve it with

  tensorflow_model_server --rest_api_port=8501 --model_name=alexnet \
      --model_base_path=$PWD/exports/alexnet

`serving_default` refuses any image whose header declares more than --max_pixels pixels,
before decoding it (a 48 KB PNG can declare 20000x20000 pixels, 1.2 GB decoded); the
limit is a constant of the graph, also recorded in assets.extra.

Several runs are exported as one ensemble: the same signatures and outputs, with
probabilities the mean of the members' softmax outputs, and the members listed in
assets.extra/alexnet_tf_ensemble.json. They must agree on classes and preprocessing.
alexnet_tf/serving/layout.py describes the signatures and the files beside the model.
"""

from alexnet_tf import startup  # noqa: F401 (first: quiets TensorFlow's start-up notices)

from absl import flags  # noqa: E402

from alexnet_tf import errors  # noqa: E402
from alexnet_tf import model_flags  # noqa: E402
from alexnet_tf.data import image_header  # noqa: E402

_EXPORT_DIR = flags.DEFINE_string("export_dir", None, "Base directory of the exported "
                                  "versions (TF Serving's --model_base_path).")
_VERSION = flags.DEFINE_integer("version", None, "Version number to write; default: one "
                                "more than the highest existing version (1 if none).",
                                lower_bound=1)
_MODEL_NAME = flags.DEFINE_string("model_name", "alexnet", "Model name written into the "
                                  "warm-up requests (TF Serving's --model_name).")
_VERIFY = flags.DEFINE_boolean("verify", True, "Load the written SavedModel and replay its "
                               "warm-up requests before making the version visible.")

_MAX_PIXELS = flags.DEFINE_integer(
    "max_pixels", image_header.DEFAULT_MAX_PIXELS,
    "serving_default refuses images whose header declares more pixels (width x height) "
    "than this, before decoding them. Default 10000x10000.", lower_bound=1)

flags.mark_flags_as_required(["export_dir"])


def main(argv):
    if len(argv) > 1:
        raise errors.InvalidInputError(f"unexpected arguments: {argv[1:]}")
    from alexnet_tf import ensemble
    from alexnet_tf.serving import saved_model
    errors.check_output_directory(_EXPORT_DIR.value, "--export_dir")
    members = model_flags.load_members("export", saved_model_allowed=False)
    module = saved_model.ServingModule([member.keras_model for member in members],
                                       members[0].settings, labels=members[0].labels,
                                       max_pixels=_MAX_PIXELS.value)
    path = saved_model.export(module, _EXPORT_DIR.value, _VERSION.value,
                              model_name=_MODEL_NAME.value, verify=_VERIFY.value,
                              members=ensemble.describe(members) if len(members) > 1 else None)
    print(f"exported {path} ({members[0].description})" if len(members) == 1 else
          f"exported {path} (ensemble of {len(members)}: "
          f"{', '.join(member.path for member in members)})")
    return 0


if __name__ == "__main__":
    errors.run_command(main)
