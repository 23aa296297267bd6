"""--flip and --pca_std reach the training pipeline: the crops' draws a real run's
datasets carry (--augment_on=device leaves them in the batch) show mirroring and PCA
lighting on by default and off when switched off, and the float images follow."""

import numpy as np
import pytest

from alexnet_tf.data import preprocessing
from alexnet_tf.distributed import strategy as strategy_lib
from alexnet_tf.training import config as config_lib
from alexnet_tf.training import datasets as datasets_lib

NUM_IMAGES = 23  # tiny_records' readable training images


def _first_batch(records, **settings):
    config = config_lib.TrainConfig(data_dir=records, input_size=64, resize_size=72,
                                    batch_size=NUM_IMAGES, mean_mode="rgb", seed=3,
                                    **settings)
    data = datasets_lib.make_datasets(config, strategy_lib.create_strategy("default"))
    return data, next(iter(data.train))[0]


@pytest.mark.parametrize("settings, flips, lighting", [
        ({}, True, True),
        (dict(flip=False), False, True),
        (dict(pca_std=0.0), True, False),
        (dict(flip=False, pca_std=0.0), False, False),
])
def test_flip_and_pca_lighting_switches_reach_the_crops(tiny_records, settings, flips,
                                                        lighting):
    _, batch = _first_batch(tiny_records, augment_on="device", **settings)
    flip = batch[preprocessing.FLIP_KEY].numpy()
    alpha = batch[preprocessing.ALPHA_KEY].numpy()
    assert flip.shape == (NUM_IMAGES,) and alpha.shape == (NUM_IMAGES, 3)
    # 23 fair coins all tails, or 69 normal draws all 0, would be a 1 in 8 million event.
    assert flip.any() == flips
    assert np.any(alpha != 0) == lighting
    if lighting:
        assert np.std(alpha) == pytest.approx(preprocessing.PCA_STD, rel=0.5)


def test_without_lighting_host_images_are_the_device_ones_unlit(tiny_records):
    # The host path (the default) applies the same switches: with both off, its float
    # images equal the device stage applied to the same crops.
    data, device_batch = _first_batch(tiny_records, augment_on="device", flip=False,
                                      pca_std=0.0)
    _, host_images = _first_batch(tiny_records, flip=False, pca_std=0.0)
    np.testing.assert_allclose(host_images.numpy(),
                               data.train_augment(device_batch).numpy(), atol=1e-3)
