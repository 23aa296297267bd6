"""Trainability benchmark: does the paper's SGD leave chance, how fast, from which start?

Each row trains a network with the real command (`python -m alexnet_tf.train`, in its
own process) on converted records for a fixed step budget, and reads its TensorBoard
log: the step at which the training loss first falls below LEAVE_FRACTION x ln(classes)
("left chance"), the final validation top-1 error and the wall time. Rows vary the
initialisation preset, the width and the seed; everything else is the given flags.

Before training, `initial_statistics` builds each network as the trainer would and
measures, on one validation batch, each layer's output standard deviation and weight
gradient norm at initialisation (`diagnostics.LayerProbe`): where the signal fades.
"""

import dataclasses
import glob
import json
import math
import os
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional, Sequence

# A run has left chance when its training loss falls below this fraction of ln(classes).
LEAVE_FRACTION = 0.9


@dataclasses.dataclass(frozen=True)
class Row:
    """One training run of the benchmark."""
    init: str
    width_multiplier: float
    seed: int


@dataclasses.dataclass
class Outcome:
    """What one run gave."""
    row: Row
    left_chance_step: Optional[int]  # None: it never did within the budget
    final_top1_error: float
    final_loss: float
    wall_seconds: float
    steps: int


def read_scalars(log_dir: str, tag: str) -> Dict[int, float]:
    """{step: value} of a scalar in a TensorBoard log directory (all event files)."""
    from tensorboard.backend.event_processing import event_accumulator
    import tensorflow as tf
    values = {}
    for path in sorted(glob.glob(os.path.join(log_dir, "events.out.tfevents.*"))):
        accumulator = event_accumulator.EventAccumulator(
                path, size_guidance={event_accumulator.TENSORS: 0})
        accumulator.Reload()
        if tag in accumulator.Tags()["tensors"]:
            for event in accumulator.Tensors(tag):
                values[event.step] = float(tf.make_ndarray(event.tensor_proto))
    return values


def left_chance_step(losses: Dict[int, float], num_classes: int) -> Optional[int]:
    """The first step whose training loss is below LEAVE_FRACTION x ln(num_classes)."""
    threshold = LEAVE_FRACTION * math.log(num_classes)
    for step in sorted(losses):
        if losses[step] < threshold:
            return step
    return None


def train_row(row: Row, *, data_dir: str, work_dir: str, steps: int,
              train_flags: Sequence[str], timeout: int) -> Outcome:
    """Trains one row with `python -m alexnet_tf.train` and reads what it logged.

    Raises:
      RuntimeError: the training process failed (its stderr's tail is in the message).
    """
    model_dir = os.path.join(work_dir, f"{row.init}_w{row.width_multiplier:g}_s{row.seed}")
    # The row's own flags come last: they override the recipe's.
    command = [sys.executable, "-m", "alexnet_tf.train", *train_flags,
               f"--data_dir={data_dir}", f"--model_dir={model_dir}", f"--init={row.init}",
               f"--width_multiplier={row.width_multiplier}", f"--seed={row.seed}",
               f"--max_steps={steps}", "--num_epochs=100000", "--log_every_steps=1",
               "--noprogress_bar", "--nosummary_images"]
    start = time.perf_counter()
    process = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    # 1 is also a NaN loss, which is an outcome (it never leaves chance), not a failure.
    if process.returncode != 0 and "training loss is" not in process.stderr:
        raise RuntimeError(f"training {row} failed ({process.returncode}):\n"
                           f"{process.stderr[-3000:]}")
    losses = read_scalars(os.path.join(model_dir, "logs", "train"), "loss")
    with open(os.path.join(model_dir, "config.json")) as f:
        num_classes = json.load(f)["model"]["num_classes"]
    errors = read_scalars(os.path.join(model_dir, "logs", "validation"), "top1_error")
    validation_losses = read_scalars(os.path.join(model_dir, "logs", "validation"), "loss")
    last = max(errors) if errors else None
    return Outcome(row, left_chance_step(losses, num_classes),
                   errors[last] if last is not None else float("nan"),
                   validation_losses.get(last, float("nan")) if last is not None
                   else float("nan"), wall, max(losses) if losses else 0)


def initial_statistics(*, data_dir: str, init: str, width_multiplier: float, seed: int,
                       input_size: int, resize_size: int, mean_mode: str,
                       batch_size: int = 64) -> Dict[str, Dict[str, float]]:
    """Per-layer output std and gradient norm at initialisation, on one validation batch."""
    import keras

    from alexnet_tf import run_dir
    from alexnet_tf.data import pipeline
    from alexnet_tf.data import schema
    from alexnet_tf.data import stats as stats_lib
    from alexnet_tf.training import diagnostics

    num_classes = pipeline.read_num_classes(data_dir)
    keras.utils.set_random_seed(seed)
    model = run_dir.build_model(dict(name="alexnet", variant="paper",
                                     num_classes=num_classes, input_size=input_size,
                                     width_multiplier=width_multiplier, init=init))
    dataset = pipeline.build_dataset(
            data_dir, schema.VALIDATION, global_batch_size=batch_size, training=False, seed=0,
            stats=stats_lib.load_stats(stats_lib.resolve_path(None, data_dir)),
            crop_size=input_size, resize_size=resize_size, mean_mode=mean_mode)
    images, labels = next(iter(dataset))
    return diagnostics.LayerProbe(model, images, labels)()


def format_statistics(table: Dict[str, Dict[str, Dict[str, float]]]) -> str:
    """Markdown: one row per (preset, width), the layers' output std then gradient norm."""
    first = next(iter(table.values()))
    layers = list(first["activation_std"])
    lines = ["| init, width | quantity | " + " | ".join(layers) + " |",
             "|---|---|" + "---|" * len(layers)]
    for name, values in table.items():
        for kind, label in (("activation_std", "output std"),
                            ("gradient_norm", "gradient norm")):
            cells = " | ".join(f"{values[kind][layer]:.3g}" for layer in layers)
            lines.append(f"| {name} | {label} | {cells} |")
    return "\n".join(lines)


def format_outcomes(outcomes: List[Outcome], steps: int) -> str:
    """Markdown: every run, then the median per (init, width) over the seeds."""
    lines = ["| init | width | seed | left chance at step | final top-1 error | "
             "final val. loss | wall s |", "|---|---|---|---|---|---|---|"]
    for outcome in outcomes:
        row = outcome.row
        left = outcome.left_chance_step if outcome.left_chance_step is not None \
            else f"never (> {steps})"
        lines.append(f"| {row.init} | {row.width_multiplier:g} | {row.seed} | {left} | "
                     f"{outcome.final_top1_error:.3f} | {outcome.final_loss:.3f} | "
                     f"{outcome.wall_seconds:.0f} |")
    lines += ["", "| init | width | seeds that left chance | median step left | "
              "median final top-1 error | median wall s |", "|---|---|---|---|---|---|"]
    groups = {}
    for outcome in outcomes:
        groups.setdefault((outcome.row.init, outcome.row.width_multiplier), []).append(outcome)
    for (init, width), group in groups.items():
        left = [o.left_chance_step for o in group if o.left_chance_step is not None]
        median_left = f"{statistics.median(left):g}" if left else "-"
        lines.append(f"| {init} | {width:g} | {len(left)} of {len(group)} | {median_left} | "
                     f"{statistics.median(o.final_top1_error for o in group):.3f} | "
                     f"{statistics.median(o.wall_seconds for o in group):.0f} |")
    return "\n".join(lines)
