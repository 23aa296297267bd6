"""AlexNet (Krizhevsky et al., NIPS 2012) and ZFNet (Zeiler & Fergus, 2013) as Keras models.

Every builder returns a functional `keras.Model` mapping float32 images
(batch, S, S, 3), already mean-subtracted on the 0..255 pixel scale, to float32 logits
(batch, num_classes); the softmax belongs to the loss. Layers are named conv1..conv5,
norm1, norm2 (when LRN is on), pool1, pool2, pool5, fc6, fc7, fc8, dropout6, dropout7.

`build_model(name=..., **kwargs)` is the entry used with a model spec (see run_dir.py).
"""

import math
from typing import Optional, Sequence

import keras

from alexnet_tf.nn import init_presets
from alexnet_tf.nn.layers import FullyConnected
from alexnet_tf.nn.layers import GroupedConv2D
from alexnet_tf.nn.layers import GroupedMaxPooling2D
from alexnet_tf.nn.lrn import LRN_CONVENTIONS
from alexnet_tf.nn.lrn import LocalResponseNormalization

ALEXNET_VARIANTS = ("paper", "one_tower")
# Feature-map widths: conv1..conv5, then the two hidden fully-connected layers.
PAPER_WIDTHS = (96, 256, 384, 384, 256, 4096, 4096)
ONE_TOWER_WIDTHS = (64, 192, 384, 256, 256, 4096, 4096)
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


def _pool_size(size: int, pool_padding: str = "valid") -> int:
    """Spatial size after a 3x3 stride-2 max-pool."""
    return math.ceil(size / 2) if pool_padding == "same" else (size - 3) // 2 + 1


def _check_common_args(num_classes, dropout_rate, lrn_convention, init, lrn_k=LRN_K):
    """Checks the arguments every builder shares, before any weight is created."""
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


def _paper_conv1_padding(input_size: int):
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
    _check_min_size("alexnet", input_size, _pool_size(_pool_size(_pool_size(conv1))), rule)
    return padding


