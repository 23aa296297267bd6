"""Tests for the visualize entry point and its tools (viz_tools, viz_plots): PNGs written."""

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import viz_fixtures
from alexnet_tf.nn import models
from alexnet_tf.viz import inputs as viz_inputs
from alexnet_tf.viz import tools as viz_tools


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return viz_fixtures.run_with_images(tmp_path_factory.mktemp("visualize"), 6)


def _check_png(path, min_size=(200, 150)):
    assert os.path.exists(path)
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size[0] >= min_size[0] and image.size[1] >= min_size[1]
        assert np.asarray(image.convert("L")).std() > 5  # Not a blank canvas.
    assert not [name for name in os.listdir(os.path.dirname(path)) if ".tmp" in name]


def test_kernels_towers(run, tmp_path):
    output = str(tmp_path / "kernels.png")
    summary = viz_tools.run_kernels(run["loaded"], output)
    _check_png(output)
    conv1 = run["loaded"].keras_model.get_layer("conv1")
    tower_a, tower_b = viz_tools.conv1_towers(run["loaded"].keras_model)
    assert summary["towers"] == [(11, 11, 3, 3), (11, 11, 3, 3)]  # 96 / 16 kernels, 2 towers
    np.testing.assert_array_equal(tower_a, conv1.group_convs[0].kernel.numpy())
    np.testing.assert_array_equal(tower_b, conv1.group_convs[1].kernel.numpy())
    zfnet = models.zfnet(num_classes=3, input_size=67, width_multiplier=0.0625)
    towers = viz_tools.conv1_towers(zfnet)
    assert [tower.shape for tower in towers] == [(7, 7, 3, 6)]


def test_predictions_from_records_mark_the_true_label(run, tmp_path):
    output = str(tmp_path / "predictions.png")
    records = viz_inputs.read_images([run["shard"]])
    summary = viz_tools.run_predictions(run["loaded"], records, output)
    _check_png(output)
    assert summary["true"] == [i % 3 for i in range(6)]
    probabilities = summary["probabilities"]
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)
    assert (np.take_along_axis(probabilities, summary["top"], 1)[:, :-1]
            >= np.take_along_axis(probabilities, summary["top"], 1)[:, 1:]).all()
    ten = viz_tools.run_predictions(run["loaded"], records[:1], output, ten_crop=True)
    assert ten["probabilities"].shape == (1, 3)
    assert not np.allclose(ten["probabilities"], probabilities[:1])  # 10 crops differ


def test_predictions_true_labels_for_files(run, tmp_path):
    records = viz_inputs.read_images(run["files"][:2])
    summary = viz_tools.run_predictions(run["loaded"], records, str(tmp_path / "p.png"),
                                        true_labels=["green", "2"])
    assert summary["true"] == [1, 2]
    with pytest.raises(ValueError, match="one per image"):
        viz_tools.run_predictions(run["loaded"], records, str(tmp_path / "p.png"),
                                  true_labels=["red"])
    with pytest.raises(ValueError, match="purple"):
        viz_tools.run_predictions(run["loaded"], records, str(tmp_path / "p.png"),
                                  true_labels=["red", "purple"])


def test_neighbors_tool(run, tmp_path):
    output = str(tmp_path / "neighbors.png")
    queries = viz_inputs.read_images(run["files"][2:4])
    summary = viz_tools.run_neighbors(run["loaded"], queries, [run["shard"]], output,
                                      cache_dir=str(tmp_path / "cache"), num_neighbors=3)
    _check_png(output)
    assert summary["indices"][:, 0].tolist() == [2, 3]  # the same images, in the shard
    assert summary["indices"].shape == (2, 3) and not summary["cached"]
    assert not summary["dead"]
    # A net whose fc7 is dead (all zero) gets a warning, not a misleading ranking.
    dead_model = models.build_model(**viz_fixtures.SPEC)
    for weight in dead_model.weights:
        weight.assign(tf.zeros_like(weight))
    dead = dataclasses.replace(run["loaded"], keras_model=dead_model,
                               path=str(tmp_path / "all-zero"))  # another identity
    summary = viz_tools.run_neighbors(dead, queries, [run["shard"]], output,
                                      cache_dir=str(tmp_path / "cache"), num_neighbors=3)
    assert summary["dead"] and not summary["cached"]


def test_occlusion_tool(run, tmp_path):
    output = str(tmp_path / "occlusion.png")
    records = viz_inputs.read_images([run["shard"]], limit=1)
    summary = viz_tools.run_occlusion(run["loaded"], records, output, layer="conv2",
                                      patch_size=16, stride=8)
    _check_png(output)
    result, = summary["results"]
    assert result.probability.shape == result.activation.shape == (8, 8)  # 0, 8, ..., 51
    assert result.class_index == 0 and result.layer_name == "conv2"


