"""Tests for alexnet_tf.viz.occlusion."""

import keras
import numpy as np
import pytest

from alexnet_tf.viz import occlusion

SIZE = 24
REGION = (slice(4, 10), slice(14, 20))  # The only pixels the synthetic model looks at.


def _region_model():
    """logit0 - logit1 grows with the (positive) pixels inside REGION; nothing else counts.

    conv1 is a 1x1 identity on the 3 channels with a ReLU, so its maps are the image and
    its total activation falls wherever a square covers bright pixels.
    """
    inputs = keras.Input((SIZE, SIZE, 3))
    conv = keras.layers.Conv2D(3, 1, activation="relu", use_bias=False, name="conv1")
    dense = keras.layers.Dense(2, name="fc8")
    logits = dense(keras.layers.Flatten()(conv(inputs)))
    model = keras.Model(inputs, logits)
    conv.kernel.assign(np.eye(3, dtype=np.float32)[None, None])
    mask = np.zeros((SIZE, SIZE, 3), np.float32)
    mask[REGION] = 1.0 / mask[REGION].size
    weights = np.stack([mask.ravel(), -mask.ravel()], axis=1) * 4.0  # (SIZE*SIZE*3, 2)
    dense.set_weights([weights, np.zeros(2, np.float32)])
    return model


def _image():
    """Mean-subtracted image: bright object in REGION, textured background elsewhere."""
    rng = np.random.default_rng(0)
    image = rng.uniform(-0.5, 0.5, (SIZE, SIZE, 3)).astype(np.float32)
    image[REGION] = 1.0
    return image


def test_occluding_the_informative_region_lowers_the_probability_most():
    model = _region_model()
    probe = occlusion.probe_model(model, "conv1")
    result = occlusion.occlusion_maps(probe, _image(), 0, patch_size=6, stride=2,
                                      layer_name="conv1")
    starts = occlusion.positions(SIZE, 6, 2)
    assert result.probability.shape == (len(starts), len(starts)) == result.activation.shape
    assert result.baseline_probability > 0.95
    inside = (list(starts).index(4), list(starts).index(14))  # The square exactly on REGION.
    far = (len(starts) - 1, 0)  # Bottom-left corner: background only.
    assert result.probability[inside] < 0.55
    assert result.probability[far] == pytest.approx(result.baseline_probability, abs=1e-5)
    assert result.probability[inside] == result.probability.min()
    # The strongest conv1 map responds to the bright region too: covering it costs most.
    assert result.activation[inside] < result.activation[far]
    assert np.unravel_index(result.probability.argmin(), result.probability.shape) == inside


def test_positions_reach_the_far_edge_and_validate():
    assert occlusion.positions(10, 4, 3).tolist() == [0, 3, 6]
    assert occlusion.positions(11, 4, 3).tolist() == [0, 3, 6, 7]
    with pytest.raises(ValueError, match="patch_size"):
        occlusion.positions(10, 11, 2)
    with pytest.raises(ValueError, match="stride"):
        occlusion.positions(10, 4, 0)


def test_occluded_batch_sets_only_the_square_to_the_mean():
    image = np.ones((5, 5, 3), np.float32)
    batch = occlusion.occluded_batch(image, [0, 3], [1, 2], 2)
    assert batch.shape == (2, 5, 5, 3)
    assert (batch[0, 0:2, 1:3] == 0).all() and batch[0].sum() == 75 - 12
    assert (batch[1, 3:5, 2:4] == 0).all() and batch[1].sum() == 75 - 12


def test_bad_inputs_are_named():
    probe = occlusion.probe_model(_region_model(), None)
    with pytest.raises(ValueError, match="class_index"):
        occlusion.occlusion_maps(probe, _image(), 5, patch_size=4, stride=4)
    with pytest.raises(ValueError, match=r"\(S, S, 3\)"):
        occlusion.occlusion_maps(probe, _image()[:, :20], 0, patch_size=4, stride=4)
    with pytest.raises(ValueError, match="conv7"):
        occlusion.probe_model(_region_model(), "conv7")
