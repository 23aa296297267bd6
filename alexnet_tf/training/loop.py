"""train_and_evaluate(config, model_dir): the training loop, read from top to bottom.

  build     strategy, data, model, optimizer, learning-rate schedule, checkpoint
  restore   the run's newest checkpoint that reads whole (damaged newer ones are set
            aside), or --init_checkpoint's weights for a new run
  loop      one global batch per step; periodic triggers: summaries every
            log_every_steps, a checkpoint every checkpoint_every_steps, and at each
            epoch's end validation, the schedule's update and a checkpoint

One loop serves one device, the paper's two towers and (multi-worker) MirroredStrategy:
each step takes one batch of this worker's share of the global batch from a plain
tf.data iterator (whose position is checkpointed), every replica takes its slice, and
the optimizer applies the all-reduced gradients (`steps.py`). Keras' `fit` is not used:
it cannot run under MultiWorkerMirroredStrategy, and its BackupAndRestore replays data
after a restore.

A run restarted on the same model_dir resumes from the latest checkpoint and, with the
same seed, ends with the same weights as an uninterrupted run. A SIGTERM (preemption)
seen by any worker stops every worker at the same step, after a checkpoint.
"""

import dataclasses
import json
import os
from typing import Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import atomic
from alexnet_tf import errors
from alexnet_tf import run_dir
from alexnet_tf.data import damaged_shards
from alexnet_tf.data import schema
from alexnet_tf.distributed import cluster
from alexnet_tf.distributed import strategy as strategy_lib
from alexnet_tf.nn import precision
from alexnet_tf.training import checkpoints
from alexnet_tf.training import config as config_lib
from alexnet_tf.training import diagnostics
from alexnet_tf.training import optimizer as optimizer_lib
from alexnet_tf.training import schedules
from alexnet_tf.training import steps
from alexnet_tf.training import summaries
from alexnet_tf.training.datasets import Datasets
from alexnet_tf.training.datasets import make_datasets


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


def train_and_evaluate(config: config_lib.TrainConfig, model_dir: str,
                       datasets: Optional[Datasets] = None) -> dict:
    """Trains `config`'s network, validating each epoch; resumes from model_dir if it can.

    Args:
      config: the run configuration.
      model_dir: where config.json, labels.json, checkpoints/ and logs/ go (run_dir.py).
      datasets: the data to use instead of `config`'s (tests, custom data).

    Returns:
      dict: the last validation results (top1_error, top5_error, loss, num_examples),
      step, epoch, preempted (True when stopped by SIGTERM) and history (per epoch).

    Raises:
      NonFiniteLossError: the loss, or a weight or slot about to be saved, became NaN/Inf
        (only checkpoints whose weights gave a finite loss are kept).
      ValueError: bad settings, or settings incompatible with the run in model_dir.
      damaged_shards.DamagedShardError, bad_records.BadRecordError: data that cannot be
        read, named (without config.skip_bad_records).
      errors.CorruptCheckpointError: model_dir has checkpoints but none reads whole.
    """
    strategy = strategy_lib.create_strategy(config.strategy, config.devices,
                                            config.communication)
    strategy_lib.check_tower_devices(strategy, config.tower_devices)
    task = cluster.task_of_strategy(strategy)
    if datasets is None:
        # tf.data's seeded shuffles also depend on TF's global seed: fix it first, so the
        # data order is a function of --seed alone, whatever ran earlier in this process.
        keras.utils.set_random_seed(config.seed)
        datasets = make_datasets(config, strategy, model_dir)
    # The newest checkpoint that reads whole; the chief sets damaged ones aside before
    # anything else reads the directory.
    resume_from = checkpoints.resume_checkpoint(run_dir.checkpoint_dir(model_dir),
                                                repair=task.is_chief)
    config = _prepare_model_dir(config, model_dir, datasets, task.is_chief, resume_from)
    with precision.dtype_policy(config.precision), \
            checkpoints.TerminationFlag() as termination:
        state = _build(config, model_dir, strategy, datasets, task)
        try:
            _restore(state, config, strategy, resume_from)
            with damaged_shards.user_errors():
                return _loop(state, config, model_dir, strategy, datasets, task, termination)
        finally:
            cluster.discard_write_dir(state.write_dir, state.checkpoint_dir)


