"""The paper's ablations: its net with one switch flipped per run, under one step budget.

Each row trains the baseline with one setting changed; results.md lists each row's
validation top-1/top-5 error, its difference from the baseline, and the difference the
paper reports for the same switch (ILSVRC-2010/2012, full size, 90 epochs: a small run on
the demo data measures something else, and says so by its numbers).

  row                    setting                       paper (sections 3-6, Table 2)
  baseline               the paper's net               -
  no_lrn                 use_lrn=False                 +1.4 / +1.2 (section 3.3)
  non_overlapping_pool   pooling=non_overlapping       +0.4 / +0.3 (section 3.4)
  half_one_tower         variant=half_one_tower        +1.7 / +1.2 (section 3.2)
  no_dropout             dropout_rate=0                "substantial overfitting" (4.2)
  no_pca_lighting        pca_std=0                     top-1 +1 ("over 1%", 4.1)
  tanh                   activation=tanh               no ImageNet figure (Figure 1)
  sixth_conv             sixth_conv=True               -1.7 / -1.6, with pre-training
                                                       on ImageNet Fall 2011 (Table 2)
"""

import dataclasses
from typing import Optional, Sequence

from alexnet_tf import atomic
from alexnet_tf import errors
from alexnet_tf.replication import runs
from alexnet_tf.training import config as config_lib

RESULTS_FILE = "results.md"
PLOT_FILE = "ablations.png"
BASELINE = "baseline"


@dataclasses.dataclass(frozen=True)
class Row:
    """One run: its name, what it changes, and the paper's figure for that change."""
    name: str
    description: str
    settings: dict
    paper: str


ROWS = (
        Row(BASELINE, "the paper's net", {}, "-"),
        Row("no_lrn", "no response normalisation", dict(use_lrn=False),
            "+1.4 / +1.2 (3.3)"),
        Row("non_overlapping_pool", "pooling z=2, s=2", dict(pooling="non_overlapping"),
            "+0.4 / +0.3 (3.4)"),
        Row("half_one_tower", "one GPU, half the kernels", dict(variant="half_one_tower"),
            "+1.7 / +1.2 (3.2)"),
        Row("no_dropout", "no dropout", dict(dropout_rate=0.0),
            "\"substantial overfitting\" (4.2)"),
        Row("no_pca_lighting", "no PCA lighting", dict(pca_std=0.0),
            "top-1 +1 (\"over 1%\", 4.1)"),
        Row("tanh", "tanh instead of ReLU", dict(activation="tanh"),
            "no ImageNet figure (Figure 1)"),
        Row("sixth_conv", "a sixth conv layer over pool5", dict(sixth_conv=True),
            "-1.7 / -1.6 with pre-training (Table 2)"),
)
ROW_NAMES = tuple(row.name for row in ROWS)


@dataclasses.dataclass(frozen=True)
class Settings:
    """The budget every row shares, small enough for a CPU by default.

    Attributes:
      steps: training steps of each run (one validation at the end).
      batch_size: images per step.
      learning_rate: the paper's SGD rate.
      input_size: crop side; resize_size is input_size * 256 / 224.
      width_multiplier: scales every layer's width (1: the paper's).
      seed: the seed of every run.
      rows: the rows to run (the baseline always runs).
    """
    steps: int = 300
    batch_size: int = 64
    learning_rate: float = 0.01
    input_size: int = 96
    width_multiplier: float = 0.25
    seed: int = 0
    rows: Sequence[str] = ROW_NAMES


def resize_size(input_size: int) -> int:
    """The shorter side the crops are cut from: the paper's 256 / 224 proportion."""
    return int(round(input_size * 256 / 224))


def baseline_config(data_dir: str, settings: Settings) -> config_lib.TrainConfig:
    """The paper's net and SGD at the budget's size; validated at the end only.

    The initialisation is the authors' released code's (cuda_convnet2), with which the
    paper's SGD leaves chance within a short budget (README, "Initialisation").
    """
    return config_lib.TrainConfig(
            data_dir=data_dir, model="alexnet", variant="paper",
            input_size=settings.input_size, resize_size=resize_size(settings.input_size),
            width_multiplier=settings.width_multiplier, init="cuda_convnet2", mean_mode="rgb",
            batch_size=settings.batch_size, learning_rate=settings.learning_rate,
            lr_max_reductions=0, num_epochs=1, steps_per_epoch=settings.steps,
            max_steps=settings.steps, seed=settings.seed, progress_bar=False,
            summary_images=False, checkpoint_every_steps=max(1, min(100, settings.steps)),
            keep_checkpoints=2, log_every_steps=max(1, min(50, settings.steps)))


