"""Damaged TFRecord shards: found while reading, named with the byte where they break.

A TFRecord file is a run of frames, each

  uint64 length | masked crc32c of the length (uint32) | data | masked crc32c of data (uint32)

(little-endian). TensorFlow's reader stops at the first frame it cannot read (the file
ends inside it, or a checksum fails) with an error that names neither the file nor, for
the checksum of the data, the frame's start. So the input pipeline reads each shard on
its own (`checked_records`), ignoring the reader's error, and adds up the frames it got:
at the end of the shard, fewer bytes than the file holds means the frame at that byte is
damaged. Then either the pipeline stops with an error naming the shard, the byte and the
record's index in the shard (turned into a one-line `DamagedShardError` by
`user_errors`), or, when skipping, it prints what it skipped and notes it in a
`SkippedData`, whose counts the trainer logs and writes to TensorBoard.

A damaged frame ends the shard: TensorFlow's reader cannot go past it. `inspect` reads the
frame from Python to say why it is damaged and how many whole frames follow it unread.
Checking a shard costs one scan step per `READ_AHEAD` records; no function runs per record.
"""

import contextlib
import dataclasses
import re
import struct
import sys
from typing import Iterator, List, Optional, Sequence

import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf.data import bad_records

HEADER_BYTES = 12  # uint64 length, uint32 masked crc32c of the length
FOOTER_BYTES = 4  # uint32 masked crc32c of the data
FRAME_BYTES = HEADER_BYTES + FOOTER_BYTES  # a frame's size beyond its data
READ_AHEAD = 32  # records read from a shard per scan step of its check
SKIP_HINT = ("pass --skip_bad_records to skip damaged shards and bad records and count "
             "them, or reconvert the data")
# The pipeline's in-graph error (`checked_records`), read back by `named`.
_GRAPH_PATTERN = re.compile(r"damaged TFRecord shard <(.+?)> at byte (\d+), record (\d+)")


class DamagedShardError(errors.InvalidInputError):
    """A shard's frame cannot be read (the file is truncated or its bytes changed)."""


def _crc32c_table() -> List[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):  # Castagnoli polynomial, bit-reflected.
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def masked_crc32c(data: bytes) -> int:
    """The checksum TFRecord frames store: crc32c, rotated right by 15 bits, plus a constant.

    Pure Python (about 10 MB/s): used on the one frame where reading stopped.
    """
    crc = 0xFFFFFFFF
    table = _CRC32C_TABLE
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class Damage:
    """Where and why a shard cannot be read past a frame.

    Attributes:
      path: the shard.
      offset: the byte where the damaged frame starts (all frames before it were read).
      record: the damaged record's index in the shard (0-based).
      reason: why the frame cannot be read, e.g. "the file ends inside it".
      unread_records: whole frames after the damaged one, lost with it; None when the
        damage hides where they start.
    """
    path: str
    offset: int
    record: int
    reason: str
    unread_records: Optional[int]

    def describe(self) -> str:
        """One line: the shard, the byte, the record and why."""
        lost = ("" if not self.unread_records else
                f"; {self.unread_records} whole record(s) after it cannot be read either")
        return (f"{self.path}: damaged TFRecord shard: record {self.record} (at byte "
                f"{self.offset}) {self.reason}{lost}")


def inspect(path: str, offset: int, record: int) -> Damage:
    """Reads the frame at byte `offset` of `path` and says why it cannot be read.

    Args:
      path: a TFRecord file.
      offset: where a reader stopped: the start of a frame.
      record: that frame's index in the file.
    """
    try:
        with tf.io.gfile.GFile(path, "rb") as f:
            size = f.size()
            f.seek(offset)
            header = f.read(HEADER_BYTES)
            reason, length = _check_header(header, offset, size)
            if reason is None:
                data = f.read(length)
                footer = f.read(FOOTER_BYTES)
                if struct.unpack("<I", footer)[0] != masked_crc32c(data):
                    reason = "is corrupted: its data does not match its checksum"
                else:
                    reason = f"was not read although it is whole ({size} bytes now)"
            unread = (_count_frames(f, offset + FRAME_BYTES + length, size)
                      if length is not None else None)
    except (OSError, tf.errors.OpError) as error:
        return Damage(path, offset, record, f"cannot be read ({errors.one_line(error)})", None)
    return Damage(path, offset, record, reason, unread)


