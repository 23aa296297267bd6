"""Matplotlib figures for the visualisation tools, drawn headless.

Figures are `matplotlib.figure.Figure` objects rendered by the Agg canvas directly, so no
display and no global pyplot state are involved; `save_png` writes under a temporary
name and renames when the file is complete.
"""

import math
import textwrap
from typing import List, Optional, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
import numpy as np

from alexnet_tf import atomic

TRUE_COLOR = "tab:red"
OTHER_COLOR = "tab:blue"
# A map whose values span less than this (relative to its largest magnitude) shows no
# effect of occlusion: it is drawn flat and says so, not stretched over its float noise.
NEGLIGIBLE_RANGE = 1e-3


def wrap(text: str, width: int, max_lines: int = 2) -> str:
    """`text` broken into lines of at most `width` characters (an ellipsis past max_lines)."""
    lines = textwrap.wrap(text, width, break_long_words=True) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][:max(0, width - 1)] + "\u2026"
    return "\n".join(lines)


def save_png(figure: Figure, path: str, dpi: int = 100) -> str:
    """Writes `figure` to `path` as PNG atomically; returns `path`."""
    FigureCanvasAgg(figure)
    with atomic.replacing(path) as tmp_path:
        figure.savefig(tmp_path, format="png", dpi=dpi)
    return path


def normalize(image: np.ndarray) -> np.ndarray:
    """Contrast-stretches `image` to 0..1 (a constant image becomes 0.5)."""
    image = np.asarray(image, np.float32)
    low, high = image.min(), image.max()
    if high - low < 1e-12:
        return np.full_like(image, 0.5)
    return (image - low) / (high - low)


def centered(image: np.ndarray) -> np.ndarray:
    """Maps a signed image to 0..1 with 0 at mid grey (deconvnet reconstructions)."""
    image = np.asarray(image, np.float32)
    scale = np.abs(image).max()
    return np.clip(0.5 + 0.5 * image / scale, 0, 1) if scale > 0 else np.full_like(image, 0.5)


def _kernel_mosaic(kernels: np.ndarray, columns: int) -> np.ndarray:
    """(kh, kw, 3, n) kernels, each normalised, tiled into one RGB image with 1px gaps."""
    kh, kw, _, count = kernels.shape
    rows = math.ceil(count / columns)
    mosaic = np.ones((rows * (kh + 1) - 1, columns * (kw + 1) - 1, 3), np.float32)
    for index in range(count):
        row, column = divmod(index, columns)
        mosaic[row * (kh + 1):row * (kh + 1) + kh,
               column * (kw + 1):column * (kw + 1) + kw] = normalize(kernels[..., index])
    return mosaic


def kernels_figure(tower_kernels: Sequence[np.ndarray], title: str, columns: int = 16) -> Figure:
    """The conv1 kernels, one block per tower (the paper's figure 3).

    Args:
      tower_kernels: one (kh, kw, 3, n) array per tower (tower A first).
      title: the figure title.
      columns: kernels per row.
    """
    figure = Figure(figsize=(columns * 0.6, 0.6 + 2.2 * len(tower_kernels)), layout="constrained")
    axes = figure.subplots(len(tower_kernels), 1, squeeze=False)[:, 0]
    first = 0
    for tower, (axis, kernels) in enumerate(zip(axes, tower_kernels)):
        count = kernels.shape[-1]
        axis.imshow(_kernel_mosaic(kernels, min(columns, count)), interpolation="nearest")
        axis.set_axis_off()
        name = f"tower {'AB'[tower]} " if len(tower_kernels) > 1 else ""
        axis.set_title(f"{name}kernels {first}-{first + count - 1} "
                       f"({kernels.shape[0]}x{kernels.shape[1]}x3, each contrast-normalised)",
                       fontsize=9)
        first += count
    figure.suptitle(title)
    return figure


