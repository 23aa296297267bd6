"""Zeiler & Fergus' deconvnet: project one feature-map activation back to pixel space.

Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks", ECCV 2014, §2.1.
A deconvnet is attached to every layer of the trained network. To look at one activation,
the forward pass records where each max-pool took its maximum (the "switches"); every other
activation of the layer is set to zero, and the signal goes back down, layer by layer:

  max-pool      -> unpool: each value goes back to the position its window's maximum came
                   from. The paper's pools overlap (3x3, stride 2), so two windows can share
                   a switch; their values are summed there (the adjoint of max pooling).
  ReLU          -> rectify the downward signal (not masked by the forward activations: that
                   would be plain backpropagation, which Zeiler & Fergus do not use).
  convolution   -> transposed filtering with the layer's own filters (conv2d_transpose of the
                   same kernel, group by group for grouped convolutions). Biases are not used.
  LRN, dropout  -> identity. Zeiler & Fergus do not invert contrast normalisation exactly and
                   neither do we; dropout is inactive at inference.

Only a chain of such layers can be inverted (input -> conv1 -> ... -> the chosen layer); any
other layer type raises a ValueError naming it. The model's input is the mean-subtracted image,
so reconstructions are in that space (0 = the mean colour).
"""

import dataclasses
from typing import List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf.nn import layers as alexnet_layers
from alexnet_tf.nn import lrn
from alexnet_tf.nn import receptive_fields

# Max-pools: Keras' and the per-tower one (its pooling is an inner MaxPooling2D `pool`).
_GROUPED_POOL = getattr(alexnet_layers, "GroupedMaxPooling2D", None)
_POOL_LAYERS = (keras.layers.MaxPooling2D,) + ((_GROUPED_POOL,) if _GROUPED_POOL else ())
# Layers the downward pass treats as identity (see module docstring).
_IDENTITY_LAYERS = (lrn.LocalResponseNormalization, keras.layers.Dropout,
                    keras.layers.Identity)


@dataclasses.dataclass
class Step:
    """One layer of the forward chain, with what the downward pass needs.

    Attributes:
      layer: the Keras layer.
      kind: "conv", "pool", "relu", "pad" or "identity".
      input_shape: (height, width, channels) of the layer's input.
      switches: for "pool" only, (batch, h, w, channels) int64 argmax positions, each a flat
        index ((y * width) + x) * channels + c into one image's input of the pool.
    """
    layer: keras.layers.Layer
    kind: str
    input_shape: Tuple[int, int, int]
    switches: Optional[tf.Tensor] = None


@dataclasses.dataclass
class ConvSpec:
    """A conv layer as the deconvnet sees it.

    Attributes:
      kernels: one (kh, kw, in_channels_per_group, filters_per_group) kernel per group.
      kernel_size, strides: (height, width) each.
      padding: "valid" or "same".
      relu: whether the layer applies a ReLU to its output.
      split_input: True when each group sees its own slice of the input channels; False
        when every group sees the whole input (GroupedConv2D(split_input=False)).
    """
    kernels: List[tf.Tensor]
    kernel_size: Tuple[int, int]
    strides: Tuple[int, int]
    padding: str
    relu: bool
    split_input: bool


@dataclasses.dataclass
class Projection:
    """One activation projected to pixel space.

    Attributes:
      feature_map: channel index at the chosen layer.
      image_index: which input image the activation came from.
      position: (y, x) of the activation in the layer's output.
      activation: its value.
      reconstruction: (H, W, 3) float32 pixel-space projection.
      box: (top, left, bottom, right), bottom/right exclusive: the activation's receptive
        field in input pixels (`receptive_fields.py`), clipped to the image.
    """
    feature_map: int
    image_index: int
    position: Tuple[int, int]
    activation: float
    reconstruction: np.ndarray
    box: Tuple[int, int, int, int]


def _is_relu(activation) -> bool:
    return getattr(activation, "__name__", "") == "relu"


def _max_pool(layer) -> keras.layers.MaxPooling2D:
    """The MaxPooling2D that holds a pool layer's size, strides and padding."""
    return layer if isinstance(layer, keras.layers.MaxPooling2D) else layer.pool


def _kind(layer) -> str:
    """Classifies a layer for the deconvnet, or raises for one it cannot invert."""
    if isinstance(layer, (keras.layers.Conv2D, alexnet_layers.GroupedConv2D)):
        inner = layer.group_convs[0] if isinstance(layer, alexnet_layers.GroupedConv2D) else layer
        if tuple(inner.dilation_rate) != (1, 1) or inner.data_format != "channels_last":
            raise ValueError(f"deconvnet: layer {layer.name!r} is dilated or channels_first; "
                             "only undilated channels_last convolutions are supported")
        activation = getattr(inner.activation, "__name__", "")
        if activation not in ("relu", "linear"):
            raise ValueError(f"deconvnet: layer {layer.name!r} has activation {activation!r}; "
                             "only ReLU (or none) can be rectified on the way down")
        return "conv"
    if isinstance(layer, _POOL_LAYERS):
        return "pool"
    if isinstance(layer, keras.layers.ReLU) or (
            isinstance(layer, keras.layers.Activation) and _is_relu(layer.activation)):
        return "relu"
    if isinstance(layer, keras.layers.ZeroPadding2D):
        return "pad"
    if isinstance(layer, _IDENTITY_LAYERS):
        return "identity"
    raise ValueError(f"deconvnet cannot invert layer {layer.name!r} of type "
                     f"{type(layer).__name__}; expected conv, ReLU, max-pool, LRN or dropout")


