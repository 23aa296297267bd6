"""A run's checkpoint files: which exist, which read whole, which one to use.

A checkpoint `ckpt-<step>` is a `.index` file and its `.data-*` shards; the directory's
small `checkpoint` state file (tf.train.CheckpointManager's bookkeeping) names the latest
and the ones the manager keeps. A disk fault, a copy cut short or a hand edit can damage
any of them, so no command trusts the state file or a checkpoint's name alone:

  on_disk(directory)        every checkpoint whose .index file exists, oldest first
  problem(prefix)           None when every tensor reads and passes its checksum, else
                            what is wrong (one line)
  newest_intact(directory)  the newest checkpoint that reads whole, and the newer ones
                            that do not
  set_aside(prefix)         renames a damaged checkpoint's files to corrupt-ckpt-<step>.*
                            (or, for weights that gave a non-finite loss,
                            diverged-ckpt-<step>.*; nothing is deleted)
  read_state / write_state  the state file, which the trainer rewrites from the files
                            on disk when it is unreadable or names a damaged checkpoint

Checking reads the whole checkpoint once (about as long as restoring it).
"""

import dataclasses
import os
import re
from typing import List, Optional, Sequence, Tuple

from google.protobuf import text_format
import tensorflow as tf

from alexnet_tf import atomic
from alexnet_tf import errors

CHECKPOINT_NAME = "ckpt"  # Checkpoints are <directory>/ckpt-<step>.
STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's state file.
CORRUPT_PREFIX = "corrupt-"  # What a damaged file's name gets in front when set aside.
DIVERGED_PREFIX = "diverged-"  # The same for a checkpoint whose weights gave a NaN/Inf loss.
_INDEX = re.compile(rf"^{CHECKPOINT_NAME}-(\d+)\.index$")


@dataclasses.dataclass(frozen=True)
class Damaged:
    """A checkpoint that does not read whole, and why."""
    prefix: str
    problem: str


def step_of(prefix: str) -> int:
    """The step in a prefix .../ckpt-<step>."""
    return int(os.path.basename(prefix).rsplit("-", 1)[1])


def on_disk(directory: str) -> List[str]:
    """The prefixes of every ckpt-<step>.index file in `directory`, by step, oldest first."""
    if not tf.io.gfile.isdir(directory):
        return []
    steps = [int(match.group(1)) for match in map(_INDEX.match, tf.io.gfile.listdir(directory))
             if match]
    return [os.path.join(directory, f"{CHECKPOINT_NAME}-{step}") for step in sorted(steps)]


def problem(prefix: str) -> Optional[str]:
    """What is wrong with checkpoint `prefix`, or None when every tensor in it reads.

    Each tensor is read as a restore reads it, so a truncated or missing file, a bad
    checksum or an unreadable .index is found; nothing is kept in memory.
    """
    if not tf.io.gfile.exists(prefix + ".index"):
        return f"{prefix}.index does not exist"
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as error:
        return f"its .index file does not read ({_message(error)})"
    for name, dtype in sorted(reader.get_variable_to_dtype_map().items()):
        try:
            tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=[name], shape_and_slices=[""],
                                 dtypes=[dtype])
        except (tf.errors.OpError, IndexError, ValueError) as error:
            return f"its data does not read at {name} ({_message(error)})"
    return None


def _message(error: Exception) -> str:
    """An error's message without TensorFlow's op and function decorations, on one line."""
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*|\s*\[Op:\w+\]", "", text)
    return errors.one_line(text)


def newest_intact(directory: str) -> Tuple[Optional[str], List[Damaged]]:
    """The newest checkpoint in `directory` that reads whole, and the newer damaged ones.

    Returns:
      (prefix, damaged): prefix is None when the directory holds no checkpoint; damaged
      lists, newest first, each checkpoint newer than `prefix` that does not read.

    Raises:
      errors.CorruptCheckpointError: checkpoints are there but none of them reads.
    """
    damaged = []
    candidates = on_disk(directory)
    for prefix in reversed(candidates):
        found = problem(prefix)
        if found is None:
            return prefix, damaged
        damaged.append(Damaged(prefix, found))
    if damaged:
        raise errors.CorruptCheckpointError(
                f"no checkpoint in {directory} reads whole: " + "; ".join(
                        f"{os.path.basename(d.prefix)}: {d.problem}" for d in damaged))
    return None, damaged


def set_aside(prefix: str, reason: str = CORRUPT_PREFIX) -> str:
    """Renames the files of checkpoint `prefix` to <reason>ckpt-<step>[-<n>].*.

    Args:
      prefix: the checkpoint, .../ckpt-<step>.
      reason: CORRUPT_PREFIX (its files do not read) or DIVERGED_PREFIX (its weights
        gave a non-finite loss).

    Returns:
      The new prefix (a free name: an earlier copy set aside is never overwritten).
    """
    directory, name = os.path.split(prefix)
    target = os.path.join(directory, reason + name)
    number = 1
    while tf.io.gfile.glob(target + ".*"):
        number += 1
        target = os.path.join(directory, f"{reason}{name}-{number}")
    for path in tf.io.gfile.glob(prefix + ".index") + tf.io.gfile.glob(prefix + ".data-*"):
        tf.io.gfile.rename(path, target + path[len(prefix):])
    return target


def read_state(directory: str) -> Tuple[Optional[object], Optional[str]]:
    """The directory's CheckpointState, or why it cannot be read.

    Returns:
      (state, problem): state is None when the file is missing or unreadable; problem
      says what is wrong with a file that is there but does not parse.
    """
    path = os.path.join(directory, STATE_FILE)
    if not tf.io.gfile.exists(path):
        return None, None
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (tf.errors.OpError, ValueError) as error:  # UnicodeDecodeError is a ValueError.
        return None, _message(error)
    if state is None:
        return None, "not a checkpoint state file"
    return state, None


def write_state(directory: str, prefixes: Sequence[str], timestamps: Sequence[float],
                last_preserved_timestamp: float) -> None:
    """Writes the state file listing `prefixes` (oldest first; the last is the latest).

    The CheckpointManager manages (keeps at most max_to_keep of, deleting the oldest)
    only the checkpoints listed with a timestamp after `last_preserved_timestamp`.
    """
    names = [os.path.basename(prefix) for prefix in prefixes]
    state = tf.compat.v1.train.generate_checkpoint_state_proto(
            os.path.abspath(directory), names[-1], all_model_checkpoint_paths=names,
            all_model_checkpoint_timestamps=list(timestamps),
            last_preserved_timestamp=last_preserved_timestamp)
    atomic.write_text(os.path.join(directory, STATE_FILE), text_format.MessageToString(state))


def set_state_aside(directory: str) -> str:
    """Renames an unreadable state file to corrupt-checkpoint[-<n>]; returns the new path."""
    target = os.path.join(directory, CORRUPT_PREFIX + STATE_FILE)
    number = 1
    while tf.io.gfile.exists(target):
        number += 1
        target = os.path.join(directory, f"{CORRUPT_PREFIX}{STATE_FILE}-{number}")
    tf.io.gfile.rename(os.path.join(directory, STATE_FILE), target)
    return target


def modification_time(prefix: str) -> float:
    """When checkpoint `prefix` was written (its .index file's time), in seconds."""
    return tf.io.gfile.stat(prefix + ".index").mtime_nsec / 1e9
