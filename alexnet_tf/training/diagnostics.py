"""Looking inside a run that may not learn: per-layer statistics and a stall detector.

The standard checks for a deep net stuck at chance (Glorot & Bengio 2010; He et al.
2015): the standard deviation of each layer's output (a signal that shrinks layer by
layer vanishes before it reaches the classifier), the gradient norm of each layer's
weights (near zero: the layer does not learn), and the ratio of a step's update to the
weights (around 1e-3 is healthy; far below, the learning rate is too small for that
layer; far above, it is unstable).

`LayerProbe` measures the first two on a fixed batch, `update_ratios` the third from
two snapshots of the weights. The trainer writes them to TensorBoard every
--diagnostics_every_steps steps (nothing runs when that is 0), and the trainability
benchmark prints them at initialisation.

`StallDetector` watches the training loss: the cross-entropy of a network that has
learned nothing is ln(num_classes), and a loss that stays within 1% of it for many steps
means the run is stuck, which is worth one clear warning rather than hours of GPU time.
"""

import math
from typing import Dict, List, Optional

import keras
import numpy as np
import tensorflow as tf

# The layers with weights, in order; those a model lacks are skipped.
LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8")
# How close to ln(num_classes) a loss must be to count as "at chance", relative.
CHANCE_TOLERANCE = 0.01


def weighted_layers(model: keras.Model) -> List[str]:
    """The names of `model`'s layers in LAYERS, in order."""
    names = {layer.name for layer in model.layers}
    return [name for name in LAYERS if name in names]


class LayerProbe:
    """Per-layer output std and weight-gradient norm of a model on one fixed batch.

    Outputs are taken after each layer's ReLU (conv1..fc7) and are fc8's logits for
    fc8; dropout is off (training=False), so the numbers depend on the weights alone.

    Args:
      model: the Keras model.
      images: float32 (B, S, S, 3) preprocessed images.
      labels: int (B,) their labels.
    """

    def __init__(self, model: keras.Model, images, labels):
        self.layer_names = weighted_layers(model)
        self._model = model
        self._features = keras.Model(
                model.input, [model.get_layer(name).output for name in self.layer_names])
        self._images = tf.constant(images, tf.float32)
        self._labels = tf.constant(labels, tf.int32)
        self._compiled = tf.function(self._measure)

    def _measure(self):
        variables = [self._model.get_layer(name).trainable_weights for name in self.layer_names]
        with tf.GradientTape() as tape:
            outputs = self._features(self._images, training=False)
            logits = tf.cast(outputs[-1], tf.float32)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                    labels=self._labels, logits=logits))
        gradients = tape.gradient(loss, variables)
        stds = [tf.math.reduce_std(tf.cast(output, tf.float32)) for output in outputs]
        norms = [tf.linalg.global_norm([g for g in layer_gradients if g is not None])
                 for layer_gradients in gradients]
        return loss, stds, norms

    def __call__(self) -> Dict[str, Dict[str, float]]:
        """{"loss": {"probe": value}, "activation_std": {layer: value},
        "gradient_norm": {layer: value}}."""
        loss, stds, norms = self._compiled()
        return {"loss": {"probe": float(loss)},
                "activation_std": dict(zip(self.layer_names, (float(v) for v in stds))),
                "gradient_norm": dict(zip(self.layer_names, (float(v) for v in norms)))}


def weights_snapshot(model: keras.Model) -> Dict[str, List[np.ndarray]]:
    """A copy of each weighted layer's trainable weights."""
    return {name: [np.array(weight.numpy())
                   for weight in model.get_layer(name).trainable_weights]
            for name in weighted_layers(model)}


