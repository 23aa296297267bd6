"""AlexNet (Krizhevsky et al., NIPS 2012) and ZFNet (Zeiler & Fergus, 2013) as Keras models.

Every builder returns a functional `keras.Model` mapping float32 images
(batch, S, S, 3), already mean-subtracted on the 0..255 pixel scale, to float32 logits
(batch, num_classes); the softmax belongs to the loss. Layers are named conv1..conv5,
norm1, norm2 (when LRN is on), pool1, pool2, pool5, conv6 (with `sixth_conv`), fc6, fc7,
fc8, dropout6, dropout7.

AlexNet's ablation switches, each a builder argument whose default is the paper's net:
`activation` (relu | tanh, section 3.1), `pooling` (overlapping 3x3 stride 2 | non-
overlapping 2x2 stride 2, section 3.4), `use_lrn` (section 3.3), `variant="half_one_tower"`
(the one-GPU net of section 3.2), `sixth_conv` (section 6) and `dropout_rate` (section
4.2). `cnn4` (nn/cnn4.py) is the four-layer net of the paper's Figure 1.

`build_model(name=..., **kwargs)` is the entry used with a model spec (see run_dir.py).
"""

import math
from typing import Optional, Sequence

import keras

from alexnet_tf.nn import cnn4
from alexnet_tf.nn import init_presets
from alexnet_tf.nn.layer_args import ACTIVATIONS
from alexnet_tf.nn.layers import FullyConnected
from alexnet_tf.nn.layers import GroupedConv2D
from alexnet_tf.nn.layers import GroupedMaxPooling2D
from alexnet_tf.nn.lrn import LRN_CONVENTIONS
from alexnet_tf.nn.lrn import LocalResponseNormalization

ALEXNET_VARIANTS = ("paper", "one_tower", "half_one_tower")
# Max-pooling windows (section 3.4): overlapping z=3, s=2 (the paper's) or z=2, s=2.
POOLINGS = {"overlapping": (3, 2), "non_overlapping": (2, 2)}
POOLING_NAMES = tuple(POOLINGS)
# Feature-map widths: conv1..conv5, then the two hidden fully-connected layers.
PAPER_WIDTHS = (96, 256, 384, 384, 256, 4096, 4096)
ONE_TOWER_WIDTHS = (64, 192, 384, 256, 256, 4096, 4096)
# The paper's one-GPU net (section 3.2 and its footnote): half the kernels of conv1..conv4
# in a single tower; conv5 and the fully-connected layers keep the two-tower net's widths,
# "so to make the two nets have approximately the same number of parameters".
HALF_ONE_TOWER_WIDTHS = (48, 128, 192, 192, 256, 4096, 4096)
ALEXNET_WIDTHS = {"paper": PAPER_WIDTHS, "one_tower": ONE_TOWER_WIDTHS,
                  "half_one_tower": HALF_ONE_TOWER_WIDTHS}
ZFNET_WIDTHS = (96, 256, 384, 384, 256, 4096, 4096)
ZFNET_WIDE_WIDTHS = (96, 256, 512, 1024, 512, 4096, 4096)
NUM_TOWERS = 2
NUM_WIDTHS = 7
# The paper's LRN (section 3.3): n=5, k=2, alpha=1e-4, beta=0.75.
LRN_SIZE, LRN_K, LRN_ALPHA, LRN_BETA = 5, 2.0, 1e-4, 0.75


def _init(preset: str, layer_name: str) -> dict:
    """The kernel and bias initialisers of `layer_name` (init_presets.py)."""
    return init_presets.initializer_args(preset, layer_name)


def _scaled_widths(widths: Sequence[int], width_multiplier: float) -> list:
    """Scales every width, rounded to an even number >= 2 so the two towers split evenly."""
    if not (isinstance(width_multiplier, (int, float)) and width_multiplier > 0):
        raise ValueError(f"width_multiplier must be a number > 0, received {width_multiplier!r}")
    return [max(NUM_TOWERS, NUM_TOWERS * int(round(w * width_multiplier / NUM_TOWERS)))
            for w in widths]


