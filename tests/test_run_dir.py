"""Tests for alexnet_tf.run_dir: reading a run's test-time preprocessing from its config."""

import numpy as np
import pytest

from alexnet_tf import run_dir
from alexnet_tf.data import stats as stats_lib

SPEC = {"name": "alexnet", "num_classes": 6, "variant": "paper", "input_size": 64,
        "width_multiplier": 0.0625}


def test_eval_settings_from_config(make_stats, tmp_path):
    stats = make_stats(mean_image=np.random.default_rng(1).uniform(90, 140, (32, 32, 3)))
    stats_path = str(tmp_path / "stats" / stats_lib.STATS_FILE)
    (tmp_path / "stats").mkdir()
    stats_lib.save_stats(stats, stats_path)
    config = {"model": SPEC, "stats_path": stats_path, "mean_mode": "rgb", "resize_size": 300}
    settings = run_dir.eval_settings(config)
    assert (settings.crop_size, settings.resize_size, settings.mean_mode) == (64, 300, "rgb")
    np.testing.assert_allclose(settings.stats.mean_image, stats.mean_image)
    # stats_path None (as config.py writes it when unset): data_dir/stats.npz is used.
    stats_lib.save_stats(stats, str(tmp_path / stats_lib.STATS_FILE))
    settings = run_dir.eval_settings({"model": SPEC, "stats_path": None,
                                      "data_dir": str(tmp_path)})
    assert settings.mean_mode == "image" and settings.stats.mean_image is not None
    with pytest.raises(ValueError, match="mean_mode"):
        run_dir.eval_settings({"model": SPEC}, mean_mode="median")
