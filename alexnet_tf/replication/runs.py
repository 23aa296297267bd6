"""One experiment's runs: ordinary training runs in subdirectories of one output directory.

  output_dir/
    data/               the demo records, when no --data_dir is given
    demo_images/        the demo's raw images they are converted from
    <run name>/         a run directory of `alexnet_tf.train` (config.json, checkpoints/,
                        train_history.json ...) plus result.json once the run is over

Each run trains through `training.loop.train_and_evaluate`, the function the training
command calls, so a killed experiment resumes each unfinished run from its checkpoint;
a run whose result.json exists is not trained again. result.json is written last and
atomically: a run without it is unfinished, whatever else its directory holds.
"""

import json
import os
from typing import Optional

from absl import logging

from alexnet_tf import atomic
from alexnet_tf import errors
from alexnet_tf import run_dir
from alexnet_tf.data import schema
from alexnet_tf.training import config as config_lib

RESULT_FILE = "result.json"
DATA_DIR = "data"
DEMO_IMAGES_DIR = "demo_images"
# Settings that may differ between the run that wrote result.json and a rerun that
# skips it: where the data is and how the run is watched, not what was trained.
UNCOMPARED = frozenset({"data_dir", "progress_bar", "demo_dir", "make_demo_data"})
FINISHED, DIVERGED = "finished", "diverged"


def prepare_data(data_dir: Optional[str], output_dir: str, *, resize: int, seed: int = 0,
                 show_progress: bool = False) -> str:
    """The records to train on: `data_dir` if given, else the demo's, made on first use.

    Without `data_dir`, the demo dataset (data/imagenet/demo.py) is made in
    output_dir/demo_images and converted into output_dir/data with shorter sides of
    `resize`, as `train --make_demo_data` does.

    Raises:
      errors.MissingInputError: `data_dir` does not exist or holds no converted records.
      errors.InvalidInputError: `data_dir` is a file.
    """
    if data_dir:
        errors.check_directory(data_dir, "--data_dir",
                               "records written by tools/convert_imagenet.py")
        if not os.path.isfile(os.path.join(data_dir, schema.MANIFEST_FILE)):
            raise errors.MissingInputError(
                    f"--data_dir={data_dir!r} holds no {schema.MANIFEST_FILE}: expected "
                    "records written by tools/convert_imagenet.py")
        return data_dir
    from alexnet_tf.data.imagenet import demo
    records = os.path.join(output_dir, DATA_DIR)
    if demo.prepare_records(records, os.path.join(output_dir, DEMO_IMAGES_DIR),
                            resize=resize, seed=seed, show_progress=show_progress):
        logging.info("Demo records written to %s", records)
    return records


def _comparable(values: dict) -> dict:
    return {key: value for key, value in values.items()
            if key not in UNCOMPARED and key != "num_classes"}


def finished_result(config: config_lib.TrainConfig, model_dir: str) -> Optional[dict]:
    """The saved result of a finished run of `config` in `model_dir`, or None.

    Raises:
      errors.InvalidInputError: model_dir finished a run with other settings.
    """
    path = os.path.join(model_dir, RESULT_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        result = json.load(f)
    saved, new = _comparable(result["config"]), _comparable(config.to_dict())
    differences = sorted(key for key in set(saved) | set(new) if saved.get(key) != new.get(key)
                         and key != "model")
    if differences:
        raise errors.InvalidInputError(
                f"{model_dir!r} holds a finished run with other settings ("
                + ", ".join(f"{key}: {saved.get(key)!r} there, {new.get(key)!r} now"
                            for key in differences[:4])
                + "): use another --output_dir")
    return result


def _saved_history(model_dir: str) -> list:
    """The per-epoch results train_and_evaluate saved in model_dir ([] if none)."""
    path = os.path.join(model_dir, run_dir.HISTORY_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return json.load(f)


def run(name: str, config: config_lib.TrainConfig, output_dir: str) -> dict:
    """Trains `config` in output_dir/name unless it finished there; returns its result.

    A run whose loss becomes NaN or Inf is finished too, as "diverged" (an ablation's
    outcome, not a failure of the experiment).

    Returns:
      {"name", "status": "finished" | "diverged" | "preempted", "top1_error",
       "top5_error", "step", "history" (per-epoch validation results), "config",
       "message" (diverged)}; a preempted run has no result.json and resumes on rerun.
    """
    from alexnet_tf.training import loop  # Local import: the loop pulls in TensorFlow.
    import keras
    model_dir = os.path.join(output_dir, name)
    result = finished_result(config, model_dir)
    if result is not None:
        logging.info("%s: finished earlier (%s), skipped", name, result["status"])
        return result
    keras.backend.clear_session()  # Each run starts from a clean graph of layer names.
    try:
        outcome = loop.train_and_evaluate(config, model_dir)
    except loop.NonFiniteLossError as error:
        logging.warning("%s diverged: %s", name, errors.one_line(error))
        outcome = dict(status=DIVERGED, message=errors.one_line(error), preempted=False,
                       history=_saved_history(model_dir))
    if outcome["preempted"]:
        return dict(name=name, status="preempted", step=outcome["step"])
    saved_config = run_dir.read_config(model_dir)
    result = dict(name=name, status=outcome.get("status", FINISHED),
                  message=outcome.get("message", ""),
                  top1_error=outcome.get("top1_error"), top5_error=outcome.get("top5_error"),
                  step=outcome.get("step"), history=outcome.get("history", []),
                  config=saved_config)
    atomic.write_json(os.path.join(model_dir, RESULT_FILE), result)
    return result
