"""Tests for alexnet_tf.viz.neighbors: distances, the fc7 cache, an image is its own neighbour."""

import os

import numpy as np
import pytest

from alexnet_tf.viz import inputs as viz_inputs
from alexnet_tf.viz import neighbors


def test_nearest_matches_brute_force_across_chunks():
    rng = np.random.default_rng(0)
    search = rng.normal(size=(23, 5))
    queries = rng.normal(size=(4, 5))
    indices, distances = neighbors.nearest(queries, search, k=3, chunk_size=7)
    brute = np.linalg.norm(queries[:, None] - search[None], axis=-1)  # (4, 23)
    np.testing.assert_array_equal(indices, np.argsort(brute, axis=1)[:, :3])
    np.testing.assert_allclose(distances, np.sort(brute, axis=1)[:, :3], rtol=1e-5)


def test_nearest_validates():
    with pytest.raises(ValueError, match="share D"):
        neighbors.nearest(np.zeros((1, 3)), np.zeros((4, 2)), 1)
    with pytest.raises(ValueError, match="k must be"):
        neighbors.nearest(np.zeros((1, 3)), np.zeros((4, 3)), 5)


@pytest.fixture(scope="module")
def run(tmp_path_factory, make_viz_run):
    root = tmp_path_factory.mktemp("neighbors")
    return dict(make_viz_run(root, 9), cache_dir=str(root / "cache"))


def test_each_image_is_its_own_nearest_neighbour_and_features_are_cached(run):
    loaded = run["loaded"]
    search, path, cached = neighbors.search_set_features(loaded, [run["shard"]], run["cache_dir"])
    assert not cached and os.path.exists(path)
    assert search["features"].shape == (9, 256)  # fc7 at 1/16 width: 4096 / 16
    assert search["labels"].tolist() == [i % 3 for i in range(9)]
    # Queries are the same images as JPEG files (not the records): same bytes, other path.
    queries = viz_inputs.read_images(run["files"])
    extract = neighbors.feature_extractor(loaded.keras_model)
    indices, distances = neighbors.nearest(extract(viz_inputs.preprocess(loaded.settings, queries)[0]),
                                           search["features"], k=2)
    assert indices[:, 0].tolist() == list(range(9))
    assert (distances[:, 0] < 1e-3 * distances[:, 1]).all()

    again, again_path, cached = neighbors.search_set_features(loaded, [run["shard"]],
                                                              run["cache_dir"])
    assert cached and again_path == path
    np.testing.assert_array_equal(again["features"], search["features"])
    # A different search set (the files instead of the shard) is a different cache entry.
    other, other_path, cached = neighbors.search_set_features(loaded, run["files"][:4],
                                                              run["cache_dir"])
    assert not cached and other_path != path and other["features"].shape == (4, 256)
    assert not [name for name in os.listdir(run["cache_dir"]) if "tmp" in name]
