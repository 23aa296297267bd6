"""The tf.data input pipeline over the converter's TFRecords (or a TFDS imagenet2012 build).

  shard files (sharded per input pipeline; order reshuffled per epoch)
    -> parallel interleave (record, shard id, index in shard)
    -> shuffle (fixed seed, reshuffled per epoch) -> repeat (epochs)
    -> enumerate (position in the stream: the seed of the record's augmentation)
    -> chunks of records (`chunk_decode.chunk_size`: a multiple or a divisor of the batch), each
       carrying its identities (to name bad records)
    -> per chunk, in parallel: parse, check the labels, draw the augmentation, decode
       each crop window (uint8); a chunk that fails is redone record by record, and
       only its bad records are dropped
    -> rebatch (per-replica batch; drop remainder when training)
    -> per batch: find and report (or count) the records that were dropped
    -> float work vectorised over the batch, one XLA pass (mirror, mean, PCA lighting)
    -> prefetch

Exactly-once resume: every random choice is a stateless function of (seed, input
pipeline, position in the stream), the shuffles are seeded, and every stage is a
checkpointable tf.data transformation, so `tf.train.Checkpoint(iterator=iter(dataset))`
saved mid-epoch and restored yields exactly the batches that were still to come. The shuffle buffer is
part of that checkpoint: about `shuffle_buffer` x (record size) bytes.

Bad records: an image that cannot be decoded, or a label outside [0, num_classes),
raises an error naming the shard and the record's index in it; with
`skip_bad_records=True` it is skipped, printed to stderr and counted. The chunk holding
it fails, is redone one record at a time with `ignore_errors()`, and a check once per
batch finds the gap in the positions and names the record (`alexnet_tf.data.bad_records`).

Damaged shards: a shard the reader cannot read to its end (truncated, or bytes changed)
raises an error naming the shard, the byte and the record where it breaks; with
`skip_bad_records=True` the rest of the shard is skipped, printed and noted in
`skipped` (`alexnet_tf.data.damaged_shards`).

Cost: no function runs per image. Per chunk: one parse (`tf.io.parse_example`), one
label check, one draw op (`preprocessing.train_draws`), and a loop of JPEG window
decodes; per batch, the float work. docs/performance.md gives the pipeline's rate
against bare JPEG decoding (`python -m alexnet_tf.benchmark input`).
"""

import glob
import json
import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf.data import bad_records
from alexnet_tf.data import chunk_decode
from alexnet_tf.data import damaged_shards
from alexnet_tf.data import preprocessing
from alexnet_tf.data import schema
from alexnet_tf.data import stats as stats_lib

AUTOTUNE = tf.data.AUTOTUNE
LABEL_KEY = chunk_decode.LABEL_KEY
DEFAULT_SHUFFLE_BUFFER = 4096


def list_shards(data_dir: str, split: str) -> list:
    """The sorted shard files of `split` in `data_dir`.

    Raises:
      FileNotFoundError: no shard matches.
    """
    pattern = os.path.join(data_dir, schema.shard_glob(split))
    files = sorted(glob.glob(pattern))
    if not files:
        raise errors.MissingInputError(
                f"no {split!r} shards in {data_dir!r} (expected files matching "
                f"{schema.shard_glob(split)!r}, written by tools/convert_imagenet.py)")
    return files


