"""The paper's SGD update, and the optimizer a run asks for by name.

Krizhevsky et al. (2012), section 5, train with stochastic gradient descent, batch 128,
momentum 0.9 and weight decay 0.0005, with the update

    v <- 0.9 * v - 0.0005 * lr * w - lr * dL/dw
    w <- w + v

Weight decay sits INSIDE the momentum (scaled by the learning rate and accumulated in v).
Per-layer learning-rate multipliers k (Caffe's `lr_mult`, with `decay_mult` 1) put
lr * k in place of lr for that layer's variables, as fine-tuning uses them: a new fc8
learns faster than the pretrained layers below it.
It is not Keras' decoupled `weight_decay` (w <- w - lr * wd * w, outside the momentum).
An L2 term 0.00025 * sum(w^2) in the loss would give the same update in exact arithmetic,
but it would inflate the reported loss and pass through fp16 loss scaling; `PaperSGD`
applies the rule itself, in the variables' float32.

The learning-rate schedules are in `schedules.py`.
"""


import keras
from keras import ops
import tensorflow as tf


@keras.saving.register_keras_serializable(package="alexnet_tf")
class PaperSGD(keras.optimizers.Optimizer):
    """SGD with momentum and weight decay inside the momentum, as in the AlexNet paper.

    Works under `tf.distribute` strategies (Keras all-reduces the gradients and updates
    mirrored slots per replica) and is checkpointable with `tf.train.Checkpoint`: the
    momentum slots, the iteration count and the learning-rate variable are tracked.

    Args:
      learning_rate: float (stored in a variable, so the trainer can assign to it).
      momentum: the 0.9 of the paper, in [0, 1).
      weight_decay: the 0.0005 of the paper, >= 0; multiplies lr * w inside the momentum.
      learning_rate_multipliers: {variable path: k >= 0}: that variable updates with
        lr * k in the place of lr; others with lr. `layer_multipliers` makes it from
        per-layer factors.
      name: optimizer name.
      **kwargs: other `keras.optimizers.Optimizer` arguments (e.g. `loss_scale_factor`);
        Keras' own decoupled `weight_decay` is deliberately not reachable.

    Raises:
      ValueError: momentum or weight_decay out of range.
    """

    def __init__(self, learning_rate=0.01, momentum=0.9, weight_decay=0.0005,
                 learning_rate_multipliers=None, name="paper_sgd", **kwargs):
        # weight_decay=None for the base class: the base would otherwise apply the
        # decoupled decay w <- w - lr * wd * w on top of ours.
        super().__init__(learning_rate=learning_rate, name=name, weight_decay=None, **kwargs)
        if not isinstance(momentum, (int, float)) or not 0.0 <= momentum < 1.0:
            raise ValueError(f"PaperSGD momentum must be a float in [0, 1), got {momentum!r}")
        if not isinstance(weight_decay, (int, float)) or weight_decay < 0:
            raise ValueError(f"PaperSGD weight_decay must be a float >= 0, got {weight_decay!r}")
        multipliers = dict(learning_rate_multipliers or {})
        if any(not isinstance(k, (int, float)) or k < 0 for k in multipliers.values()):
            raise ValueError(f"PaperSGD learning_rate_multipliers must be floats >= 0, got "
                             f"{multipliers!r}")
        self.momentum = float(momentum)
        self.paper_weight_decay = float(weight_decay)
        self.learning_rate_multipliers = {name: float(k) for name, k in multipliers.items()}
        self._variable_multipliers = []  # One per variable, in build's order.
        self._fused_update = None

    def build(self, variables):
        """Creates one velocity slot per variable, initialised to zero."""
        if self.built:
            return
        super().build(variables)
        self.velocities = self.add_optimizer_variables(variables, "velocity")
        self._variable_multipliers = [self.learning_rate_multipliers.get(variable.path, 1.0)
                                      for variable in variables]

    def update_step(self, gradient, variable, learning_rate):
        """v <- m * v - wd * lr * w - lr * g;  w <- w + v.

        Outside any tf.distribute strategy the update is one XLA kernel per variable
        (`_update_in_place`, compiled): a single pass over w, v and g instead of one per
        op, which matters for 61M parameters (docs/performance.md). Under a strategy Keras hands over per-replica variable components, which
        an XLA kernel cannot take: plain ops (the same arithmetic; XLA may fuse a multiply
        and an add, so the two can differ in the last bit).
        """
        learning_rate = tf.cast(ops.convert_to_tensor(learning_rate), variable.dtype)
        index = self._get_variable_index(variable)
        velocity = self.velocities[index]
        if self._variable_multipliers[index] != 1.0:
            learning_rate = learning_rate * self._variable_multipliers[index]
        if (not tf.distribute.has_strategy() and _is_plain(variable) and _is_plain(velocity)
                and _tf_variable(variable).device == _tf_variable(velocity).device):
            # On the variable's device: with --tower_devices that is each tower's own.
            if self._fused_update is None:
                # Per optimizer: a compiled function must not outlive the variables it saw.
                self._fused_update = tf.function(_update_in_place, jit_compile=True)
            with tf.device(_tf_variable(variable).device):
                self._fused_update(_tf_variable(variable), _tf_variable(velocity), gradient,
                                   learning_rate, self.momentum, self.paper_weight_decay)
            return
        # Under a strategy, Keras hands over per-replica components: plain ops.
        new_velocity, new_variable = _paper_sgd_math(
                variable, velocity, gradient, learning_rate, self.momentum,
                self.paper_weight_decay)
        self.assign(velocity, new_velocity)
        self.assign(variable, new_variable)

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "weight_decay": self.paper_weight_decay,
                       "learning_rate_multipliers": dict(self.learning_rate_multipliers)})
        return config


