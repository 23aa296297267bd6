r"""See what the network learned: the paper's figures and Zeiler & Fergus' tools, as PNGs.

  python -m alexnet_tf.visualize kernels     --model_dir=M --output=kernels.png
  python -m alexnet_tf.visualize predictions --model_dir=M --images='val/*.JPEG' --output=p.png
  python -m alexnet_tf.visualize neighbors   --model_dir=M --images=q.jpg \
      --search='data/train-*' --output=n.png
  python -m alexnet_tf.visualize occlusion   --model_dir=M --images=q.jpg --layer=conv5 \
      --output=o.png
  python -m alexnet_tf.visualize deconv      --model_dir=M --images='data/validation-*' \
      --layer=conv3 --output=d.png
  python -m alexnet_tf.visualize receptive_fields [--model_dir=M]

`receptive_fields` prints each layer's receptive field (size, jump, start) for the model
given, or for every architecture when none is; it needs no weights and writes no PNG.

Images (--images, --search) are image files, the converter's TFRecord shards, directories
or globs; TFRecords carry the true label. `--saved_model` (an export, or one version of
it) serves `predictions` and `occlusion`'s probability map on its own; every other tool
needs the layers, so give the training run too (`--model_dir`): its config.json rebuilds
the model and the SavedModel's variables are loaded into it.
"""

from alexnet_tf import startup  # noqa: F401 (first: quiets TensorFlow's start-up notices)

import os  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from alexnet_tf import errors  # noqa: E402
from alexnet_tf import model_flags  # noqa: E402

RECEPTIVE_FIELDS = "receptive_fields"
TOOLS = ("kernels", "predictions", "neighbors", "occlusion", "deconv", RECEPTIVE_FIELDS)

_LABELS = flags.DEFINE_string("labels", None, "Class names: a labels.json or a text file with "
                              "one name a line; default the model's own.")
_OUTPUT = flags.DEFINE_string("output", None, "The PNG to write (receptive_fields prints "
                              "a table instead).")
_IMAGES = flags.DEFINE_list("images", [], "Images: files, TFRecord shards, directories, globs.")
_MAX_IMAGES = flags.DEFINE_integer("max_images", 8, "Use at most this many of --images "
                                   "(deconv ranks feature maps over all of them).")
_TRUE_LABELS = flags.DEFINE_list("true_labels", [], "True class (index or name) per image "
                                 "file; TFRecords carry their own.")
_TEN_CROP = flags.DEFINE_bool("ten_crop", False, "predictions: average the 10 crops' softmax.")
_SEARCH = flags.DEFINE_list("search", [], "neighbors: the search set (e.g. training shards).")
_SEARCH_LIMIT = flags.DEFINE_integer("search_limit", None, "neighbors: first N search images.")
_NUM_NEIGHBORS = flags.DEFINE_integer("num_neighbors", 6, "neighbors: images per query.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "neighbors: feature cache directory; "
                                 "default <model_dir>/viz_cache, or ./viz_cache for a SavedModel.")
_LAYER = flags.DEFINE_enum("layer", "conv5", ["conv1", "conv2", "conv3", "conv4", "conv5"],
                           "occlusion and deconv: the layer to look at.")
_PATCH_SIZE = flags.DEFINE_integer("patch_size", 0, "occlusion: grey square side in pixels; "
                                   "0 = crop size / 7 (32 for 224).")
_STRIDE = flags.DEFINE_integer("stride", 8, "occlusion: step of the square in pixels.")
_NUM_MAPS = flags.DEFINE_integer("num_maps", 9, "deconv: feature maps to show.")
_NUM_PER_MAP = flags.DEFINE_integer("num_per_map", 2, "deconv: images per feature map.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per forward pass.")


def _load_model():
    from alexnet_tf.viz import inputs as viz_inputs
    loaded = model_flags.load("visualize")
    if _LABELS.value:
        loaded.labels = viz_inputs.read_label_file(_LABELS.value)
    return loaded


def _images(tool: str, extra):
    from alexnet_tf.viz import inputs as viz_inputs
    patterns = list(_IMAGES.value) + list(extra)
    if not patterns:
        raise app.UsageError(f"`{tool}` needs images: --images=FILE,GLOB,SHARD...")
    return viz_inputs.read_images(patterns, limit=_MAX_IMAGES.value)


def run(tool: str, extra_images=()) -> dict:
    """Runs one tool with the flags' values; returns the tool's summary dict."""
    from alexnet_tf.viz import tools as viz_tools
    loaded = _load_model()
    output = _OUTPUT.value
    if tool == "kernels":
        return viz_tools.run_kernels(loaded, output)
    records = _images(tool, extra_images)
    if tool == "predictions":
        return viz_tools.run_predictions(loaded, records, output, true_labels=_TRUE_LABELS.value,
                                         ten_crop=_TEN_CROP.value)
    if tool == "neighbors":
        if not _SEARCH.value:
            raise app.UsageError("neighbors needs --search=<the images to search>")
        cache_dir = _CACHE_DIR.value or os.path.join(
            model_flags.MODEL_DIR.value or ".", "viz_cache")
        return viz_tools.run_neighbors(loaded, records, _SEARCH.value, output,
                                       cache_dir=cache_dir, num_neighbors=_NUM_NEIGHBORS.value,
                                       search_limit=_SEARCH_LIMIT.value, show_progress=True)
    if tool == "occlusion":
        return viz_tools.run_occlusion(
            loaded, records, output, layer=_LAYER.value,
            patch_size=_PATCH_SIZE.value or max(1, loaded.crop_size // 7), stride=_STRIDE.value,
            true_labels=_TRUE_LABELS.value, batch_size=_BATCH_SIZE.value)
    return viz_tools.run_deconv(loaded, records, output, layer=_LAYER.value,
                                num_maps=_NUM_MAPS.value, num_per_map=_NUM_PER_MAP.value,
                                batch_size=_BATCH_SIZE.value)


def _receptive_fields() -> None:
    from alexnet_tf.viz import tools as viz_tools
    model_given = model_flags.MODEL_DIR.value or model_flags.SAVED_MODEL.value
    print(viz_tools.receptive_field_tables(_load_model() if model_given else None))


def main(argv):
    if len(argv) < 2 or argv[1] not in TOOLS:
        raise app.UsageError(f"the first argument must be a tool: {', '.join(TOOLS)}")
    if argv[1] == RECEPTIVE_FIELDS:
        if len(argv) > 2:
            raise app.UsageError(f"unexpected arguments: {argv[2:]}")
        _receptive_fields()
        return
    if not _OUTPUT.value or not _OUTPUT.value.lower().endswith(".png"):
        raise app.UsageError("--output must name the .png file to write")
    run(argv[1], argv[2:])
    logging.info("wrote %s", _OUTPUT.value)
    print(_OUTPUT.value)


if __name__ == "__main__":
    errors.run_command(main)