def _check_header(header: bytes, offset: int, size: int):
    """(why the frame is damaged or None, its data length or None when unknown)."""
    if len(header) < HEADER_BYTES:
        if not header:
            return (f"is missing: the file ends there ({size} bytes; it was longer when "
                    "reading began)"), None
        return f"is truncated: the file ends inside its header ({size} bytes)", None
    length, length_crc = struct.unpack("<QI", header)
    if length_crc != masked_crc32c(header[:8]):
        return "is corrupted: its length does not match its checksum", None
    end = offset + FRAME_BYTES + length
    if end > size:
        return (f"is truncated: it needs {end} bytes, the file has {size}"), length
    return None, length


def _count_frames(f, offset: int, size: int) -> Optional[int]:
    """Whole frames from `offset` to the end, by their headers; None if a header is bad."""
    count = 0
    while offset < size:
        f.seek(offset)
        header = f.read(HEADER_BYTES)
        if len(header) < HEADER_BYTES:
            return count
        length, length_crc = struct.unpack("<QI", header)
        if length_crc != masked_crc32c(header[:8]):
            return None
        offset += FRAME_BYTES + length
        if offset > size:
            return count
        count += 1
    return count


class SkippedData:
    """What an input pipeline skipped with skip_bad_records: bad records and damaged shards.

    Give one to `pipeline.build_from_files` (one per split: validation's is rebuilt
    each epoch with the same files); it counts in TensorFlow variables as the data is
    read, and `bad_records` / `damaged` read them. Counts start at this process's start:
    a resumed run finds a damaged shard again when it next reads it.
    """

    def __init__(self):
        self.bad_records = tf.Variable(0, dtype=tf.int64, trainable=False,
                                       name="skipped_bad_records")
        self._files: Optional[List[str]] = None
        self._offsets = self._records = None
        self._inspected = {}

    def watch(self, files: Sequence[str]) -> None:
        """Makes the per-shard variables for `files` (once; the same files every time)."""
        files = list(files)
        if self._files is not None:
            if files != self._files:
                raise ValueError("a SkippedData counts for one list of files; use another "
                                 "for other files")
            return
        self._files = files
        # Per shard: where reading stopped (-1: not damaged) and that record's index.
        self._offsets = tf.Variable(tf.fill([len(files)], tf.constant(-1, tf.int64)),
                                    trainable=False, name="damaged_shard_offsets")
        self._records = tf.Variable(tf.fill([len(files)], tf.constant(-1, tf.int64)),
                                    trainable=False, name="damaged_shard_records")

    def note_damage(self, shard_id, offset, record):
        """(In the pipeline.) Notes that shard `shard_id` stopped at `offset`, `record`."""
        return tf.group(self._offsets.scatter_nd_update([[shard_id]], [offset]),
                        self._records.scatter_nd_update([[shard_id]], [record]))

    def num_bad_records(self) -> int:
        return int(self.bad_records.numpy())

    def damaged(self) -> List[Damage]:
        """The damaged shards met so far, each inspected once."""
        if self._files is None:
            return []
        found = []
        for shard_id, (offset, record) in enumerate(zip(self._offsets.numpy(),
                                                        self._records.numpy())):
            if offset < 0:
                continue
            key = (shard_id, int(offset))
            if key not in self._inspected:
                self._inspected[key] = inspect(self._files[shard_id], int(offset), int(record))
            found.append(self._inspected[key])
        return found