def _paper_sgd_math(variable, velocity, gradient, learning_rate, momentum, decay):
    gradient = tf.cast(gradient, variable.dtype)
    new_velocity = velocity * momentum - (decay * learning_rate) * variable - learning_rate * gradient
    return new_velocity, variable + new_velocity


def _update_in_place(variable, velocity, gradient, learning_rate, momentum, decay):
    """The paper's update written into the two variables, as one XLA kernel."""
    new_velocity, new_variable = _paper_sgd_math(variable.read_value(), velocity.read_value(),
                                                 gradient, learning_rate, momentum, decay)
    velocity.assign(new_velocity)
    variable.assign(new_variable)


def _tf_variable(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


def _is_plain(variable) -> bool:
    """A single tf.Variable (not a distributed one): safe to pass into an XLA kernel."""
    variable = _tf_variable(variable)
    return (isinstance(variable, tf.Variable)
            and not isinstance(variable, tf.distribute.DistributedValues))


# "adam" is not the paper's: Keras Adam without weight decay, for small CPU demos.
OPTIMIZERS = ("paper_sgd", "adam")


def make_optimizer(name: str, *, learning_rate: float, momentum: float = 0.9,
                   weight_decay: float = 0.0005, learning_rate_multipliers=None,
                   loss_scaling: bool = False):
    """The optimizer `name` (one of OPTIMIZERS), wrapped for dynamic loss scaling if asked.

    Args:
      name: "paper_sgd" (`PaperSGD`) or "adam".
      learning_rate: the initial rate (the schedule sets it per epoch).
      momentum, weight_decay, learning_rate_multipliers: PaperSGD's; Adam uses none.
      loss_scaling: wrap in `keras.optimizers.LossScaleOptimizer` (float16 training:
        small gradients would otherwise flush to zero).

    Raises:
      ValueError: an unknown name, or multipliers for Adam.
    """
    if name == "adam":
        if learning_rate_multipliers:
            raise ValueError("learning-rate multipliers are PaperSGD's; adam takes none")
        optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    elif name == "paper_sgd":
        optimizer = PaperSGD(learning_rate=learning_rate, momentum=momentum,
                             weight_decay=weight_decay,
                             learning_rate_multipliers=learning_rate_multipliers)
    else:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scaling else optimizer


def layer_multipliers(model, by_layer) -> dict:
    """{variable path: k} for PaperSGD from {layer name: k}: every weight of the layer.

    Raises:
      ValueError: a name is not a layer of `model` with weights.
    """
    layers = {layer.name: layer for layer in model.layers if layer.weights}
    unknown = sorted(set(by_layer or {}) - set(layers))
    if unknown:
        raise ValueError(f"lr_multipliers: {unknown} are not layers of {model.name}; layers "
                         f"with weights: {list(layers)}")
    return {variable.path: float(k) for name, k in (by_layer or {}).items()
            for variable in layers[name].weights}