def _widths(model_name: str, defaults: Sequence[int], widths: Optional[Sequence[int]],
            width_multiplier: float, towers: bool = False) -> list:
    """The layer widths: `widths` as given, else `defaults` scaled by `width_multiplier`.

    With `towers`, the widths of conv1..conv5 must be even: conv1, conv2, conv4 and conv5
    are split in two towers, and conv4's towers each read half of conv3's maps.
    """
    if widths is None:
        return _scaled_widths(defaults, width_multiplier)
    if width_multiplier != 1.0:
        raise ValueError(f"{model_name}: give widths or width_multiplier, not both; received "
                         f"widths={widths!r}, width_multiplier={width_multiplier!r}")
    received = widths
    widths = list(widths) if isinstance(widths, (list, tuple)) else None
    if (widths is None or len(widths) != NUM_WIDTHS
            or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths)):
        raise ValueError(f"{model_name}: widths must be {NUM_WIDTHS} integers >= 1 (conv1..conv5, "
                         f"fc6, fc7), received {received!r}")
    odd = [f"conv{index + 1}={w}" for index, w in enumerate(widths[:5]) if w % NUM_TOWERS]
    if towers and odd:
        raise ValueError(f"{model_name}: the two-tower net needs even conv widths, received "
                         f"{', '.join(odd)}")
    return widths


def _pool_size(size: int, pool_padding: str = "valid", pooling: str = "overlapping") -> int:
    """Spatial size after a stride-2 max-pool (3x3 overlapping or 2x2 non-overlapping)."""
    window, stride = POOLINGS[pooling]
    return math.ceil(size / stride) if pool_padding == "same" else (size - window) // stride + 1


def _pool5_size(conv1_size: int, pooling: str) -> int:
    """pool5's side from conv1's: pool1, pool2 and pool5 each shrink it (the convolutions
    between them keep the size)."""
    size = conv1_size
    for _ in range(3):
        size = _pool_size(size, pooling=pooling)
    return size


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, received {value!r}")


def _check_common_args(num_classes, dropout_rate, lrn_convention, init, lrn_k=LRN_K,
                       activation="relu"):
    """Checks the arguments every builder shares, before any weight is created."""
    _check_choice("activation", activation, ACTIVATIONS)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, received {num_classes!r}")
    if not (isinstance(dropout_rate, (int, float)) and 0.0 <= dropout_rate < 1.0):
        raise ValueError(f"dropout_rate must be in [0, 1), received {dropout_rate!r}")
    if lrn_convention not in LRN_CONVENTIONS:
        raise ValueError(f"lrn_convention must be one of {LRN_CONVENTIONS}, "
                         f"received {lrn_convention!r}")
    if init not in init_presets.PRESETS:
        raise ValueError(f"init must be one of {init_presets.NAMES}, received {init!r}")
    if isinstance(lrn_k, bool) or not (isinstance(lrn_k, (int, float)) and lrn_k > 0):
        raise ValueError(f"lrn_k must be a number > 0, received {lrn_k!r}")


def _check_min_size(model_name: str, input_size: int, final_size: int, rule: str):
    if final_size < 1:
        raise ValueError(f"{model_name}: input_size={input_size} is too small: pool5 would be "
                         f"empty; {rule}")


def _paper_conv1_padding(input_size: int, pooling: str = "overlapping"):
    """Zero padding before conv1 that gives the paper's 55x55 from 224 (and keeps 227 as is).

    conv1 is 11x11 stride 4 "valid": out = (S + pad - 11) / 4 + 1. From 227, 55 with no
    padding; from 224 the paper's 55 needs 3 pixels of padding, put as 1 on the top/left
    and 2 on the bottom/right. In general S % 4 == 3 needs none and S % 4 == 0 needs 3.
    """
    rule = "AlexNet input_size must be >= 64 with input_size % 4 in (0, 3), e.g. 224 or 227"
    if isinstance(input_size, bool) or not isinstance(input_size, int):
        raise ValueError(f"alexnet: input_size must be an integer, received {input_size!r}")
    if input_size % 4 == 3:
        padding = None
    elif input_size % 4 == 0:
        padding = ((1, 2), (1, 2))
    else:
        raise ValueError(f"alexnet: conv1 (11x11 stride 4) cannot tile input_size={input_size} "
                         f"exactly; {rule}")
    conv1 = (input_size + (3 if padding else 0) - 11) // 4 + 1
    _check_min_size("alexnet", input_size, _pool5_size(conv1, pooling), rule)
    return padding


