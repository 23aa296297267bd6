"""What the visualisations read: images from files or TFRecords, and their class names.

Images come from image files or the converter's TFRecord shards (parsed with
`schema.parse_example`) and go through `preprocessing.preprocess_for_eval`, the
evaluation path, for the network; `preprocessing.eval_crops` gives the same crop as uint8
for display. Nothing here preprocesses on its own. The model comes from
`model_source.load`.
"""

import dataclasses
import glob
import hashlib
import os
from typing import Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf.data import preprocessing
from alexnet_tf.data import schema

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords")


@dataclasses.dataclass
class ImageRecord:
    """One encoded image and where it came from.

    Attributes:
      name: a display name (file name, or the record's stored file name).
      encoded: the encoded image's bytes (preprocessing.IMAGE_FORMATS).
      label: the class index when known (TFRecords), else None.
      source: the image file or TFRecord shard path.
      index: the record's position in its shard (0 for an image file).
    """
    name: str
    encoded: bytes
    label: Optional[int]
    source: str
    index: int = 0


def is_tfrecord(path: str) -> bool:
    name = os.path.basename(path)
    return schema.parse_shard_name(name) is not None or name.endswith(TFRECORD_SUFFIXES)


def expand_paths(patterns: Sequence[str]) -> List[str]:
    """Expands globs and directories (every file in it) into a sorted-per-pattern path list.

    Raises:
      FileNotFoundError: a pattern matches nothing.
    """
    paths = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            matches = sorted(os.path.join(pattern, name) for name in os.listdir(pattern)
                             if os.path.isfile(os.path.join(pattern, name)))
        else:
            matches = sorted(glob.glob(pattern))
        if not matches:
            raise errors.MissingInputError(f"{pattern!r} matches no image file or TFRecord shard")
        paths.extend(matches)
    return paths


def _record(path: str, index: int, serialized) -> ImageRecord:
    example = schema.parse_example(serialized)
    name = example[schema.IMAGE_FILENAME].numpy().decode() or f"{os.path.basename(path)}:{index}"
    return ImageRecord(name, example[schema.IMAGE_ENCODED].numpy(),
                       int(example[schema.LABEL].numpy()), path, index)


def _records_of_shard(path: str) -> Iterator[ImageRecord]:
    for index, serialized in enumerate(tf.data.TFRecordDataset(path)):
        yield _record(path, index, serialized)


def read_images(patterns: Sequence[str], limit: Optional[int] = None) -> List[ImageRecord]:
    """Reads images from files, directories, globs and TFRecord shards, in order.

    Args:
      patterns: image files, TFRecord shards, directories or globs of either.
      limit: stop after this many images (None: all).

    Raises:
      FileNotFoundError: a pattern matches nothing.
      ValueError: no image was found.
    """
    records = []
    for path in expand_paths(patterns):
        if limit is not None and len(records) >= limit:
            break
        if is_tfrecord(path):
            for record in _records_of_shard(path):
                records.append(record)
                if limit is not None and len(records) >= limit:
                    break
        else:
            with open(path, "rb") as f:
                records.append(ImageRecord(os.path.basename(path), f.read(), None, path))
    if not records:
        raise errors.InvalidInputError(f"no images in {list(patterns)}")
    return records


def read_record(source: str, index: int) -> ImageRecord:
    """Reads one image back given its `source` and `index` (as stored in a feature cache)."""
    if not is_tfrecord(source):
        with open(source, "rb") as f:
            return ImageRecord(os.path.basename(source), f.read(), None, source)
    # skip() reads past the earlier records without parsing them.
    for serialized in tf.data.TFRecordDataset(source).skip(index).take(1):
        return _record(source, index, serialized)
    raise IndexError(f"{source!r} has no record {index}")


def sources_digest(paths: Sequence[str]) -> str:
    """A hash of the files' paths, sizes and modification times (a cache key part)."""
    digest = hashlib.sha256()
    for path in paths:
        info = os.stat(path)
        digest.update(f"{os.path.abspath(path)}|{info.st_size}|{info.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def preprocess(settings: preprocessing.EvalSettings, records: Sequence[ImageRecord],
               ten_crop: bool = False):
    """Network inputs and display crops of `records`, by the evaluation path.

    Returns:
      (inputs float32 (N, S, S, 3), or (N, 10, S, S, 3) with `ten_crop`;
       display uint8 (N, S, S, 3), the centre crop as the network sees it, unmirrored).
    """
    inputs, display = [], []
    for record in records:
        encoded = tf.constant(record.encoded)
        inputs.append(preprocessing.preprocess_for_eval(
                encoded, stats=settings.stats, crop_size=settings.crop_size,
                resize_size=settings.resize_size, ten_crop=ten_crop,
                mean_mode=settings.mean_mode).numpy())
        display.append(preprocessing.eval_crops(
                encoded, crop_size=settings.crop_size,
                resize_size=settings.resize_size)[preprocessing.IMAGE_KEY][0].numpy())
    return np.stack(inputs), np.stack(display)


def class_names(labels: Optional[list], num_classes: int) -> List[str]:
    """A display name per class: labels.json's name (or synset), else the index."""
    names = [str(index) for index in range(num_classes)]
    for entry in labels or []:
        index = int(entry["index"])
        if 0 <= index < num_classes:
            names[index] = entry.get("name") or entry.get("synset") or names[index]
    return names


def read_label_file(path: str) -> list:
    """Reads a label list: labels.json format, or a text file with one class name a line."""
    import json  # Local: only this reader needs it.
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        labels = json.loads(text)
        if not isinstance(labels, list) or not all("index" in entry for entry in labels):
            raise errors.InvalidInputError(
                    f"{path!r} must be a list of {{'index', 'synset', 'name'}} entries")
        return labels
    names = [line.strip() for line in text.splitlines() if line.strip()]
    return [{"index": index, "name": name} for index, name in enumerate(names)]
