"""Receptive fields: which input pixels each layer's units see, read from a model's layers.

For every layer of a chain of convolutions, poolings, paddings and pointwise layers
(activations, LRN, dropout), along each spatial axis:

  size   the side of the window of input pixels one unit depends on;
  jump   the distance in input pixels between neighbouring units (the effective stride);
  start  the first pixel of unit 0's window, negative when the window reaches into
         padding (unit i covers start + i * jump .. start + i * jump + size - 1).

A layer with kernel k (dilated: d * (k - 1) + 1), stride t and p pixels of padding before
its input maps the previous layer's (size, jump, start) to

  size + (k - 1) * jump,   jump * t,   start - p * jump

(Araujo, Norris and Sim, "Computing Receptive Fields of Convolutional Neural Networks",
Distill 2019). "same" padding is TensorFlow's: max((ceil(n / t) - 1) * t + k - n, 0)
pixels, the smaller half before, so it depends on the input size n; that is why fields
are read from a built model and not from a table of kernel sizes. A fully-connected
layer (after a flatten or a global pooling) sees the union of its input units' windows;
it has no jump.

`receptive_fields(model)` lists every layer; `layer_field(model, name)` gives one, whose
`box(y, x)` is the window of the unit at (y, x) (the deconvnet's image patches).
"""

import dataclasses
from typing import List, Optional, Sequence, Tuple

import keras

from alexnet_tf.nn import layers as alexnet_layers

Pair = Tuple[int, int]  # (height, width)

# Kinds of layer. GLOBAL: a flatten or global pooling; DENSE: a fully-connected layer after it.
INPUT, PAD, CONV, POOL, POINTWISE, GLOBAL, DENSE = (
        "input", "pad", "conv", "pool", "pointwise", "global", "dense")


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of one layer's units (each value a (height, width) pair).

    Attributes:
      layer: the layer's name.
      kind: INPUT, PAD, CONV, POOL, POINTWISE (same field as its input), GLOBAL or DENSE.
      output_size: the layer's output height and width; None after a flatten.
      size: the window's side in input pixels.
      jump: input pixels between neighbouring units; None for GLOBAL and DENSE layers.
      start: the first input pixel of unit 0's window (negative: inside padding).
      kernel, stride: the layer's own window, for CONV and POOL; else None.
    """
    layer: str
    kind: str
    output_size: Optional[Pair]
    size: Pair
    jump: Optional[Pair]
    start: Pair
    kernel: Optional[Pair] = None
    stride: Optional[Pair] = None

    @property
    def centre(self) -> Tuple[float, float]:
        """The input coordinates of unit 0's window centre."""
        return tuple(start + (size - 1) / 2 for start, size in zip(self.start, self.size))

    def box(self, y: int, x: int, image_size: Optional[Pair] = None) -> Tuple[int, int, int, int]:
        """The window of the unit at (y, x): (top, left, bottom, right), bottom and right
        exclusive; clipped to an image of `image_size` (height, width) when given."""
        jump = self.jump or (0, 0)
        top, left = (start + index * step for start, index, step in
                     zip(self.start, (y, x), jump))
        bottom, right = top + self.size[0], left + self.size[1]
        if image_size is None:
            return top, left, bottom, right
        height, width = image_size
        return max(top, 0), max(left, 0), min(bottom, height), min(right, width)


def _pair(value) -> Pair:
    return (int(value), int(value)) if isinstance(value, int) else tuple(int(v) for v in value)


def _window(layer) -> Optional[Tuple[str, Pair, Pair, str, Pair]]:
    """(kind, kernel, stride, padding, dilation) of a convolution or pooling, else None."""
    if isinstance(layer, alexnet_layers.GroupedConv2D):
        layer = layer.group_convs[0]  # Every group has the same window.
    elif isinstance(layer, alexnet_layers.GroupedMaxPooling2D):
        layer = layer.pool
    if hasattr(layer, "pool_size"):
        return POOL, _pair(layer.pool_size), _pair(layer.strides), layer.padding, (1, 1)
    if hasattr(layer, "kernel_size") and hasattr(layer, "strides"):
        return (CONV, _pair(layer.kernel_size), _pair(layer.strides), layer.padding,
                _pair(getattr(layer, "dilation_rate", 1)))
    return None


