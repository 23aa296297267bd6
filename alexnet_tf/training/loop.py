"""train_and_evaluate(config, model_dir): the custom training loop.

One loop serves one device, the paper's two towers and MirroredStrategy: each step takes
one GLOBAL batch from a plain tf.data iterator (whose position is checkpointed), every
replica takes its slice (`distribute.replica_slice`), computes the softmax cross-entropy
of its float32 logits averaged over the global batch (`tf.nn.compute_average_loss`), and
the paper's SGD (`optimizer.PaperSGD`, weight decay inside the momentum) applies the
all-reduced gradients. Keras' `fit` is not used: it cannot run under
MultiWorkerMirroredStrategy and its BackupAndRestore replays data after a restore.

Each epoch ends with top-1/top-5 error on the validation set, the learning-rate schedule's
update and a checkpoint; checkpoints are also saved every `checkpoint_every_steps`
steps and on SIGTERM. A run restarted on the same model_dir resumes from the latest
checkpoint and, with the same seed, ends with the same weights as an uninterrupted run.
"""

import dataclasses
import json
import os
import shutil
from typing import Optional

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.training import checkpoints as checkpointing
from alexnet_tf.distributed import cluster
from alexnet_tf.training import config as config_lib
from alexnet_tf.distributed import strategy as distribute
from alexnet_tf.training import summaries as metrics
from alexnet_tf import run_dir as model_dir_lib
from alexnet_tf.training import optimizer as optimizer_lib
from alexnet_tf.data import schema
from alexnet_tf.training.steps import evaluate, make_eval_step, make_train_step
from alexnet_tf.training.datasets import Datasets, make_datasets  # noqa: F401 (re-exported)

HISTORY_FILE = "train_history.json"


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or Inf."""


def _build_model(config: config_lib.TrainConfig):
    from alexnet_tf.nn import models  # Local import: the network is only needed here.
    spec = dict(config.model_spec())
    if config.tower_devices:
        spec["tower_devices"] = tuple(config.tower_devices)
    return models.build_model(**spec)


def _make_optimizer(config: config_lib.TrainConfig):
    if config.optimizer == "adam":
        # Not the paper: see flags/demo.cfg for why the CPU demo uses it.
        optimizer = keras.optimizers.Adam(learning_rate=config.learning_rate)
    else:
        optimizer = optimizer_lib.PaperSGD(learning_rate=config.learning_rate,
                                           momentum=config.momentum,
                                           weight_decay=config.weight_decay)
    if config.precision == "mixed_float16":
        # Dynamic loss scaling keeps small float16 gradients from flushing to zero.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def _prepare_model_dir(config, model_dir: str, datasets: Datasets, chief: bool):
    """Resolves num_classes, checks a resumed run's settings, writes config and labels."""
    if config.num_classes == 0:
        config = dataclasses.replace(config, num_classes=datasets.num_classes)
    elif config.num_classes != datasets.num_classes:
        raise ValueError(f"num_classes={config.num_classes} but the data has "
                         f"{datasets.num_classes} classes")
    saved = config_lib.load_saved(model_dir)
    if saved is not None:
        config_lib.check_compatible(saved, config)
    if chief:
        config_lib.save(config, model_dir)
        if datasets.labels_file and os.path.exists(datasets.labels_file):
            target = os.path.join(model_dir, schema.LABELS_FILE)
            shutil.copyfile(datasets.labels_file, target + ".tmp")
            os.replace(target + ".tmp", target)
        elif datasets.labels:
            target = os.path.join(model_dir, schema.LABELS_FILE)
            with open(target + ".tmp", "w") as f:
                json.dump(datasets.labels, f, indent=1)
            os.replace(target + ".tmp", target)
    return config


