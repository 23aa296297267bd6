"""Finding the records the input pipeline could not read, without a per-image cost.

A bad record (an image that cannot be decoded, a label out of range) makes its chunk's
decoding fail; the chunk is redone one record at a time and `ignore_errors()` drops the
bad record (`alexnet_tf.data.chunk_decode`). What was dropped is found afterwards, once per
BATCH: every record carries its position in the stream, so dropped records are the gaps
in the positions. To name a dropped record (its shard and its index in the shard) after
it is gone, every record also carries the identities of the CHUNK of records it was
read with (`attach_chunk_identities`, one vectorised call per chunk): any survivor of
the chunk can name the others.

  records (position, record, shard id, index)
    -> batch(chunk) -> attach_chunk_identities
    -> per chunk: decode ... (on failure: per record, ignore_errors())
    -> rebatch -> scan(BatchChecker): error naming the first dropped record, or (when
       skipping) print every dropped record and count them

A finite stream ends with a sentinel record (shard id -1) that always decodes, so a gap
at the very end is seen too; `drop_sentinel` removes it from the last batch. Only if a
whole chunk fails are its records unnamed: the message then gives how many.
"""

import re
import sys
from typing import Optional, Sequence

import tensorflow as tf

from alexnet_tf import errors

POSITION_KEY = "position"  # int64: position in the stream (all epochs)
SHARD_KEY = "shard"  # int64: index of the record's file; -1 for the sentinel
CHUNK_START_KEY = "chunk_start"  # int64: position of the first record of its chunk
CHUNK_SHARDS_KEY = "chunk_shards"  # int64 (chunk,): shard ids of the chunk (-1 padding)
CHUNK_INDICES_KEY = "chunk_indices"  # int64 (chunk,): indices in shard of the chunk
KEYS = (POSITION_KEY, SHARD_KEY, CHUNK_START_KEY, CHUNK_SHARDS_KEY, CHUNK_INDICES_KEY)
_UNKNOWN_SHARD = "(not known: a whole chunk failed)"
# BatchChecker's error, read back by `named`.
_GRAPH_PATTERN = re.compile(r"bad record: shard <(.+?)>, record index (-?\d+) in that shard: "
                            r"the image (.+?) \(pass")


class BadRecordError(errors.InvalidInputError):
    """A record's image cannot be decoded, or its label is out of range."""


def named(error: tf.errors.OpError) -> Optional[BadRecordError]:
    """The one-line BadRecordError for BatchChecker's error, or None if it is not one."""
    match = _GRAPH_PATTERN.search(error.message or "")
    if not match:
        return None
    shard, index, reason = match.groups()
    where = (f"{shard}: record {index}" if int(index) >= 0 else
             "a whole chunk of records (shard not known)")
    return BadRecordError(f"{where}: bad record: the image {reason}: pass "
                          "--skip_bad_records to skip and count bad records and damaged shards")


def attach_chunk_identities(positions, records, shards, indices, *, chunk_size: int) -> dict:
    """One chunk (n <= chunk_size records) -> per-record dicts carrying the chunk's identities.

    Args:
      positions: int64 (n,), consecutive positions in the stream.
      records: (n,) serialized records.
      shards, indices: int64 (n,), each record's file id and index in that file.

    Returns:
      dict of (n, ...) tensors: "record", POSITION_KEY, SHARD_KEY, CHUNK_START_KEY,
      CHUNK_SHARDS_KEY (n, chunk_size), CHUNK_INDICES_KEY (n, chunk_size).
    """
    n = tf.shape(positions)[0]
    padding = [[0, chunk_size - n]]
    chunk_shards = tf.pad(shards, padding, constant_values=-1)
    chunk_indices = tf.pad(indices, padding, constant_values=-1)
    return {"record": records, POSITION_KEY: positions, SHARD_KEY: shards,
            CHUNK_START_KEY: tf.fill([n], positions[0]),
            CHUNK_SHARDS_KEY: tf.tile(chunk_shards[tf.newaxis], [n, 1]),
            CHUNK_INDICES_KEY: tf.tile(chunk_indices[tf.newaxis], [n, 1])}