@dataclasses.dataclass
class _State:
    """What a checkpoint holds (checkpoints.make_checkpoint) and what saves it."""
    model: keras.Model
    optimizer: keras.optimizers.Optimizer
    step: tf.Variable  # global step, int64
    epoch: tf.Variable  # completed epochs, int64
    schedule: object  # schedules.PlateauSchedule or StepSchedule
    iterator: object  # the training tf.data iterator
    checkpoint: tf.train.Checkpoint
    manager: tf.train.CheckpointManager
    checkpoint_dir: str  # model_dir/checkpoints
    write_dir: str  # where this worker writes them (a temporary one off the chief)
    iterator_checkpoint: Optional[cluster.WorkerIteratorCheckpoint]
    last_saved_step: Optional[int] = None


def _prepare_model_dir(config, model_dir: str, datasets: Datasets, chief: bool,
                       resume_from: Optional[str]):
    """Resolves num_classes, checks a resumed run's settings, writes config and labels."""
    if config.num_classes == 0:
        config = dataclasses.replace(config, num_classes=datasets.num_classes)
    elif config.num_classes != datasets.num_classes:
        raise errors.InvalidInputError(f"num_classes={config.num_classes} but the data has "
                                       f"{datasets.num_classes} classes")
    saved = config_lib.load_saved(model_dir)
    if saved is not None:
        config_lib.check_compatible(saved, config)
    if config.init_checkpoint and resume_from is None:
        # Before anything is written: the weights to start from must run in the same net.
        _, source_spec = checkpoints.resolve_init_checkpoint(config.init_checkpoint)
        checkpoints.check_same_layers(source_spec, config.model_spec(), config.init_checkpoint)
        checkpoints.check_same_lrn(source_spec, config.model_spec(), config.init_checkpoint)
    if chief:
        if saved is not None:
            _record_changes(model_dir, config_lib.changed_settings(saved, config),
                            resume_from)
        config_lib.save(config, model_dir)
        labels = datasets.labels
        if datasets.labels_file and os.path.exists(datasets.labels_file):
            with open(datasets.labels_file) as f:
                labels = json.load(f)
        if labels:
            run_dir.write_labels(model_dir, labels)
    return config


def _record_changes(model_dir: str, changes: dict, resume_from: Optional[str]) -> None:
    """Appends the settings a resume changes to model_dir/config_history.json."""
    if not changes:
        return
    path = os.path.join(model_dir, run_dir.CONFIG_HISTORY_FILE)
    history = []
    if os.path.exists(path):
        with open(path) as f:
            history = json.load(f)
    history.append(dict(resumed_from=resume_from, changes=changes))
    atomic.write_json(path, history)
    logging.info("Resuming with changed settings (recorded in %s): %s", path, changes)


def _build(config, model_dir: str, strategy, datasets: Datasets, task) -> _State:
    """Creates the model, optimizer, counters, schedule, iterator and checkpoint."""
    keras.utils.set_random_seed(config.seed)  # Initialisation and dropout seeds.
    if config.batch_size % strategy.num_replicas_in_sync:
        raise errors.InvalidInputError(f"batch_size={config.batch_size} must divide by the "
                                       f"{strategy.num_replicas_in_sync} replicas")
    with strategy.scope():
        model = run_dir.build_model(dict(config.model_spec(), init=config.init),
                                    config.tower_devices)
        optimizer = optimizer_lib.make_optimizer(
                config.optimizer, learning_rate=config.learning_rate,
                momentum=config.momentum, weight_decay=config.weight_decay,
                learning_rate_multipliers=optimizer_lib.layer_multipliers(
                        model, config.learning_rate_multipliers()),
                loss_scaling=config.precision == "mixed_float16")
    # Plain (not mirrored) counters: read on the host every step.
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    schedule = schedules.make_schedule(
            config.lr_schedule, initial_learning_rate=schedules.scaled_learning_rate(
                    config.learning_rate, config.batch_size, config.lr_base_batch_size,
                    config.lr_scaling),
            factor=config.lr_factor, patience=config.lr_patience,
            max_reductions=config.lr_max_reductions, min_delta=config.lr_min_delta,
            boundaries=config.lr_boundaries)
    iterator = iter(datasets.train)
    # Several workers: each saves its own input position (WorkerIteratorCheckpoint);
    # an iterator over the tf.data service cannot be saved at all.
    own_iterators = task.is_multi_worker and not config.data_service
    shared_iterator = None if own_iterators or config.data_service else iterator
    checkpoint = checkpoints.make_checkpoint(model=model, optimizer=optimizer, step=step,
                                             epoch=epoch, lr_schedule=schedule,
                                             iterator=shared_iterator)
    # Every worker joins each save (a collective); only the chief's copy is kept.
    checkpoint_dir = run_dir.checkpoint_dir(model_dir)
    if task.is_chief:
        for path in checkpoints.remove_stale_temporaries(checkpoint_dir):
            logging.warning("Removed %s, left by a checkpoint save that did not finish", path)
    write_dir = cluster.write_dir(checkpoint_dir, task)
    manager = checkpoints.make_manager(checkpoint, write_dir,
                                       config.keep_checkpoints if task.is_chief else 1)
    iterator_checkpoint = (cluster.WorkerIteratorCheckpoint(
            iterator, checkpoint_dir, task, config.keep_checkpoints + 1)
            if own_iterators else None)
    return _State(model, optimizer, step, epoch, schedule, iterator, checkpoint, manager,
                  checkpoint_dir, write_dir, iterator_checkpoint)


