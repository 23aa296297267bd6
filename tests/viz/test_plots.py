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


def _texts(figure):
    """Every title, axis label and tick label of a figure, as one string."""
    parts = []
    for axis in figure.axes:
        parts += [axis.get_title(), axis.get_xlabel(), axis.get_ylabel()]
        parts += [label.get_text() for label in axis.get_yticklabels()]
    return "\n".join(parts)


def test_wrap_keeps_whole_names_within_two_lines():
    from alexnet_tf.viz import plots
    assert plots.wrap("yellow horizontal stripes", 20) == "yellow horizontal\nstripes"
    assert plots.wrap("short", 20) == "short"
    long = plots.wrap("a" * 50, 20)
    assert long.count("\n") == 1 and long.endswith("\u2026")


def test_predictions_caption_names_the_true_class_and_its_probability():
    import numpy as np
    from alexnet_tf.viz import plots
    names = ["yellow horizontal stripes", "purple diagonal stripes", "red disc"]
    figure = plots.predictions_figure(
            [np.zeros((8, 8, 3), np.uint8)], ["a_rather_long_file_name_0001.JPEG"], [names],
            [[0.5, 0.3, 0.2]], ["purple diagonal stripes"], [0.3], "title")
    text = _texts(figure)
    assert "stripes" in text and "yellow horizontal\nstripes" in text  # wrapped, not cut
    assert "true class: purple diagonal stripes; its probability 30.0%" in text.replace(
            "\n", " ")


def _occlusion_result(probability, activation):
    import numpy as np
    from alexnet_tf.viz import occlusion
    centers = np.array([4.0, 12.0])
    return occlusion.OcclusionResult(
            probability=np.asarray(probability), activation=np.asarray(activation),
            class_index=0, baseline_probability=0.5, feature_map=3, layer_name="conv5",
            patch_size=8, stride=8, centers=(centers, centers))


def test_occlusion_maps_use_fixed_scales_and_call_a_flat_map_flat():
    import numpy as np
    from alexnet_tf.viz import plots
    flat = _occlusion_result([[0.5, 0.5 + 1e-7], [0.5, 0.5]], [[10.0, 4.0], [9.0, 10.0]])
    figure = plots.occlusion_figure([np.zeros((16, 16, 3), np.uint8)], [flat], ["cat"], "t")
    activation_axis, probability_axis = figure.axes[1], figure.axes[2]
    assert probability_axis.images[0].get_clim() == (0.0, 1.0)
    assert "no effect" in probability_axis.get_title()
    assert activation_axis.images[0].get_clim() == (0.0, 10.0)
    assert "no effect" not in activation_axis.get_title()
    assert plots.negligible_range(np.array([61.48, 61.48 + 1e-3]))
    assert not plots.negligible_range(np.array([0.1, 0.5]))


def test_deconv_panels_name_the_image_files():
    import numpy as np
    from alexnet_tf.viz import deconvnet
    from alexnet_tf.viz import plots
    projections = [deconvnet.Projection(feature_map=2, image_index=index, position=(1, 1),
                                        activation=1.0, reconstruction=np.ones((8, 8, 3)),
                                        box=(0, 0, 8, 8)) for index in (1, 0)]
    names = ["ILSVRC2012_val_00000073.JPEG", "ILSVRC2012_val_00000350.JPEG"]
    figure = plots.deconv_figure(projections, np.zeros((2, 8, 8, 3), np.uint8), names,
                                 "conv2", 2, "t")
    text = _texts(figure).replace("\n", "")
    assert all(name in text for name in names)
