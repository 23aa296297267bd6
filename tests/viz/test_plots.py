"""Tests for alexnet_tf.viz.plots: figures render without a display."""

import os
import subprocess
import sys


def test_plots_are_headless(check_png, tmp_path):
    # Figures come from the Agg canvas: pyplot (and any GUI backend) is never imported.
    code = ("import sys, numpy as np\n"
            "from alexnet_tf.viz import plots as viz_plots\n"
            "figure = viz_plots.kernels_figure([np.random.rand(5, 5, 3, 4)] * 2, 'k')\n"
            f"viz_plots.save_png(figure, {str(tmp_path / 'headless.png')!r})\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    check_png(str(tmp_path / "headless.png"), min_size=(100, 100))