def _classifier(x, widths, num_classes, dropout_rate, init):
    """pool5 features -> fc6 -> dropout -> fc7 -> dropout -> fc8 logits (float32)."""
    x = keras.layers.Flatten(name="flatten")(x)  # (batch, 6*6*256) at full size
    for index, width in ((6, widths[5]), (7, widths[6])):
        name = f"fc{index}"
        x = FullyConnected(width, activation="relu", name=name,
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


def _pool(name, tower_devices):
    """3x3 stride-2 overlapping max-pool; per tower when the towers have devices."""
    if tower_devices:
        return GroupedMaxPooling2D(3, 2, groups=NUM_TOWERS, devices=tower_devices, name=name)
    return keras.layers.MaxPooling2D(3, 2, name=name)


def _paper_features(x, widths, use_lrn, lrn_convention, tower_devices, init,
                    lrn_bfloat16=False, lrn_k=LRN_K, lrn_across_towers=False):
    """The paper's two-tower conv1..pool5. x: (batch, 227, 227, 3) -> (batch, 6, 6, 256)."""
    towers = dict(groups=NUM_TOWERS, devices=tower_devices)
    # conv1: both towers see the whole image, 48 kernels each. (batch, 55, 55, 96)
    x = GroupedConv2D(widths[0], 11, strides=4, activation="relu", split_input=False,
                      name="conv1", **towers, **_init(init, "conv1"))(x)
    # The paper normalises and pools each tower's maps on its own GPU; LRN's window
    # stays inside a tower in every mode so one-device and two-device nets agree.
    # Caffe's bvlc_alexnet normalises across all maps (lrn_across_towers).
    lrn = dict(lrn_bfloat16=lrn_bfloat16, lrn_k=lrn_k,
               **(dict(groups=1, devices=None) if lrn_across_towers else towers))
    for layer in (_lrn("norm1", use_lrn, lrn_convention, **lrn),
                  _pool("pool1", tower_devices)):  # (batch, 27, 27, 96)
        x = layer(x) if layer is not None else x
    x = GroupedConv2D(widths[1], 5, padding="same", activation="relu", name="conv2",
                      **towers, **_init(init, "conv2"))(x)  # (batch, 27, 27, 256)
    for layer in (_lrn("norm2", use_lrn, lrn_convention, **lrn),
                  _pool("pool2", tower_devices)):  # (batch, 13, 13, 256)
        x = layer(x) if layer is not None else x
    # conv3 is where the towers exchange: every kernel sees all 256 maps. (batch, 13, 13, 384)
    x = keras.layers.Conv2D(widths[2], 3, padding="same", activation="relu", name="conv3",
                            **_init(init, "conv3"))(x)
    x = GroupedConv2D(widths[3], 3, padding="same", activation="relu", name="conv4",
                      **towers, **_init(init, "conv4"))(x)  # (batch, 13, 13, 384)
    x = GroupedConv2D(widths[4], 3, padding="same", activation="relu", name="conv5",
                      **towers, **_init(init, "conv5"))(x)  # (batch, 13, 13, 256)
    return _pool("pool5", tower_devices)(x)  # (batch, 6, 6, 256)


def _one_tower_features(x, widths, input_size, init):
    """torchvision's single-tower conv1..pool5 (no LRN). 224 -> (batch, 6, 6, 256)."""
    # torchvision pads conv1 by 2 on every side: (224 + 4 - 11) // 4 + 1 = 55.
    conv1 = (input_size + 4 - 11) // 4 + 1
    _check_min_size("alexnet(one_tower)", input_size,
                    _pool_size(_pool_size(_pool_size(conv1))), "use input_size >= 63")
    x = keras.layers.ZeroPadding2D(2, name="conv1_pad")(x)
    x = keras.layers.Conv2D(widths[0], 11, strides=4, activation="relu", name="conv1",
                            **_init(init, "conv1"))(x)  # (batch, 55, 55, 64)
    x = keras.layers.MaxPooling2D(3, 2, name="pool1")(x)  # (batch, 27, 27, 64)
    x = keras.layers.Conv2D(widths[1], 5, padding="same", activation="relu", name="conv2",
                            **_init(init, "conv2"))(x)  # (batch, 27, 27, 192)
    x = keras.layers.MaxPooling2D(3, 2, name="pool2")(x)  # (batch, 13, 13, 192)
    for index in (3, 4, 5):  # (batch, 13, 13, 384 / 256 / 256)
        name = f"conv{index}"
        x = keras.layers.Conv2D(widths[index - 1], 3, padding="same", activation="relu",
                                name=name, **_init(init, name))(x)
    return keras.layers.MaxPooling2D(3, 2, name="pool5")(x)  # (batch, 6, 6, 256)


def alexnet(num_classes: int = 1000, variant: str = "paper", input_size: int = 224,
            dropout_rate: float = 0.5, use_lrn: bool = True,
            tower_devices: Optional[Sequence[str]] = None, width_multiplier: float = 1.0,
            lrn_convention: str = "paper", lrn_bfloat16: bool = False,
            init: str = "paper", name: Optional[str] = None,
            widths: Optional[Sequence[int]] = None, lrn_k: float = LRN_K,
            lrn_across_towers: bool = False) -> keras.Model:
    """Builds AlexNet.

    Args:
      num_classes: number of output logits (1000 for ImageNet).
      variant: "paper": the NIPS 2012 two-tower net, 96-256-384-384-256 kernels with
        conv2, conv4, conv5 grouped in two towers, LRN after conv1 and conv2; 60,965,224
        parameters with 1000 classes. "one_tower": the single-GPU 64-192-384-256-256
        net without LRN used by torchvision and TF-Slim (61,100,840 parameters).
      input_size: S of the (S, S, 3) input. Paper variant: S % 4 in (0, 3) and S >= 64;
        224 is zero-padded (1 top/left, 2 bottom/right) to 227 so conv1 gives 55x55; 227
        needs no padding. One-tower variant: S >= 63 (conv1 pads 2 on every side).
      dropout_rate: dropout after fc6 and fc7 (paper: 0.5).
      use_lrn: whether the paper variant has norm1 and norm2 (ignored for one_tower).
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
      name: model name; default "alexnet" or "alexnet_one_tower".
      widths: the 7 widths conv1..conv5, fc6, fc7 (instead of the variant's, scaled by
        width_multiplier), e.g. read from a weight file; the paper variant needs even
        conv widths.
      lrn_k: LRN's additive constant k (paper 2; Caffe's bvlc_alexnet 1).
      lrn_across_towers: paper variant: LRN's window spans all of norm1's 96 and norm2's
        256 maps, as in Caffe's single-GPU bvlc_alexnet, instead of staying within each
        tower's half (the paper's two GPUs).

    Returns:
      An uncompiled keras.Model: (batch, S, S, 3) float32 -> (batch, num_classes) logits.

    Raises:
      ValueError: an argument is out of range (the message says which and why).
    """
    _check_common_args(num_classes, dropout_rate, lrn_convention, init, lrn_k)
    if variant not in ALEXNET_VARIANTS:
        raise ValueError(f"alexnet: variant must be one of {ALEXNET_VARIANTS}, "
                         f"received {variant!r}")
    if tower_devices is not None and (isinstance(tower_devices, str)
                                      or len(tower_devices) != NUM_TOWERS):
        raise ValueError(f"alexnet: tower_devices must be {NUM_TOWERS} device names, received "
                         f"{tower_devices!r}")
    if tower_devices is not None and variant != "paper":
        raise ValueError(f"alexnet: tower_devices needs variant='paper' (the only two-tower "
                         f"net), received variant={variant!r}")
    if lrn_across_towers and variant != "paper":
        raise ValueError(f"alexnet: lrn_across_towers needs variant='paper' (the only net "
                         f"with LRN), received variant={variant!r}")
    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name="images")
    if variant == "paper":
        widths = _widths("alexnet", PAPER_WIDTHS, widths, width_multiplier, towers=True)
        padding = _paper_conv1_padding(input_size)
        x = keras.layers.ZeroPadding2D(padding, name="conv1_pad")(inputs) if padding else inputs
        x = _paper_features(x, widths, use_lrn, lrn_convention,
                            tuple(tower_devices) if tower_devices else None, init, lrn_bfloat16,
                            lrn_k, bool(lrn_across_towers))
    else:
        widths = _widths("alexnet(one_tower)", ONE_TOWER_WIDTHS, widths, width_multiplier)
        x = _one_tower_features(inputs, widths, input_size, init)
    logits = _classifier(x, widths, num_classes, dropout_rate, init)
    default_name = "alexnet" if variant == "paper" else "alexnet_one_tower"
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


