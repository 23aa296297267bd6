"""Learning-rate schedules of a training run, and large-batch scaling with warm-up.

The paper (section 5) starts at 0.01 and divides the rate by 10 "when the validation
error rate stopped improving with the current learning rate", three times in all.
`PlateauSchedule` does that with a patience; `StepSchedule` divides at fixed epochs.
Both keep their state in variables, so it is saved with the checkpoint and a resumed
run continues the same schedule.
"""

from typing import Sequence

import tensorflow as tf

SCHEDULES = ("plateau", "step")


def _check_factor(factor):
    if not 0.0 < factor < 1.0:
        raise ValueError(f"learning-rate factor must be in (0, 1), got {factor!r}")


class PlateauSchedule(tf.Module):
    """Divides the learning rate by 1/factor when the validation error stops improving.

    After each epoch's validation, `update(error)` compares the error with the best so
    far. An epoch counts as an improvement when the error drops by more than
    `min_delta`; after `patience` epochs in a row without one, the rate is multiplied by
    `factor` (and the count starts again), at most `max_reductions` times.

    Args:
      initial_learning_rate: the 0.01 of the paper.
      factor: multiplier applied at each reduction (0.1 in the paper).
      patience: epochs without improvement before a reduction (>= 1).
      max_reductions: the paper reduced three times.
      min_delta: the smallest drop in error (as a fraction, e.g. 0.001) that counts.
    """

    def __init__(self, initial_learning_rate: float, factor: float = 0.1, patience: int = 5,
                 max_reductions: int = 3, min_delta: float = 0.0, name="plateau_schedule"):
        super().__init__(name=name)
        _check_factor(factor)
        if initial_learning_rate <= 0:
            raise ValueError(f"initial_learning_rate must be > 0, got {initial_learning_rate!r}")
        if patience < 1 or max_reductions < 0 or min_delta < 0:
            raise ValueError("PlateauSchedule needs patience >= 1, max_reductions >= 0 and "
                             f"min_delta >= 0, got {patience!r}, {max_reductions!r}, "
                             f"{min_delta!r}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.factor = float(factor)
        self.patience = int(patience)
        self.max_reductions = int(max_reductions)
        self.min_delta = float(min_delta)
        # State (saved in checkpoints). best_error starts above any error rate.
        self.best_error = tf.Variable(float("inf"), trainable=False, dtype=tf.float64,
                                      name="best_error")
        self.num_bad_epochs = tf.Variable(0, trainable=False, dtype=tf.int64,
                                          name="num_bad_epochs")
        self.num_reductions = tf.Variable(0, trainable=False, dtype=tf.int64,
                                          name="num_reductions")

    def learning_rate(self, epoch: int) -> float:
        """The rate for `epoch` (0-based); depends only on the reductions made so far."""
        del epoch  # A plateau schedule depends on the validation history only.
        return self.initial_learning_rate * self.factor ** int(self.num_reductions.numpy())

    def update(self, validation_error: float, at_chance: bool = False) -> bool:
        """Records one epoch's validation error; returns True when the rate was reduced.

        An epoch whose validation loss is still at chance (`at_chance`) is not counted:
        a network that has not left chance is not on a plateau, and reducing its rate
        would only make it slower to leave.
        """
        if at_chance:
            return False
        error = float(validation_error)
        if error < float(self.best_error.numpy()) - self.min_delta:
            self.best_error.assign(error)
            self.num_bad_epochs.assign(0)
            return False
        self.num_bad_epochs.assign_add(1)
        if (self.num_bad_epochs.numpy() >= self.patience
                and self.num_reductions.numpy() < self.max_reductions):
            self.num_reductions.assign_add(1)
            self.num_bad_epochs.assign(0)
            # The new rate gets a fresh chance to improve on the best error so far.
            return True
        return False


class StepSchedule(tf.Module):
    """Multiplies the learning rate by `factor` at each of fixed epochs.

    Args:
      initial_learning_rate: rate before the first boundary.
      boundaries: increasing 0-based epochs at which the rate is multiplied by `factor`
        (e.g. (30, 60, 80): epochs 30.. use lr * 0.1), or numbers of images seen when
        the run's budget is in images: `learning_rate` is then given images seen.
      factor: the multiplier.
    """

    def __init__(self, initial_learning_rate: float, boundaries: Sequence[int],
                 factor: float = 0.1, name="step_schedule"):
        super().__init__(name=name)
        _check_factor(factor)
        boundaries = [int(b) for b in boundaries]
        if any(b <= 0 for b in boundaries) or boundaries != sorted(set(boundaries)):
            raise ValueError(f"step boundaries must be strictly increasing and > 0, "
                             f"got {boundaries!r}")
        self.initial_learning_rate = float(initial_learning_rate)
        self.boundaries = tuple(boundaries)
        self.factor = float(factor)

    def learning_rate(self, epoch: int) -> float:
        """The rate at `epoch` (or at so many images seen: the boundaries' unit)."""
        passed = sum(1 for boundary in self.boundaries if epoch >= boundary)
        return self.initial_learning_rate * self.factor ** passed

    def update(self, validation_error: float, at_chance: bool = False) -> bool:
        """A fixed schedule ignores validation; kept for a common interface."""
        del validation_error, at_chance
        return False


def make_schedule(name: str, *, initial_learning_rate: float, factor: float = 0.1,
                  patience: int = 5, max_reductions: int = 3, min_delta: float = 0.0,
                  boundaries: Sequence[int] = ()):
    """Returns a `PlateauSchedule` ("plateau") or a `StepSchedule` ("step").

    Raises:
      ValueError: unknown `name`, or a step schedule without boundaries.
    """
    if name == "plateau":
        return PlateauSchedule(initial_learning_rate, factor=factor, patience=patience,
                               max_reductions=max_reductions, min_delta=min_delta)
    if name == "step":
        if not boundaries:
            raise ValueError("lr_schedule='step' needs lr_boundaries (epochs), got none")
        return StepSchedule(initial_learning_rate, boundaries, factor=factor)
    raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {name!r}")


# Large-batch training (Goyal et al. 2017, "Accurate, Large Minibatch SGD"): when the
# batch grows k-fold, scale the learning rate k-fold ("linear"; "sqrt" scales by sqrt(k),
# which keeps the gradient noise's variance, as in Hoffer et al. 2017), and ramp it up
# over the first epochs, since the scaled rate diverges on the untrained network.
# LARS (You et al. 2017, AlexNet at batch 8K-32K) is not implemented here.
LR_SCALINGS = ("none", "linear", "sqrt")


def scaled_learning_rate(learning_rate: float, batch_size: int, base_batch_size: int = 128,
                         rule: str = "none") -> float:
    """The learning rate for `batch_size`, given that `learning_rate` suits `base_batch_size`.

    Args:
      learning_rate: the rate tuned for `base_batch_size` (the paper's 0.01 for 128).
      batch_size: the global batch size actually used.
      base_batch_size: the batch size `learning_rate` belongs to.
      rule: "none" (keep the rate), "linear" (times k = batch_size / base_batch_size) or
        "sqrt" (times sqrt(k)).

    Raises:
      ValueError: unknown rule or a size < 1.
    """
    if rule not in LR_SCALINGS:
        raise ValueError(f"lr_scaling must be one of {LR_SCALINGS}, got {rule!r}")
    if batch_size < 1 or base_batch_size < 1:
        raise ValueError(f"batch sizes must be >= 1, got batch_size={batch_size!r}, "
                         f"base_batch_size={base_batch_size!r}")
    ratio = batch_size / base_batch_size
    factor = {"none": 1.0, "linear": ratio, "sqrt": ratio ** 0.5}[rule]
    return float(learning_rate) * factor


def warmup_multiplier(step: int, warmup_steps: int, start_fraction: float = 0.0) -> float:
    """Gradual warm-up: the fraction of the scheduled rate to use at `step` (0-based).

    Rises linearly from `start_fraction` at step 0 to 1.0 at `warmup_steps`, then stays
    1.0. Goyal et al. start from the small-batch rate, i.e. start_fraction = 1 / k.

    Raises:
      ValueError: negative warmup_steps, or start_fraction outside [0, 1].
    """
    if warmup_steps < 0 or not 0.0 <= start_fraction <= 1.0:
        raise ValueError(f"warm-up needs warmup_steps >= 0 and start_fraction in [0, 1], got "
                         f"{warmup_steps!r}, {start_fraction!r}")
    if step >= warmup_steps:
        return 1.0
    return start_fraction + (1.0 - start_fraction) * step / warmup_steps