def _classifier(x, widths, num_classes, dropout_rate, init, activation="relu"):
    """pool5 features -> fc6 -> dropout -> fc7 -> dropout -> fc8 logits (float32)."""
    x = keras.layers.Flatten(name="flatten")(x)  # (batch, 6*6*256) at full size
    for index, width in ((6, widths[5]), (7, widths[6])):
        name = f"fc{index}"
        x = FullyConnected(width, activation=activation, name=name,
                           **_init(init, name))(x)
        x = keras.layers.Dropout(dropout_rate, name=f"dropout{index}")(x)
    # dtype float32: the logits (and so the loss) stay float32 under mixed precision.
    return FullyConnected(num_classes, name="fc8", dtype="float32",
                          **_init(init, "fc8"))(x)


def _lrn(name, use_lrn, lrn_convention, groups=1, devices=None, lrn_bfloat16=False,
         lrn_k=LRN_K):
    """Returns the paper's LRN (n=5, k=2, alpha=1e-4, beta=0.75) or None when disabled."""
    if not use_lrn:
        return None
    return LocalResponseNormalization(size=LRN_SIZE, k=float(lrn_k), alpha=LRN_ALPHA,
                                      beta=LRN_BETA, convention=lrn_convention, groups=groups,
                                      bfloat16_compute=lrn_bfloat16,
                                      devices=devices, name=name)


def _pool(name, tower_devices, pooling="overlapping"):
    """Max-pool (3x3 or 2x2, stride 2); per tower when the towers have devices."""
    window, stride = POOLINGS[pooling]
    if tower_devices:
        return GroupedMaxPooling2D(window, stride, groups=NUM_TOWERS, devices=tower_devices,
                                   name=name)
    return keras.layers.MaxPooling2D(window, stride, name=name)


def _tower_conv(filters, kernel_size, name, towers, init, **kwargs):
    """A convolution split in `towers["groups"]` towers; a plain one for a single tower."""
    if towers["groups"] == 1:
        kwargs.pop("split_input", None)
        return keras.layers.Conv2D(filters, kernel_size, name=name, **kwargs,
                                   **_init(init, name))
    return GroupedConv2D(filters, kernel_size, name=name, **towers, **kwargs,
                         **_init(init, name))


def _sixth_conv(x, width, init, activation):
    """Section 6's extra layer "over the last pooling layer": 3x3, pool5's width, "same".

    It reads pool5 and keeps its shape, so fc6 is unchanged; one tower (every kernel sees
    all of pool5's maps, like conv3), initialised as conv5. (batch, 6, 6, 256)
    """
    return keras.layers.Conv2D(width, 3, padding="same", activation=activation, name="conv6",
                               **init_presets.initializer_args(init, "conv5"))(x)


def _paper_features(x, widths, use_lrn, lrn_convention, tower_devices, init,
                    lrn_bfloat16=False, lrn_k=LRN_K, lrn_across_towers=False,
                    activation="relu", pooling="overlapping", num_towers=NUM_TOWERS):
    """The paper's conv1..pool5. x: (batch, 227, 227, 3) -> (batch, 6, 6, 256).

    Two towers (section 3.2), or with num_towers=1 the same layers in one tower (the
    paper's one-GPU net, given its widths).
    """
    towers = dict(groups=num_towers, devices=tower_devices)
    act = dict(activation=activation)
    # conv1: both towers see the whole image, 48 kernels each. (batch, 55, 55, 96)
    x = _tower_conv(widths[0], 11, "conv1", towers, init, strides=4, split_input=False,
                    **act)(x)
    # The paper normalises and pools each tower's maps on its own GPU; LRN's window
    # stays inside a tower in every mode so one-device and two-device nets agree.
    # Caffe's bvlc_alexnet normalises across all maps (lrn_across_towers).
    lrn = dict(lrn_bfloat16=lrn_bfloat16, lrn_k=lrn_k,
               **(dict(groups=1, devices=None) if lrn_across_towers else towers))
    for layer in (_lrn("norm1", use_lrn, lrn_convention, **lrn),
                  _pool("pool1", tower_devices, pooling)):  # (batch, 27, 27, 96)
        x = layer(x) if layer is not None else x
    x = _tower_conv(widths[1], 5, "conv2", towers, init, padding="same",
                    **act)(x)  # (batch, 27, 27, 256)
    for layer in (_lrn("norm2", use_lrn, lrn_convention, **lrn),
                  _pool("pool2", tower_devices, pooling)):  # (batch, 13, 13, 256)
        x = layer(x) if layer is not None else x
    # conv3 is where the towers exchange: every kernel sees all 256 maps. (batch, 13, 13, 384)
    x = keras.layers.Conv2D(widths[2], 3, padding="same", name="conv3", **act,
                            **_init(init, "conv3"))(x)
    x = _tower_conv(widths[3], 3, "conv4", towers, init, padding="same",
                    **act)(x)  # (batch, 13, 13, 384)
    x = _tower_conv(widths[4], 3, "conv5", towers, init, padding="same",
                    **act)(x)  # (batch, 13, 13, 256)
    return _pool("pool5", tower_devices, pooling)(x)  # (batch, 6, 6, 256)