def layer_chain(model: keras.Model, layer_name: str) -> List[keras.layers.Layer]:
    """Returns the layers from the model's input up to and including `layer_name`.

    Raises:
      ValueError: no such layer, or the path to it is not a single chain.
    """
    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        raise ValueError(f"layer {layer_name!r} not in the model; it has {names}")
    producer = {id(layer.output): layer for layer in model.layers}
    model_input = model.inputs[0]
    chain = [model.get_layer(layer_name)]
    while chain[-1].input is not model_input:
        layer_input = chain[-1].input
        if isinstance(layer_input, (list, tuple)) or id(layer_input) not in producer:
            raise ValueError(f"deconvnet: layer {chain[-1].name!r} does not take a single "
                             "layer's output; only a chain of layers can be inverted")
        chain.append(producer[id(layer_input)])
    chain.reverse()
    return [layer for layer in chain if not isinstance(layer, keras.layers.InputLayer)]


def forward(model: keras.Model, images, layer_name: str):
    """Runs `images` up to `layer_name`, recording every max-pool's switches.

    Args:
      model: a Keras model whose input is (batch, S, S, 3) mean-subtracted images.
      images: (batch, S, S, 3) float32.
      layer_name: the layer whose output to return, e.g. "conv5" or "pool1".

    Returns:
      (activations (batch, h, w, channels) float32 tensor, list of Step).
    """
    x = tf.convert_to_tensor(images, tf.float32)
    steps = []
    for layer in layer_chain(model, layer_name):
        kind = _kind(layer)
        step = Step(layer, kind, tuple(int(d) for d in x.shape[1:]))
        if kind == "pool":
            pool = _max_pool(layer)
            x, step.switches = tf.nn.max_pool_with_argmax(
                x, ksize=list(pool.pool_size), strides=list(pool.strides),
                padding=pool.padding.upper(), include_batch_in_index=False)
        else:
            x = layer(x, training=False)
        steps.append(step)
    return x, steps


def unpool(signal, switches, input_shape: Sequence[int]):
    """Places each value of `signal` at its pool window's switch (summing collisions).

    Args:
      signal: (batch, h, w, channels) values at the pool's output.
      switches: (batch, h, w, channels) flat per-image argmax indices (see Step).
      input_shape: (H, W, channels) of the pool's input.

    Returns:
      (batch, H, W, channels) float32.
    """
    signal = tf.convert_to_tensor(signal, tf.float32)
    batch = tf.shape(signal)[0]
    image_size = int(np.prod(input_shape))
    # Offsets make each image's flat indices unique across the batch: (batch, h*w*channels).
    flat_index = (tf.reshape(switches, [batch, -1])
                  + tf.cast(tf.range(batch)[:, None] * image_size, switches.dtype))
    flat = tf.math.unsorted_segment_sum(
        tf.reshape(signal, [-1]), tf.reshape(flat_index, [-1]), batch * image_size)
    return tf.reshape(flat, tf.concat([[batch], list(input_shape)], axis=0))


def conv_spec(layer) -> ConvSpec:
    """Reads what the deconvnet needs from a keras Conv2D or alexnet_tf GroupedConv2D."""
    if isinstance(layer, alexnet_layers.GroupedConv2D):
        first = layer.group_convs[0]
        return ConvSpec([conv.kernel for conv in layer.group_convs], tuple(first.kernel_size),
                        tuple(first.strides), first.padding, _is_relu(first.activation),
                        layer.split_input)
    groups = int(getattr(layer, "groups", 1))
    # keras Conv2D keeps one (kh, kw, in/groups, out) kernel; its groups are output slices.
    kernels = tf.split(tf.convert_to_tensor(layer.kernel), groups, axis=-1)
    return ConvSpec(kernels, tuple(layer.kernel_size), tuple(layer.strides), layer.padding,
                    _is_relu(layer.activation), True)


def transposed_filter(signal, layer, input_shape: Sequence[int]):
    """Transposed convolution of `signal` with `layer`'s own filters (no bias).

    Args:
      signal: (batch, h, w, filters) at the conv's output.
      layer: the conv layer (strides, padding and kernels are read from it).
      input_shape: (H, W, in_channels) of the conv's input.

    Returns:
      (batch, H, W, in_channels) float32.
    """
    spec = conv_spec(layer)
    signal_groups = tf.split(tf.convert_to_tensor(signal, tf.float32), len(spec.kernels), axis=-1)
    batch = tf.shape(signal)[0]
    height, width = input_shape[:2]
    outputs = []
    for signal_group, kernel in zip(signal_groups, spec.kernels):
        # conv2d_transpose's filter is (kh, kw, out, in): exactly the forward kernel's layout.
        output_shape = tf.stack([batch, height, width, kernel.shape[2]])
        outputs.append(tf.nn.conv2d_transpose(
            signal_group, tf.cast(kernel, tf.float32), output_shape,
            strides=[1, *spec.strides, 1], padding=spec.padding.upper()))
    if len(outputs) == 1:
        return outputs[0]
    # Grouped input: each group owns a channel slice. Shared input (the paper's conv1 towers):
    # every group saw the whole image, so their reconstructions add up.
    return tf.concat(outputs, axis=-1) if spec.split_input else tf.add_n(outputs)