MODEL_BUILDERS = {"alexnet": alexnet, "zfnet": zfnet}


def build_model(name: str = "alexnet", **kwargs) -> keras.Model:
    """Builds a model by name: build_model("alexnet", num_classes=10, variant="paper").

    Args:
      name: "alexnet" or "zfnet".
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
      {"model", "variant" (AlexNet) or "zfnet_wide" (ZFNet), "widths" (7 integers)}.
    """
    name = spec.get("name", "alexnet")
    widths = spec.get("widths")
    multiplier = spec.get("width_multiplier", 1.0)
    if name == "alexnet":
        variant = spec.get("variant", "paper")
        defaults = PAPER_WIDTHS if variant == "paper" else ONE_TOWER_WIDTHS
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
      {} for a net that has no LRN layers (one_tower); {"use_lrn": False} when they are
      off; else use_lrn, lrn_convention, lrn_k and, for AlexNet, lrn_across_towers, with
      the builders' defaults filled in.
    """
    name = spec.get("name", "alexnet")
    if name == "alexnet" and spec.get("variant", "paper") != "paper":
        return {}
    if not spec.get("use_lrn", True):
        return {"use_lrn": False}
    settings = dict(use_lrn=True, lrn_convention=spec.get("lrn_convention", "paper"),
                    lrn_k=float(spec.get("lrn_k", LRN_K)))
    if name == "alexnet":
        settings["lrn_across_towers"] = bool(spec.get("lrn_across_towers", False))
    return settings
