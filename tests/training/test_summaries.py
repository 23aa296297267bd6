"""Tests for alexnet_tf.training.summaries: the conv1 kernel image."""

import numpy as np
import pytest

from alexnet_tf.training import summaries


def test_kernel_grid_layout():
    kernels = np.random.default_rng(0).normal(size=(11, 11, 3, 96)).astype(np.float32)
    grid = summaries.kernel_grid(kernels)
    assert grid.shape == (1, 8 * 12 + 1, 12 * 12 + 1, 3)  # 8 rows of 12, 1-pixel borders
    assert grid.min() >= 0.0 and grid.max() <= 1.0
    np.testing.assert_allclose(grid[0, 1:12, 1:12].max(), 1.0)  # each kernel spans [0, 1]
    with pytest.raises(ValueError, match="kernel_grid"):
        summaries.kernel_grid(kernels[:, :, :2])