def check_rows(names: Sequence[str]) -> list:
    """The rows named, in table order, with the baseline first.

    Raises:
      errors.InvalidInputError: an unknown name.
    """
    unknown = [name for name in names if name not in ROW_NAMES]
    if unknown:
        raise errors.InvalidInputError(f"--rows: unknown {', '.join(unknown)}; expected some "
                                       f"of {', '.join(ROW_NAMES)}")
    return [row for row in ROWS if row.name == BASELINE or row.name in names]


def run_ablations(data_dir: str, output_dir: str, settings: Settings) -> dict:
    """Trains every row (or skips finished ones), then writes results.md and the plot.

    Returns:
      {"rows": [(Row, result)], "results_path", "plot_path", "preempted": False}, or
      {"preempted": True} when a SIGTERM stopped a run (rerun to continue).
    """
    base = baseline_config(data_dir, settings)
    results = []
    for row in check_rows(settings.rows):
        result = runs.run(row.name, dataclasses.replace(base, **row.settings), output_dir)
        if result["status"] == "preempted":
            return dict(preempted=True)
        results.append((row, result))
    results_path = f"{output_dir}/{RESULTS_FILE}"
    atomic.write_text(results_path, markdown_table(results, settings))
    plot_path = _plot(results, f"{output_dir}/{PLOT_FILE}")
    return dict(rows=results, results_path=results_path, plot_path=plot_path,
                preempted=False)


def _percent(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _delta(value: Optional[float], baseline: Optional[float]) -> str:
    if value is None or baseline is None:
        return "-"
    return f"{100 * (value - baseline):+.1f}"


def markdown_table(results: list, settings: Settings) -> str:
    """results.md: one row per run, errors and differences in percentage points."""
    baseline = next(result for row, result in results if row.name == BASELINE)
    lines = ["# Ablations", "",
             f"Each run: {settings.steps} steps of batch {settings.batch_size}, learning "
             f"rate {settings.learning_rate:g}, input {settings.input_size}x"
             f"{settings.input_size}, width x{settings.width_multiplier:g}, seed "
             f"{settings.seed}. Errors on the validation set, in %; deltas in points vs "
             "the baseline. The paper's column is the change its section reports when the "
             "switch is flipped on ImageNet (top-1 / top-5).", "",
             "| run | change | top-1 error | top-5 error | Δ top-1 | Δ top-5 | paper Δ |",
             "|---|---|---:|---:|---:|---:|---|"]
    for row, result in results:
        if result["status"] == runs.DIVERGED:
            cells = ["diverged (loss NaN/Inf)", "-", "-", "-"]
        else:
            cells = [_percent(result["top1_error"]), _percent(result["top5_error"]),
                     _delta(result["top1_error"], baseline.get("top1_error")),
                     _delta(result["top5_error"], baseline.get("top5_error"))]
        lines.append(f"| {row.name} | {row.description} | " + " | ".join(cells)
                     + f" | {row.paper} |")
    return "\n".join(lines) + "\n"


def _plot(results: list, path: str) -> str:
    import numpy as np
    from matplotlib.figure import Figure
    from alexnet_tf.viz import plots
    names = [row.name for row, _ in results]
    values = {key: [result.get(key) if result["status"] == runs.FINISHED else None
                    for _, result in results] for key in ("top1_error", "top5_error")}
    positions = np.arange(len(names))
    figure = Figure(figsize=(max(6, 0.9 * len(names)), 4))
    axes = figure.add_subplot()
    for offset, (key, label) in zip((-0.2, 0.2), (("top1_error", "top-1"),
                                                   ("top5_error", "top-5"))):
        heights = [100 * value if value is not None else 0 for value in values[key]]
        axes.bar(positions + offset, heights, width=0.4, label=label)
    axes.set_xticks(positions, names, rotation=30, ha="right")
    axes.set(ylabel="validation error (%)", title="AlexNet ablations (one switch per run)")
    axes.legend()
    figure.tight_layout()
    return plots.save_png(figure, path)
