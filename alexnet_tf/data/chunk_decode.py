"""Records to batches of uint8 crops, a chunk of records per call (no per-image function).

A chunk of consecutive records of the stream is parsed in one op, its labels checked in
one, its augmentation drawn in one (`preprocessing.train_draws`: each record's draws
depend on its position only), and its JPEG crop windows decoded in a loop. The chunks
are then cut into batches (`rebatch`).

A chunk holding a bad record fails as a whole; it is then redone one record at a time
(the same function on chunks of one), so only the bad records are dropped by
`ignore_errors()` and the good ones come out exactly as they would have. The gaps are
found and named once per batch by `bad_records.BatchChecker`.
"""

import functools
from typing import Callable, Optional

import tensorflow as tf

from alexnet_tf.data import bad_records
from alexnet_tf.data import preprocessing

AUTOTUNE = tf.data.AUTOTUNE
LABEL_KEY = "label"
# Every record carries its chunk's identities (2 x 8 bytes per record of the chunk), so
# a dropped record can be named by any survivor of its chunk. See `chunk_size`.
CHUNK_SIZE = 64  # at least this many records per chunk, when the batch allows
MAX_CHUNK_SIZE = 256  # at most this many crops per chunk


def chunk_size(batch_size: int, crops_per_record: int = 1) -> int:
    """Records per chunk for batches of `batch_size`: a multiple of it, else a divisor.

    Chunks become batches through `rebatch`, which is cheap when it only splits a chunk
    into whole batches and costly when it must join chunks into a batch. So a chunk is the smallest multiple of the batch with at least
    CHUNK_SIZE records, unless a batch holds more than MAX_CHUNK_SIZE crops (memory:
    every parallel call holds a chunk); then it is the largest divisor of the batch
    that fits (or, with no useful divisor, min(CHUNK_SIZE, MAX_CHUNK_SIZE) records).
    """
    limit = max(1, MAX_CHUNK_SIZE // crops_per_record)
    if batch_size <= limit:
        multiple = -(-max(1, CHUNK_SIZE // crops_per_record) // batch_size)
        return batch_size * max(1, min(multiple, limit // batch_size))
    divisor = max(d for d in range(1, limit + 1) if batch_size % d == 0)
    fallback = min(limit, CHUNK_SIZE)
    return divisor if divisor >= fallback // 4 else fallback  # e.g. a large prime batch


def make_decode(parse: Callable, *, training: bool, crop_size: int, resize_size: int,
                flip: bool, pca_std: float, ten_crop: bool, num_classes: Optional[int],
                seed: int, square_jpeg: bool) -> Callable:
    """The function from n records to their uint8 crops: parse, check labels, draw, decode.

    It maps a dict of (n, ...) tensors (the records, their positions and identities) to
    the crops and their draws. The pipeline calls it on a whole chunk of records at once
    (one parse, one label check, one draw op, a loop of decodes) and, only when that
    fails, on each record of the chunk alone. Both give the same result for a record:
    its draws depend on its position only (`preprocessing.train_draws`).
    """
    seed = tf.constant(seed, tf.int64)
    # What the evaluation sentinel decodes: a tiny valid image (it is removed later).
    sentinel_image = tf.io.encode_png(tf.zeros([1, 1, 3], tf.uint8))
    crop_spec = tf.TensorSpec([crop_size, crop_size, 3], tf.uint8)
    num_crops = 10 if ten_crop else 1
    eval_spec = {preprocessing.IMAGE_KEY: tf.TensorSpec([num_crops, crop_size, crop_size, 3],
                                                        tf.uint8),
                 preprocessing.OFFSET_KEY: tf.TensorSpec([num_crops, 2], tf.int32),
                 preprocessing.FLIP_KEY: tf.TensorSpec([num_crops], tf.bool),
                 preprocessing.ALPHA_KEY: tf.TensorSpec([num_crops, 3], tf.float32)}

    def parse_all(records, shards):
        if training:
            return parse(records)
        # The sentinel (shard id -1, always last) is no record: parse the others only.
        num_real = tf.reduce_sum(tf.cast(shards >= 0, tf.int32))
        image_bytes, labels = parse(records[:num_real])
        padding = tf.shape(records)[0] - num_real
        return (tf.concat([image_bytes, tf.fill([padding], sentinel_image)], 0),
                tf.concat([tf.cast(labels, tf.int64), tf.zeros([padding], tf.int64)], 0))

    def decode_records(element):
        element = dict(element)
        records = element.pop("record")
        image_bytes, labels = parse_all(records, element[bad_records.SHARD_KEY])
        bad_label = labels < 0
        if num_classes is not None:
            bad_label |= labels >= num_classes
        check = tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad_label)),
                                    ["label out of range:", tf.boolean_mask(labels, bad_label)])
        with tf.control_dependencies([check]):
            if training:
                crops = preprocessing.train_draws(
                        tf.stack([seed, element[bad_records.POSITION_KEY][0]]),
                        tf.shape(records)[0], crop_size=crop_size, resize_size=resize_size,
                        flip=flip, pca_std=pca_std)
                crops[preprocessing.IMAGE_KEY] = tf.map_fn(
                        lambda args: preprocessing.decode_crop(
                                args[0], args[1], crop_size=crop_size,
                                resize_size=resize_size, square_jpeg=square_jpeg),
                        (image_bytes, crops[preprocessing.OFFSET_KEY]),
                        fn_output_signature=crop_spec)
            else:
                crops = tf.map_fn(
                        lambda one: preprocessing.eval_crops(
                                one, crop_size=crop_size, resize_size=resize_size,
                                ten_crop=ten_crop),
                        image_bytes, fn_output_signature=eval_spec)
                if not ten_crop:
                    crops = {key: value[:, 0] for key, value in crops.items()}
        crops[LABEL_KEY] = tf.cast(labels, tf.int32)
        crops.update(element)
        return crops

    return decode_records


def decode(records: tf.data.Dataset, decode_records: Callable, *, batch_size: int,
           chunk: int, training: bool, checker: bad_records.BatchChecker) -> tf.data.Dataset:
    """Records -> batches of uint8 crops, in a deterministic order; bad records handled.

    Each chunk of records is decoded by one call; a chunk holding a bad record fails
    as a whole and is then decoded record by record, so that only the bad records are
    dropped (`ignore_errors`). The chunks (whole, or with gaps) are rebatched into
    batches and checked for gaps.
    """
    identities = functools.partial(bad_records.attach_chunk_identities, chunk_size=chunk)

    def decode_chunk(element):
        whole = tf.data.Dataset.from_tensors(element).map(decode_records).ignore_errors()
        one_by_one = (tf.data.Dataset.from_tensors(element).unbatch().batch(1)
                      .map(decode_records).ignore_errors(log_warning=True)
                      .unbatch().batch(chunk))
        # Lazy: the record-by-record pass runs only when the whole chunk failed.
        return whole.concatenate(one_by_one).take(1)

    dataset = records.batch(chunk).map(
            lambda positions, element: identities(positions, *element))
    dataset = dataset.interleave(decode_chunk, block_length=1, num_parallel_calls=AUTOTUNE,
                                 deterministic=True)
    dataset = dataset.rebatch(batch_size, drop_remainder=training)
    return dataset.scan(checker.initial_state(), checker)
