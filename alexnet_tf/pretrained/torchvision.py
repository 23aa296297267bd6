"""torchvision's AlexNet (`torchvision.models.alexnet`, alexnet-owt-*.pth): its state dict.

torchvision's net is the one-tower "one weird trick" AlexNet (Krizhevsky 2014):
features.0 conv 64 11x11 stride 4 pad 2, ReLU, max pool 3/2; features.3 conv 192 5x5
pad 2, ReLU, max pool; features.6, .8, .10 convs 384, 256, 256 3x3 pad 1 with ReLUs;
max pool; an adaptive average pool to 6x6 (the identity at its 224x224 input, whose
pool5 is 6x6 already); classifier.1, .4, .6 fully connected (dropout before the first
two). That is `models.alexnet(variant="one_tower")` at input_size 224.

Its input is the 0..1 image normalised per channel, (x / 255 - mean) / std. The
shared preprocessing subtracts a per-channel mean on the 0..255 scale, so the mean
goes to the statistics as 255 * mean, and 1 / (255 * std) is folded into conv1's
kernels: conv1 then sees exactly torchvision's input (its zero padding included, as
zero is the mean in both).
"""

import numpy as np

from alexnet_tf import errors
from alexnet_tf.pretrained import mapping
from alexnet_tf.pretrained import torch_pickle

INPUT_SIZE = 224
# torchvision's ImageNet normalisation (torchvision.transforms.Normalize), 0..1 scale.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
PIXEL_SCALE = 255.0
# Keras layer -> torchvision's module.
MODULES = {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6",
           "conv4": "features.8", "conv5": "features.10", "fc6": "classifier.1",
           "fc7": "classifier.4", "fc8": "classifier.6"}
# A state dict saved from nn.DataParallel prefixes every key.
_DATA_PARALLEL_PREFIX = "module."


def read_alexnet(path: str) -> mapping.SourceWeights:
    """Reads torchvision's AlexNet state dict, with the input normalisation folded in.

    Returns:
      The weights in NCHW layout; conv1's kernels divided by 255 * std per input channel
      (see the module docstring). Shapes are checked by `mapping.check`.

    Raises:
      MissingInputError: no such file.
      InvalidInputError: not a PyTorch state dict, or not AlexNet's keys.
    """
    state = torch_pickle.load_state_dict(path)
    if state and all(key.startswith(_DATA_PARALLEL_PREFIX) for key in state):
        state = {key[len(_DATA_PARALLEL_PREFIX):]: value for key, value in state.items()}
    expected = {f"{module}.{part}" for module in MODULES.values() for part in ("weight", "bias")}
    missing = sorted(expected - set(state), key=_natural)
    unexpected = sorted(set(state) - expected, key=_natural)
    if missing or unexpected:
        raise errors.InvalidInputError(
                f"{path}: not torchvision's AlexNet state dict: missing {missing or 'nothing'}, "
                f"unexpected {unexpected[:6] or 'nothing'}")
    arrays = {layer: (np.asarray(state[f"{module}.weight"], np.float32),
                      np.asarray(state[f"{module}.bias"], np.float32))
              for layer, module in MODULES.items()}
    conv1, bias1 = arrays["conv1"]
    if conv1.ndim == 4 and conv1.shape[1] == len(STD):
        scale = 1.0 / (PIXEL_SCALE * np.asarray(STD, np.float64))
        arrays["conv1"] = ((conv1 * scale[None, :, None, None]).astype(np.float32), bias1)
    return mapping.SourceWeights(arrays=arrays, groups={layer: 1 for layer in mapping.CONV_LAYERS},
                                 source_names=dict(MODULES), path=path)


def mean_rgb() -> np.ndarray:
    """torchvision's per-channel mean on the 0..255 scale."""
    return (PIXEL_SCALE * np.asarray(MEAN, np.float64)).astype(np.float32)


def _natural(key: str):
    return [int(part) if part.isdigit() else part for part in key.split(".")]
