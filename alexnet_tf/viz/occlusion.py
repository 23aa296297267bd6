"""Occlusion sensitivity (Zeiler & Fergus 2014, section 4.2 and figure 7).

A grey square is slid over the image with a stride; at each position the occluded image
is classified again. The maps record, per position, (a) the probability of the correct
class and (b) the total activation of one feature map at a chosen layer: the map with the
strongest activation in the unoccluded image. Where the probability drops, the network
was looking.

The model's input is mean-subtracted, so "grey" is the mean: zero. When the run subtracts
a mean image rather than the per-channel mean, zero is the mean image's pixels there.
"""

import dataclasses
from typing import Callable, Optional

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf import errors


@dataclasses.dataclass
class OcclusionResult:
    """The maps of one image.

    Attributes:
      probability: (rows, cols) probability of `class_index` with the square at each position.
      activation: (rows, cols) total activation of `feature_map` at the layer, or None.
      class_index: the class whose probability is mapped.
      baseline_probability: that probability without occlusion.
      feature_map: channel index of the layer's strongest map in the unoccluded image, or None.
      layer_name: the layer, or None.
      patch_size, stride: the square's side and step, in pixels.
      centers: (rows,) and (cols,) pixel coordinates of the square's centres.
    """
    probability: np.ndarray
    activation: Optional[np.ndarray]
    class_index: int
    baseline_probability: float
    feature_map: Optional[int]
    layer_name: Optional[str]
    patch_size: int
    stride: int
    centers: tuple


def positions(size: int, patch_size: int, stride: int) -> np.ndarray:
    """Top-left coordinates of the square along one axis; the last one touches the edge."""
    if not 0 < patch_size <= size:
        raise errors.InvalidInputError(
                f"patch_size must be in 1..{size} (the image side), got {patch_size}")
    if stride < 1:
        raise errors.InvalidInputError(f"stride must be >= 1, got {stride}")
    starts = list(range(0, size - patch_size + 1, stride))
    if starts[-1] != size - patch_size:  # Cover the far edge too.
        starts.append(size - patch_size)
    return np.asarray(starts)


def occluded_batch(image: np.ndarray, tops, lefts, patch_size: int,
                   value: float = 0.0) -> np.ndarray:
    """Copies of `image` (S, S, 3), one per (top, left), with the square set to `value`."""
    batch = np.repeat(image[None], len(tops), axis=0)  # (n, S, S, 3)
    for row, (top, left) in enumerate(zip(tops, lefts)):
        batch[row, top:top + patch_size, left:left + patch_size, :] = value
    return batch


def probe_model(model: keras.Model, layer_name: Optional[str]) -> Callable:
    """A function images -> (probabilities (n, C), layer output (n, h, w, k) or None)."""
    if layer_name is None:
        return lambda images: (tf.nn.softmax(model(images, training=False)).numpy(), None)
    layer_names = [layer.name for layer in model.layers]
    if layer_name not in layer_names:
        raise ValueError(f"layer {layer_name!r} not in the model; it has {layer_names}")
    both = keras.Model(model.input, [model.outputs[0], model.get_layer(layer_name).output])

    def probe(images):
        logits, features = both(images, training=False)
        return tf.nn.softmax(logits).numpy(), features.numpy()

    return probe


def occlusion_maps(probe: Callable, image: np.ndarray, class_index: int, *,
                   patch_size: int, stride: int, layer_name: Optional[str] = None,
                   batch_size: int = 32) -> OcclusionResult:
    """Slides the grey square over `image` and maps the class probability and activation.

    Args:
      probe: from `probe_model` (or any images -> (probabilities, layer output or None)).
      image: (S, S, 3) float32, mean-subtracted.
      class_index: the class whose probability to map (the true class when known).
      patch_size: side of the square, pixels.
      stride: step between positions, pixels.
      layer_name: the layer `probe` returns, for the result's record.
      batch_size: occluded images per forward pass.

    Returns:
      An OcclusionResult.

    Raises:
      ValueError: a bad image shape, class index, patch size or stride.
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[0] != image.shape[1] or image.shape[2] != 3:
        raise ValueError(f"image must be (S, S, 3), got {image.shape}")
    base_probabilities, base_features = probe(image[None])
    if not 0 <= class_index < base_probabilities.shape[1]:
        raise ValueError(f"class_index must be in 0..{base_probabilities.shape[1] - 1}, "
                         f"got {class_index}")
    feature_map = None
    if base_features is not None:
        # The map with the strongest single activation in the unoccluded image.
        feature_map = int(base_features[0].reshape(-1, base_features.shape[-1]).max(0).argmax())
    starts = positions(image.shape[0], patch_size, stride)
    tops, lefts = (grid.ravel() for grid in np.meshgrid(starts, starts, indexing="ij"))
    probability, activation = [], []
    for start in range(0, len(tops), batch_size):
        batch = occluded_batch(image, tops[start:start + batch_size],
                               lefts[start:start + batch_size], patch_size)
        probabilities, features = probe(batch)
        probability.append(probabilities[:, class_index])
        if features is not None:
            activation.append(features[..., feature_map].reshape(len(batch), -1).sum(1))
    shape = (len(starts), len(starts))
    centers = tuple(starts + (patch_size - 1) / 2 for _ in range(2))
    return OcclusionResult(
        probability=np.concatenate(probability).reshape(shape),
        activation=np.concatenate(activation).reshape(shape) if activation else None,
        class_index=int(class_index), baseline_probability=float(base_probabilities[0, class_index]),
        feature_map=feature_map, layer_name=layer_name if feature_map is not None else None,
        patch_size=int(patch_size), stride=int(stride), centers=centers)
