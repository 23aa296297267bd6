"""The visualisation tools: from a loaded model and images to a PNG, or a table.

Each `run_*` function takes a `model_source.LoadedModel`, images (`viz_inputs.ImageRecord`)
and plain arguments, writes one PNG with `viz_plots`, and returns a small dict of what it
computed (for tests and logs); `receptive_field_tables` returns text.
`alexnet_tf.visualize` is the command-line entry point.
"""

import os
from typing import List, Optional, Sequence

from absl import logging
import numpy as np

from alexnet_tf import errors
from alexnet_tf import model_source
from alexnet_tf.nn import layers
from alexnet_tf.nn import models
from alexnet_tf.nn import receptive_fields
from alexnet_tf.viz import deconvnet
from alexnet_tf.viz import inputs as viz_inputs
from alexnet_tf.viz import neighbors as neighbors_lib
from alexnet_tf.viz import occlusion as occlusion_lib
from alexnet_tf.viz import plots as viz_plots

TOP_K = 5
# What `receptive_field_tables` shows without a model: every builder and variant at the
# paper's input size, and the paper's net at 227 (no padding) too. Fields do not depend
# on widths or classes, so narrow copies are built.
RECEPTIVE_FIELD_MODELS = tuple(
        [("alexnet", dict(variant=variant)) for variant in models.ALEXNET_VARIANTS]
        + [("alexnet", dict(variant="paper", input_size=227)), ("zfnet", {})])


def conv1_towers(model) -> List[np.ndarray]:
    """conv1's kernels per tower: [(kh, kw, 3, 48), (kh, kw, 3, 48)] for the paper's net.

    A GroupedConv2D conv1 (the paper's two towers) gives one array per group, tower A
    (filters 0..47) first; a plain Conv2D (one-tower AlexNet, ZFNet) gives one array.
    """
    layer = model.get_layer("conv1")
    if isinstance(layer, layers.GroupedConv2D):
        return [np.asarray(conv.kernel) for conv in layer.group_convs]
    return [np.asarray(layer.kernel)]


def run_kernels(loaded: model_source.LoadedModel, output: str) -> dict:
    """Draws conv1's kernels, tower A above tower B (the paper's figure 3)."""
    towers = conv1_towers(loaded.require_keras("kernels"))
    total = sum(tower.shape[-1] for tower in towers)
    title = f"conv1: {total} learned kernels ({loaded.description})"
    viz_plots.save_png(viz_plots.kernels_figure(towers, title), output)
    return {"towers": [tower.shape for tower in towers]}


def _true_labels(records, true_labels: Optional[Sequence[str]], names: Sequence[str]):
    """Per image: the true class index (from the record or `true_labels`), or None."""
    if true_labels:
        if len(true_labels) != len(records):
            raise errors.InvalidInputError(f"--true_labels has {len(true_labels)} entries for "
                                           f"{len(records)} images; give one per image")
        by_name = {name: index for index, name in enumerate(names)}
        result = []
        for label in true_labels:
            if label.isdigit() and int(label) < len(names):
                result.append(int(label))
            elif label in by_name:
                result.append(by_name[label])
            else:
                raise errors.InvalidInputError(f"true label {label!r} is neither a class index "
                                               f"0..{len(names) - 1} nor a class name")
        return result
    return [record.label for record in records]


def run_predictions(loaded: model_source.LoadedModel, records, output: str, *,
                    true_labels: Optional[Sequence[str]] = None, ten_crop: bool = False) -> dict:
    """Each image with a bar chart of its top-5 classes (the paper's figure 4, left).

    With `ten_crop` the softmax is averaged over the paper's 10 crops (section 4.1).
    """
    inputs, displays = viz_inputs.preprocess(loaded.settings, records, ten_crop=ten_crop)
    if ten_crop:  # (N, 10, S, S, 3) -> mean over the crops of each image.
        flat = loaded.probabilities(inputs.reshape((-1,) + inputs.shape[2:]))
        probabilities = flat.reshape(len(records), 10, -1).mean(axis=1)
    else:
        probabilities = loaded.probabilities(inputs)
    names = viz_inputs.class_names(loaded.labels, probabilities.shape[1])
    truths = _true_labels(records, true_labels, names)
    top = np.argsort(-probabilities, axis=1, kind="stable")[:, :min(TOP_K, len(names))]
    figure = viz_plots.predictions_figure(
        displays, [record.name for record in records], [[names[i] for i in row] for row in top],
        [probabilities[n, row] for n, row in enumerate(top)],
        [names[t] if t is not None else None for t in truths],
        [float(probabilities[n, t]) if t is not None else None for n, t in enumerate(truths)],
        f"Top-{top.shape[1]} predictions ({loaded.description}"
        f"{', 10-crop average' if ten_crop else ', centre crop'})")
    viz_plots.save_png(figure, output)
    return {"probabilities": probabilities, "top": top, "true": truths}


