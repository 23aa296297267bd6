"""Nearest neighbours in the last hidden layer (the AlexNet paper's figure 4, right).

Each image is described by its fc7 activations (after the ReLU: 4096-d in the paper);
the images nearest to a query in Euclidean distance are, the paper argues, the ones the
network considers similar, even when their pixels are not.

The search set's features are computed once and cached in an .npz whose name is a hash
of the weights' identity (checkpoint path, size, time), the search files' list (paths,
sizes, times), the feature layer and the preprocessing; any change gives a new file.
"""

import functools
import hashlib
import os
from typing import Callable, Dict, Optional, Sequence

from absl import logging
import keras
import numpy as np
import tensorflow as tf
import tqdm

from alexnet_tf import atomic
from alexnet_tf import errors
from alexnet_tf import model_source
from alexnet_tf.viz import inputs as viz_inputs

FEATURE_LAYER = "fc7"
CACHE_VERSION = 1


def feature_extractor(model: keras.Model, layer_name: str = FEATURE_LAYER) -> Callable:
    """A function images (N, S, S, 3) -> float32 features (N, D), flattened."""
    layer_names = [layer.name for layer in model.layers]
    if layer_name not in layer_names:
        raise ValueError(f"layer {layer_name!r} not in the model; it has {layer_names}")
    features = keras.Model(model.input, model.get_layer(layer_name).output)

    def extract(images):
        output = features(tf.constant(images, tf.float32), training=False)  # dropout off
        return tf.reshape(output, [tf.shape(output)[0], -1]).numpy()

    return extract


def compute_features(extract: Callable, records: Sequence[viz_inputs.ImageRecord],
                     preprocess: Callable, batch_size: int = 32,
                     show_progress: bool = False) -> np.ndarray:
    """Features (N, D) of `records`, preprocessed by `preprocess(records) -> (inputs, _)`.

    With `show_progress`, a progress bar on stderr counts the images.
    """
    chunks = []
    with tqdm.tqdm(total=len(records), unit="image", desc="fc7 features of the search set",
                   disable=not show_progress, leave=False) as progress:
        for start in range(0, len(records), batch_size):
            inputs, _ = preprocess(records[start:start + batch_size])
            chunks.append(extract(inputs))
            progress.update(len(inputs))
    return np.concatenate(chunks).astype(np.float32)


def cache_key(model_identity: str, sources_digest: str, layer_name: str,
              settings: str) -> str:
    """The cache file's stem: a hash of everything the features depend on."""
    text = f"v{CACHE_VERSION}|{model_identity}|{sources_digest}|{layer_name}|{settings}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _write_npz(path: str, arrays: Dict[str, np.ndarray]) -> None:
    with atomic.replacing(path, suffix=".npz") as tmp_path:
        np.savez(tmp_path, **arrays)


def search_set_features(loaded: model_source.LoadedModel, patterns: Sequence[str], cache_dir: str,
                        *, layer_name: str = FEATURE_LAYER, limit: Optional[int] = None,
                        batch_size: int = 32, show_progress: bool = False):
    """Features of the search set, from the cache when it holds them.

    Args:
      loaded: the model (needs its Keras layers).
      patterns: image files, TFRecord shards, directories or globs.
      cache_dir: where the .npz cache lives (created if needed).
      layer_name: the feature layer.
      limit: use only the first `limit` images.
      batch_size: images per forward pass.
      show_progress: report reading and the feature pass on stderr (not for a cache hit).

    Returns:
      (dict with "features" (N, D) float32, "sources" (N,) str, "indices" (N,) int64,
      "names" (N,) str, "labels" (N,) int64 (-1 unknown), path of the cache file, whether
      it was read from the cache).
    """
    paths = viz_inputs.expand_paths(patterns)
    eval_settings = loaded.settings
    stats = eval_settings.stats
    settings = (f"crop={eval_settings.crop_size}|resize={eval_settings.resize_size}|"
                f"mean={eval_settings.mean_mode}|stats={stats.source}|"
                f"{np.asarray(stats.mean_rgb).tolist()}|"
                f"mean_image={stats.mean_image is not None}|limit={limit}")
    key = cache_key(loaded.identity, viz_inputs.sources_digest(paths), layer_name, settings)
    path = os.path.join(cache_dir, f"{layer_name}_{key}.npz")
    if os.path.exists(path):
        with np.load(path) as data:
            return {name: data[name] for name in data.files}, path, True
    extract = feature_extractor(loaded.require_keras("neighbors"), layer_name)
    if show_progress:
        logging.info("Reading the search set (%d files) for its %s features; they are cached "
                     "in %s", len(paths), layer_name, path)
    records = viz_inputs.read_images(paths, limit=limit)
    arrays = {
        "features": compute_features(
                extract, records, functools.partial(viz_inputs.preprocess, loaded.settings),
                batch_size, show_progress=show_progress),
        "sources": np.array([record.source for record in records]),
        "indices": np.array([record.index for record in records], np.int64),
        "names": np.array([record.name for record in records]),
        "labels": np.array([-1 if record.label is None else record.label for record in records],
                           np.int64),
    }
    os.makedirs(cache_dir, exist_ok=True)
    _write_npz(path, arrays)
    return arrays, path, False


def nearest(queries: np.ndarray, search: np.ndarray, k: int, chunk_size: int = 4096):
    """The `k` nearest search vectors to each query, by Euclidean distance.

    Args:
      queries: (Q, D).
      search: (N, D).
      k: neighbours per query (at most N).
      chunk_size: search vectors compared at a time (bounds memory for large N).

    Returns:
      (indices (Q, k) int64, distances (Q, k) float32), nearest first.

    Raises:
      ValueError: mismatched feature sizes or k out of range.
    """
    queries = np.asarray(queries, np.float64)
    search = np.asarray(search, np.float64)
    if queries.ndim != 2 or search.ndim != 2 or queries.shape[1] != search.shape[1]:
        raise ValueError(f"queries (Q, D) and search (N, D) must share D, got {queries.shape} "
                         f"and {search.shape}")
    if not 1 <= k <= len(search):
        raise errors.InvalidInputError(
                f"k must be in 1..{len(search)} (the search set's size), got {k}")
    best_index = np.zeros((len(queries), 0), np.int64)
    best_distance = np.zeros((len(queries), 0))
    query_norms = (queries ** 2).sum(1)[:, None]  # (Q, 1)
    for start in range(0, len(search), chunk_size):
        chunk = search[start:start + chunk_size]
        # |q - s|^2 = |q|^2 + |s|^2 - 2 q.s, clipped at 0 against rounding.  (Q, chunk)
        squared = np.maximum(query_norms + (chunk ** 2).sum(1)[None] - 2 * queries @ chunk.T, 0)
        index = np.concatenate([best_index, np.arange(start, start + len(chunk))[None].repeat(
            len(queries), 0)], axis=1)
        distance = np.concatenate([best_distance, squared], axis=1)
        order = np.argsort(distance, axis=1, kind="stable")[:, :k]
        best_index = np.take_along_axis(index, order, 1)
        best_distance = np.take_along_axis(distance, order, 1)
    return best_index, np.sqrt(best_distance).astype(np.float32)