def _restore(state: _State, config, strategy, latest: Optional[str]) -> None:
    """Restores checkpoint `latest`; a new run (None) may start from --init_checkpoint."""
    # Every worker restores the chief's checkpoint (model_dir must be shared).
    if latest is None and config.init_checkpoint:
        checkpoints.initialize_from(state.model, config.init_checkpoint, run_dir.build_model,
                                    new_layers=config.new_layers)
    checkpoints.freeze_all_but(state.model, config.trainable_layers)
    with strategy.scope():
        state.optimizer.build(state.model.trainable_variables)
    if latest is None:
        return
    checkpoints.restore(state.checkpoint, latest)
    logging.info("Resumed from %s", latest)
    state.last_saved_step = int(state.step.numpy())
    if state.iterator_checkpoint is not None:
        path = state.iterator_checkpoint.restore(state.last_saved_step)
        logging.info("Restored this worker's input position from %s", path)


def _loop(state: _State, config, model_dir: str, strategy, datasets: Datasets, task,
          termination) -> dict:
    """The step loop; returns the last validation results (see train_and_evaluate)."""
    num_local_replicas = strategy.num_replicas_in_sync // task.num_workers
    train_step = steps.make_train_step(state.model, state.optimizer, strategy, config,
                                       num_local_replicas, datasets.train_augment)
    eval_step = steps.make_eval_step(state.model, strategy, num_local_replicas)
    writers = summaries.summary_writers(model_dir, task.is_chief)
    skipped = summaries.SkippedReport(datasets.skipped, writers)
    steps_per_epoch = config.steps_per_epoch or max(
            1, datasets.num_train_examples // config.batch_size)
    total_steps = config.num_epochs * steps_per_epoch
    if config.train_images:  # A budget in images: the same for any dataset size.
        total_steps = -(-config.train_images // config.batch_size)
    num_epochs = -(-total_steps // steps_per_epoch)
    if config.max_steps:
        total_steps = min(total_steps, config.max_steps)
    learning_rate = _LearningRate(config, state.schedule, steps_per_epoch)
    stall = diagnostics.StallDetector(config.num_classes, config.stall_steps)
    inspector = diagnostics.PeriodicDiagnostics(
            state.model, config.diagnostics_every_steps if task.is_chief else 0,
            lambda: next(iter(datasets.validation())), writers["train"])
    history = _read_history(model_dir, int(state.epoch.numpy()))
    progress = summaries.Progress(task.is_chief and config.progress_bar, config.batch_size)
    results = history[-1] if history else {}
    step = int(state.step.numpy())
    epoch_starts = True
    try:
        while step < total_steps:
            epoch = step // steps_per_epoch
            if epoch_starts:
                progress.start_epoch(epoch, num_epochs, step - epoch * steps_per_epoch,
                                     steps_per_epoch)
                epoch_starts = False
            learning_rate.set(state.optimizer, epoch, step)
            inspector.before_step(step)
            loss = float(train_step(state.iterator))
            step += 1
            _check_finite(loss, step, state, task)
            state.step.assign(step)
            _log_step(writers, progress, config, step, loss, state.optimizer)
            if step % config.log_every_steps == 0:
                skipped.update(schema.TRAIN, step)
            inspector.after_step(step)
            _warn(stall.update(step, loss))
            stop = _agreed_stop(strategy, task, termination)
            epoch_ends = step % steps_per_epoch == 0
            if stop or epoch_ends or step == total_steps:
                progress.close()
                epoch_starts = True
                if epoch_ends:
                    results = _end_of_epoch(state, config, model_dir, strategy, datasets,
                                            eval_step, writers, history, epoch, step, task)
                    skipped.update(schema.VALIDATION, step)
                # Agreed again: a SIGTERM that arrived during validation must not stop one
                # worker while the others go on into the next epoch's all-reduce.
                if _agreed_stop(strategy, task, termination):
                    if state.last_saved_step != step:  # Resume then starts clean.
                        _save(state, strategy, step)
                    return dict(results, step=step, preempted=True, history=history)
            elif step % config.checkpoint_every_steps == 0:
                _save(state, strategy, step)
    finally:
        progress.close()
    if results.get("step") != step:
        # Stopped mid-epoch (max_steps): validate and save the final state too.
        results = dict(_validate(config, strategy, datasets, eval_step, writers, state.model,
                                 step), step=step, epoch=int(state.epoch.numpy()))
        skipped.update(schema.VALIDATION, step)
        if state.last_saved_step != step:
            _save(state, strategy, step)
    skipped.update(schema.TRAIN, step)
    return dict(results, preempted=False, history=history)


class _LearningRate:
    """The rate of each step: the schedule's, ramped up during a gradual warm-up.

    The schedule is asked at the current epoch, or, when the run's budget is in images
    (--train_images), at the number of images seen. Warm-up (Goyal et al.) rises
    linearly over warmup_epochs from the base rate to the rate scaled for a large batch
    (from 0 when there is no scaling).
    """

    def __init__(self, config, schedule, steps_per_epoch: int):
        self._schedule = schedule
        self._images_per_step = config.batch_size if config.train_images else 0
        self._warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
        peak = schedule.learning_rate(0)
        self._warmup_start = (config.learning_rate / peak if peak > config.learning_rate
                              else 0.0)
        self._current = None

    def set(self, optimizer, epoch: int, step: int) -> None:
        """Assigns the rate for `step` (0-based, about to run) of `epoch` if it changed."""
        rate = self._schedule.learning_rate(
                step * self._images_per_step if self._images_per_step else epoch)
        if step <= self._warmup_steps:
            rate *= schedules.warmup_multiplier(step, self._warmup_steps, self._warmup_start)
        if rate != self._current:
            optimizer.learning_rate.assign(rate)
            self._current = rate


def _check_finite(loss: float, step: int, state: _State, task) -> None:
    """Stops on a NaN/Inf loss, keeping only checkpoints whose weights gave a finite one.

    The loss of `step` is computed from the weights of step - 1, before the update: a
    checkpoint of step - 1 holds weights that are finite but give this loss, so it is set
    aside, and "last good" names the one before, whose next loss was finite.

    Raises:
      NonFiniteLossError: always, when `loss` is not finite.
    """
    if np.isfinite(loss):
        return
    last_good = state.manager.latest_checkpoint
    if state.last_saved_step == step - 1 and last_good is not None:
        kept = state.manager.checkpoints
        last_good = kept[-2] if len(kept) > 1 else None
        if task.is_chief:
            last_good = checkpoints.set_aside_diverged(
                    os.path.join(state.checkpoint_dir, os.path.basename(kept[-1])))
    raise NonFiniteLossError(
            f"training loss is {loss} at step {step}: stopping without saving this state; "
            f"{_last_good_text(last_good)}. Rerun with a lower --learning_rate (allowed on "
            "resume, recorded in config_history.json), or check the data and --precision.")


def _last_good_text(prefix: Optional[str]) -> str:
    if prefix is None:
        return "no checkpoint is kept, so a rerun starts the run afresh"
    return f"the last good checkpoint is {prefix}, where a rerun resumes"


def _warn(message: Optional[str]) -> None:
    if message:
        logging.warning("%s", message)


def _log_step(writers: dict, progress, config, step: int, loss: float, optimizer) -> None:
    learning_rate = float(optimizer.learning_rate.numpy())
    images_per_second = progress.update(step, loss, learning_rate)
    if step % config.log_every_steps == 0:
        with writers["train"].as_default(step=step):
            tf.summary.scalar("loss", loss)
            tf.summary.scalar("learning_rate", learning_rate)
            tf.summary.scalar("images_per_second", images_per_second)


def _agreed_stop(strategy, task, termination) -> bool:
    """Whether to stop now: a SIGTERM seen by any worker stops all at the same step.

    Every worker calls this at the same points, so the collective lines up. The
    handler's flag is only read here, never overwritten: a signal arriving during the
    all-reduce is seen at the next call.
    """
    if task.is_multi_worker:
        return cluster.any_worker(strategy, termination.requested)
    return termination.requested


def _validate(config, strategy, datasets: Datasets, eval_step, writers, model,
              step: int) -> dict:
    results = steps.evaluate(eval_step, datasets.validation(), config.eval_steps,
                             strategy=strategy)
    summaries.write_epoch_summaries(writers, step, results, model, config.summary_images)
    return results


def _end_of_epoch(state: _State, config, model_dir: str, strategy, datasets: Datasets,
                  eval_step, writers, history: list, epoch: int, step: int, task) -> dict:
    """Validates, updates the schedule, logs and saves after a complete epoch."""
    results = _validate(config, strategy, datasets, eval_step, writers, state.model, step)
    results["at_chance"] = diagnostics.at_chance(results["loss"], config.num_classes)
    if results["at_chance"] and config.lr_schedule == "plateau":
        _warn(f"epoch {epoch + 1}: the validation loss {results['loss']:.4f} is still at "
              f"chance (ln {config.num_classes} = "
              f"{diagnostics.chance_loss(config.num_classes):.4f}); the plateau schedule "
              "does not count this epoch, so it keeps the learning rate")
    reduced = state.schedule.update(results["top1_error"], at_chance=results["at_chance"])
    state.epoch.assign(epoch + 1)
    results.update(epoch=epoch + 1, step=step,
                   learning_rate=float(state.optimizer.learning_rate.numpy()),
                   reduced_learning_rate=bool(reduced))
    history.append(results)
    logging.info("epoch %d step %d: top-1 error %.4f, top-5 error %.4f, loss %.4f%s",
                 epoch + 1, step, results["top1_error"], results["top5_error"],
                 results["loss"], " (learning rate reduced)" if reduced else "")
    _save(state, strategy, step)
    if task.is_chief:
        atomic.write_json(os.path.join(model_dir, run_dir.HISTORY_FILE), history)
    return results


def _save(state: _State, strategy, step: int) -> str:
    """Saves a checkpoint of `step`, never one with non-finite weights or optimizer slots.

    Raises:
      NonFiniteLossError: a weight or slot is NaN or Inf (nothing is written, so the
        latest checkpoint stays the last good one).
    """
    if not checkpoints.all_finite(state.model.variables + state.optimizer.variables):
        raise NonFiniteLossError(
                f"weights or optimizer slots are NaN or Inf at step {step} (the loss can stay "
                "finite for a step or two after the weights overflow): not saving them; "
                f"{_last_good_text(state.manager.latest_checkpoint)}. Rerun with a lower "
                "--learning_rate (allowed on resume, recorded in config_history.json), or "
                "check the data and --precision.")
    if state.iterator_checkpoint is not None:
        state.iterator_checkpoint.save(step)
        # Barrier: every worker's input position is on disk before the chief's
        # checkpoint names this step as the latest.
        cluster.any_worker(strategy, True)
    path = state.manager.save(checkpoint_number=step)
    state.last_saved_step = step
    logging.info("Saved checkpoint %s", path)
    return path


def _read_history(model_dir: str, restored_epoch: int) -> list:
    """The per-epoch results so far, without epochs after the restored checkpoint."""
    path = os.path.join(model_dir, run_dir.HISTORY_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        history = json.load(f)
    # A run killed after writing an epoch but before its checkpoint: drop that epoch.
    return [entry for entry in history if entry["epoch"] <= restored_epoch]
