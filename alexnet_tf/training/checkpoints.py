"""Checkpoints of a training run: what is saved, atomic saves, resume, SIGTERM, transfer.

A checkpoint holds everything that decides the rest of the run, so that a run killed at
any step and restarted continues exactly as if it had not stopped:

  model            the Keras model (the key evaluate/export restore, see run_dir.py)
  model_variables  every model variable, including the dropout layers' RNG states, which
                   Keras does not expose to tf.train.Checkpoint through `model`
  optimizer        momentum slots, iteration count, current learning rate
  step, epoch      global step and completed epochs (int64 variables)
  lr_schedule      the plateau schedule's best error / bad epochs / reductions
  iterator         the training tf.data iterator's position (a plain iterator of global
                   batches: tf.distribute's distributed iterators cannot be saved)

`tf.train.CheckpointManager.save` writes the data files first and rewrites the small
`checkpoint` index file last (itself via a temporary file and rename), so a process
killed during a save leaves the index naming the previous, complete checkpoint.

A resume starts from the newest checkpoint that reads whole (`resume_checkpoint`), found
from the files on disk: damaged newer ones are set aside as corrupt-ckpt-<step>.* and
the state file is rewritten, so the manager keeps counting only intact checkpoints.
"""

import os
import signal
import threading
from typing import Optional, Sequence

from absl import logging
import tensorflow as tf

from alexnet_tf import checkpoint_files
from alexnet_tf import errors
from alexnet_tf import run_dir
from alexnet_tf.nn import models


def make_checkpoint(*, model, optimizer, step, epoch, lr_schedule, iterator) -> tf.train.Checkpoint:
    """Returns the run's tf.train.Checkpoint (see the module docstring for its keys).

    `iterator` may be None: a multi-worker run saves each worker's iterator separately
    (cluster.WorkerIteratorCheckpoint), and a tf.data service iterator cannot be saved.
    """
    extra = {} if iterator is None else dict(iterator=iterator)
    return tf.train.Checkpoint(model=model, model_variables=list(model.variables),
                               optimizer=optimizer, step=step, epoch=epoch,
                               lr_schedule=lr_schedule, **extra)


def all_finite(variables) -> bool:
    """Whether every floating-point value in `variables` is finite.

    One reduction per variable and one over their results, read back once: far cheaper
    than writing the checkpoint it guards.
    """
    checks = [tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(variable)))
              for variable in variables if tf.as_dtype(variable.dtype).is_floating]
    return bool(tf.reduce_all(tf.stack(checks)).numpy()) if checks else True


def remove_stale_temporaries(directory: str) -> list:
    """Deletes what a killed save left in a checkpoint directory; returns the paths.

    TensorFlow writes a checkpoint's shards under `<prefix>_temp/` and moves them into
    place when the save completes, so such a directory at start-up belongs to a save that
    died (killed, disk full). Only the chief calls this, before it saves anything.
    """
    if not tf.io.gfile.isdir(directory):
        return []
    removed = []
    for name in sorted(tf.io.gfile.listdir(directory)):
        name = name.rstrip("/")
        if name.startswith(checkpoint_files.CHECKPOINT_NAME + "-") and name.endswith("_temp"):
            path = os.path.join(directory, name)
            tf.io.gfile.rmtree(path) if tf.io.gfile.isdir(path) else tf.io.gfile.remove(path)
            removed.append(path)
    return removed


def make_manager(checkpoint: tf.train.Checkpoint, directory: str,
                 keep_checkpoints: int) -> tf.train.CheckpointManager:
    """A CheckpointManager keeping the last `keep_checkpoints`, named by global step."""
    return tf.train.CheckpointManager(checkpoint, directory, max_to_keep=keep_checkpoints,
                                      checkpoint_name=checkpoint_files.CHECKPOINT_NAME)


def resume_checkpoint(directory: str, repair: bool) -> Optional[str]:
    """The checkpoint a rerun resumes from: the newest in `directory` that reads whole.

    Each newer, damaged checkpoint is reported in a warning. With `repair` (the chief,
    before its CheckpointManager reads the directory) they are renamed to
    corrupt-ckpt-<step>.*, so that no later step's save or cleanup trips on them and
    nothing is deleted, and the state file is rewritten to list the intact checkpoints
    (an unreadable one is kept as corrupt-checkpoint).

    Returns:
      The prefix, or None when the directory holds no checkpoint (a new run).

    Raises:
      errors.CorruptCheckpointError: there are checkpoints but none reads; nothing is
        moved, and the run does not start afresh over them.
    """
    state, state_problem = checkpoint_files.read_state(directory)
    state_path = os.path.join(directory, checkpoint_files.STATE_FILE)
    if state_problem:
        logging.warning("The checkpoint state file %s does not read (%s): using the "
                        "checkpoint files found beside it", state_path, state_problem)
    try:
        path, damaged = checkpoint_files.newest_intact(directory)
    except errors.CorruptCheckpointError as error:
        raise errors.CorruptCheckpointError(
                f"{error}. Not starting afresh over them: to train from scratch, use a new "
                "--model_dir (or move this one's checkpoints/ away)") from None
    for bad in damaged:
        moved = checkpoint_files.set_aside(bad.prefix) if repair else None
        logging.warning("Checkpoint %s is damaged: %s.%s", bad.prefix, bad.problem,
                        f" Moved its files to {moved}.*" if moved else "")
    if repair and state_problem:
        logging.warning("Moved the unreadable state file to %s",
                        checkpoint_files.set_state_aside(directory))
        state = None
    if repair and path is not None:
        _rewrite_state(directory, state, path)
    if path is not None and (damaged or state_problem):
        logging.warning("Resuming from %s, the newest checkpoint that reads whole", path)
    return path


