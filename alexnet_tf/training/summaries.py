"""What a training run reports: progress bar, TensorBoard summaries, the conv1 kernel grid.

TensorBoard logs go to model_dir/logs/train and model_dir/logs/validation: loss, learning
rate and images/s while training; top-1/top-5 error per epoch; the first layer's kernels
as one image, the paper's Figure 3 (written by the chief only); and, with
--skip_bad_records, what each split's input skipped (data/bad_records,
data/damaged_shards), also logged as warnings naming the shards.
"""

import math
import os
import sys
import time
from typing import Optional

from absl import logging
import numpy as np
import tensorflow as tf
import tqdm

LOG_DIR = "logs"


def summary_writers(model_dir: str, chief: bool) -> dict:
    """{"train": writer, "validation": writer}; no-op writers off the chief."""
    if not chief:
        noop = tf.summary.create_noop_writer()
        return {"train": noop, "validation": noop}
    return {split: tf.summary.create_file_writer(os.path.join(model_dir, LOG_DIR, split))
            for split in ("train", "validation")}


def first_layer_kernels(model) -> Optional[np.ndarray]:
    """conv1's kernels as one float32 array (k, k, 3, filters), both towers concatenated."""
    try:
        layer = model.get_layer("conv1")
    except ValueError:
        return None
    kernels = [w.numpy() for w in layer.weights if len(w.shape) == 4]
    if not kernels:
        return None
    return np.concatenate(kernels, axis=-1).astype(np.float32)


def kernel_grid(kernels: np.ndarray, columns: Optional[int] = None, border: int = 1) -> np.ndarray:
    """Tiles RGB kernels (k, k, 3, n) into one image (1, H, W, 3) in [0, 1].

    Each kernel is scaled to [0, 1] on its own (as the paper's Figure 3 shows them);
    kernels are laid out row by row, `columns` per row (default: 12 for the paper's 96,
    else about sqrt(n)), separated by `border` white pixels.

    Raises:
      ValueError: kernels are not (k, k, 3, n).
    """
    if kernels.ndim != 4 or kernels.shape[2] != 3:
        raise ValueError(f"kernel_grid expects (k, k, 3, n) kernels, got {kernels.shape}")
    size, _, _, count = kernels.shape
    columns = columns or (12 if count == 96 else int(math.ceil(math.sqrt(count))))
    rows = int(math.ceil(count / columns))
    low = kernels.min(axis=(0, 1, 2), keepdims=True)
    high = kernels.max(axis=(0, 1, 2), keepdims=True)
    scaled = (kernels - low) / np.maximum(high - low, 1e-12)  # (k, k, 3, n) in [0, 1]
    cell = size + border
    grid = np.ones((rows * cell + border, columns * cell + border, 3), np.float32)
    for index in range(count):
        row, column = divmod(index, columns)
        top, left = border + row * cell, border + column * cell
        grid[top:top + size, left:left + size] = scaled[..., index]
    return grid[np.newaxis]


def write_epoch_summaries(writers: dict, step: int, results: dict, model,
                          with_images: bool) -> None:
    """Writes validation errors (and the conv1 kernel grid) at `step`."""
    with writers["validation"].as_default(step=step):
        for name in ("top1_error", "top5_error", "loss"):
            if name in results:
                tf.summary.scalar(name, results[name])
    if with_images:
        kernels = first_layer_kernels(model)
        if kernels is not None and kernels.shape[2] == 3:
            with writers["train"].as_default(step=step):
                tf.summary.image("conv1_kernels", kernel_grid(kernels))
    for writer in writers.values():
        writer.flush()


class SkippedReport:
    """What the input skipped (--skip_bad_records), per split: warnings and TensorBoard.

    Args:
      skipped: {split: damaged_shards.SkippedData} (`Datasets.skipped`); empty: no-op.
      writers: `summary_writers`' writers, by split.
    """

    def __init__(self, skipped: dict, writers: dict):
        self._skipped, self._writers = skipped, writers
        self._warned = set()  # (split, shard) already named in a warning
        self._bad_records = {}  # split -> the count last warned about

    def update(self, split: str, step: int) -> None:
        """Warns about newly skipped data of `split`; writes its counts at `step`."""
        skipped = self._skipped.get(split)
        if skipped is None:
            return
        damaged = skipped.damaged()
        for damage in damaged:
            if (split, damage.path) not in self._warned:
                self._warned.add((split, damage.path))
                logging.warning("Skipping the rest of a damaged %s shard (--skip_bad_records): "
                                "%s", split, damage.describe())
        bad_records = skipped.num_bad_records()
        if bad_records > self._bad_records.get(split, 0):
            self._bad_records[split] = bad_records
            logging.warning("Skipped %d bad %s record(s) so far (--skip_bad_records; each "
                            "named on stderr)", bad_records, split)
        with self._writers[split].as_default(step=step):
            tf.summary.scalar("data/bad_records", bad_records)
            tf.summary.scalar("data/damaged_shards", len(damaged))


class Progress:
    """A per-epoch progress bar with images/s, loss and ETA (tqdm), and throughput.

    Args:
      enabled: False on non-chief workers or when --progress_bar=false.
      batch_size: global batch size, for images/s.
    """

    def __init__(self, enabled: bool, batch_size: int):
        self.enabled = enabled
        self.batch_size = batch_size
        self._bar = None
        self._last_time = None
        self._last_step = 0
        self.images_per_second = float("nan")

    def start_epoch(self, epoch: int, num_epochs: int, first_step: int, total: int) -> None:
        self.close()
        self._last_time, self._last_step = time.perf_counter(), first_step
        if self.enabled:
            # Not a terminal (logs, CI): refresh rarely instead of every step.
            interval = 0.5 if sys.stderr.isatty() else 30.0
            self._bar = tqdm.tqdm(total=total, initial=first_step % total if total else 0,
                                  desc=f"epoch {epoch + 1}/{num_epochs}", unit="step",
                                  mininterval=interval, dynamic_ncols=True, leave=True)

    def update(self, step: int, loss: float, learning_rate: float) -> float:
        """Advances to global `step`; returns the images/s since the last call."""
        now = time.perf_counter()
        elapsed = now - self._last_time
        if elapsed > 0 and step > self._last_step:
            self.images_per_second = (step - self._last_step) * self.batch_size / elapsed
        self._last_time, self._last_step = now, step
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{learning_rate:.2g}",
                                  img_s=f"{self.images_per_second:.1f}", refresh=False)
        return self.images_per_second

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