def update_ratios(before: Dict[str, List[np.ndarray]], model: keras.Model) -> Dict[str, float]:
    """||w_now - w_before|| / ||w_before|| per layer (all of the layer's weights together)."""
    ratios = {}
    for name, old in before.items():
        new = [weight.numpy() for weight in model.get_layer(name).trainable_weights]
        change = math.sqrt(sum(float(np.sum((n - o) ** 2)) for n, o in zip(new, old)))
        size = math.sqrt(sum(float(np.sum(o ** 2)) for o in old))
        ratios[name] = change / size if size > 0 else float("nan")
    return ratios


def write_summaries(writer, step: int, statistics: Dict[str, Dict[str, float]]) -> None:
    """Writes {"kind": {layer: value}} as TensorBoard scalars diagnostics/<kind>/<layer>."""
    with writer.as_default(step=step):
        for kind, values in statistics.items():
            for name, value in values.items():
                tf.summary.scalar(f"diagnostics/{kind}/{name}", value)


def chance_loss(num_classes: int) -> float:
    """The cross-entropy of a prediction that says nothing: ln(num_classes)."""
    return math.log(num_classes)


def at_chance(loss: float, num_classes: int, tolerance: float = CHANCE_TOLERANCE) -> bool:
    """Whether `loss` is within `tolerance` (relative) of ln(num_classes)."""
    chance = chance_loss(num_classes)
    return abs(loss - chance) <= tolerance * chance


class StallDetector:
    """Warns once when the training loss stays at chance for `num_steps` steps in a row.

    Args:
      num_classes: the number of classes (chance is ln of it).
      num_steps: how many consecutive steps at chance make a stall; 0 turns it off.
    """

    def __init__(self, num_classes: int, num_steps: int):
        self.num_classes = num_classes
        self.num_steps = num_steps
        self._run = 0
        self.warned = False

    def update(self, step: int, loss: float) -> Optional[str]:
        """Records one step's loss; returns the warning the first time a stall is seen."""
        if not self.num_steps or self.warned:
            return None
        self._run = self._run + 1 if at_chance(loss, self.num_classes) else 0
        if self._run < self.num_steps:
            return None
        self.warned = True
        return (f"the training loss has stayed within {CHANCE_TOLERANCE:.0%} of chance "
                f"(ln {self.num_classes} = {chance_loss(self.num_classes):.4f}) for "
                f"{self.num_steps} steps, up to step {step}: the network is not learning. "
                "Likely causes: an initialisation whose signal vanishes before the classifier "
                "(try --init=caffe or --init=cuda_convnet2), a learning rate too small to "
                "leave the start or too large (NaN soon after), or labels that do not match "
                "the images. --diagnostics_every_steps=N writes per-layer activation std, "
                "gradient norm and update/weight ratio to TensorBoard to see which.")


class PeriodicDiagnostics:
    """Writes the per-layer statistics of every `every_steps`-th training step.

    The step's update/weight ratio needs the weights before it: `before_step` copies them
    when the coming step is due, `after_step` measures and writes. The probe batch is
    taken once, from `probe_batch()`, so the numbers of different steps compare.

    Args:
      model: the Keras model being trained.
      every_steps: the period; 0 does nothing at all.
      probe_batch: returns (images, labels), e.g. the first validation batch.
      writer: the TensorBoard writer.
    """

    def __init__(self, model: keras.Model, every_steps: int, probe_batch, writer):
        self._model = model
        self._every_steps = every_steps
        self._probe_batch = probe_batch
        self._writer = writer
        self._probe = None
        self._before = None

    def before_step(self, step: int) -> None:
        """Call before running step `step + 1` (steps count from 1)."""
        if self._every_steps and (step + 1) % self._every_steps == 0:
            self._before = weights_snapshot(self._model)

    def after_step(self, step: int) -> Optional[Dict[str, Dict[str, float]]]:
        """Call after the step; returns what was written, if it was due."""
        if self._before is None:
            return None
        if self._probe is None:
            self._probe = LayerProbe(self._model, *self._probe_batch())
        statistics = self._probe()
        statistics["update_ratio"] = update_ratios(self._before, self._model)
        self._before = None
        write_summaries(self._writer, step, statistics)
        return statistics
