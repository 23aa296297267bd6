r"""Makes a small synthetic dataset in ImageNet's layout, for the demo and for tests.

  python tools/make_demo_data.py --output_dir=/tmp/alexnet_demo/raw
  python tools/convert_imagenet.py --imagenet_dir=/tmp/alexnet_demo/raw \
      --output_dir=/tmp/alexnet_demo/records --train_shards=8 --validation_shards=2

Ten visually distinct classes (a shape or pattern in one colour each), training images
of varied sizes and aspect ratios in train/<wnid>/, a flat val/ with
validation_labels.txt, LOC_synset_mapping.txt, and one CMYK JPEG, one PNG named .JPEG,
one grayscale JPEG and one truncated file. See alexnet_tf/data/imagenet/demo.py.
"""

from absl import flags

from alexnet_tf import errors
from alexnet_tf.data.imagenet import demo as demo_data

_OUTPUT_DIR = flags.DEFINE_string("output_dir", None, "Folder to create.", required=True)
_NUM_CLASSES = flags.DEFINE_integer(
    "num_classes", 10, f"Number of classes (1..{len(demo_data.CLASSES)}).")
_NUM_TRAIN = flags.DEFINE_integer(
    "num_train_per_class", 300, "Training images per class (>= 5).")
_NUM_VAL = flags.DEFINE_integer("num_val_per_class", 50, "Validation images per class.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed: the same seed gives the same bytes.")
_OVERWRITE = flags.DEFINE_boolean(
    "overwrite", False, "Replace an earlier demo dataset in --output_dir made with other "
    "settings (a folder not made by this tool is never deleted).")


def main(argv):
    if len(argv) > 1:
        raise errors.InvalidInputError(f"unexpected arguments: {argv[1:]}")
    errors.check_output_directory(_OUTPUT_DIR.value, "--output_dir")
    path, made = demo_data.make_demo_data(
        _OUTPUT_DIR.value, num_classes=_NUM_CLASSES.value,
        num_train_per_class=_NUM_TRAIN.value, num_val_per_class=_NUM_VAL.value,
        seed=_SEED.value, overwrite=_OVERWRITE.value)
    print(f"{'wrote' if made else 'already there, same settings:'} {path}")


if __name__ == "__main__":
    errors.run_command(main)
