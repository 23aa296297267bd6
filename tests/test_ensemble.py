"""Tests for alexnet_tf.ensemble: which models may be averaged, and the average itself."""

import dataclasses

import keras
import numpy as np
import pytest

from alexnet_tf import ensemble
from alexnet_tf import errors
from alexnet_tf import model_source
from alexnet_tf.data import preprocessing


def _labels(synsets):
    return [{"index": index, "synset": synset, "name": f"name {synset}"}
            for index, synset in enumerate(synsets)]


@pytest.fixture(scope="module")
def member(stats):
    """member(path, num_classes=3, labels=..., **settings): a LoadedModel of a tiny model."""
    def make(path, num_classes=3, labels="default", **settings):
        model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(num_classes)])
        values = dict(stats=stats, mean_mode="rgb", crop_size=64, resize_size=72)
        values.update(settings)
        if labels == "default":
            labels = _labels([f"n{index:08d}" for index in range(num_classes)])
        return model_source.LoadedModel(model, None, preprocessing.EvalSettings(**values),
                                        labels, path, f"model {path}")
    return make


def test_members_that_agree_pass(member, make_stats):
    mean_image = np.full((8, 8, 3), 100, np.float32)
    ensemble.check_members([member("a"), member("b"), member("c")])
    # The same mean image, loaded twice, is the same preprocessing.
    ensemble.check_members([member("a", stats=make_stats(mean_image), mean_mode="image"),
                            member("b", stats=make_stats(mean_image.copy()),
                                   mean_mode="image")])
    # Without a mean image, mean_mode="image" subtracts the per-channel mean, as "rgb" does.
    ensemble.check_members([member("a"), member("b", mean_mode="image")])


@pytest.mark.parametrize("changes,message", [
    (dict(num_classes=4), "it scores 4 classes, member 1 3"),
    (dict(labels=None), "it has no class list"),
    (dict(labels=_labels(["n00000000", "n00000002", "n00000001"])),
     "its class 1 is 'n00000002' (name n00000002), member 1's is 'n00000001' (name n00000001)"),
    (dict(crop_size=56), "its input is 56x56 pixels, member 1's 64x64"),
    (dict(resize_size=80), "it resizes images to 80 pixels before cropping, member 1 to 72"),
])
def test_members_that_differ_are_named_with_the_difference(member, changes, message):
    with pytest.raises(errors.InvalidInputError) as raised:
        ensemble.check_members([member("runs/a"), member("runs/a2"), member("runs/b", **changes)])
    text = str(raised.value)
    assert text.startswith("member 3 (runs/b) cannot be averaged with member 1 (runs/a): ")
    assert message in text and "\n" not in text
    assert isinstance(raised.value, ValueError)  # What library callers catch.


def test_a_different_mean_is_named(member, make_stats, stats):
    image_mean = make_stats(np.full((8, 8, 3), 100, np.float32))
    with pytest.raises(errors.InvalidInputError,
                       match=r"member 2 \(b\).*: it subtracts a 8x8 mean image, member 1 "
                             r"the per-channel mean \[123\.68, 116\.78, 103\.94\]"):
        ensemble.check_members([member("a"), member("b", stats=image_mean, mean_mode="image")])
    other_image = make_stats(np.full((8, 8, 3), 100.5, np.float32))
    with pytest.raises(errors.InvalidInputError, match="differing by up to 0.5"):
        ensemble.check_members([member("a", stats=image_mean, mean_mode="image"),
                                member("b", stats=other_image, mean_mode="image")])
    shifted = dataclasses.replace(stats, mean_rgb=np.asarray(stats.mean_rgb) + 1)
    with pytest.raises(errors.InvalidInputError, match=r"per-channel mean \[124\.68"):
        ensemble.check_members([member("a"), member("b", stats=shifted)])
    # Only the mean matters: PCA lighting is a training augmentation.
    ensemble.check_members([member("a"), member("b", stats=make_stats(eigval=[1, 2, 3]))])


def test_no_members():
    with pytest.raises(errors.InvalidInputError, match="at least one"):
        ensemble.check_members([])


def test_mean_probabilities():
    first = np.array([[0.6, 0.4, 0.0], [0.1, 0.1, 0.8]], np.float32)
    second = np.array([[0.0, 0.4, 0.6], [0.3, 0.3, 0.4]], np.float32)
    np.testing.assert_allclose(ensemble.mean_probabilities([first, second]).numpy(),
                               (first + second) / 2)
    np.testing.assert_array_equal(ensemble.mean_probabilities([first]), first)