def set_aside_diverged(prefix: str) -> Optional[str]:
    """Sets aside checkpoint `prefix`, whose weights gave a non-finite loss.

    Its weights are finite (saves refuse others) but too large: the next step's loss,
    computed from them before any update, was NaN or Inf, so resuming from it fails
    again whatever the learning rate. Its files become diverged-ckpt-<step>.* and the
    state file names the newest checkpoint left (or is removed when none is left).
    Only the chief calls this.

    Returns:
      The newest checkpoint left, whose weights gave a finite loss; None when none is.
    """
    directory = os.path.dirname(prefix)
    state, _ = checkpoint_files.read_state(directory)
    moved = checkpoint_files.set_aside(prefix, checkpoint_files.DIVERGED_PREFIX)
    logging.warning("Moved checkpoint %s, whose weights give a non-finite loss, to %s.*",
                    prefix, moved)
    remaining = checkpoint_files.on_disk(directory)
    if remaining:
        _rewrite_state(directory, state, remaining[-1])
        return remaining[-1]
    state_path = os.path.join(directory, checkpoint_files.STATE_FILE)
    if tf.io.gfile.exists(state_path):
        tf.io.gfile.remove(state_path)
    return None


def _rewrite_state(directory: str, state, latest: str) -> None:
    """Makes the state file name `latest` and list only checkpoints on disk, if it does not.

    Listed checkpoints keep their times. Without a readable state file, every checkpoint
    on disk up to `latest` is listed with its files' time, and so is `latest` if a save
    was killed before naming it: the manager then counts them among max_to_keep and
    deletes the oldest as usual.
    """
    name = os.path.basename
    on_disk = [prefix for prefix in checkpoint_files.on_disk(directory)
               if checkpoint_files.step_of(prefix) <= checkpoint_files.step_of(latest)]
    times = {}
    if state is not None:
        listed = [name(path) for path in state.all_model_checkpoint_paths]
        if (name(state.model_checkpoint_path) == name(latest)
                and set(listed) <= {name(prefix) for prefix in on_disk}):
            return  # As the manager left it.
        times = dict(zip(listed, state.all_model_checkpoint_timestamps))
        on_disk = [prefix for prefix in on_disk
                   if name(prefix) in listed or prefix == latest]
    timestamps = [times.get(name(prefix)) or checkpoint_files.modification_time(prefix)
                  for prefix in on_disk]
    preserved = min(timestamps) - 1.0
    if state is not None and state.last_preserved_timestamp < min(timestamps):
        preserved = state.last_preserved_timestamp
    checkpoint_files.write_state(directory, on_disk, timestamps, preserved)
    logging.info("Rewrote %s to list %s", os.path.join(directory, checkpoint_files.STATE_FILE),
                 [name(prefix) for prefix in on_disk])


def restore(checkpoint: tf.train.Checkpoint, path: str) -> None:
    """Restores `path` into `checkpoint`, with a clear error if the input position cannot be.

    Raises:
      RuntimeError: the saved iterator does not fit this input pipeline (its code, the
        data or a graph-changing setting such as --deterministic differ).
    """
    try:
        checkpoint.restore(path).assert_existing_objects_matched()
    except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as error:
        if "iterator" not in str(error).lower():
            raise
        raise RuntimeError(
                f"cannot restore the input pipeline's position from {path}: the pipeline "
                "differs from the one that saved it (changed code or data). Rerun with the "
                "code and data that wrote it, or keep only the weights: a new --model_dir "
                f"with --init_checkpoint={path}.") from error


def resolve_init_checkpoint(path: str) -> tuple:
    """Turns --init_checkpoint (a model_dir or a checkpoint prefix) into (prefix, model spec).

    A model_dir gives its newest checkpoint that reads whole; a prefix is used only if it
    reads whole.

    Raises:
      FileNotFoundError: no checkpoint or no config.json where expected.
      errors.CorruptCheckpointError: the prefix, or every checkpoint of the model_dir,
        does not read.
    """
    if os.path.isdir(path):
        source_dir, prefix = path, run_dir.latest_checkpoint(path)
    else:
        if not tf.io.gfile.exists(path + ".index"):
            raise errors.MissingInputError(f"--init_checkpoint={path!r} is neither a model_dir "
                                           "nor a checkpoint prefix (no .index file)")
        problem = checkpoint_files.problem(path)
        if problem:
            raise errors.CorruptCheckpointError(f"--init_checkpoint={path!r} is damaged: "
                                                f"{problem}")
        # A prefix model_dir/checkpoints/ckpt-N: its run's config is two levels up.
        source_dir, prefix = os.path.dirname(os.path.dirname(os.path.abspath(path))), path
    return prefix, run_dir.read_config(source_dir)["model"]