def project(steps: Sequence[Step], signal, image_indices: Sequence[int]):
    """Sends `signal` (at the top of `steps`) down to pixel space.

    Args:
      steps: from `forward`.
      signal: (num, h, w, channels) at the last step's output.
      image_indices: (num,) which forward image's switches each signal row uses.

    Returns:
      (num, H, W, 3) float32 reconstructions in mean-subtracted pixel space.
    """
    image_indices = tf.constant(image_indices, tf.int32)
    x = tf.convert_to_tensor(signal, tf.float32)
    for step in reversed(steps):
        if step.kind == "pool":
            x = unpool(x, tf.gather(step.switches, image_indices), step.input_shape)
        elif step.kind == "relu":
            x = tf.nn.relu(x)
        elif step.kind == "conv":
            if conv_spec(step.layer).relu:
                x = tf.nn.relu(x)
            x = transposed_filter(x, step.layer, step.input_shape)
        elif step.kind == "pad":
            (top, bottom), (left, right) = step.layer.padding
            x = x[:, top:x.shape[1] - bottom, left:x.shape[2] - right, :]
    return x


def top_activations(activations, num_maps: int, num_per_map: int):
    """Picks the `num_maps` feature maps with the largest activation over all images.

    Args:
      activations: (batch, h, w, channels).
      num_maps: how many feature maps.
      num_per_map: how many images per map (each image's strongest position), best first.

    Returns:
      A list of (feature_map, image_index, y, x, value), maps in descending order of their
      strongest activation.
    """
    values = np.asarray(activations)
    batch, height, width, channels = values.shape
    if not 1 <= num_maps <= channels:
        raise errors.InvalidInputError(f"num_maps must be in 1..{channels}, got {num_maps}")
    per_image = values.reshape(batch, height * width, channels)  # (batch, positions, channels)
    per_image_max = per_image.max(axis=1)  # (batch, channels)
    maps = np.argsort(-per_image_max.max(axis=0), kind="stable")[:num_maps]
    picks = []
    for channel in maps:
        images = np.argsort(-per_image_max[:, channel], kind="stable")[:min(num_per_map, batch)]
        for image in images:
            position = int(per_image[image, :, channel].argmax())
            picks.append((int(channel), int(image), position // width, position % width,
                          float(per_image_max[image, channel])))
    return picks


def project_picks(model: keras.Model, images, layer_name: str, picks) -> List[Projection]:
    """Projects chosen activations (from `top_activations`) down to pixel space.

    Args:
      model: a Keras model (input: (batch, S, S, 3) mean-subtracted images).
      images: (batch, S, S, 3) float32; each pick's image_index indexes this batch.
      layer_name: the layer the picks are at.
      picks: (feature_map, image_index, y, x, value) tuples.

    Returns:
      A Projection per pick, in order.
    """
    activations, steps = forward(model, images, layer_name)
    field = receptive_fields.layer_field(model, layer_name)
    image_size = steps[0].input_shape[:2]
    # One signal per pick: all zero except the chosen activation. (num, h, w, channels)
    signal = np.zeros((len(picks),) + tuple(activations.shape[1:]), np.float32)
    for row, (channel, _, y, x, value) in enumerate(picks):
        signal[row, y, x, channel] = value
    reconstructions = project(steps, signal, [pick[1] for pick in picks]).numpy()
    return [Projection(feature_map=channel, image_index=image, position=(y, x), activation=value,
                       reconstruction=reconstructions[row],
                       box=field.box(y, x, image_size))
            for row, (channel, image, y, x, value) in enumerate(picks)]


def visualize_layer(model: keras.Model, images, layer_name: str, num_maps: int = 9,
                    num_per_map: int = 1) -> List[Projection]:
    """Deconvnet projections of the strongest activations of `layer_name`'s top feature maps.

    Args:
      model: a Keras model (input: (batch, S, S, 3) mean-subtracted images).
      images: (batch, S, S, 3) float32, the image set the maps are ranked over.
      layer_name: e.g. "conv1" .. "conv5" (after its ReLU) or "pool1", "pool2", "pool5".
      num_maps: how many feature maps, the most active over the image set first.
      num_per_map: how many images per map.

    Returns:
      A list of Projection, grouped by feature map.
    """
    activations, _ = forward(model, images, layer_name)
    return project_picks(model, images, layer_name,
                         top_activations(activations, num_maps, num_per_map))
