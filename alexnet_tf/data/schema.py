"""The one definition of the TFRecord schema, shard naming and label base.

Used by `tools/convert_imagenet.py` (writer) and `alexnet_tf/data/pipeline.py`
(reader); nothing else may spell a feature key or a shard name.

Labels are 0-based indices into the sorted list of class ids, the class folders' names:
for ImageNet the synset ids (the standard 1000-synset order, identical to
tensorflow-datasets' `imagenet2012/labels.txt`), for other data the names as the folders
spell them (sorted by code point).
Note: TF-Slim and the TPU reference ImageNet records use a 1-based label with 0
as "background"; these records do not.
"""

import re

import tensorflow as tf

# Labels are `index in sorted(synsets)` + LABEL_BASE.
LABEL_BASE = 0

# Feature keys (the same spelling as the TF-Slim / TPU ImageNet records).
IMAGE_ENCODED = "image/encoded"  # bytes: the JPEG (or original) bytes
IMAGE_FORMAT = "image/format"  # bytes: b"JPEG" (or b"PNG" when kept as is)
IMAGE_HEIGHT = "image/height"  # int64: height of the encoded image
IMAGE_WIDTH = "image/width"  # int64: width of the encoded image
IMAGE_FILENAME = "image/filename"  # bytes: source file name (no directory)
LABEL = "image/class/label"  # int64: LABEL_BASE-based class index
SYNSET = "image/class/synset"  # bytes: the class folder's name, a WordNet id b"n01440764"
#                                in ImageNet's layout (UTF-8)
CLASS_NAME = "image/class/text"  # bytes: human-readable name (a synset's from a names
#                                  file, b"" if unknown; any other class's folder name)

TRAIN = "train"
VALIDATION = "validation"
SPLITS = (TRAIN, VALIDATION)

# Files the converter writes next to the shards.
MANIFEST_FILE = "manifest.json"
# [{"index": 0, "synset": "n01440764", "name": "tench"}, ...]: "synset" is the class id
# (its folder's name), "name" what to show; for a folder "golden retriever" both are that.
LABELS_FILE = "labels.json"

_SHARD_RE = re.compile(r"^(?P<split>[a-z]+)-(?P<index>\d{5})-of-(?P<total>\d{5})$")


def shard_name(split: str, index: int, num_shards: int) -> str:
    """Returns e.g. `train-00000-of-01024`."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if not 0 <= index < num_shards:
        raise ValueError(f"shard index {index} out of range for {num_shards} shards")
    return f"{split}-{index:05d}-of-{num_shards:05d}"


def parse_shard_name(name: str):
    """Returns (split, index, num_shards) for a shard file name, or None."""
    match = _SHARD_RE.match(name)
    if not match:
        return None
    return match["split"], int(match["index"]), int(match["total"])


def shard_glob(split: str) -> str:
    """A glob matching every shard of `split` in a data directory."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return f"{split}-?????-of-?????"


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _int64(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def make_example(*, encoded: bytes, image_format: str, height: int, width: int,
                 filename: str, label: int, synset: str, class_name: str = "") -> bytes:
    """Serializes one image record (a tf.train.Example)."""
    feature = {
            IMAGE_ENCODED: _bytes(encoded),
            IMAGE_FORMAT: _bytes(image_format.encode()),
            IMAGE_HEIGHT: _int64(height),
            IMAGE_WIDTH: _int64(width),
            # A name that is not UTF-8 keeps its bytes (os.fsdecode's surrogates).
            IMAGE_FILENAME: _bytes(filename.encode("utf-8", "surrogateescape")),
            LABEL: _int64(label),
            SYNSET: _bytes(synset.encode()),
            CLASS_NAME: _bytes(class_name.encode()),
    }
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    # deterministic=True sorts the feature map; otherwise its order depends on the process
    # (hash seed), and the same image would give different shard bytes in two runs.
    return example.SerializeToString(deterministic=True)


FEATURE_SPEC = {
        IMAGE_ENCODED: tf.io.FixedLenFeature([], tf.string),
        IMAGE_FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=b"JPEG"),
        IMAGE_HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        IMAGE_WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        IMAGE_FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=b""),
        LABEL: tf.io.FixedLenFeature([], tf.int64),
        SYNSET: tf.io.FixedLenFeature([], tf.string, default_value=b""),
        CLASS_NAME: tf.io.FixedLenFeature([], tf.string, default_value=b""),
}


def parse_example(serialized: tf.Tensor) -> dict:
    """Parses one serialized record into a dict of tensors (graph-safe)."""
    return tf.io.parse_single_example(serialized, FEATURE_SPEC)
