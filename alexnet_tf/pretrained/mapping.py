"""AlexNet weights in the NCHW frameworks' layout, checked and mapped onto the Keras model.

Caffe and PyTorch store the same things the same way: a convolution's weights as
(out, in / groups, height, width) with group g's kernels in rows g*out/groups.., a
fully-connected layer's as (out, in), and fc6's inputs in pool5's (channel, height,
width) order. `SourceWeights` holds that layout under the Keras layer names
conv1..conv5, fc6..fc8, whatever the file called them; `check` infers the widths from
the shapes and names the first layer whose shape does not follow; `keras_arrays`
gives each Keras layer its arrays, and `assign` sets them:

  * kernels (out, in, h, w) -> (h, w, in, out);
  * a grouped layer's kernels split by output rows onto the towers (`GroupedConv2D`'s
    groups; conv1's two towers both read the whole image);
  * fc6's rows reordered from (C, H, W) to the model's NHWC flatten (H, W, C), and
    every fully-connected matrix transposed to Keras' (in, out).
"""

import dataclasses
from typing import Dict, List, Sequence, Tuple

import numpy as np

from alexnet_tf import errors

CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
DENSE_LAYERS = ("fc6", "fc7", "fc8")
LAYERS = CONV_LAYERS + DENSE_LAYERS
KERNEL_SIZES = {"conv1": 11, "conv2": 5, "conv3": 3, "conv4": 3, "conv5": 3}
POOL5_SIZE = 6  # pool5's maps are 6x6 at AlexNet's input sizes
IMAGE_CHANNELS = 3


@dataclasses.dataclass
class SourceWeights:
    """A file's AlexNet weights, in NCHW layout, under the Keras layer names.

    Attributes:
      arrays: {layer: (weights, bias)}: conv (out, in/groups, h, w), dense (out, in).
      groups: {conv layer: number of groups} as the file's net convolves them.
      source_names: {layer: what the file calls its weights}, for messages.
      path: the file, for messages.
    """
    arrays: Dict[str, Tuple[np.ndarray, np.ndarray]]
    groups: Dict[str, int]
    source_names: Dict[str, str]
    path: str

    def name(self, layer: str) -> str:
        source = self.source_names.get(layer, layer)
        return layer if source == layer else f"{layer} ({source})"


def _error(weights: SourceWeights, message: str) -> errors.InvalidInputError:
    return errors.InvalidInputError(f"{weights.path}: {message}")


def _expected_shapes(widths: Sequence[int], num_classes: int, groups: Dict[str, int]) -> dict:
    """{layer: (weight shape, bias shape)} that `widths` and `groups` imply."""
    inputs = [IMAGE_CHANNELS] + list(widths[:4])
    shapes = {}
    for index, layer in enumerate(CONV_LAYERS):
        size = KERNEL_SIZES[layer]
        shapes[layer] = ((widths[index], inputs[index] // groups[layer], size, size),
                         (widths[index],))
    shapes["fc6"] = ((widths[5], widths[4] * POOL5_SIZE * POOL5_SIZE), (widths[5],))
    shapes["fc7"] = ((widths[6], widths[5]), (widths[6],))
    shapes["fc8"] = ((num_classes, widths[6]), (num_classes,))
    return shapes


def check(weights: SourceWeights) -> Tuple[List[int], int]:
    """Infers the widths and class count from the shapes, and checks every layer.

    Args:
      weights: the file's weights.

    Returns:
      (widths conv1..conv5, fc6, fc7; num_classes).

    Raises:
      InvalidInputError: a missing layer, or the first layer whose weight or bias shape
        does not follow from the layers before it (named, with expected and found shapes).
    """
    missing = [layer for layer in LAYERS if layer not in weights.arrays]
    if missing:
        raise _error(weights, f"no weights for {', '.join(missing)}; AlexNet has "
                              f"{', '.join(LAYERS)}")
    for layer in LAYERS:
        kernel = weights.arrays[layer][0]
        ndim = 4 if layer in CONV_LAYERS else 2
        if kernel.ndim != ndim or 0 in kernel.shape:
            layout = "(out, in, height, width)" if ndim == 4 else "(out, in)"
            raise _error(weights, f"{weights.name(layer)} weights: expected {ndim} dimensions "
                                  f"{layout}, found shape {tuple(kernel.shape)}")
    widths = [weights.arrays[layer][0].shape[0] for layer in LAYERS[:-1]]
    num_classes = weights.arrays["fc8"][0].shape[0]
    for layer in CONV_LAYERS:
        out, group = weights.arrays[layer][0].shape[0], weights.groups[layer]
        if out % group:
            raise _error(weights, f"{weights.name(layer)}: {out} kernels do not split into "
                                  f"{group} groups")
    expected = _expected_shapes(widths, num_classes, weights.groups)
    for layer in LAYERS:
        for part, array, shape in zip(("weights", "bias"), weights.arrays[layer],
                                      expected[layer]):
            if tuple(array.shape) != shape:
                raise _error(weights, f"{weights.name(layer)} {part}: expected shape {shape} "
                                      f"(from the layers before it), found "
                                      f"{tuple(array.shape)}")
    return widths, num_classes


def _dense_kernel(weights: np.ndarray, chw=None) -> np.ndarray:
    """(out, in) -> Keras' (in, out); with chw=(C, H, W), inputs reordered to (H, W, C)."""
    if chw is not None:
        out = weights.shape[0]
        weights = weights.reshape(out, *chw).transpose(0, 2, 3, 1).reshape(out, -1)
    return np.ascontiguousarray(weights.T)


def keras_arrays(weights: SourceWeights) -> Dict[str, Tuple[np.ndarray, np.ndarray]]:
    """{layer: (kernel, bias)} in Keras' layout: conv (h, w, in/groups, out), dense (in, out).

    Call `check` first. A grouped convolution's kernel keeps all output kernels in
    order; `assign` splits it onto the model's towers.
    """
    arrays = {}
    for layer in CONV_LAYERS:
        kernel, bias = weights.arrays[layer]
        arrays[layer] = (np.ascontiguousarray(kernel.transpose(2, 3, 1, 0), np.float32),
                         np.asarray(bias, np.float32))
    channels = weights.arrays["conv5"][0].shape[0]
    for layer in DENSE_LAYERS:
        kernel, bias = weights.arrays[layer]
        chw = (channels, POOL5_SIZE, POOL5_SIZE) if layer == "fc6" else None
        arrays[layer] = (_dense_kernel(kernel, chw).astype(np.float32),
                         np.asarray(bias, np.float32))
    return arrays


def _set(variable, value: np.ndarray, label: str) -> None:
    if tuple(variable.shape) != value.shape:
        raise ValueError(f"{label}: the model's variable has shape {tuple(variable.shape)}, "
                         f"the mapped weights {value.shape}")
    variable.assign(value)


def assign(model, arrays: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> None:
    """Sets the model's conv1..fc8 weights; a grouped layer's towers each get their rows.

    Raises:
      ValueError: the model's shapes differ from the arrays' (a model built with other
        widths than `check` inferred).
    """
    for layer_name, (kernel, bias) in arrays.items():
        layer = model.get_layer(layer_name)
        parts = getattr(layer, "group_convs", None) or [layer]
        kernels = np.split(kernel, len(parts), axis=-1)
        biases = np.split(bias, len(parts))
        for index, (part, part_kernel, part_bias) in enumerate(zip(parts, kernels, biases)):
            label = f"{layer_name} group {index}" if len(parts) > 1 else layer_name
            _set(part.kernel, part_kernel, label + " kernel")
            _set(part.bias, part_bias, label + " bias")