def check_same_layers(source_spec: dict, spec: dict, init_checkpoint: str) -> None:
    """Raises ValueError when the new model's conv1..fc7 cannot take the source's weights.

    Another variant or other widths share no layer shape with the source: nothing would
    be copied, and the run would silently start from scratch. The message gives the flags
    to pass (an import's model_flags.cfg holds them).
    """
    source, new = models.layer_settings(source_spec), models.layer_settings(spec)
    if source == new:
        return
    wanted = " ".join(f"--{key}={','.join(map(str, value))}" if isinstance(value, list)
                      else f"--{key if value else 'no' + key}" if isinstance(value, bool)
                      else f"--{key}={value}"
                      for key, value in source.items() if new.get(key) != value)
    raise ValueError(f"--init_checkpoint={init_checkpoint} holds {source}, this run builds "
                     f"{new}: no layer below fc8 could be copied. Pass {wanted} (for an "
                     f"imported model: --flagfile="
                     f"{os.path.join(init_checkpoint, run_dir.MODEL_FLAGS_FILE)})")


def check_same_lrn(source_spec: dict, spec: dict, init_checkpoint: str) -> None:
    """Raises ValueError when the new model's LRN would compute otherwise than the source's.

    LRN has no weights, so its settings (`models.lrn_settings`) change no shape: copied
    weights would run silently in another network. The message gives the flags to pass.
    """
    source, new = models.lrn_settings(source_spec), models.lrn_settings(spec)
    if not source or not new or source == new:
        return
    wanted = []
    for key, value in source.items():
        if new.get(key) != value:
            wanted.append(f"--{key if value else 'no' + key}" if isinstance(value, bool)
                          else f"--{key}={value:g}" if isinstance(value, float)
                          else f"--{key}={value}")
    raise errors.InvalidInputError(
            f"--init_checkpoint={init_checkpoint} was trained with LRN settings "
            f"{source}, this run has {new}: pass {' '.join(wanted)} (or the "
            "model_flags.cfg flagfile of an imported model)")


def initialize_from(model, init_checkpoint: str, build_model,
                    new_layers: Sequence[str] = ()) -> list:
    """Copies into `model` the weights of every same-named layer whose shapes match.

    The source network is rebuilt from its own config.json, restored, and copied layer by
    layer (so fc8 with another number of classes keeps its fresh initialisation).

    Args:
      model: the new keras.Model.
      init_checkpoint: a model_dir or a checkpoint prefix.
      build_model: spec dict -> keras.Model (models.build_model with the spec's kwargs).
      new_layers: layers that keep their fresh initialisation whatever their shapes (a
        new classifier for as many classes as the source's).

    Returns:
      Names of the layers copied.

    Raises:
      ValueError: a name in `new_layers` is not a layer of `model`.
    """
    unknown = sorted(set(new_layers) - {layer.name for layer in model.layers})
    if unknown:
        raise ValueError(f"new_layers: {unknown} are not layers of {model.name}; layers with "
                         f"weights: {[layer.name for layer in model.layers if layer.weights]}")
    prefix, spec = resolve_init_checkpoint(init_checkpoint)
    source = build_model(spec)
    tf.train.Checkpoint(model=source).restore(prefix).expect_partial() \
        .assert_existing_objects_matched()
    source_layers = {layer.name: layer for layer in source.layers}
    copied, skipped = [], []
    for layer in model.layers:
        other = source_layers.get(layer.name)
        if other is None or not layer.weights or layer.name in new_layers:
            continue
        new_shapes = [tuple(w.shape) for w in layer.weights]
        if new_shapes == [tuple(w.shape) for w in other.weights]:
            layer.set_weights(other.get_weights())
            copied.append(layer.name)
        else:
            skipped.append(layer.name)
    logging.info("Initialised %s from %s; re-initialised (shapes differ): %s; new: %s",
                 copied, prefix, skipped or "none", list(new_layers) or "none")
    return copied


def freeze_all_but(model, trainable_layers: Sequence[str]) -> None:
    """Makes only `trainable_layers` trainable (all layers when empty).

    Raises:
      ValueError: a name is not a layer of the model.
    """
    if not trainable_layers:
        return
    names = {layer.name for layer in model.layers}
    unknown = sorted(set(trainable_layers) - names)
    if unknown:
        raise errors.InvalidInputError(
                f"trainable_layers: {unknown} are not layers of {model.name}; "
                f"layers with weights: {[l.name for l in model.layers if l.weights]}")
    for layer in model.layers:
        layer.trainable = layer.name in trainable_layers


class TerminationFlag:
    """Sets `requested` on SIGTERM (preemption) so the loop can save and stop cleanly.

    Use as a context manager; it installs the handler only in the main thread and
    restores the previous handler on exit.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        del frame
        logging.warning("Received signal %d: saving a checkpoint and stopping.", signum)
        self.requested = True

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
        return False