def _one_tower_features(x, widths, input_size, init, activation="relu",
                        pooling="overlapping"):
    """torchvision's single-tower conv1..pool5 (no LRN). 224 -> (batch, 6, 6, 256)."""
    # torchvision pads conv1 by 2 on every side: (224 + 4 - 11) // 4 + 1 = 55.
    conv1 = (input_size + 4 - 11) // 4 + 1
    _check_min_size("alexnet(one_tower)", input_size, _pool5_size(conv1, pooling),
                    "use input_size >= 63")
    act = dict(activation=activation)
    x = keras.layers.ZeroPadding2D(2, name="conv1_pad")(x)
    x = keras.layers.Conv2D(widths[0], 11, strides=4, name="conv1", **act,
                            **_init(init, "conv1"))(x)  # (batch, 55, 55, 64)
    x = _pool("pool1", None, pooling)(x)  # (batch, 27, 27, 64)
    x = keras.layers.Conv2D(widths[1], 5, padding="same", name="conv2", **act,
                            **_init(init, "conv2"))(x)  # (batch, 27, 27, 192)
    x = _pool("pool2", None, pooling)(x)  # (batch, 13, 13, 192)
    for index in (3, 4, 5):  # (batch, 13, 13, 384 / 256 / 256)
        name = f"conv{index}"
        x = keras.layers.Conv2D(widths[index - 1], 3, padding="same", name=name, **act,
                                **_init(init, name))(x)
    return _pool("pool5", None, pooling)(x)  # (batch, 6, 6, 256)


def _check_alexnet_args(variant, pooling, tower_devices, lrn_across_towers):
    _check_choice("alexnet: variant", variant, ALEXNET_VARIANTS)
    _check_choice("alexnet: pooling", pooling, POOLING_NAMES)
    if tower_devices is not None and (isinstance(tower_devices, str)
                                      or len(tower_devices) != NUM_TOWERS):
        raise ValueError(f"alexnet: tower_devices must be {NUM_TOWERS} device names, received "
                         f"{tower_devices!r}")
    if tower_devices is not None and variant != "paper":
        raise ValueError(f"alexnet: tower_devices needs variant='paper' (the only two-tower "
                         f"net), received variant={variant!r}")
    if lrn_across_towers and variant != "paper":
        raise ValueError(f"alexnet: lrn_across_towers needs variant='paper' (the only net "
                         f"whose LRN has towers), received variant={variant!r}")


