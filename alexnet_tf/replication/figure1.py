"""Figure 1 of the paper: a four-layer CNN with ReLUs vs the same net with tanh units.

The paper: "A four-layer convolutional neural network with ReLUs (solid line) reaches a
25% training error rate on CIFAR-10 six times faster than an equivalent network with tanh
neurons (dashed line)." Here both nets (nn/cnn4.py) train with the same data, budget,
seed, initialisation and learning rate, and the training error is measured after every
epoch on the whole training set (centre crops, `eval_split="train"`). The ratio reported
is the epochs tanh needs to reach the target error over the epochs ReLU needs, measured;
a net that never reaches the target within the budget is reported as such, with no ratio.

Departures from the paper's Figure 1, all settings of `figure1_configs`: the data is
whatever --data_dir holds (the demo's ten shape classes by default, not CIFAR-10), one
learning rate serves both nets (the paper tuned each; default 0.002, as the paper's
0.01 sends the ReLU net's loss to NaN on the demo data), and the paper's SGD (momentum 0.9)
runs without weight decay, augmentation or dropout, as the paper used "no regularization
of any kind".
"""

import dataclasses
from typing import Optional, Sequence

from alexnet_tf import atomic
from alexnet_tf.replication import runs
from alexnet_tf.training import config as config_lib

ACTIVATIONS = ("relu", "tanh")
TARGET_ERROR = 0.25  # the paper's 25% training error
INPUT_SIZE = 32  # CIFAR-10's size
# One rate for both nets: the paper's 0.01 makes the ReLU net diverge on the demo data
# (0..255 pixels, N(0, 0.01) weights); 0.002 trains both.
LEARNING_RATE = 0.002
RESULTS_FILE = "results.md"
PLOT_FILE = "figure1.png"


@dataclasses.dataclass(frozen=True)
class Settings:
    """The experiment's budget and the knobs a CPU needs.

    Attributes:
      num_epochs: epochs each net trains.
      batch_size: images per step.
      learning_rate: the SGD rate of both nets.
      input_size: crop side (the records are resized to it first).
      width_multiplier: scales cnn4's widths (1: 32-32-64).
      seed: seed of both runs.
      target_error: training error whose first epoch is compared.
      eval_steps: training-set batches measured per epoch (0: all).
    """
    num_epochs: int = 30
    batch_size: int = 128
    learning_rate: float = LEARNING_RATE
    input_size: int = INPUT_SIZE
    width_multiplier: float = 1.0
    seed: int = 0
    target_error: float = TARGET_ERROR
    eval_steps: int = 0


def figure1_configs(data_dir: str, settings: Settings) -> dict:
    """{activation: TrainConfig} of the two runs, alike but for the activation."""
    common = config_lib.TrainConfig(
            data_dir=data_dir, model="cnn4", input_size=settings.input_size,
            resize_size=settings.input_size, width_multiplier=settings.width_multiplier,
            init="zfnet", mean_mode="rgb", flip=False, pca_std=0.0, weight_decay=0.0,
            batch_size=settings.batch_size, num_epochs=settings.num_epochs,
            learning_rate=settings.learning_rate, lr_max_reductions=0,
            eval_split="train", eval_steps=settings.eval_steps, seed=settings.seed,
            progress_bar=False, summary_images=False, checkpoint_every_steps=1000,
            keep_checkpoints=2)
    return {activation: dataclasses.replace(common, activation=activation)
            for activation in ACTIVATIONS}


def epochs_to_reach(errors: Sequence[float], target: float) -> Optional[int]:
    """The first epoch (1-based) whose error is <= target, or None if none is."""
    for epoch, error in enumerate(errors, start=1):
        if error <= target:
            return epoch
    return None