def read_num_classes(data_dir: str) -> Optional[int]:
    """The number of classes in `data_dir`'s labels file, or None when there is none."""
    path = os.path.join(data_dir, schema.LABELS_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return len(json.load(f))


# Only the two features the pipeline needs: parsing all eight costs time per image.
_PARSE_SPEC = {key: schema.FEATURE_SPEC[key] for key in (schema.IMAGE_ENCODED, schema.LABEL)}


def parse_record(serialized: tf.Tensor):
    """(image bytes, label int64) of one of the converter's records."""
    features = tf.io.parse_single_example(serialized, _PARSE_SPEC)
    return features[schema.IMAGE_ENCODED], features[schema.LABEL]


def parse_records(serialized: tf.Tensor):
    """(image bytes (n,), labels int64 (n,)) of n of the converter's records, in one op."""
    features = tf.io.parse_example(serialized, _PARSE_SPEC)
    return features[schema.IMAGE_ENCODED], features[schema.LABEL]


def _shard_files(files: list, input_context) -> list:
    """The files of this input pipeline: every num_input_pipelines-th, by file."""
    if input_context is None or input_context.num_input_pipelines == 1:
        return files
    num = input_context.num_input_pipelines
    if len(files) < num:
        raise errors.InvalidInputError(
                f"{len(files)} shard files cannot feed {num} input pipelines: "
                "sharding is by file, so write at least one shard per pipeline")
    return files[input_context.input_pipeline_id::num]


def _shuffle_seeds(seed: int, pipeline_id: int):
    """Three op seeds (file order, record order, augmentation) from the user's seed."""
    generator = np.random.default_rng([seed, pipeline_id])
    return [int(value) for value in generator.integers(0, 2**62, size=3)]


def augment_seed(seed: int, pipeline_id: int = 0) -> int:
    """The first half of every augmentation seed of an input pipeline: the record at
    stream position k is augmented as `preprocess_for_train(..., seed=(this, k))`."""
    return _shuffle_seeds(seed, pipeline_id)[2]


def _records(files: list, *, seed: int, pipeline_id: int, training: bool, num_epochs: int,
             shuffle_buffer: int, cycle_length: int, skip_bad_records: bool,
             skipped: Optional[damaged_shards.SkippedData]) -> tf.data.Dataset:
    """(position, (record, shard id, index in shard)) for every record of every epoch.

    Each epoch is a fresh pass over the files: shard order and record order are
    reshuffled per epoch from fixed seeds (`reshuffle_each_iteration`), so epoch e's
    order depends only on (seed, e), and the shuffles' seed generators are part of
    the iterator checkpoint. A finite evaluation stream ends with a sentinel record
    (shard id -1, see `bad_records`) so that a bad record at the very end is seen. Each
    shard is read on its own and its end checked (`damaged_shards.checked_records`):
    a damaged shard is an error naming it, or, with `skip_bad_records`, its rest is
    skipped. The structure is the same either way, so a run may resume with the other.
    """
    file_seed, record_seed, _ = _shuffle_seeds(seed, pipeline_id)
    sizes = [tf.io.gfile.stat(path).length for path in files]
    shards = tf.data.Dataset.from_tensor_slices(
            (files, tf.range(len(files), dtype=tf.int64), tf.constant(sizes, tf.int64)))
    if training:
        shards = shards.shuffle(len(files), seed=file_seed, reshuffle_each_iteration=True)
    records = shards.interleave(
            lambda shard, shard_id, num_bytes: damaged_shards.checked_records(
                    shard, shard_id, num_bytes, skip=skip_bad_records, skipped=skipped),
            cycle_length=cycle_length, block_length=1, num_parallel_calls=AUTOTUNE,
            deterministic=True)
    if training:
        records = records.shuffle(shuffle_buffer, seed=record_seed, reshuffle_each_iteration=True)
    records = records.repeat(num_epochs if num_epochs > 0 else None)
    if not training:
        sentinel = (tf.constant(b""), tf.constant(-1, tf.int64), tf.constant(-1, tf.int64))
        records = records.concatenate(tf.data.Dataset.from_tensors(sentinel))
    # The position in the whole (all-epochs) stream seeds the record's augmentation:
    # unique, and restored with the iterator.
    return records.enumerate()


def _bad_reason(num_classes: Optional[int]) -> str:
    return ("cannot be decoded" if num_classes is None else
            f"cannot be decoded or has a label outside [0, {num_classes})")


def _float_stage(*, stats, mean_mode: str, resize_size: int) -> Callable:
    """`preprocessing.device_augment` for the host, its per-pixel part compiled with XLA.

    XLA fuses the mirror, the cast, the mean crop and the lighting into one pass over
    the batch, about the cost of writing the float32 images, where the same ops run one
    by one make a pass each. The result is the same to the bit: the lighting shift (a matrix product, which
    XLA would round differently) is computed outside the compiled part, and the mirror
    is written as an exact blend (`blend_mirror`), which XLA vectorises.
    """

    @tf.function(jit_compile=True)
    def per_pixel(images, offsets, flips, shift):
        return preprocessing.float_augment_with_shift(
                images, offsets, flips, shift, stats=stats, mean_mode=mean_mode,
                resize_size=resize_size, blend_mirror=True)

    def augment(batch):
        shift = preprocessing.lighting_shift(batch[preprocessing.ALPHA_KEY], stats)
        return per_pixel(batch[preprocessing.IMAGE_KEY], batch[preprocessing.OFFSET_KEY],
                         batch[preprocessing.FLIP_KEY], shift)

    return augment


def _finish_batch(batch: dict, *, float_stage: Optional[Callable], training: bool):
    """(images, labels) from a batch of uint8 crops: the float work, vectorised.

    With `float_stage` None (augment_on_device) the uint8 crop dict is passed on.
    """
    if not training:
        batch = bad_records.drop_sentinel(batch)
    labels = batch.pop(LABEL_KEY)
    batch.pop(bad_records.POSITION_KEY)
    batch.pop(bad_records.SHARD_KEY)
    if float_stage is None:
        return batch, labels
    images = batch[preprocessing.IMAGE_KEY]
    if images.shape.rank == 5:  # ten crops: (B, 10, S, S, 3) -> (B * 10, S, S, 3) and back.
        flat = {key: tf.reshape(value, tf.concat([[-1], tf.shape(value)[2:]], 0))
                for key, value in batch.items()}
        return tf.reshape(float_stage(flat), tf.shape(images)), labels
    return float_stage(batch), labels


def build_from_files(files: list, parse: Callable, *, global_batch_size: int, training: bool,
                     seed: int, stats: stats_lib.ImageStats, crop_size: int = 224,
                     resize_size: int = 256, mean_mode: str = "image", flip: bool = True,
                     pca_std: float = preprocessing.PCA_STD, augment_on_device: bool = False,
                     ten_crop: bool = False, num_epochs: Optional[int] = None,
                     num_classes: Optional[int] = None,
                     shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, cycle_length: int = 16,
                     private_threadpool_size: Optional[int] = None, input_context=None,
                     skip_bad_records: bool = False,
                     bad_record_counter: Optional[tf.Variable] = None,
                     skipped: Optional[damaged_shards.SkippedData] = None,
                     data_service: Optional[str] = None,
                     data_service_job: Optional[str] = None,
                     square_jpeg: bool = False) -> tf.data.Dataset:
    """The pipeline over any record files; `build_dataset` documents the arguments.

    Args:
      files: record files (sorted); `parse` maps a vector of n serialized records to
        (image bytes (n,), int64 labels (n,)).
      square_jpeg: every image is a resize_size square JPEG (the converter's records
        at that size): training decodes the crop window with no branching, and any
        other image is a bad record.
    """
    if data_service:
        from alexnet_tf.distributed import service  # Local import: only service runs need it.
        data_service = service.parse_service_address(data_service)  # Fail before building.
        if bad_record_counter is not None or skipped is not None:
            raise ValueError("bad_record_counter and skipped cannot be used with "
                             "data_service: the pipeline runs on the service's workers, not "
                             "in this process")
        # The service splits the files among its workers at run time, so every trainer
        # must define the SAME dataset (one shared job): no per-pipeline file sharding.
        input_context = service.service_input_context(input_context)
    if global_batch_size <= 0:
        raise ValueError(f"global_batch_size must be positive, got {global_batch_size}")
    if mean_mode not in preprocessing.MEAN_MODES:
        raise ValueError(f"mean_mode must be one of {preprocessing.MEAN_MODES}, got {mean_mode!r}")
    pipeline_id = 0 if input_context is None else input_context.input_pipeline_id
    batch_size = (global_batch_size if input_context is None else
                  input_context.get_per_replica_batch_size(global_batch_size))
    files = _shard_files(list(files), input_context)
    if skipped is not None:
        skipped.watch(files)
        if bad_record_counter is None:
            bad_record_counter = skipped.bad_records
    if num_epochs is None:
        num_epochs = -1 if training else 1
    # Image k of the stream is augmented with the stateless seed (augment_seed(...), k).
    decode_records = chunk_decode.make_decode(
            parse, training=training, crop_size=crop_size, resize_size=resize_size, flip=flip,
            pca_std=pca_std, ten_crop=ten_crop, num_classes=num_classes,
            seed=augment_seed(seed, pipeline_id), square_jpeg=square_jpeg)
    chunk = chunk_decode.chunk_size(batch_size, 10 if ten_crop and not training else 1)
    checker = bad_records.BatchChecker(files, chunk_size=chunk, skip=skip_bad_records,
                                       reason=_bad_reason(num_classes), counter=bad_record_counter)
    dataset = _records(files, seed=seed, pipeline_id=pipeline_id, training=training,
                       num_epochs=num_epochs, shuffle_buffer=shuffle_buffer,
                       cycle_length=min(cycle_length, len(files)),
                       skip_bad_records=skip_bad_records, skipped=skipped)
    dataset = chunk_decode.decode(dataset, decode_records, batch_size=batch_size, chunk=chunk,
                      training=training, checker=checker)
    float_stage = (None if augment_on_device else
                   _float_stage(stats=stats, mean_mode=mean_mode, resize_size=resize_size))
    dataset = dataset.map(
            lambda batch: _finish_batch(batch, float_stage=float_stage, training=training),
            num_parallel_calls=AUTOTUNE, deterministic=True)
    if not training:  # Removing the sentinel can leave the last batch empty.
        dataset = dataset.filter(lambda images, labels: tf.size(labels) > 0)
    options = tf.data.Options()
    options.deterministic = True
    if private_threadpool_size:
        options.threading.private_threadpool_size = private_threadpool_size
    if bad_record_counter is not None or skipped is not None:
        # The counters are variables the pipeline assigns: not part of the iterator's
        # checkpoint (the scan's running count of bad records is).
        options.experimental_external_state_policy = (
                tf.data.experimental.ExternalStatePolicy.IGNORE)
    dataset = dataset.with_options(options)
    if data_service:
        dataset = service.distribute_over_service(dataset, data_service, data_service_job)
    return dataset.prefetch(AUTOTUNE)


def build_dataset(data_dir: str, split: str, *, global_batch_size: int, training: bool,
                  seed: int, stats: stats_lib.ImageStats, crop_size: int = 224,
                  num_classes: Optional[int] = None, input_context=None,
                  skip_bad_records: bool = False, **kwargs) -> tf.data.Dataset:
    """Batches of (images float32 (B, S, S, 3), labels int32 (B,)) from converted shards.

    Args:
      data_dir: directory of `tools/convert_imagenet.py` output.
      split: "train" or "validation".
      global_batch_size: the batch over all replicas; each input pipeline yields its
        per-replica share (`input_context.get_per_replica_batch_size`).
      training: random crop/flip/lighting, shuffled, repeated, drop_remainder; else
        centre crop (or 10 crops), file order, one epoch, the last partial batch kept.
      seed: makes the run repeatable (order and augmentation). The shuffles, like every
        seeded tf.data shuffle, also depend on TF's global seed (`tf.random.set_seed`);
        the trainer sets that to the same seed before building the pipeline.
      stats: colour statistics (`alexnet_tf.data.stats.load_stats`).
      crop_size: side of the crops.
      num_classes: labels must be in [0, num_classes); default from the data
        directory's labels file.
      input_context: a `tf.distribute.InputContext` (from
        `strategy.distribute_datasets_from_function`): files are sharded per input
        pipeline, the batch is per replica.
      skip_bad_records: skip (print and count) undecodable records, out-of-range
        labels and the rest of a damaged shard, instead of raising an error that names
        the shard.
      **kwargs: resize_size, mean_mode ("image"|"rgb"), flip, pca_std,
        augment_on_device (yield the uint8 crop dict for `preprocessing.device_augment`
        instead of float images), ten_crop (eval: (B, 10, S, S, 3)), num_epochs
        (default: forever when training, 1 otherwise), shuffle_buffer, cycle_length,
        private_threadpool_size, bad_record_counter (an int64 tf.Variable receiving
        the running count of skipped records), skipped (a `damaged_shards.SkippedData`
        counting bad records and noting damaged shards; not with data_service),
        data_service (`grpc://host:port` of a
        tf.data service dispatcher: decode and augmentation run on its workers, see
        `service.distribute_over_service`), data_service_job (the shared job name).

    Returns:
      A tf.data.Dataset whose iterator can be saved with tf.train.Checkpoint.

    Raises:
      FileNotFoundError: no shards of `split` in `data_dir`.
      ValueError: bad arguments (named in the message).
    """
    files = list_shards(data_dir, split)
    if num_classes is None:
        num_classes = read_num_classes(data_dir)
    square_jpeg = converted_size(data_dir) == kwargs.get("resize_size", preprocessing.RESIZE_SIZE)
    return build_from_files(files, parse_records, global_batch_size=global_batch_size,
                            training=training, seed=seed, stats=stats, crop_size=crop_size,
                            num_classes=num_classes, input_context=input_context,
                            skip_bad_records=skip_bad_records, square_jpeg=square_jpeg,
                            **kwargs)


def read_manifest(data_dir: str) -> Optional[dict]:
    """The converter's manifest.json of `data_dir`, or None when there is none."""
    path = os.path.join(data_dir, schema.MANIFEST_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def verify_shards(data_dir: str, split: str) -> None:
    """Checks `split`'s shard files against what the converter's manifest recorded.

    Every shard the manifest lists must be there with the size it was written with (or,
    for manifests without sizes, not empty when it holds images), and no other shard may
    be: a replaced, truncated or stray shard would otherwise change the data silently.
    Directories without a manifest (not the converter's) are not checked.

    Raises:
      ValueError: naming the first shard that differs and what was expected.
    """
    manifest = read_manifest(data_dir)
    if manifest is None or split not in manifest.get("splits", {}):
        return
    hint = ("reconvert it (tools/convert_imagenet.py resumes), or pass "
            "--accept_changed_data to use the data as it is")
    expected = {shard["name"]: shard for shard in manifest["splits"][split].get("shards", [])}
    for name, shard in sorted(expected.items()):
        path = os.path.join(data_dir, name)
        if not os.path.exists(path):
            raise errors.InvalidInputError(  # The dataset changed, as for the others.
                    f"{path}: missing; the converter wrote it ({schema.MANIFEST_FILE}): "
                    f"{hint}")
        size = os.path.getsize(path)
        if shard.get("num_bytes") is not None and size != shard["num_bytes"]:
            raise errors.InvalidInputError(
                    f"{path}: {size} bytes, but the converter wrote {shard['num_bytes']} "
                    f"({shard['num_images']} images): the shard was changed; {hint}")
        if size == 0 and shard.get("num_images"):
            raise errors.InvalidInputError(
                    f"{path}: empty, but the converter wrote {shard['num_images']} "
                    f"images into it: {hint}")
    for path in list_shards(data_dir, split):
        if os.path.basename(path) not in expected:
            raise errors.InvalidInputError(
                    f"{path}: a {split} shard the converter did not write "
                    f"({schema.MANIFEST_FILE} lists {len(expected)}): {hint}")


def num_records(data_dir: str, split: str) -> Optional[int]:
    """How many images the converter wrote for `split`; None when there is no manifest."""
    manifest = read_manifest(data_dir)
    if manifest is None or split not in manifest.get("splits", {}):
        return None
    return int(manifest["splits"][split]["num_images"])


def converted_size(data_dir: str) -> Optional[int]:
    """The square size tools/convert_imagenet.py wrote `data_dir`'s JPEGs at, from its
    manifest; None when unknown (no manifest, or the originals were kept: resize 0)."""
    manifest = read_manifest(data_dir) or {}
    return manifest.get("options", {}).get("resize") or None


def synthetic_dataset(*, global_batch_size: int, crop_size: int = 224, num_classes: int = 1000,
                      seed: int = 0, input_context=None) -> tf.data.Dataset:
    """One random batch, repeated forever: for benchmarks and smoke runs (no I/O).

    Images are float32 (B, S, S, 3) ~ N(0, 60^2) (roughly mean-subtracted pixels), labels
    uniform int32 in [0, num_classes). Like tf_cnn_benchmarks' synthetic data, the batch
    is made once, so the model, not the host, is measured.
    """
    batch_size = (global_batch_size if input_context is None else
                  input_context.get_per_replica_batch_size(global_batch_size))
    image_seed, label_seed = (seed, 1), (seed, 2)
    images = tf.random.stateless_normal([batch_size, crop_size, crop_size, 3], image_seed,
                                        stddev=60.0)
    labels = tf.random.stateless_uniform([batch_size], label_seed, minval=0,
                                         maxval=num_classes, dtype=tf.int32)
    return tf.data.Dataset.from_tensors((images, labels)).repeat()