class BatchChecker:
    """The scan function finding dropped records between and inside batches.

    State: (last position seen, its chunk start, its chunk's shard ids and indices,
    records skipped so far). Each batch is checked in a few vectorised ops; only when
    something was dropped are the dropped records looked up and reported.
    """

    def __init__(self, files: Sequence[str], *, chunk_size: int, skip: bool, reason: str,
                 counter: Optional[tf.Variable] = None):
        self.files = tf.constant(list(files) or [""])
        self.chunk_size, self.skip, self.reason, self.counter = chunk_size, skip, reason, counter

    def initial_state(self):
        empty = tf.fill([self.chunk_size], tf.constant(-1, tf.int64))
        return (tf.constant(-1, tf.int64), tf.constant(0, tf.int64), empty, empty,
                tf.constant(0, tf.int64))

    def __call__(self, state, batch: dict):
        last, last_start, last_shards, last_indices, total = state
        positions = batch[POSITION_KEY]  # (b,)
        previous = tf.concat([[last], positions[:-1]], 0)
        skipped = tf.reduce_sum(positions - previous - 1)
        if self.skip:
            checked = tf.cond(skipped > 0, lambda: self._report(state, batch, skipped),
                              lambda: tf.constant(True))
        else:
            checked = tf.cond(skipped > 0, lambda: self._raise(state, batch),
                              lambda: tf.constant(True))
        total += skipped
        updates = [checked]
        if self.counter is not None:
            updates.append(self.counter.assign(total))
        with tf.control_dependencies(updates):
            total = tf.identity(total)
        new_state = (positions[-1], batch[CHUNK_START_KEY][-1], batch[CHUNK_SHARDS_KEY][-1],
                     batch[CHUNK_INDICES_KEY][-1], total)
        return new_state, {key: value for key, value in batch.items() if key not in KEYS[2:]}

    def _dropped(self, state, batch):
        """(positions, shard names, indices) of the dropped records that can be named."""
        last, last_start, last_shards, last_indices, _ = state
        positions = batch[POSITION_KEY]
        starts = tf.concat([[last_start], batch[CHUNK_START_KEY]], 0)  # (b + 1,)
        shards = tf.concat([last_shards[tf.newaxis], batch[CHUNK_SHARDS_KEY]], 0)
        indices = tf.concat([last_indices[tf.newaxis], batch[CHUNK_INDICES_KEY]], 0)
        offsets = tf.range(self.chunk_size, dtype=tf.int64)
        candidates = tf.reshape(starts[:, tf.newaxis] + offsets, [-1])  # positions of the chunks
        shards, indices = tf.reshape(shards, [-1]), tf.reshape(indices, [-1])
        # Between the last position seen and this batch's last, not among the survivors.
        where = tf.searchsorted(positions, candidates)
        survived = tf.gather(positions, tf.minimum(where, tf.size(positions) - 1)) == candidates
        keep = (candidates > last) & (candidates < positions[-1]) & ~survived & (shards >= 0)
        candidates = tf.boolean_mask(candidates, keep)
        shards, indices = tf.boolean_mask(shards, keep), tf.boolean_mask(indices, keep)
        # Every record of a chunk carries the same identities: keep one copy of each.
        dropped, which = tf.unique(candidates)
        first = tf.math.unsorted_segment_min(tf.range(tf.size(candidates)), which,
                                             tf.size(dropped))
        return dropped, tf.gather(self.files, tf.gather(shards, first)), tf.gather(indices, first)

    def _raise(self, state, batch):
        positions, names, indices = self._dropped(state, batch)
        found = tf.size(positions) > 0
        name = tf.cond(found, lambda: names[0], lambda: tf.constant(_UNKNOWN_SHARD))
        index = tf.cond(found, lambda: indices[0], lambda: tf.constant(-1, tf.int64))
        message = tf.strings.join([
                "bad record: shard <", name, ">, record index ", tf.strings.as_string(index),
                f" in that shard: the image {self.reason} (pass skip_bad_records=True to "
                "skip and count such records)"])
        with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
            return tf.constant(False)

    def _report(self, state, batch, skipped):
        positions, names, indices = self._dropped(state, batch)
        unnamed = skipped - tf.size(positions, out_type=tf.int64)
        tf.print("alexnet_tf.data.pipeline: skipping bad record(s) (", self.reason,
                 "): shard", names, "record index in shard", indices,
                 "; not named (whole chunks failed):", unnamed, output_stream=sys.stderr)
        return tf.constant(True)


def drop_sentinel(batch: dict, key: str = SHARD_KEY) -> dict:
    """Removes the end-of-stream sentinel (shard id -1) from a batch, when it holds it."""
    keep = batch[key] >= 0
    return tf.cond(tf.reduce_all(keep), lambda: batch,
                   lambda: {name: tf.boolean_mask(value, keep) for name, value in batch.items()})
