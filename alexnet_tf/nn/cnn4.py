"""The four-layer convolutional net of the AlexNet paper's Figure 1 (ReLU vs tanh).

Figure 1 trains "a four-layer convolutional neural network" on CIFAR-10 with ReLUs and
with tanh units and plots the training error; the paper gives no more of its shape. This
builder follows the CIFAR-10 nets of the authors' cuda-convnet: three 5x5 convolutions
of 32, 32 and 64 kernels ("same" padding), each followed by a 3x3 stride-2 max-pool, and
one fully-connected layer to the logits. From 32x32 the maps are 32 -> 16 -> 8 -> 4:

  conv1  5x5x3x32  + 32   =  2,432     (batch, 32, 32, 32) -> pool1 (batch, 16, 16, 32)
  conv2  5x5x32x32 + 32   = 25,632     (batch, 16, 16, 32) -> pool2 (batch, 8, 8, 32)
  conv3  5x5x32x64 + 64   = 51,264     (batch, 8, 8, 64)   -> pool3 (batch, 4, 4, 64)
  fc4    1024x10   + 10   = 10,250     logits
                            89,578 parameters with 10 classes

The pools pad "same" (cuda-convnet's pools cover the border the same way), so any input
size >= 8 works. No LRN, no dropout: the paper used no regularisation for Figure 1.
"""

from typing import Optional

import keras

from alexnet_tf.nn import init_presets
from alexnet_tf.nn.layer_args import ACTIVATIONS

WIDTHS = (32, 32, 64)
KERNEL_SIZE = 5
MIN_INPUT_SIZE = 8
# Where each layer's initialisation is read in a preset of init_presets (whose tables
# are AlexNet's layers): the convolutions by name, the output layer as AlexNet's fc8.
INIT_ENTRIES = {"conv1": "conv1", "conv2": "conv2", "conv3": "conv3", "fc4": "fc8"}


def scaled_widths(width_multiplier: float = 1.0) -> list:
    """conv1..conv3's widths scaled by `width_multiplier`, at least 1 kernel each."""
    return [max(1, int(round(width * width_multiplier))) for width in WIDTHS]


def cnn4(num_classes: int = 10, input_size: int = 32, activation: str = "relu",
         width_multiplier: float = 1.0, init: str = "zfnet",
         name: Optional[str] = None) -> keras.Model:
    """Builds Figure 1's four-layer net (3 conv + 1 fc, see the module docstring).

    Args:
      num_classes: number of output logits (CIFAR-10: 10).
      input_size: S of the (S, S, 3) input, >= 8 (CIFAR-10: 32).
      activation: "relu" or "tanh", after each convolution.
      width_multiplier: scales the three conv widths (at least 1 kernel each).
      init: an `init_presets` preset; conv1..conv3 take its conv1..conv3 entries and
        fc4 its fc8 entry. "zfnet" (weights N(0, 0.01), biases 0) gives both
        activations the same start.
      name: model name; default "cnn4".

    Returns:
      An uncompiled keras.Model: (batch, S, S, 3) float32 -> (batch, num_classes) logits.

    Raises:
      ValueError: an argument is out of range (the message says which).
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, received {activation!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, received {num_classes!r}")
    if (isinstance(input_size, bool) or not isinstance(input_size, int)
            or input_size < MIN_INPUT_SIZE):
        raise ValueError(f"cnn4: input_size must be an integer >= {MIN_INPUT_SIZE}, received "
                         f"{input_size!r}")
    if not (isinstance(width_multiplier, (int, float)) and width_multiplier > 0):
        raise ValueError(f"width_multiplier must be a number > 0, received {width_multiplier!r}")
    if init not in init_presets.PRESETS:
        raise ValueError(f"init must be one of {init_presets.NAMES}, received {init!r}")
    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name="images")
    x = inputs
    for index, width in enumerate(scaled_widths(width_multiplier), start=1):
        layer_name = f"conv{index}"  # S -> S/2 -> S/4 -> S/8
        x = keras.layers.Conv2D(width, KERNEL_SIZE,
                                padding="same", activation=activation, name=layer_name,
                                **init_presets.initializer_args(
                                        init, INIT_ENTRIES[layer_name]))(x)
        x = keras.layers.MaxPooling2D(3, 2, padding="same", name=f"pool{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)  # (batch, 4 * 4 * 64) from 32
    # dtype float32: the logits (and so the loss) stay float32 under mixed precision.
    logits = keras.layers.Dense(num_classes, name="fc4", dtype="float32",
                                **init_presets.initializer_args(init, INIT_ENTRIES["fc4"]))(x)
    return keras.Model(inputs, logits, name=name or "cnn4")
