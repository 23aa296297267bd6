"""The flags that name a trained model, shared by evaluate, export, predict and visualize.

  --model_dir    a training run (its newest checkpoint that reads whole, unless --checkpoint)
  --checkpoint   a checkpoint of --model_dir, by prefix or name (ckpt-12)
  --saved_model  an export: a version directory E/3 or the export directory E
  --stats_path   override the recorded colour statistics (must match training)
  --mean_mode    override the recorded mean subtraction (must match training)

Evaluate and export also take an ensemble: several runs (--model_dir=A,B,C, with
--checkpoint=c1,c2,c3 one per run if given) or several exports (--saved_model=E,F).

Defined once here, so every command spells them alike; `load` turns them into a
`model_source.LoadedModel` and `load_members` into a list of them, or a one-line usage
error.
"""

from absl import app
from absl import flags

from alexnet_tf import errors
from alexnet_tf.data import preprocessing

MODEL_DIR = flags.DEFINE_string("model_dir", None, "Training run directory (config.json, "
                                "checkpoints/, labels.json); its newest checkpoint that "
                                "reads whole unless --checkpoint is given. evaluate and "
                                "export: several, comma separated, make an ensemble.")
CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A checkpoint of --model_dir: prefix or "
                                 "name (e.g. ckpt-12); default the newest that reads "
                                 "whole (a damaged newer one is skipped with a warning). "
                                 "A damaged --checkpoint is an error. For an ensemble, one "
                                 "per --model_dir, comma separated.")
SAVED_MODEL = flags.DEFINE_string("saved_model", None, "An export of alexnet_tf.export: a "
                                  "version directory (E/3) or the export directory E (its "
                                  "highest version). evaluate: several, comma separated, make "
                                  "an ensemble.")
STATS_PATH = flags.DEFINE_string("stats_path", None, "Override the recorded colour "
                                 "statistics (.npz of tools/compute_stats.py; must match "
                                 "training).")
MEAN_MODE = flags.DEFINE_enum("mean_mode", None, list(preprocessing.MEAN_MODES), "Override the recorded "
                              "mean subtraction (must match training).")


def _list(flag) -> list:
    """A comma-separated flag's entries (none for an unset flag)."""
    return [part.strip() for part in (flag.value or "").split(",") if part.strip()]


def load(command: str, *, saved_model_allowed: bool = True):
    """The model the flags name, as a `model_source.LoadedModel`.

    Args:
      command: the command's name, for messages.
      saved_model_allowed: whether --saved_model is a source for this command.

    Raises:
      app.UsageError: no model, or flags that do not go together.
      errors.InvalidInputError: several models.
    """
    for flag in (MODEL_DIR, SAVED_MODEL):
        if len(_list(flag)) > 1:
            raise errors.InvalidInputError(
                    f"{command} takes one model; --{flag.name} lists {len(_list(flag))} "
                    "(evaluate and export take ensembles)")
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


def load_members(command: str, *, saved_model_allowed: bool = True) -> list:
    """The model or ensemble the flags name: a list of `model_source.LoadedModel`s that
    agree on classes and preprocessing (`ensemble.check_members`).

    Args:
      command: the command's name, for messages.
      saved_model_allowed: whether --saved_model is a source for this command.

    Raises:
      app.UsageError: no model, or flags that do not go together (one model).
      errors.InvalidInputError: flags that do not go together for an ensemble, or members
        that cannot be averaged (the message says which).
    """
    model_dirs, saved_models = _list(MODEL_DIR), _list(SAVED_MODEL)
    checkpoints = _list(CHECKPOINT)
    if len(model_dirs) <= 1 and len(saved_models) <= 1:
        return [load(command, saved_model_allowed=saved_model_allowed)]
    if saved_models and not saved_model_allowed:
        raise errors.InvalidInputError(f"{command} reads training runs: give --model_dir, "
                                       "not --saved_model")
    if model_dirs and saved_models:
        raise errors.InvalidInputError("an ensemble is several runs (--model_dir=A,B) or "
                                       "several exports (--saved_model=E,F), not both")
    if checkpoints and len(checkpoints) != len(model_dirs):
        raise errors.InvalidInputError(
                f"--checkpoint lists {len(checkpoints)} checkpoints for "
                f"{len(model_dirs) or len(saved_models)} models: give one per --model_dir, or "
                "none for each run's latest")
    from alexnet_tf import ensemble
    from alexnet_tf import model_source
    overrides = dict(stats_path=STATS_PATH.value, mean_mode=MEAN_MODE.value)
    if model_dirs:
        members = [model_source.load(model_dir=model_dir,
                                     checkpoint=checkpoints[index] if checkpoints else None,
                                     **overrides)
                   for index, model_dir in enumerate(model_dirs)]
    else:
        members = [model_source.load(saved_model=path, **overrides) for path in saved_models]
    ensemble.check_members(members)
    return members
