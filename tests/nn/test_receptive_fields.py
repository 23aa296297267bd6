"""Tests for alexnet_tf.nn.receptive_fields: values derived by hand, and by gradients.

Hand derivation, per axis, with size r, jump j and start s (unit 0's first pixel); a layer
of kernel k, stride t and p pixels of padding before gives r + (k-1) j, j t, s - p j.

AlexNet, 227 input (no padding):
  conv1 11/4       r = 11                j = 4        s = 0
  pool1 3/2        r = 11 + 2*4  = 19    j = 8        s = 0
  conv2 5/1 pad 2  r = 19 + 4*8  = 51    j = 8        s = 0  - 2*8  = -16
  pool2 3/2        r = 51 + 2*8  = 67    j = 16       s = -16
  conv3 3/1 pad 1  r = 67 + 2*16 = 99    j = 16       s = -16 - 16  = -32
  conv4 3/1 pad 1  r = 131               j = 16       s = -48
  conv5 3/1 pad 1  r = 163               j = 16       s = -64
  pool5 3/2        r = 163 + 2*16 = 195  j = 32       s = -64
  fc6              6 pool5 units: r = 195 + 5*32 = 355, s = -64
AlexNet, 224 input: 1 pixel of padding top/left before conv1 shifts every start by -1.
One-tower AlexNet (torchvision), 224: conv1 pads 2, every start -2; the sizes as above.
ZFNet, 224 (conv1 pads 1; pools 1 and 2 are "same": TF pads max((ceil(n/2)-1)*2+3-n, 0)
pixels, the smaller half, here 0, before):
  conv1 7/2        r = 7                 j = 2        s = -1         (226 -> 110)
  pool1 3/2 same   r = 7 + 2*2   = 11    j = 4        s = -1         (110: pad 0+1 -> 55)
  conv2 5/2        r = 11 + 4*4  = 27    j = 8        s = -1         (55 -> 26)
  pool2 3/2 same   r = 27 + 2*8  = 43    j = 16       s = -1         (26: pad 0+1 -> 13)
  conv3 3/1 pad 1  r = 43 + 2*16 = 75    j = 16       s = -17
  conv4            r = 107               j = 16       s = -33
  conv5            r = 139               j = 16       s = -49
  pool5 3/2        r = 139 + 2*16 = 171  j = 32       s = -49
  fc6              r = 171 + 5*32 = 331
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.nn import models
from alexnet_tf.nn import receptive_fields

LAYERS = ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")
_ALEXNET_SIZES = (11, 19, 51, 67, 99, 131, 163, 195)
_ALEXNET_JUMPS = (4, 8, 8, 16, 16, 16, 16, 32)
_ALEXNET_227_STARTS = (0, 0, -16, -16, -32, -48, -64, -64)

# (builder, kwargs) -> {layer: (size, jump, start)} derived by hand (module docstring).
HAND_DERIVED = [
    ("alexnet", dict(input_size=227),
     dict(zip(LAYERS, zip(_ALEXNET_SIZES, _ALEXNET_JUMPS, _ALEXNET_227_STARTS))), (355, -64)),
    ("alexnet", dict(input_size=224),
     dict(zip(LAYERS, zip(_ALEXNET_SIZES, _ALEXNET_JUMPS,
                          (s - 1 for s in _ALEXNET_227_STARTS)))), (355, -65)),
    ("alexnet", dict(input_size=224, variant="one_tower"),
     dict(zip(LAYERS, zip(_ALEXNET_SIZES, _ALEXNET_JUMPS,
                          (s - 2 for s in _ALEXNET_227_STARTS)))), (355, -66)),
    ("zfnet", dict(input_size=224),
     dict(zip(LAYERS, zip((7, 11, 27, 43, 75, 107, 139, 171), (2, 4, 8, 16, 16, 16, 16, 32),
                          (-1, -1, -1, -1, -17, -33, -49, -49)))), (331, -49)),
]


@pytest.mark.parametrize("name,kwargs,expected,fc", HAND_DERIVED,
                         ids=["alexnet227", "alexnet224", "one_tower", "zfnet"])
def test_fields_match_the_hand_derivation(name, kwargs, expected, fc):
    model = models.build_model(name, num_classes=3, width_multiplier=0.0625, **kwargs)
    fields = {field.layer: field for field in receptive_fields.receptive_fields(model)}
    for layer, (size, jump, start) in expected.items():
        field = fields[layer]
        assert (field.size, field.jump, field.start) == ((size,) * 2, (jump,) * 2,
                                                        (start,) * 2), layer
        assert field.output_size == tuple(model.get_layer(layer).output.shape[1:3]), layer
    for layer in ("fc6", "fc7", "fc8"):
        assert (fields[layer].kind, fields[layer].size, fields[layer].jump,
                fields[layer].start) == ("dense", (fc[0],) * 2, None, (fc[1],) * 2), layer
    # LRN and dropout keep their input's field.
    ordered = receptive_fields.receptive_fields(model)
    for below, field in zip(ordered, ordered[1:]):
        if field.layer.startswith(("norm", "dropout")):
            assert field.kind == "pointwise"
            assert (field.size, field.jump, field.start) == (below.size, below.jump,
                                                             below.start), field.layer
    assert receptive_fields.layer_field(model, "conv2") == fields["conv2"]


def test_table_rows():
    model = models.alexnet(num_classes=3, input_size=227, width_multiplier=0.0625)
    table = receptive_fields.format_table(receptive_fields.receptive_fields(model), "227")
    lines = table.splitlines()
    assert lines[0] == "227"
    rows = {line.split()[0]: line.split()[1:] for line in lines[3:]}
    # output, kernel/stride, size, jump, start, centre (start + (size - 1) / 2)
    assert rows["conv1"] == ["55x55", "11/4", "11", "4", "0", "5"]
    assert rows["pool1"] == ["27x27", "3/2", "19", "8", "0", "9"]
    assert rows["conv2"] == ["27x27", "5/1", "51", "8", "-16", "9"]
    assert rows["pool5"] == ["6x6", "3/2", "195", "32", "-64", "33"]
    assert rows["fc6"] == ["-", "-", "355", "-", "-64", "113"]
    assert "norm1" not in rows and "dropout6" not in rows  # Same field as the row above.


def _odd_chain() -> keras.Model:
    """Every rule at once: asymmetric padding, non-square kernels and strides, "same" with
    stride 2 on an odd size, dilation, pooling "same", and pointwise layers."""
    inputs = keras.Input((29, 31, 1))
    x = keras.layers.ZeroPadding2D(((2, 0), (1, 3)), name="pad")(inputs)
    x = keras.layers.Conv2D(1, (5, 3), strides=(2, 1), padding="same", name="conv_a")(x)
    x = keras.layers.AveragePooling2D((3, 2), strides=2, name="pool_a")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Conv2D(1, 3, dilation_rate=2, padding="same", name="conv_b")(x)
    x = keras.layers.AveragePooling2D(2, strides=(1, 2), padding="same", name="pool_b")(x)
    return keras.Model(inputs, x)


def test_windows_equal_the_gradients_support():
    # Linear layers with positive weights and average pooling: a unit depends on exactly the
    # input pixels its window covers inside the image, so its gradient is non-zero there.
    model = _odd_chain()
    for weight in model.weights:
        weight.assign(tf.abs(weight) + 0.1)
    image = tf.ones((1, 29, 31, 1))
    for layer in ("conv_a", "pool_a", "conv_b", "pool_b"):
        field = receptive_fields.layer_field(model, layer)
        probe = keras.Model(model.input, model.get_layer(layer).output)
        height, width = field.output_size
        assert (height, width) == tuple(probe.output.shape[1:3])
        for y, x in ((0, 0), (height // 2, width // 3), (height - 1, width - 1)):
            with tf.GradientTape() as tape:
                tape.watch(image)
                value = probe(image)[0, y, x, 0]
            support = np.argwhere(tape.gradient(value, image)[0, ..., 0].numpy() != 0)
            top, left, bottom, right = field.box(y, x, (29, 31))
            if bottom <= top or right <= left:  # A window inside the padding alone.
                assert not len(support), (layer, y, x)
                continue
            low, high = support.min(0).tolist(), (support.max(0) + 1).tolist()
            assert (low, high) == ([top, left], [bottom, right]), (layer, y, x)


def test_box_is_unclipped_without_an_image_size():
    model = models.alexnet(num_classes=3, input_size=227, width_multiplier=0.0625)
    field = receptive_fields.layer_field(model, "conv2")
    assert field.box(0, 0) == (-16, -16, 35, 35)
    assert field.box(0, 0, (227, 227)) == (0, 0, 35, 35)
    # Unit (26, 1): rows -16 + 26*8 = 192 .. 242, columns -8 .. 42, clipped to the image.
    assert field.box(26, 1) == (192, -8, 243, 43)
    assert field.box(26, 1, (227, 227)) == (192, 0, 227, 43)
    assert field.centre == (9.0, 9.0)


def test_unsupported_layers_are_named():
    inputs = keras.Input((8, 8, 3))
    upsampled = keras.layers.UpSampling2D(name="up")(inputs)
    with pytest.raises(ValueError, match="'up' of type UpSampling2D"):
        receptive_fields.receptive_fields(keras.Model(inputs, upsampled))
    added = keras.layers.Add(name="add")([inputs, keras.layers.Conv2D(3, 1)(inputs)])
    with pytest.raises(ValueError, match="'add'.*chains"):
        receptive_fields.receptive_fields(keras.Model(inputs, added))
    with pytest.raises(ValueError, match="conv9"):
        receptive_fields.layer_field(keras.Model(inputs, upsampled), "conv9")
