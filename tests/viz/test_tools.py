"""Tests for alexnet_tf.viz.tools: each tool's figure and the numbers behind it."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import run_dir
from alexnet_tf.nn import models
from alexnet_tf.viz import inputs as viz_inputs
from alexnet_tf.viz import tools as viz_tools


def test_kernels_towers(viz_run, check_png, tmp_path):
    output = str(tmp_path / "kernels.png")
    summary = viz_tools.run_kernels(viz_run["loaded"], output)
    check_png(output)
    conv1 = viz_run["loaded"].keras_model.get_layer("conv1")
    tower_a, tower_b = viz_tools.conv1_towers(viz_run["loaded"].keras_model)
    assert summary["towers"] == [(11, 11, 3, 3), (11, 11, 3, 3)]  # 96 / 16 kernels, 2 towers
    np.testing.assert_array_equal(tower_a, conv1.group_convs[0].kernel.numpy())
    np.testing.assert_array_equal(tower_b, conv1.group_convs[1].kernel.numpy())
    zfnet = models.zfnet(num_classes=3, input_size=67, width_multiplier=0.0625)
    towers = viz_tools.conv1_towers(zfnet)
    assert [tower.shape for tower in towers] == [(7, 7, 3, 6)]


def test_predictions_from_records_mark_the_true_label(viz_run, check_png, tmp_path):
    output = str(tmp_path / "predictions.png")
    records = viz_inputs.read_images([viz_run["shard"]])
    summary = viz_tools.run_predictions(viz_run["loaded"], records, output)
    check_png(output)
    assert summary["true"] == [i % 3 for i in range(6)]
    probabilities = summary["probabilities"]
    np.testing.assert_allclose(probabilities.sum(1), 1, rtol=1e-5)
    assert (np.take_along_axis(probabilities, summary["top"], 1)[:, :-1]
            >= np.take_along_axis(probabilities, summary["top"], 1)[:, 1:]).all()
    ten = viz_tools.run_predictions(viz_run["loaded"], records[:1], output, ten_crop=True)
    assert ten["probabilities"].shape == (1, 3)
    assert not np.allclose(ten["probabilities"], probabilities[:1])  # 10 crops differ


def test_predictions_true_labels_for_files(viz_run, tmp_path):
    records = viz_inputs.read_images(viz_run["files"][:2])
    summary = viz_tools.run_predictions(viz_run["loaded"], records, str(tmp_path / "p.png"),
                                        true_labels=["green", "2"])
    assert summary["true"] == [1, 2]
    with pytest.raises(ValueError, match="one per image"):
        viz_tools.run_predictions(viz_run["loaded"], records, str(tmp_path / "p.png"),
                                  true_labels=["red"])
    with pytest.raises(ValueError, match="purple"):
        viz_tools.run_predictions(viz_run["loaded"], records, str(tmp_path / "p.png"),
                                  true_labels=["red", "purple"])


def test_neighbors_tool(viz_run, check_png, tmp_path):
    output = str(tmp_path / "neighbors.png")
    queries = viz_inputs.read_images(viz_run["files"][2:4])
    summary = viz_tools.run_neighbors(viz_run["loaded"], queries, [viz_run["shard"]], output,
                                      cache_dir=str(tmp_path / "cache"), num_neighbors=3)
    check_png(output)
    assert summary["indices"][:, 0].tolist() == [2, 3]  # the same images, in the shard
    assert summary["indices"].shape == (2, 3) and not summary["cached"]
    assert not summary["dead"]
    # A net whose fc7 is dead (all zero) gets a warning, not a misleading ranking.
    dead_model = run_dir.build_model(viz_run["config"].model_spec())
    for weight in dead_model.weights:
        weight.assign(tf.zeros_like(weight))
    dead = dataclasses.replace(viz_run["loaded"], keras_model=dead_model,
                               path=str(tmp_path / "all-zero"))  # another identity
    summary = viz_tools.run_neighbors(dead, queries, [viz_run["shard"]], output,
                                      cache_dir=str(tmp_path / "cache"), num_neighbors=3)
    assert summary["dead"] and not summary["cached"]


def test_occlusion_tool(viz_run, check_png, tmp_path):
    output = str(tmp_path / "occlusion.png")
    records = viz_inputs.read_images([viz_run["shard"]], limit=1)
    summary = viz_tools.run_occlusion(viz_run["loaded"], records, output, layer="conv2",
                                      patch_size=16, stride=8)
    check_png(output)
    result, = summary["results"]
    assert result.probability.shape == result.activation.shape == (8, 8)  # 0, 8, ..., 51
    assert result.class_index == 0 and result.layer_name == "conv2"


@pytest.mark.parametrize("layer", ["conv1", "conv5"])
def test_deconv_tool(viz_run, check_png, tmp_path, layer):
    output = str(tmp_path / f"deconv_{layer}.png")
    records = viz_inputs.read_images(viz_run["files"])
    summary = viz_tools.run_deconv(viz_run["loaded"], records, output, layer=layer, num_maps=4,
                                   num_per_map=2)
    check_png(output)
    projections = summary["projections"]
    assert len(projections) == 8
    assert all(p.reconstruction.shape == (67, 67, 3) for p in projections)
    assert all(0 <= p.image_index < len(records) for p in projections)
    if layer == "conv1":  # conv1's receptive field is its 11x11 kernel (minus the padding).
        assert all(p.box[2] - p.box[0] <= 11 and p.box[3] - p.box[1] <= 11 for p in projections)


def test_saved_model_needs_model_dir_for_layers(viz_run, tmp_path):
    from alexnet_tf import model_source
    from alexnet_tf.serving import saved_model as serving
    module = serving.ServingModule(viz_run["loaded"].keras_model, viz_run["loaded"].settings)
    saved_model = serving.export(module, str(tmp_path / "export"), verify=False)
    records = viz_inputs.read_images([viz_run["shard"]], limit=2)

    with_spec = model_source.load(saved_model=saved_model, model_dir=viz_run["model_dir"])
    np.testing.assert_array_equal(viz_tools.conv1_towers(with_spec.keras_model)[1],
                                  viz_tools.conv1_towers(viz_run["loaded"].keras_model)[1])
    # Without --model_dir only the signatures are there (the same loaded SavedModel here).
    alone = dataclasses.replace(with_spec, keras_model=None)
    assert alone.settings.crop_size == viz_run["config"].input_size
    assert alone.settings.resize_size == viz_run["config"].resize_size
    from_checkpoint = viz_tools.run_predictions(viz_run["loaded"], records, str(tmp_path / "a.png"))
    from_export = viz_tools.run_predictions(alone, records, str(tmp_path / "b.png"))
    np.testing.assert_allclose(from_export["probabilities"], from_checkpoint["probabilities"],
                               rtol=1e-4, atol=1e-6)
    occluded = viz_tools.run_occlusion(alone, records[:1], str(tmp_path / "o.png"),
                                       layer="conv5", patch_size=30, stride=20)
    assert occluded["results"][0].activation is None  # probability map only
    with pytest.raises(ValueError, match="--model_dir"):
        viz_tools.run_kernels(alone, str(tmp_path / "k.png"))


def test_saved_model_alone_keeps_the_class_names(viz_run, tmp_path):
    """An export carries labels.json: a SavedModel alone (its export directory) names the
    classes, and --true_labels takes class names."""
    from alexnet_tf import model_source
    from alexnet_tf.serving import saved_model as serving
    loaded = viz_run["loaded"]
    module = serving.ServingModule(loaded.keras_model, loaded.settings, labels=loaded.labels)
    export_dir = str(tmp_path / "export")
    serving.export(module, export_dir, verify=False)
    alone = model_source.load(saved_model=export_dir)  # the base directory: highest version
    assert alone.keras_model is None and alone.labels == loaded.labels
    records = viz_inputs.read_images(viz_run["files"][:2])
    summary = viz_tools.run_predictions(alone, records, str(tmp_path / "p.png"),
                                        true_labels=["blue", "red"])
    assert summary["true"] == [2, 0]


def test_receptive_field_tables_of_every_architecture_and_of_a_run(viz_run):
    tables = viz_tools.receptive_field_tables().split("\n\n")
    titles = [table.splitlines()[0] for table in tables]
    assert titles == ["alexnet, variant=paper, input 224x224",
                      "alexnet, variant=one_tower, input 224x224",
                      "alexnet, variant=half_one_tower, input 224x224",
                      "alexnet, variant=paper, input 227x227", "zfnet, input 224x224"]
    conv2 = {title: next(line.split() for line in table.splitlines()
                         if line.startswith("conv2 "))
             for title, table in zip(titles, tables)}
    # size, jump, start of conv2 (tests/nn/test_receptive_fields.py derives them).
    assert conv2["alexnet, variant=paper, input 227x227"][3:6] == ["51", "8", "-16"]
    assert conv2["zfnet, input 224x224"][3:6] == ["27", "8", "-1"]
    # The one-GPU net has the two-tower net's layers, so its fields: 224 pads 1 first.
    assert conv2["alexnet, variant=half_one_tower, input 224x224"][3:6] == [
            "51", "8", "-17"]
    # The run's net: 67 = 3 mod 4, so no padding; conv1 (67 - 11) / 4 + 1 = 15 wide.
    table = viz_tools.receptive_field_tables(viz_run["loaded"])
    assert "input 67x67" in table.splitlines()[0]
    assert ["conv1", "15x15", "11/4", "11", "4", "0", "5"] in [
        line.split() for line in table.splitlines()]