def predictions_figure(images: Sequence[np.ndarray], image_titles: Sequence[str],
                       top_names: Sequence[Sequence[str]],
                       top_probabilities: Sequence[Sequence[float]],
                       true_labels: Sequence[Optional[str]],
                       true_probabilities: Sequence[Optional[float]], title: str,
                       columns: int = 4) -> Figure:
    """Each image above a bar chart of its top-5 classes (the paper's figure 4, left).

    The true class's bar is red when it is among the five; under the image, the true
    class and the probability the network gives it are written either way. Long names
    are wrapped, not cut.
    """
    count = len(images)
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    figure = Figure(figsize=(3.8 * columns, 5.2 * rows), layout="constrained")
    grid = figure.add_gridspec(rows * 2, columns, height_ratios=[3, 1.9] * rows)
    for index in range(count):
        row, column = divmod(index, columns)
        image_axis = figure.add_subplot(grid[2 * row, column])
        image_axis.imshow(images[index])
        image_axis.set_xticks([])
        image_axis.set_yticks([])
        image_axis.set_title(wrap(image_titles[index], 36), fontsize=8)
        truth = true_labels[index]
        if truth is not None:
            probability = true_probabilities[index]
            caption = f"true class: {truth}"
            if probability is not None:
                caption += f"; its probability {probability:.1%}"
            image_axis.set_xlabel(wrap(caption, 40), fontsize=8, color=TRUE_COLOR)
        bar_axis = figure.add_subplot(grid[2 * row + 1, column])
        names = list(top_names[index])
        colors = [TRUE_COLOR if truth is not None and name == truth else OTHER_COLOR
                  for name in names]
        positions = np.arange(len(names))[::-1]  # Best on top.
        bar_axis.barh(positions, top_probabilities[index], color=colors)
        bar_axis.set_yticks(positions, [wrap(name, 20) for name in names], fontsize=7)
        bar_axis.set_xlim(0, 1)
        bar_axis.set_xlabel("probability", fontsize=7)
        bar_axis.tick_params(axis="x", labelsize=7)
    figure.suptitle(title)
    return figure


def neighbors_figure(queries: Sequence[np.ndarray], neighbors: Sequence[Sequence[np.ndarray]],
                     distances: np.ndarray, query_titles: Sequence[str],
                     neighbor_titles: Sequence[Sequence[str]], title: str) -> Figure:
    """One row per query: the query, then its nearest images by fc7 distance (figure 4, right)."""
    rows, k = len(queries), len(neighbors[0])
    figure = Figure(figsize=(1.9 * (k + 1), 2.2 * rows + 0.6), layout="constrained")
    axes = figure.subplots(rows, k + 1, squeeze=False)
    for row in range(rows):
        axes[row, 0].imshow(queries[row])
        axes[row, 0].set_title(f"query: {query_titles[row]}"[:28], fontsize=8, color=TRUE_COLOR)
        for column in range(k):
            axis = axes[row, column + 1]
            axis.imshow(neighbors[row][column])
            axis.set_title(f"{neighbor_titles[row][column]}"[:22] +
                           f"\nd={distances[row, column]:.3g}", fontsize=7)
        for axis in axes[row]:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle(title)
    return figure


def occlusion_figure(images: Sequence[np.ndarray], results: Sequence, class_names: Sequence[str],
                     title: str, square_rgb: Sequence[float] = (128, 128, 128)) -> Figure:
    """Per image: the image, the activation map and the probability map (ZF figure 7).

    Args:
      images: (S, S, 3) uint8 images, one row each.
      results: occlusion.OcclusionResult per image.
      class_names: the mapped class's name per image.
      title: the figure title.
      square_rgb: the occluder's colour on the 0..255 scale (the mean colour), for the legend.
    """
    panels = 3 if results[0].activation is not None else 2
    figure = Figure(figsize=(4.2 * panels, 4.0 * len(images) + 0.5), layout="constrained")
    axes = figure.subplots(len(images), panels, squeeze=False)
    for row, (image, result, class_name) in enumerate(zip(images, results, class_names)):
        _occlusion_row(figure, axes[row], image, result, class_name,
                       np.clip(np.asarray(square_rgb, np.float32) / 255, 0, 1))
    figure.suptitle(title)
    return figure