def checked_records(path: tf.Tensor, shard_id: tf.Tensor, num_bytes: tf.Tensor, *,
                    skip: bool, skipped: Optional[SkippedData] = None) -> tf.data.Dataset:
    """(record, shard id, index in shard) for each record of one shard, its end checked.

    The shard is read with the reader's errors ignored, READ_AHEAD records at a time,
    adding up the frames' bytes; after the last, fewer bytes than `num_bytes` means the
    next frame is damaged: an InvalidArgumentError naming the shard, byte and record
    (`user_errors` makes it a DamagedShardError), or with `skip` a line on stderr and a
    note in `skipped`. The records that were read come out either way, unchanged.

    Args:
      path: string scalar, the shard. shard_id: int64 scalar, its index in the pipeline's
        files. num_bytes: int64 scalar, its size when the pipeline was built.
    """
    reader = tf.data.TFRecordDataset(path).ignore_errors()
    records = tf.data.Dataset.zip(  # zip, not map: no call per record
            reader, tf.data.Dataset.from_tensors(shard_id).repeat(),
            tf.data.Dataset.range(2**62)).batch(READ_AHEAD)
    # The end of the shard: an empty batch, which unbatch() drops.
    end = tf.data.Dataset.from_tensors((tf.zeros([0], tf.string), tf.zeros([0], tf.int64),
                                        tf.zeros([0], tf.int64)))

    def damaged(offset, record):
        if skip:
            noted = [] if skipped is None else [skipped.note_damage(shard_id, offset, record)]
            with tf.control_dependencies(noted):
                printed = tf.print(tf.strings.join([
                        "alexnet_tf.data.pipeline: skipping the rest of damaged shard ", path,
                        " from byte ", tf.strings.as_string(offset), " (record ",
                        tf.strings.as_string(record), "): it cannot be read past there"]),
                        output_stream=sys.stderr)
            with tf.control_dependencies([printed]):
                return tf.constant(True)
        message = tf.strings.join([
                "damaged TFRecord shard <", path, "> at byte ", tf.strings.as_string(offset),
                ", record ", tf.strings.as_string(record)])
        with tf.control_dependencies([tf.debugging.Assert(False, [message])]):
            return tf.constant(False)

    def tally(state, batch):
        consumed, count = state  # bytes and records read so far
        data = batch[0]
        consumed += tf.reduce_sum(tf.cast(tf.strings.length(data), tf.int64) + FRAME_BYTES)
        size = tf.size(data, out_type=tf.int64)
        checked = tf.cond((size == 0) & (consumed < num_bytes),  # the end, and short
                          lambda: damaged(consumed, count), lambda: tf.constant(True))
        with tf.control_dependencies([checked]):
            batch = tf.nest.map_structure(tf.identity, batch)
        return (consumed, count + size), batch

    initial = (tf.constant(0, tf.int64), tf.constant(0, tf.int64))
    return records.concatenate(end).scan(initial, tally).unbatch()


def named(error: tf.errors.OpError) -> Optional[errors.InvalidInputError]:
    """The one-line user error for an input pipeline's error, or None if it is not one.

    A damaged shard (from `checked_records`) becomes a DamagedShardError describing the
    frame; a bad record (from `bad_records.BatchChecker`) a BadRecordError.
    """
    match = _GRAPH_PATTERN.search(error.message or "")
    if match:
        damage = inspect(match.group(1), int(match.group(2)), int(match.group(3)))
        return DamagedShardError(f"{damage.describe()}: {SKIP_HINT}")
    return bad_records.named(error)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turns the input pipeline's damaged-shard and bad-record errors into user errors.

    Raises:
      DamagedShardError, bad_records.BadRecordError: one line each, naming the shard.
    """
    try:
        yield
    except tf.errors.OpError as error:
        user_error = named(error)
        if user_error is None:
            raise
        raise user_error from None