def run_neighbors(loaded: model_source.LoadedModel, queries, search_patterns: Sequence[str],
                  output: str, *, cache_dir: str, num_neighbors: int = 6,
                  search_limit: Optional[int] = None, show_progress: bool = False) -> dict:
    """Each query with its nearest search images in fc7 space (the paper's figure 4, right)."""
    search, cache_path, cached = neighbors_lib.search_set_features(
        loaded, search_patterns, cache_dir, limit=search_limit, show_progress=show_progress)
    extract = neighbors_lib.feature_extractor(loaded.require_keras("neighbors"))
    inputs, query_displays = viz_inputs.preprocess(loaded.settings, queries)
    indices, distances = neighbors_lib.nearest(extract(inputs), search["features"],
                                               min(num_neighbors, len(search["features"])))
    names = viz_inputs.class_names(loaded.labels, int(loaded.keras_model.output_shape[-1]))
    dead = not np.any(search["features"])
    if dead:  # Every distance is 0 and the order meaningless: say so rather than mislead.
        logging.warning("every search image's fc7 vector is zero (dead ReLUs?): the "
                        "neighbours are arbitrary")
    neighbor_images, neighbor_titles = [], []
    for row in indices:
        found = [viz_inputs.read_record(str(search["sources"][i]), int(search["indices"][i]))
                 for i in row]
        neighbor_images.append(list(viz_inputs.preprocess(loaded.settings, found)[1]))
        neighbor_titles.append([names[label] if label >= 0 else os.path.basename(str(name))
                                for label, name in ((int(search["labels"][i]), search["names"][i])
                                                    for i in row)])
    figure = viz_plots.neighbors_figure(
        query_displays, neighbor_images, distances,
        [names[q.label] if q.label is not None else q.name for q in queries], neighbor_titles,
        f"Nearest of {len(search['features'])} images by Euclidean distance of fc7 features "
        f"({loaded.description})" + ("\nWARNING: all fc7 features are zero (dead units); the "
                                     "order is arbitrary" if dead else ""))
    viz_plots.save_png(figure, output)
    return {"indices": indices, "distances": distances, "cache": cache_path, "cached": cached,
            "dead": dead}


def run_occlusion(loaded: model_source.LoadedModel, records, output: str, *, layer: str,
                  patch_size: int, stride: int, true_labels: Optional[Sequence[str]] = None,
                  batch_size: int = 32) -> dict:
    """Occlusion maps of the correct class's probability and a `layer` feature map (ZF fig. 7).

    The class is the true label when known, else the unoccluded image's top-1 class.
    From a SavedModel without a model spec only the probability map is drawn.
    """
    inputs, displays = viz_inputs.preprocess(loaded.settings, records)
    if loaded.keras_model is not None:
        probe = occlusion_lib.probe_model(loaded.keras_model, layer)
    else:
        probe = lambda images: (loaded.probabilities(images), None)  # noqa: E731
    num_classes = loaded.probabilities(inputs[:1]).shape[1]
    names = viz_inputs.class_names(loaded.labels, num_classes)
    truths = _true_labels(records, true_labels, names)
    results = []
    for image, truth in zip(inputs, truths):
        class_index = truth if truth is not None else int(probe(image[None])[0][0].argmax())
        results.append(occlusion_lib.occlusion_maps(
            probe, image, class_index, patch_size=patch_size, stride=stride,
            layer_name=layer if loaded.keras_model is not None else None, batch_size=batch_size))
    figure = viz_plots.occlusion_figure(
        displays, results, [names[result.class_index] for result in results],
        f"Occlusion sensitivity ({loaded.description})",
        square_rgb=loaded.settings.stats.mean_rgb)
    viz_plots.save_png(figure, output)
    return {"results": results}


def run_deconv(loaded: model_source.LoadedModel, records, output: str, *, layer: str,
               num_maps: int = 9, num_per_map: int = 2, batch_size: int = 32) -> dict:
    """Deconvnet projections of `layer`'s top feature maps, next to their image patches.

    Feature maps are ranked by their strongest activation over all `records`.
    """
    model = loaded.require_keras("deconv")
    inputs, displays = viz_inputs.preprocess(loaded.settings, records)
    # Rank maps over the whole set batch by batch, then project from the chosen images only.
    activations = np.concatenate([
        deconvnet.forward(model, inputs[start:start + batch_size], layer)[0].numpy()
        for start in range(0, len(inputs), batch_size)])
    picks = deconvnet.top_activations(activations, min(num_maps, activations.shape[-1]),
                                      num_per_map)
    per_map = min(num_per_map, len(records))
    chosen = sorted({pick[1] for pick in picks})  # Only these images are projected.
    position = {image: row for row, image in enumerate(chosen)}
    projections = deconvnet.project_picks(
        model, inputs[chosen], layer, [(c, position[i], y, x, v) for c, i, y, x, v in picks])
    for projection in projections:  # Back to indices into `records`.
        projection.image_index = chosen[projection.image_index]
    figure = viz_plots.deconv_figure(
        projections, displays, [record.name for record in records], layer, per_map,
        f"Deconvnet (Zeiler & Fergus) over {len(records)} images ({loaded.description})")
    viz_plots.save_png(figure, output)
    return {"projections": projections}


def receptive_field_tables(loaded: Optional[model_source.LoadedModel] = None) -> str:
    """Every layer's receptive field (size, jump, start; `nn/receptive_fields.py`) as text.

    Args:
      loaded: a model to describe; None for every model of RECEPTIVE_FIELD_MODELS.
    """
    if loaded is not None:
        model = loaded.require_keras("receptive_fields")
        tables = [(f"{loaded.description}, input {loaded.crop_size}x{loaded.crop_size}", model)]
    else:
        tables = []
        for name, kwargs in RECEPTIVE_FIELD_MODELS:
            model = models.build_model(name, num_classes=2, width_multiplier=1 / 16, **kwargs)
            size = model.input_shape[1]
            options = "".join(f", {key}={value}" for key, value in kwargs.items()
                              if key != "input_size")
            tables.append((f"{name}{options}, input {size}x{size}", model))
    return "\n\n".join(receptive_fields.format_table(receptive_fields.receptive_fields(model),
                                                     title)
                       for title, model in tables)