class _PrecisionPolicy:
    """Sets Keras' global dtype policy for the run and restores the previous one."""

    _POLICIES = {"fp32": "float32", "mixed_float16": "mixed_float16",
                 "mixed_bfloat16": "mixed_bfloat16"}

    def __init__(self, precision: str):
        self._policy = self._POLICIES[precision]
        self._previous = None

    def __enter__(self):
        self._previous = keras.mixed_precision.dtype_policy()
        keras.mixed_precision.set_dtype_policy(self._policy)

    def __exit__(self, *exc):
        keras.mixed_precision.set_dtype_policy(self._previous)
        return False


class _Run:
    """The state of one training run: strategy, model, optimizer, data, checkpoints."""

    def __init__(self, config, model_dir: str, strategy, datasets: Datasets, chief: bool):
        self.config, self.model_dir, self.strategy = config, model_dir, strategy
        self.datasets, self.chief = datasets, chief
        keras.utils.set_random_seed(config.seed)  # Initialisation and dropout seeds.
        num_workers = distribute.num_workers(strategy)
        self.num_local_replicas = strategy.num_replicas_in_sync // num_workers
        if config.batch_size % strategy.num_replicas_in_sync:
            raise ValueError(f"batch_size={config.batch_size} must divide by the "
                             f"{strategy.num_replicas_in_sync} replicas")
        with strategy.scope():
            self.model = _build_model(config)
            self.optimizer = _make_optimizer(config)
        # Plain (not mirrored) counters: read on the host every step.
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
        self.schedule = optimizer_lib.make_schedule(
                config.lr_schedule, initial_learning_rate=optimizer_lib.scaled_learning_rate(
                        config.learning_rate, config.batch_size, config.lr_base_batch_size,
                        config.lr_scaling),
                factor=config.lr_factor, patience=config.lr_patience,
                max_reductions=config.lr_max_reductions, min_delta=config.lr_min_delta,
                boundaries=config.lr_boundaries)
        self.iterator = iter(datasets.train)
        self.task = cluster.task_of_strategy(strategy)
        # Several workers: each saves its own input position (WorkerIteratorCheckpoint);
        # an iterator over the tf.data service cannot be saved at all.
        own_iterators = self.task.is_multi_worker and not config.data_service
        shared_iterator = None if own_iterators or config.data_service else self.iterator
        self.checkpoint = checkpointing.make_checkpoint(
                model=self.model, optimizer=self.optimizer, step=self.step, epoch=self.epoch,
                lr_schedule=self.schedule, iterator=shared_iterator)
        # Every worker joins each save (a collective); only the chief's copy is kept.
        self.checkpoint_dir = model_dir_lib.checkpoint_dir(model_dir)
        self.write_dir = cluster.write_dir(self.checkpoint_dir, self.task)
        self.manager = checkpointing.make_manager(
                self.checkpoint, self.write_dir, config.keep_checkpoints if chief else 1)
        self.iterator_checkpoint = (cluster.WorkerIteratorCheckpoint(
                self.iterator, self.checkpoint_dir, self.task, config.keep_checkpoints + 1)
                if own_iterators else None)
        self.last_saved_step = None
        self._restore_or_initialize()
        self.train_step = make_train_step(self.model, self.optimizer, strategy, config,
                                           self.num_local_replicas, datasets.train_augment)
        self.eval_step = make_eval_step(self.model, strategy, self.num_local_replicas)
        self.writers = metrics.summary_writers(model_dir, chief)
        self.history = self._load_history()

    def _restore_or_initialize(self):
        config = self.config
        fresh = tf.train.latest_checkpoint(self.checkpoint_dir) is None
        if fresh and config.init_checkpoint:
            checkpointing.initialize_from(self.model, config.init_checkpoint,
                                          model_dir_lib.build_model)
        checkpointing.freeze_all_but(self.model, config.trainable_layers)
        with self.strategy.scope():
            self.optimizer.build(self.model.trainable_variables)
        # Every worker restores the chief's checkpoint (model_dir must be shared).
        latest = tf.train.latest_checkpoint(self.checkpoint_dir)
        if latest is not None:
            checkpointing.restore(self.checkpoint, latest)
            logging.info("Resumed from %s", latest)
            self.last_saved_step = int(self.step.numpy())
            if self.iterator_checkpoint is not None:
                path = self.iterator_checkpoint.restore(self.last_saved_step)
                logging.info("Restored this worker's input position from %s", path)

    def _load_history(self) -> list:
        path = os.path.join(self.model_dir, HISTORY_FILE)
        if not os.path.exists(path):
            return []
        with open(path) as f:
            history = json.load(f)
        # Drop epochs after the restored checkpoint (run killed after writing them).
        return [entry for entry in history if entry["epoch"] <= int(self.epoch.numpy())]

    def save(self, step: int) -> str:
        if self.iterator_checkpoint is not None:
            self.iterator_checkpoint.save(step)
            # Barrier: every worker's input position is on disk before the chief's
            # checkpoint names this step as the latest.
            cluster.any_worker(self.strategy, True)
        path = self.manager.save(checkpoint_number=step)
        self.last_saved_step = step
        logging.info("Saved checkpoint %s", path)
        return path

    def _write_history(self):
        if not self.chief:
            return
        path = os.path.join(self.model_dir, HISTORY_FILE)
        with open(path + ".tmp", "w") as f:
            json.dump(self.history, f, indent=2)
        os.replace(path + ".tmp", path)

    def _check_finite(self, loss: float, step: int):
        if not np.isfinite(loss):
            raise NonFiniteLossError(
                    f"training loss is {loss} at step {step}: stopping without saving this "
                    f"state; the last good checkpoint is {self.manager.latest_checkpoint}. "
                    "Lower --learning_rate, or check the data and --precision.")

    def _end_of_epoch(self, epoch: int, step: int) -> dict:
        """Validates, updates the schedule, logs and saves after a complete epoch."""
        results = self.validate(step)
        reduced = self.schedule.update(results["top1_error"])
        self.epoch.assign(epoch + 1)
        results.update(epoch=epoch + 1, step=step,
                       learning_rate=float(self.optimizer.learning_rate.numpy()),
                       reduced_learning_rate=bool(reduced))
        self.history.append(results)
        logging.info("epoch %d step %d: top-1 error %.4f, top-5 error %.4f, loss %.4f%s",
                     epoch + 1, step, results["top1_error"], results["top5_error"],
                     results["loss"], " (learning rate reduced)" if reduced else "")
        self.save(step)
        self._write_history()
        return results

    def validate(self, step: int) -> dict:
        results = evaluate(self.eval_step, self.datasets.validation(), self.config.eval_steps,
                           strategy=self.strategy)
        metrics.write_epoch_summaries(self.writers, step, results, self.model,
                                      self.config.summary_images)
        return results

    def _train_epoch(self, epoch: int, step: int, end_step: int, progress, termination) -> int:
        """Runs steps up to `end_step` (or a SIGTERM); returns the new global step."""
        config = self.config
        while step < end_step:
            if step <= self.warmup_steps:
                self.optimizer.learning_rate.assign(
                        self.schedule.learning_rate(epoch) * optimizer_lib.warmup_multiplier(
                                step, self.warmup_steps, self.warmup_start))
            loss = float(self.train_step(self.iterator))
            step += 1
            self._check_finite(loss, step)
            self.step.assign(step)
            learning_rate = float(self.optimizer.learning_rate.numpy())
            images_per_second = progress.update(step, loss, learning_rate)
            if step % config.log_every_steps == 0:
                with self.writers["train"].as_default(step=step):
                    tf.summary.scalar("loss", loss)
                    tf.summary.scalar("learning_rate", learning_rate)
                    tf.summary.scalar("images_per_second", images_per_second)
            if self._agreed_stop(termination):
                return step
            if step % config.checkpoint_every_steps == 0 and step < end_step:
                self.save(step)
        return step

    def _agreed_stop(self, termination) -> bool:
        """Whether to stop now: a SIGTERM seen by any worker stops all at the same step.

        Every worker calls this at the same points (after each step, after each epoch),
        so the collective lines up. The handler's flag is only read here, never
        overwritten: a signal arriving during the all-reduce is seen at the next call.
        """
        if self.task.is_multi_worker:
            return cluster.any_worker(self.strategy, termination.requested)
        return termination.requested

    def _set_warmup(self, steps_per_epoch: int) -> None:
        """Gradual warm-up (Goyal et al.): from the base rate up to the scaled one."""
        config = self.config
        self.warmup_steps = int(round(config.warmup_epochs * steps_per_epoch))
        peak = self.schedule.learning_rate(0)
        self.warmup_start = config.learning_rate / peak if peak > config.learning_rate else 0.0

    def train(self, termination) -> dict:
        """The loop over epochs; returns the last validation results and the history."""
        config = self.config
        steps_per_epoch = config.steps_per_epoch or max(
                1, self.datasets.num_train_examples // config.batch_size)
        total_steps = config.num_epochs * steps_per_epoch
        if config.max_steps:
            total_steps = min(total_steps, config.max_steps)
        self._set_warmup(steps_per_epoch)
        step = int(self.step.numpy())
        progress = metrics.Progress(self.chief and config.progress_bar, config.batch_size)
        results = self.history[-1] if self.history else {}
        try:
            while step < total_steps:
                epoch = step // steps_per_epoch
                self.optimizer.learning_rate.assign(self.schedule.learning_rate(epoch))
                epoch_end = (epoch + 1) * steps_per_epoch
                progress.start_epoch(epoch, config.num_epochs, step - epoch * steps_per_epoch,
                                     steps_per_epoch)
                step = self._train_epoch(epoch, step, min(epoch_end, total_steps), progress,
                                         termination)
                progress.close()
                if step == epoch_end:  # Also before a SIGTERM exit: resume starts clean.
                    results = self._end_of_epoch(epoch, step)
                # Agreed again: a SIGTERM that arrived during validation must not stop one
                # worker while the others go on into the next epoch's all-reduce.
                if self._agreed_stop(termination):
                    if self.last_saved_step != step:
                        self.save(step)
                    return dict(results, step=step, preempted=True, history=self.history)
        finally:
            progress.close()
        if not results or results.get("step") != step:
            # Stopped mid-epoch (max_steps): validate and save the final state too.
            results = dict(self.validate(step), step=step, epoch=int(self.epoch.numpy()))
            if self.last_saved_step != step:
                self.save(step)
        return dict(results, preempted=False, history=self.history)


def train_and_evaluate(config: config_lib.TrainConfig, model_dir: str,
                       datasets: Optional[Datasets] = None) -> dict:
    """Trains `config`'s network, validating each epoch; resumes from model_dir if it can.

    Args:
      config: the run configuration.
      model_dir: where config.json, labels.json, checkpoints/ and logs/ go.
      datasets: the data to use instead of `config`'s (tests, custom data).

    Returns:
      dict: the last validation results (top1_error, top5_error, loss, num_examples),
      step, epoch, preempted (True when stopped by SIGTERM) and history (per epoch).

    Raises:
      NonFiniteLossError: the loss became NaN/Inf (the last good checkpoint is kept).
      ValueError: bad settings, or settings incompatible with the run in model_dir.
    """
    strategy = distribute.create_strategy(config.strategy, config.devices, config.communication)
    distribute.check_tower_devices(strategy, config.tower_devices)
    chief = distribute.is_chief(strategy)
    if datasets is None:
        # tf.data's seeded shuffles also depend on TF's global seed: fix it first, so the
        # data order is a function of --seed alone, whatever ran earlier in this process.
        keras.utils.set_random_seed(config.seed)
        datasets = make_datasets(config, strategy, model_dir)
    config = _prepare_model_dir(config, model_dir, datasets, chief)
    with _PrecisionPolicy(config.precision), checkpointing.TerminationFlag() as termination:
        run = _Run(config, model_dir, strategy, datasets, chief)
        try:
            return run.train(termination)
        finally:
            cluster.discard_write_dir(run.write_dir, run.checkpoint_dir)
