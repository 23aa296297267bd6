"""Initialisation presets: each layer's weight standard deviation and bias, with its source.

Weights are drawn from N(0, std^2); biases are constants. The paper's text and the code
its authors and Caffe released differ, and the difference decides whether plain SGD at
learning rate 0.01 leaves chance at all (README, "Initialisation"):

  layer   paper            cuda_convnet2          caffe                  zfnet
          std     bias     std     bias           std      bias          std    bias
  conv1   0.01    0        0.01    0              0.01     0             0.01   0
  conv2   0.01    1        0.01    1              0.01     0.1           0.01   0
  conv3   0.01    0        0.03    0              0.01     0             0.01   0
  conv4   0.01    1        0.03    1              0.01     0.1           0.01   0
  conv5   0.01    1        0.03    1              0.01     0.1           0.01   0
  fc6     0.01    1        0.01    1              0.005    0.1           0.01   0
  fc7     0.01    1        0.01    1              0.005    0.1           0.01   0
  fc8     0.01    0        0.01    -7 (no effect) 0.01     0             0.01   0

Sources:
  paper          Krizhevsky, Sutskever & Hinton (NIPS 2012), section 5.
  cuda_convnet2  cuda-convnet2's ImageNet layer file, layers/layers-imagenet-1gpu.cfg
                 (initW / initB per layer; github.com/akrizhevsky/cuda-convnet2, as kept
                 in the NervanaSystems/cuda-convnet2 fork). fc8's bias -7 shifts every
                 logit alike, which the softmax ignores.
  caffe          Caffe's bvlc_alexnet, models/bvlc_alexnet/train_val.prototxt
                 (github.com/BVLC/caffe), whose readme says biases of 1 "gave flat loss".
  zfnet          Zeiler & Fergus (ECCV 2014), section 3: weights 0.01, biases 0.
"""

import dataclasses
from typing import Dict, Tuple

import keras

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")


@dataclasses.dataclass(frozen=True)
class Preset:
    """Per-layer (weight std, bias) of one initialisation, and where it comes from."""
    source: str
    layers: Dict[str, Tuple[float, float]]

    def stddev(self, layer_name: str) -> float:
        return self.layers[layer_name][0]

    def bias(self, layer_name: str) -> float:
        return self.layers[layer_name][1]


def _table(stds, biases) -> Dict[str, Tuple[float, float]]:
    return {name: (float(std), float(bias)) for name, std, bias in zip(LAYERS, stds, biases)}


PRESETS = {
        "paper": Preset("Krizhevsky et al. 2012, section 5", _table(
                [0.01] * 8, [0, 1, 0, 1, 1, 1, 1, 0])),
        "cuda_convnet2": Preset("cuda-convnet2, layers/layers-imagenet-1gpu.cfg", _table(
                [0.01, 0.01, 0.03, 0.03, 0.03, 0.01, 0.01, 0.01], [0, 1, 0, 1, 1, 1, 1, -7])),
        "caffe": Preset("Caffe, models/bvlc_alexnet/train_val.prototxt", _table(
                [0.01, 0.01, 0.01, 0.01, 0.01, 0.005, 0.005, 0.01],
                [0, 0.1, 0, 0.1, 0.1, 0.1, 0.1, 0])),
        "zfnet": Preset("Zeiler & Fergus 2014, section 3", _table([0.01] * 8, [0] * 8)),
}
NAMES = tuple(PRESETS)


def initializer_args(preset: str, layer_name: str) -> dict:
    """kernel_initializer and bias_initializer of `layer_name` under `preset`.

    Raises:
      ValueError: an unknown preset or layer.
    """
    if preset not in PRESETS:
        raise ValueError(f"init must be one of {NAMES}, received {preset!r}")
    if layer_name not in LAYERS:
        raise ValueError(f"no initialisation for layer {layer_name!r}; layers: {LAYERS}")
    std, bias = PRESETS[preset].layers[layer_name]
    return dict(kernel_initializer=keras.initializers.RandomNormal(stddev=std),
                bias_initializer=keras.initializers.Constant(bias))
