"""Computes a converted training set's colour statistics for the input pipeline.

  python tools/compute_stats.py --data_dir=OUT          # writes OUT/stats.npz

The per-pixel mean image (256x256x3), the per-channel mean and the eigenvalues and
eigenvectors of the RGB covariance (the paper's PCA colour augmentation), in the format
alexnet_tf/data/stats.py reads. Without such a file the pipeline uses the published ImageNet
values shipped in alexnet_tf/data/imagenet_stats.json. See alexnet_tf/data/imagenet/compute_stats.py.
"""

from alexnet_tf import startup  # noqa: F401 (first: quiets TensorFlow's start-up notices)

import os  # noqa: E402

from absl import flags  # noqa: E402
import numpy as np  # noqa: E402

from alexnet_tf import errors  # noqa: E402
from alexnet_tf.data import schema  # noqa: E402
from alexnet_tf.data import stats as stats_lib  # noqa: E402
from alexnet_tf.data.imagenet import compute_stats as stats_compute  # noqa: E402

_DATA_DIR = flags.DEFINE_string(
    "data_dir", None, "The converter's output directory (holds train-*-of-* shards).",
    required=True)
_OUTPUT = flags.DEFINE_string(
    "output", None, f"Where to write the statistics; default DATA_DIR/{stats_lib.STATS_FILE}.")
_SPLIT = flags.DEFINE_enum("split", schema.TRAIN, list(schema.SPLITS), "Split to read.")
_MAX_IMAGES = flags.DEFINE_integer(
    "max_images", 0, "Use only the first N images in shard order (shards are shuffled, so "
    "this is a random sample); 0 uses all.")
_RESIZE = flags.DEFINE_integer(
    "resize", 256, "Side of the canonical frame (and of the mean image).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images summed at once.")


def main(argv):
    if len(argv) > 1:
        raise errors.InvalidInputError(f"unexpected arguments: {argv[1:]}")
    errors.check_directory(_DATA_DIR.value, "--data_dir",
                           "the output of tools/convert_imagenet.py")
    stats = stats_compute.compute_stats(
        _DATA_DIR.value, split=_SPLIT.value, resize_size=_RESIZE.value,
        batch_size=_BATCH_SIZE.value, max_images=_MAX_IMAGES.value, show_progress=True)
    output = _OUTPUT.value or os.path.join(_DATA_DIR.value, stats_lib.STATS_FILE)
    stats_lib.save_stats(stats, output)
    with np.printoptions(precision=4, suppress=True):
        print(f"{stats.num_images} images\nmean_rgb {stats.mean_rgb}\neigval {stats.eigval}\n"
              f"eigvec (columns)\n{stats.eigvec}\nwrote {output}")


if __name__ == "__main__":
    errors.run_command(main)