def alexnet(num_classes: int = 1000, variant: str = "paper", input_size: int = 224,
            dropout_rate: float = 0.5, use_lrn: bool = True,
            tower_devices: Optional[Sequence[str]] = None, width_multiplier: float = 1.0,
            lrn_convention: str = "paper", lrn_bfloat16: bool = False,
            init: str = "paper", name: Optional[str] = None,
            widths: Optional[Sequence[int]] = None, lrn_k: float = LRN_K,
            lrn_across_towers: bool = False, activation: str = "relu",
            pooling: str = "overlapping", sixth_conv: bool = False) -> keras.Model:
    """Builds AlexNet.

    Args:
      num_classes: number of output logits (1000 for ImageNet).
      variant: "paper": the NIPS 2012 two-tower net, 96-256-384-384-256 kernels with
        conv2, conv4, conv5 grouped in two towers, LRN after conv1 and conv2; 60,965,224
        parameters with 1000 classes. "half_one_tower": the paper's one-GPU comparison
        net (section 3.2), the same layers in a single tower with 48-128-192-192-256
        kernels and fc 4096-4096 (the paper halves conv1..conv4 only; footnote 2);
        59,798,312 parameters. "one_tower": the single-GPU 64-192-384-256-256 net
        without LRN used by torchvision and TF-Slim (61,100,840 parameters).
      input_size: S of the (S, S, 3) input. Paper variants: S % 4 in (0, 3) and S >= 64;
        224 is zero-padded (1 top/left, 2 bottom/right) to 227 so conv1 gives 55x55; 227
        needs no padding. One-tower variant: S >= 63 (conv1 pads 2 on every side).
      dropout_rate: dropout after fc6 and fc7 (paper: 0.5; 0 is the "without dropout" of
        section 4.2).
      use_lrn: whether the paper variants have norm1 and norm2 (ignored for one_tower).
      tower_devices: two device names, e.g. ("/GPU:0", "/GPU:1"), to place each tower's
        variables and ops for conv1, norm1, pool1, conv2, norm2, pool2, conv4, conv5 and
        pool5 (paper variant only; conv3 and the fc layers use the default device). The
        weights are the same with or without it, so checkpoints carry over.
      width_multiplier: scales every conv and hidden fc width (rounded to even), for
        small demo networks; 1.0 is the paper.
      lrn_convention: "paper" (alpha * sum) or "caffe" (alpha / size * sum).
      lrn_bfloat16: under mixed_bfloat16, compute LRN in bfloat16 (faster) instead of
        float32 (the default); see LocalResponseNormalization's `bfloat16_compute`.
      init: the initialisation preset (`init_presets.PRESETS`): "paper" (section 5:
        weights N(0, 0.01), biases 1 in conv2, conv4, conv5, fc6 and fc7), or what the
        released code used: "cuda_convnet2", "caffe".
      name: model name; default "alexnet", "alexnet_half_one_tower" or
        "alexnet_one_tower".
      widths: the 7 widths conv1..conv5, fc6, fc7 (instead of the variant's, scaled by
        width_multiplier), e.g. read from a weight file; the paper variant needs even
        conv widths.
      lrn_k: LRN's additive constant k (paper 2; Caffe's bvlc_alexnet 1).
      lrn_across_towers: paper variant: LRN's window spans all of norm1's 96 and norm2's
        256 maps, as in Caffe's single-GPU bvlc_alexnet, instead of staying within each
        tower's half (the paper's two GPUs).
      activation: the non-linearity of every conv and hidden fc layer: "relu" (section
        3.1) or "tanh" (the saturating neuron it is compared with, Figure 1).
      pooling: "overlapping" (z=3, s=2, section 3.4) or "non_overlapping" (z=2, s=2).
        From 224 both give 27-13-6; at other sizes fc6's input follows pool5's size.
      sixth_conv: add conv6 over pool5 (section 6's net for the 10,184-class ImageNet):
        3x3 "same", pool5's width, the same activation, so fc6 is unchanged.

    Returns:
      An uncompiled keras.Model: (batch, S, S, 3) float32 -> (batch, num_classes) logits.

    Raises:
      ValueError: an argument is out of range (the message says which and why).
    """
    _check_common_args(num_classes, dropout_rate, lrn_convention, init, lrn_k, activation)
    _check_alexnet_args(variant, pooling, tower_devices, lrn_across_towers)
    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name="images")
    if variant == "one_tower":
        widths = _widths("alexnet(one_tower)", ALEXNET_WIDTHS[variant], widths,
                         width_multiplier)
        x = _one_tower_features(inputs, widths, input_size, init, activation, pooling)
    else:
        two_towers = variant == "paper"
        widths = _widths(f"alexnet({variant})", ALEXNET_WIDTHS[variant], widths,
                         width_multiplier, towers=two_towers)
        padding = _paper_conv1_padding(input_size, pooling)
        x = keras.layers.ZeroPadding2D(padding, name="conv1_pad")(inputs) if padding else inputs
        x = _paper_features(x, widths, use_lrn, lrn_convention,
                            tuple(tower_devices) if tower_devices else None, init, lrn_bfloat16,
                            lrn_k, bool(lrn_across_towers), activation, pooling,
                            num_towers=NUM_TOWERS if two_towers else 1)
    if sixth_conv:
        x = _sixth_conv(x, widths[4], init, activation)
    logits = _classifier(x, widths, num_classes, dropout_rate, init, activation)
    default_name = "alexnet" if variant == "paper" else f"alexnet_{variant}"
    return keras.Model(inputs, logits, name=name or default_name)