def _pad_before(size: int, kernel: int, stride: int, padding: str, layer_name: str) -> int:
    if padding == "valid":
        return 0
    if padding != "same":
        raise ValueError(f"receptive fields: layer {layer_name!r} has padding {padding!r}; "
                         "expected 'valid' or 'same'")
    outputs = -(-size // stride)  # ceil(size / stride)
    return max((outputs - 1) * stride + kernel - size, 0) // 2


def _spatial(shape) -> Optional[Pair]:
    """(height, width) of a channels-last image tensor's shape, or None for other ranks."""
    return (int(shape[1]), int(shape[2])) if len(shape) == 4 else None


def _next_field(layer, field: ReceptiveField) -> ReceptiveField:
    """The field of `layer`'s output, given the field of its input."""
    in_size, out_size = _spatial(layer.input.shape), _spatial(layer.output.shape)
    common = dict(layer=layer.name, output_size=out_size)
    if field.jump is None:  # After a flatten: the same union of windows.
        return dataclasses.replace(field, kind=DENSE if hasattr(layer, "units") else POINTWISE,
                                   **common)
    if in_size is not None and out_size is None:
        # Every output sees every input unit: the union of their windows.
        size = tuple(s + (n - 1) * j for s, n, j in zip(field.size, in_size, field.jump))
        return ReceptiveField(kind=GLOBAL, size=size, jump=None, start=field.start, **common)
    if isinstance(layer, keras.layers.ZeroPadding2D):
        (top, _), (left, _) = layer.padding
        start = (field.start[0] - top * field.jump[0], field.start[1] - left * field.jump[1])
        return dataclasses.replace(field, kind=PAD, start=start, kernel=None, stride=None,
                                   **common)
    window = _window(layer)
    if window is not None:
        kind, kernel, stride, padding, dilation = window
        kernel = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        pad = tuple(_pad_before(n, k, t, padding, layer.name)
                    for n, k, t in zip(in_size, kernel, stride))
        return ReceptiveField(
                kind=kind, kernel=kernel, stride=stride,
                size=tuple(s + (k - 1) * j for s, k, j in zip(field.size, kernel, field.jump)),
                jump=tuple(j * t for j, t in zip(field.jump, stride)),
                start=tuple(s - p * j for s, p, j in zip(field.start, pad, field.jump)),
                **common)
    if in_size is not None and in_size == out_size:
        return dataclasses.replace(field, kind=POINTWISE, kernel=None, stride=None, **common)
    raise ValueError(f"receptive fields: cannot follow layer {layer.name!r} of type "
                     f"{type(layer).__name__} (input {tuple(layer.input.shape)}, output "
                     f"{tuple(layer.output.shape)}); expected convolutions, poolings, "
                     "zero padding, pointwise layers and a classifier after a flatten")


def receptive_fields(model: keras.Model, up_to: Optional[str] = None) -> List[ReceptiveField]:
    """The receptive field of every layer of a single-input chain, input first.

    Args:
      model: a built functional Keras model taking (batch, H, W, channels) images; its
        widths do not matter, so a narrow copy gives the same table.
      up_to: stop after this layer (the layers above it are not read).

    Returns:
      One ReceptiveField per layer, in the model's layer order.

    Raises:
      ValueError: `up_to` is not a layer of the model; a layer takes several inputs or
        is of a kind whose field is unknown.
    """
    names = [layer.name for layer in model.layers]
    if up_to is not None and up_to not in names:
        raise ValueError(f"layer {up_to!r} not in the model; it has {names}")
    fields, by_tensor = [], {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            field = ReceptiveField(layer=layer.name, kind=INPUT,
                                   output_size=_spatial(layer.output.shape),
                                   size=(1, 1), jump=(1, 1), start=(0, 0))
        else:
            layer_input = layer.input
            if isinstance(layer_input, (list, tuple)) or id(layer_input) not in by_tensor:
                raise ValueError(f"receptive fields: layer {layer.name!r} does not take a "
                                 "single earlier layer's output; only chains are supported")
            field = _next_field(layer, by_tensor[id(layer_input)])
        by_tensor[id(layer.output)] = field
        fields.append(field)
        if layer.name == up_to:
            break
    return fields


def layer_field(model: keras.Model, layer_name: str) -> ReceptiveField:
    """The receptive field of `layer_name`'s units (the layers above it are not read).

    Raises:
      ValueError: no such layer (the message lists the model's layers).
    """
    return receptive_fields(model, up_to=layer_name)[-1]


def _text(pair: Optional[Sequence]) -> str:
    if pair is None:
        return "-"
    values = [f"{value:g}" for value in pair]
    return values[0] if values[0] == values[1] else "x".join(values)


def format_table(fields: Sequence[ReceptiveField], title: str = "") -> str:
    """A text table of the convolution, pooling and fully-connected layers' fields.

    Pointwise layers and paddings are left out: they share the field of the row above
    (a padding shows in the start of the layers after it).
    """
    header = (f"{'layer':10s} {'output':>9s} {'kernel/stride':>13s} {'size':>7s} "
              f"{'jump':>5s} {'start':>6s} {'centre':>7s}")
    lines = [title] if title else []
    lines += [header, "-" * len(header)]
    for field in fields:
        if field.kind in (PAD, POINTWISE):
            continue
        output = "x".join(str(n) for n in field.output_size) if field.output_size else "-"
        window = (f"{_text(field.kernel)}/{_text(field.stride)}" if field.kernel else "-")
        lines.append(f"{field.layer:10s} {output:>9s} {window:>13s} {_text(field.size):>7s} "
                     f"{_text(field.jump):>5s} {_text(field.start):>6s} "
                     f"{_text(field.centre):>7s}")
    return "\n".join(lines)
