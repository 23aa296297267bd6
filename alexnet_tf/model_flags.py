"""The flags that name a trained model, shared by evaluate, export, predict and visualize.

  --model_dir    a training run (its newest checkpoint that reads whole, unless --checkpoint)
  --checkpoint   a checkpoint of --model_dir, by prefix or name (ckpt-12)
  --saved_model  an export: a version directory E/3 or the export directory E
  --stats_path   override the recorded colour statistics (must match training)
  --mean_mode    override the recorded mean subtraction (must match training)

Defined once here, so every command spells them alike; `load` turns them into a
`model_source.LoadedModel`, or a one-line usage error.
"""

from absl import app
from absl import flags

from alexnet_tf.data import preprocessing

MODEL_DIR = flags.DEFINE_string("model_dir", None, "Training run directory (config.json, "
                                "checkpoints/, labels.json); its newest checkpoint that "
                                "reads whole unless --checkpoint is given.")
CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A checkpoint of --model_dir: prefix or "
                                 "name (e.g. ckpt-12); default the newest that reads "
                                 "whole (a damaged newer one is skipped with a warning). "
                                 "A damaged --checkpoint is an error.")
SAVED_MODEL = flags.DEFINE_string("saved_model", None, "An export of alexnet_tf.export: a "
                                  "version directory (E/3) or the export directory E (its "
                                  "highest version).")
STATS_PATH = flags.DEFINE_string("stats_path", None, "Override the recorded colour "
                                 "statistics (.npz of tools/compute_stats.py; must match "
                                 "training).")
MEAN_MODE = flags.DEFINE_enum("mean_mode", None, list(preprocessing.MEAN_MODES), "Override the recorded "
                              "mean subtraction (must match training).")


def load(command: str, *, saved_model_allowed: bool = True):
    """The model the flags name, as a `model_source.LoadedModel`.

    Args:
      command: the command's name, for messages.
      saved_model_allowed: whether --saved_model is a source for this command.

    Raises:
      app.UsageError: no model, or flags that do not go together.
    """
    if SAVED_MODEL.value and not saved_model_allowed:
        raise app.UsageError(f"{command} reads a training run: give --model_dir, not "
                             "--saved_model")
    if not (MODEL_DIR.value or SAVED_MODEL.value):
        raise app.UsageError(f"{command} needs a model: --model_dir (a training run) or "
                             "--saved_model (an export)")
    if CHECKPOINT.value and (SAVED_MODEL.value or not MODEL_DIR.value):
        raise app.UsageError("--checkpoint names a checkpoint of --model_dir; it cannot be "
                             "used without --model_dir or with --saved_model")
    from alexnet_tf import model_source
    return model_source.load(model_dir=MODEL_DIR.value, checkpoint=CHECKPOINT.value,
                             saved_model=SAVED_MODEL.value, stats_path=STATS_PATH.value,
                             mean_mode=MEAN_MODE.value)