@pytest.mark.parametrize("layer", ["conv1", "conv5"])
def test_deconv_tool(run, tmp_path, layer):
    output = str(tmp_path / f"deconv_{layer}.png")
    records = viz_inputs.read_images(run["files"])
    summary = viz_tools.run_deconv(run["loaded"], records, output, layer=layer, num_maps=4,
                                   num_per_map=2)
    _check_png(output)
    projections = summary["projections"]
    assert len(projections) == 8
    assert all(p.reconstruction.shape == (67, 67, 3) for p in projections)
    assert all(0 <= p.image_index < len(records) for p in projections)
    if layer == "conv1":  # conv1's receptive field is its 11x11 kernel (minus the padding).
        assert all(p.box[2] - p.box[0] <= 11 and p.box[3] - p.box[1] <= 11 for p in projections)


def test_saved_model_needs_model_dir_for_layers(run, tmp_path):
    from alexnet_tf import model_source
    from alexnet_tf.serving import saved_model as serving
    module = serving.ServingModule(run["loaded"].keras_model, run["loaded"].settings)
    saved_model = serving.export(module, str(tmp_path / "export"), verify=False)
    records = viz_inputs.read_images([run["shard"]], limit=2)

    with_spec = model_source.load(saved_model=saved_model, model_dir=run["model_dir"])
    np.testing.assert_array_equal(viz_tools.conv1_towers(with_spec.keras_model)[1],
                                  viz_tools.conv1_towers(run["loaded"].keras_model)[1])
    # Without --model_dir only the signatures are there (the same loaded SavedModel here).
    alone = dataclasses.replace(with_spec, keras_model=None)
    assert alone.settings.crop_size == viz_fixtures.INPUT_SIZE
    assert alone.settings.resize_size == viz_fixtures.RESIZE_SIZE
    from_checkpoint = viz_tools.run_predictions(run["loaded"], records, str(tmp_path / "a.png"))
    from_export = viz_tools.run_predictions(alone, records, str(tmp_path / "b.png"))
    np.testing.assert_allclose(from_export["probabilities"], from_checkpoint["probabilities"],
                               rtol=1e-4, atol=1e-6)
    occluded = viz_tools.run_occlusion(alone, records[:1], str(tmp_path / "o.png"),
                                       layer="conv5", patch_size=30, stride=20)
    assert occluded["results"][0].activation is None  # probability map only
    with pytest.raises(ValueError, match="--model_dir"):
        viz_tools.run_kernels(alone, str(tmp_path / "k.png"))


def test_plots_are_headless(run, tmp_path):
    # Figures come from the Agg canvas: pyplot (and any GUI backend) is never imported.
    code = ("import sys, numpy as np\n"
            "from alexnet_tf.viz import plots as viz_plots\n"
            "figure = viz_plots.kernels_figure([np.random.rand(5, 5, 3, 4)] * 2, 'k')\n"
            f"viz_plots.save_png(figure, {str(tmp_path / 'headless.png')!r})\n"
            "assert 'matplotlib.pyplot' not in sys.modules\n")
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "MPLBACKEND")}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
    _check_png(str(tmp_path / "headless.png"), min_size=(100, 100))


_COMMAND_LINE_SCRIPT = """
import sys
from absl import app
from absl import flags
import pytest
from alexnet_tf import visualize

model_dir, output, shard, tmp = sys.argv[1:5]
flags.FLAGS(["visualize", f"--model_dir={model_dir}", f"--output={output}",
             f"--images={shard}", "--layer=conv2", "--num_maps=2",
             "--num_per_map=1", "--max_images=3"])
visualize.main(["visualize", "deconv"])
with pytest.raises(app.UsageError, match="kernels, predictions"):
    visualize.main(["visualize", "sketch"])
flags.FLAGS.output = tmp + "/out.jpg"
with pytest.raises(app.UsageError, match="png"):
    visualize.main(["visualize", "kernels"])
flags.FLAGS.output = output
flags.FLAGS.images = []
with pytest.raises(app.UsageError, match="needs images"):
    visualize.main(["visualize", "occlusion"])
flags.FLAGS.images = [tmp + "/missing.jpg"]
with pytest.raises(SystemExit) as exit_info:
    visualize.main(["visualize", "predictions"])
assert exit_info.value.code == 1, exit_info.value.code
print("COMMAND LINE OK")
"""


@pytest.mark.slow
def test_command_line(run, tmp_path):
    # main() with parsed flags: the same code `python -m alexnet_tf.visualize` runs. In a
    # child process because absl flags are global: the entry points train.py and
    # visualize.py both define --model_dir, and other tests import train.py.
    output = str(tmp_path / "cli_deconv.png")
    result = subprocess.run(
        [sys.executable, "-c", _COMMAND_LINE_SCRIPT, run["model_dir"], output, run["shard"],
         str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "COMMAND LINE OK" in result.stdout
    _check_png(output)