def summarize(curves: dict, target: float, num_epochs: int,
              diverged: Optional[dict] = None) -> dict:
    """The epochs each activation needs to reach `target`, and tanh's over ReLU's.

    Args:
      curves: {activation: [training error after epoch 1, 2, ...]}.
      target: the training error to reach.
      num_epochs: the budget each net had.
      diverged: {activation: message} of the nets whose loss became NaN or Inf.

    Returns:
      {"epochs": {activation: epoch or None}, "ratio": float or None, "note": str}.
    """
    diverged = diverged or {}
    epochs = {name: epochs_to_reach(curve, target) for name, curve in curves.items()}
    missing = [name for name in ACTIVATIONS if epochs.get(name) is None]
    if missing:
        reasons = [f"{name} diverged ({diverged[name]})" if name in diverged else
                   f"{name} did not reach a training error of {target:g} in {num_epochs} "
                   "epochs" for name in missing]
        return dict(epochs=epochs, ratio=None,
                    note="; ".join(reasons) + ": no ratio is measured")
    ratio = epochs["tanh"] / epochs["relu"]
    return dict(epochs=epochs, ratio=ratio,
                note=f"tanh needed {ratio:.2f}x the epochs of ReLU to reach a training "
                     f"error of {target:g} (paper: about 6x on CIFAR-10)")


def run_figure1(data_dir: str, output_dir: str, settings: Settings) -> dict:
    """Trains both nets (or skips finished ones), then writes results.md and the plot.

    Returns:
      summarize()'s dict plus "curves", "results_path", "plot_path"; or
      {"preempted": True} when a SIGTERM stopped a run (rerun to continue).
    """
    curves, diverged = {}, {}
    for activation, config in figure1_configs(data_dir, settings).items():
        result = runs.run(f"cnn4_{activation}", config, output_dir)
        if result["status"] == "preempted":
            return dict(preempted=True)
        curves[activation] = [entry["top1_error"] for entry in result["history"]]
        if result["status"] == runs.DIVERGED:
            diverged[activation] = result["message"]
    summary = summarize(curves, settings.target_error, settings.num_epochs, diverged)
    plot_path = _plot(curves, settings.target_error, f"{output_dir}/{PLOT_FILE}")
    results_path = f"{output_dir}/{RESULTS_FILE}"
    atomic.write_text(results_path, _markdown(curves, summary, settings))
    return dict(summary, curves=curves, results_path=results_path, plot_path=plot_path,
                preempted=False)


def _markdown(curves: dict, summary: dict, settings: Settings) -> str:
    lines = ["# Figure 1: ReLU vs tanh, four-layer CNN", "",
             f"Training error after each epoch (whole training set, centre crops); "
             f"{settings.num_epochs} epochs, batch {settings.batch_size}, learning rate "
             f"{settings.learning_rate:g}, seed {settings.seed}, input "
             f"{settings.input_size}x{settings.input_size}.", "",
             "| epoch | " + " | ".join(ACTIVATIONS) + " |",
             "|---:|" + "---:|" * len(ACTIVATIONS)]
    for index in range(max([len(curve) for curve in curves.values()] + [0])):
        cells = [f"{curves[name][index]:.4f}" if index < len(curves[name]) else ""
                 for name in ACTIVATIONS]
        lines.append(f"| {index + 1} | " + " | ".join(cells) + " |")
    reached = ", ".join(f"{name}: {'epoch ' + str(epoch) if epoch else 'not reached'}"
                        for name, epoch in summary["epochs"].items())
    lines += ["", f"Epochs to a training error of {settings.target_error:g}: {reached}.", "",
              summary["note"] + ".", ""]
    return "\n".join(lines)


def _plot(curves: dict, target: float, path: str) -> str:
    from matplotlib.figure import Figure
    from alexnet_tf.viz import plots
    figure = Figure(figsize=(6, 4))
    axes = figure.add_subplot()
    for name, style in zip(ACTIVATIONS, ("-", "--")):
        axes.plot(range(1, len(curves[name]) + 1), curves[name], style, label=name)
    axes.axhline(target, color="grey", linewidth=0.8, linestyle=":",
                 label=f"target {target:g}")
    axes.set(xlabel="epochs", ylabel="training error rate", ylim=(0, 1),
             title="Four-layer CNN: ReLU vs tanh (paper, Figure 1)")
    axes.legend()
    figure.tight_layout()
    return plots.save_png(figure, path)
