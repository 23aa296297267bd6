"""Converts ILSVRC-2012, or any folder of images per class, to sharded TFRecords.

  python tools/convert_imagenet.py --imagenet_dir=DIR --output_dir=OUT
  python tools/convert_imagenet.py --imagenet_dir=DIR --output_dir=OUT --validation_fraction=0.1

DIR holds train/<wnid>/*.JPEG and val/ (either val/<wnid>/*.JPEG or the flat
val/ILSVRC2012_val_00000001.JPEG ... labelled by a ground-truth file); or any dataset as
DIR/<class name>/* or DIR/train/<class name>/* with an optional DIR/val/<class name>/*,
each class named as its folder is. Without a val/ folder, --validation_fraction holds out
that share of each class by a hash of each file's name, the same files on every run
(alexnet_tf/data/imagenet/folder_layout.py). Images are
rescaled so the shorter side is 256 and centre-cropped to 256x256 as in the paper, and
re-encoded as RGB JPEG. Bad files (corrupt, not images, over --max_pixels, symbolic link
loops, dangling links, FIFOs and other special files) are listed in OUT/manifest.json
with their reason and in a summary, and do not stop the run (unless --strict). Killing
the run and starting it again resumes it and gives the same bytes as one uninterrupted run. See alexnet_tf/data/imagenet/convert.py.
"""

from alexnet_tf import startup  # noqa: F401 (first: quiets TensorFlow's start-up notices)

import os  # noqa: E402

from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from alexnet_tf import errors  # noqa: E402
from alexnet_tf.data import image_header  # noqa: E402
from alexnet_tf.data.imagenet import convert as imagenet_convert  # noqa: E402
from alexnet_tf.data.imagenet import manifest as imagenet_manifest  # noqa: E402
from alexnet_tf.data import schema  # noqa: E402

_IMAGENET_DIR = flags.DEFINE_string(
    "imagenet_dir", None, "Folder holding train/ and/or val/ (the ILSVRC-2012 images, or "
    "train/<class name>/...), or one folder per class.", required=True)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir", None, "Where shards, labels.json and manifest.json are written.",
    required=True)
_SPLITS = flags.DEFINE_list(
    "splits", list(schema.SPLITS), "Which splits to convert: train, validation or both.")
_TRAIN_SHARDS = flags.DEFINE_integer(
    "train_shards", None, "Number of training shards; default one per 1,250 images, at "
    "most 1024 (ImageNet's).")
_VALIDATION_SHARDS = flags.DEFINE_integer(
    "validation_shards", None, "Number of validation shards; default one per 390 images, "
    "at most 128 (ImageNet's).")
_VALIDATION_FRACTION = flags.DEFINE_float(
    "validation_fraction", 0.0, "Without a val/ folder: the share of each class held out "
    "for validation, chosen by a hash of each file's name (stable when files are added).")
_RESIZE = flags.DEFINE_integer(
    "resize", 256, "Rescale the shorter side to this size and centre-crop a square of it "
    "(the paper's 256x256); 0 keeps original sizes and the original bytes of RGB JPEGs.")
_QUALITY = flags.DEFINE_integer("quality", 90, "JPEG quality (1..100) of re-encoded images.")
_SEED = flags.DEFINE_integer(
    "seed", 0, "Seed of the shuffle that assigns files to shards (output depends only on it).")
_NUM_WORKERS = flags.DEFINE_integer(
    "num_workers", os.cpu_count() or 1,
    "Worker processes, one shard at a time each; 1 converts in this process.")
_VAL_LAYOUT = flags.DEFINE_enum(
    "val_layout", "auto", ["auto", "by_class", "flat"],
    "Layout of DIR/val: class folders, flat files with a ground-truth file, or detect.")
_VAL_LABELS = flags.DEFINE_string(
    "val_labels", None,
    "Ground truth for a flat val/: one synset per line in file-name order, the devkit's "
    "ILSVRC2012_validation_ground_truth.txt (needs --devkit_map) or Kaggle's "
    "LOC_val_solution.csv. Default: DIR/validation_labels.txt or DIR/LOC_val_solution.csv "
    "when present, else validation_labels.txt from the installed tensorflow-datasets.")
_DEVKIT_MAP = flags.DEFINE_string(
    "devkit_map", None,
    "Maps devkit ids 1..1000 to synsets: the devkit's data/meta.mat (needs scipy) or a "
    "text file of 'wnid id' lines such as the ILSVRC2014 devkit's map_clsloc.txt.")
_SYNSET_NAMES = flags.DEFINE_string(
    "synset_names", None, "'wnid name' lines (LOC_synset_mapping.txt or synset_words.txt); "
    "default: either file in DIR or its parent, if present.")
_SYNSETS_FILE = flags.DEFINE_string(
    "synsets_file", None, "The classes to keep, one synset per line (e.g. tfds' labels.txt); "
    "default: the synset folders of train/. Labels are positions in sorted order.")
_DRAFT = flags.DEFINE_boolean(
    "draft", True, "Let JPEG decoding downscale very large images by 2/4/8 (faster; the "
    "decoded image stays >= 2x the target size).")
_MAX_PIXELS = flags.DEFINE_integer(
    "max_pixels", image_header.DEFAULT_MAX_PIXELS,
    "Reject images whose header declares more pixels (width x height) than this, before "
    "decoding them: a 48 KB PNG can declare 20000x20000. Default 10000x10000.")
_STRICT = flags.DEFINE_boolean(
    "strict", False, "Exit with status 1 when any file was rejected.")
_PROGRESS = flags.DEFINE_boolean("progress", True, "Show a progress bar.")


def main(argv):
    if len(argv) > 1:
        raise errors.InvalidInputError(f"unexpected arguments: {argv[1:]}")
    options = imagenet_convert.ConvertOptions(
        imagenet_dir=_IMAGENET_DIR.value, output_dir=_OUTPUT_DIR.value,
        splits=tuple(_SPLITS.value), train_shards=_TRAIN_SHARDS.value,
        validation_shards=_VALIDATION_SHARDS.value, resize=_RESIZE.value,
        quality=_QUALITY.value, seed=_SEED.value, num_workers=_NUM_WORKERS.value,
        val_layout=_VAL_LAYOUT.value, val_labels=_VAL_LABELS.value,
        devkit_map=_DEVKIT_MAP.value, synset_names=_SYNSET_NAMES.value,
        synsets_file=_SYNSETS_FILE.value, use_draft=_DRAFT.value,
        max_pixels=_MAX_PIXELS.value, show_progress=_PROGRESS.value,
        validation_fraction=_VALIDATION_FRACTION.value)
    result = imagenet_convert.convert(options)
    print(imagenet_manifest.format_summary(result.manifest))
    if result.num_converted_now:
        logging.info("converted %d images in %.1f s (%.1f images/s)", result.num_converted_now,
                     result.seconds, result.num_converted_now / max(result.seconds, 1e-9))
    print(f"wrote {os.path.join(options.output_dir, schema.MANIFEST_FILE)}")
    if _STRICT.value and result.manifest["rejected"]:
        raise SystemExit(f"--strict: {len(result.manifest['rejected'])} files were rejected")


if __name__ == "__main__":
    errors.run_command(main)  # Bad input: one line naming it, exit status 2.