def _occlusion_row(figure: Figure, axes, image: np.ndarray, result, class_name: str,
                   square_color) -> None:
    axes[0].imshow(image)
    axes[0].add_patch(Rectangle((0, 0), result.patch_size, result.patch_size, fill=True,
                                facecolor=square_color, edgecolor="white"))
    axes[0].set_title(f"input; class: {class_name}\n(mean-colour square {result.patch_size}px, "
                      f"stride {result.stride}px)", fontsize=9)
    size = image.shape[0]
    maps = []  # (values, colour map, fixed (low, high) scale or None, title)
    if result.activation is not None:
        # Activations after a ReLU are >= 0: from 0, so small changes look small.
        top = max(float(np.max(result.activation)), 1e-12)
        maps.append((result.activation, "viridis", (min(0.0, float(np.min(result.activation))), top),
                     f"{result.layer_name}: total activation of map {result.feature_map}\n"
                     "(the strongest in the unoccluded image)"))
    # Probabilities on a fixed 0..1 scale: the colours mean the same in every figure.
    maps.append((result.probability, "jet_r", (0.0, 1.0),
                 f"p({wrap(class_name, 24, 1)}) with the square centred there\n"
                 f"(unoccluded: {result.baseline_probability:.3f})"))
    for axis, (values, colormap, (low, high), label) in zip(axes[1:], maps):
        if negligible_range(values):
            label += ("\nno effect: the map varies by "
                      f"{float(np.max(values) - np.min(values)):.1e} in all")
        # Each cell covers the square's centre +- stride/2, in image pixels.
        half = result.stride / 2
        centers = result.centers[0]
        shown = axis.imshow(values, cmap=colormap, interpolation="nearest", vmin=low, vmax=high,
                            extent=(centers[0] - half, centers[-1] + half,
                                    centers[-1] + half, centers[0] - half))
        axis.set_xlim(0, size)
        axis.set_ylim(size, 0)
        axis.set_title(label, fontsize=9)
        colorbar = figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.04)
        colorbar.formatter.set_useOffset(False)  # Show values, not "1e-8 + 0.28".
        colorbar.update_ticks()
    for axis in axes:
        axis.set_xlabel("x (pixels)", fontsize=8)
        axis.set_ylabel("y (pixels)", fontsize=8)


def negligible_range(values: np.ndarray) -> bool:
    """Whether a map's values span less than NEGLIGIBLE_RANGE of their largest magnitude."""
    values = np.asarray(values, np.float64)
    scale = float(np.max(np.abs(values))) if values.size else 0.0
    return float(np.max(values) - np.min(values)) <= NEGLIGIBLE_RANGE * max(scale, 1e-12)


def _crop(image: np.ndarray, box) -> np.ndarray:
    top, left, bottom, right = box
    return image[top:bottom, left:right]


def deconv_figure(projections: List, displays: np.ndarray, image_names: Sequence[str],
                  layer_name: str, num_per_map: int, title: str) -> Figure:
    """Per feature map: the deconvnet projections, then the image patches that caused them.

    Args:
      projections: deconvnet.Projection list, grouped by feature map (num_per_map each).
      displays: (B, S, S, 3) uint8 images the projections index.
      image_names: the B images' names (file names, or shard:index), for the titles.
      layer_name: the projected layer.
      num_per_map: projections per feature map.
      title: the figure title.
    """
    maps = [projections[start:start + num_per_map]
            for start in range(0, len(projections), num_per_map)]
    columns = 2 * num_per_map
    figure = Figure(figsize=(max(1.7 * columns + 0.8, 8.0), 1.8 * len(maps) + 1.0),
                    layout="constrained")
    axes = figure.subplots(len(maps), columns, squeeze=False)
    for row, group in enumerate(maps):
        for column, projection in enumerate(group):
            left = axes[row, column]
            left.imshow(centered(_crop(projection.reconstruction, projection.box)))
            left.set_title(f"map {projection.feature_map}: {projection.activation:.3g}",
                           fontsize=7)
            right = axes[row, num_per_map + column]
            right.imshow(_crop(displays[projection.image_index], projection.box))
            right.set_title(f"{wrap(image_names[projection.image_index], 24)}\n"
                            f"at {projection.position}", fontsize=7)
        for axis in axes[row]:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle(f"{title}\n{layer_name}: the {len(maps)} most active feature maps over the "
                    f"image set (one row each)\nleft {num_per_map}: deconvnet projections of "
                    f"their strongest activations\nright {num_per_map}: the image patches "
                    "(receptive fields) that caused them", fontsize=10)
    return figure