def zfnet(num_classes: int = 1000, wide: bool = False, input_size: int = 224,
          dropout_rate: float = 0.5, use_lrn: bool = True, width_multiplier: float = 1.0,
          lrn_convention: str = "paper", lrn_bfloat16: bool = False,
          init: str = "zfnet", name: Optional[str] = None,
          widths: Optional[Sequence[int]] = None, lrn_k: float = LRN_K) -> keras.Model:
    """Builds ZFNet (Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks").

    conv1 96 7x7 stride 2 (pad 1) -> pool -> LRN; conv2 256 5x5 stride 2 -> pool -> LRN;
    conv3..conv5 384-384-256 3x3 (wide: 512-1024-512) -> pool; fc6, fc7 4096; fc8. No
    grouping. Feature maps from 224: 110 -> 55 -> 26 -> 13 -> 6x6. ZF's "contrast
    normalisation" is implemented as AlexNet's cross-channel LRN (n=5, k=2, alpha=1e-4,
    beta=0.75); pool1 and pool2 pad "same" to reach ZF's 55 and 13. Weights N(0, 0.01),
    biases 0, as in the ZF paper.

    Args:
      num_classes: number of output logits.
      wide: use the 512-1024-512 conv3..conv5 widths.
      input_size: S of the (S, S, 3) input; >= 53 (224 in the paper).
      dropout_rate: dropout after fc6 and fc7.
      use_lrn: whether to normalise after pool1 and pool2.
      width_multiplier: scales every conv and hidden fc width, for demos.
      lrn_convention: "paper" or "caffe" (see alexnet_tf.nn.lrn.LocalResponseNormalization).
      lrn_bfloat16: compute LRN in bfloat16 under mixed_bfloat16 (default float32).
      init: the initialisation preset; "zfnet" (weights 0.01, biases 0) is ZF's.
      name: model name; default "zfnet" or "zfnet_wide".
      widths: the 7 widths conv1..conv5, fc6, fc7 instead of the scaled defaults.
      lrn_k: LRN's additive constant k (2 as in AlexNet).

    Returns:
      An uncompiled keras.Model: (batch, S, S, 3) float32 -> (batch, num_classes) logits.

    Raises:
      ValueError: an argument is out of range.
    """
    _check_common_args(num_classes, dropout_rate, lrn_convention, init, lrn_k)
    if isinstance(input_size, bool) or not isinstance(input_size, int):
        raise ValueError(f"zfnet: input_size must be an integer, received {input_size!r}")
    conv1 = (input_size + 2 - 7) // 2 + 1
    conv2 = (_pool_size(conv1, "same") - 5) // 2 + 1
    _check_min_size("zfnet", input_size, _pool_size(_pool_size(conv2, "same")) if conv2 > 0
                    else 0, "use input_size >= 53 (224 in the paper)")
    widths = _widths("zfnet", ZFNET_WIDE_WIDTHS if wide else ZFNET_WIDTHS, widths,
                     width_multiplier)
    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name="images")
    x = keras.layers.ZeroPadding2D(1, name="conv1_pad")(inputs)
    x = keras.layers.Conv2D(widths[0], 7, strides=2, activation="relu", name="conv1",
                            **_init(init, "conv1"))(x)  # (batch, 110, 110, 96)
    x = keras.layers.MaxPooling2D(3, 2, padding="same", name="pool1")(x)  # (batch, 55, 55, 96)
    x = _lrn("norm1", use_lrn, lrn_convention, lrn_bfloat16=lrn_bfloat16,
             lrn_k=lrn_k)(x) if use_lrn else x
    x = keras.layers.Conv2D(widths[1], 5, strides=2, activation="relu", name="conv2",
                            **_init(init, "conv2"))(x)  # (batch, 26, 26, 256)
    x = keras.layers.MaxPooling2D(3, 2, padding="same", name="pool2")(x)  # (batch, 13, 13, 256)
    x = _lrn("norm2", use_lrn, lrn_convention, lrn_bfloat16=lrn_bfloat16,
             lrn_k=lrn_k)(x) if use_lrn else x
    for index in (3, 4, 5):  # (batch, 13, 13, 384 / 384 / 256)
        layer_name = f"conv{index}"
        x = keras.layers.Conv2D(widths[index - 1], 3, padding="same", activation="relu",
                                name=layer_name, **_init(init, layer_name))(x)
    x = keras.layers.MaxPooling2D(3, 2, name="pool5")(x)  # (batch, 6, 6, 256)
    logits = _classifier(x, widths, num_classes, dropout_rate, init)
    return keras.Model(inputs, logits, name=name or ("zfnet_wide" if wide else "zfnet"))


