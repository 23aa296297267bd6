r"""Imports published AlexNet weights as a run directory.

  python -m alexnet_tf.import_weights --format=caffe --weights=bvlc_alexnet.caffemodel \
      [--mean=imagenet_mean.binaryproto] --model_dir=runs/caffe_alexnet
  python -m alexnet_tf.import_weights --format=torchvision \
      --weights=alexnet-owt-7be5be79.pth --model_dir=runs/torchvision_alexnet

The directory (config.json, checkpoints/, labels.json with the 1000 ImageNet classes,
stats.npz, model_flags.cfg) is read by evaluate, export, predict (through an export),
visualize and `train --init_checkpoint`. alexnet_tf/pretrained/importer.py says what
each format maps to; docs/pretrained.md gives the details and the checks.
"""

from alexnet_tf import startup  # noqa: F401 (first: quiets TensorFlow's start-up notices)

from absl import flags  # noqa: E402

from alexnet_tf import errors  # noqa: E402

_FORMAT = flags.DEFINE_enum("format", None, ["caffe", "torchvision"],
                            "caffe: BVLC's bvlc_alexnet.caffemodel; torchvision: "
                            "alexnet-owt-*.pth (a state dict).")
_WEIGHTS = flags.DEFINE_string("weights", None, "The weight file.")
_MEAN = flags.DEFINE_string("mean", None, "caffe only: Caffe's mean image "
                            "(imagenet_mean.binaryproto); default the per-channel mean.")
_MODEL_DIR = flags.DEFINE_string("model_dir", None, "The run directory to write (new or "
                                 "empty).")

flags.mark_flags_as_required(["format", "weights", "model_dir"])


def main(argv):
    if len(argv) > 1:
        raise errors.InvalidInputError(f"unexpected arguments: {argv[1:]}")
    from alexnet_tf.pretrained import importer
    imported = importer.import_weights(_FORMAT.value, _WEIGHTS.value, _MODEL_DIR.value,
                                       mean_path=_MEAN.value)
    config = imported.config
    print(f"imported {_WEIGHTS.value} ({_FORMAT.value}): alexnet variant={config.variant}, "
          f"widths={list(config.widths)}, {config.num_classes} classes, "
          f"input {config.input_size}x{config.input_size}, mean_mode={config.mean_mode}")
    print(f"wrote {_MODEL_DIR.value}  (evaluate: python3 -m alexnet_tf.evaluate "
          f"--model_dir={_MODEL_DIR.value} --data_dir=...)")
    return 0


if __name__ == "__main__":
    errors.run_command(main)