MODEL_BUILDERS = {"alexnet": alexnet, "zfnet": zfnet, "cnn4": cnn4.cnn4}


def build_model(name: str = "alexnet", **kwargs) -> keras.Model:
    """Builds a model by name: build_model("alexnet", num_classes=10, variant="paper").

    Args:
      name: "alexnet", "zfnet" or "cnn4" (Figure 1's four-layer net, nn/cnn4.py).
      **kwargs: passed to the builder.

    Returns:
      The keras.Model.

    Raises:
      ValueError: unknown name.
    """
    if name not in MODEL_BUILDERS:
        raise ValueError(f"build_model: name must be one of {sorted(MODEL_BUILDERS)}, "
                         f"received {name!r}")
    return MODEL_BUILDERS[name](**kwargs)


def layer_settings(spec: dict) -> dict:
    """What decides the shapes of a model spec's conv1..fc7: the net and its widths.

    Two specs whose layer settings differ share no weights below fc8, so `train
    --init_checkpoint` between them would copy nothing.

    Args:
      spec: a model spec {"name": ..., **builder kwargs} (see run_dir.py).

    Returns:
      {"model", "variant" (AlexNet) or "zfnet_wide" (ZFNet), "widths" (7 integers; cnn4:
      its 3 conv widths)}.
    """
    name = spec.get("name", "alexnet")
    widths = spec.get("widths")
    multiplier = spec.get("width_multiplier", 1.0)
    if name == "cnn4":
        return dict(model=name, widths=cnn4.scaled_widths(multiplier))
    if name == "alexnet":
        variant = spec.get("variant", "paper")
        defaults = ALEXNET_WIDTHS[variant]
        settings = dict(model=name, variant=variant)
    else:
        wide = bool(spec.get("wide", False))
        defaults = ZFNET_WIDE_WIDTHS if wide else ZFNET_WIDTHS
        settings = dict(model=name, zfnet_wide=wide)
    settings["widths"] = list(widths) if widths else _scaled_widths(defaults, multiplier)
    return settings


def lrn_settings(spec: dict) -> dict:
    """What a model spec's LRN computes: settings that change no weight's shape.

    Two specs whose LRN settings differ give different outputs from the same weights, so
    weights copied between them (`train --init_checkpoint`) would not do what they did.

    Args:
      spec: a model spec {"name": ..., **builder kwargs} (see run_dir.py).

    Returns:
      {} for a net that has no LRN layers (one_tower, cnn4); {"use_lrn": False} when they are
      off; else use_lrn, lrn_convention, lrn_k and, for AlexNet, lrn_across_towers, with
      the builders' defaults filled in.
    """
    name = spec.get("name", "alexnet")
    if name == "cnn4" or (name == "alexnet" and spec.get("variant", "paper") == "one_tower"):
        return {}
    if not spec.get("use_lrn", True):
        return {"use_lrn": False}
    settings = dict(use_lrn=True, lrn_convention=spec.get("lrn_convention", "paper"),
                    lrn_k=float(spec.get("lrn_k", LRN_K)))
    if name == "alexnet":
        settings["lrn_across_towers"] = bool(spec.get("lrn_across_towers", False))
    return settings
