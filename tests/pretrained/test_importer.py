"""An imported run directory as the other commands read it: its files, export with the
ImageNet class names, visualize, `train --init_checkpoint` with model_flags.cfg, and
the import command's exit status and one-line errors."""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import model_source
from alexnet_tf import run_dir
from alexnet_tf import train_flags
from alexnet_tf.data import stats as stats_lib
from alexnet_tf.pretrained import importer
from alexnet_tf.serving import saved_model as serving
from alexnet_tf.training import checkpoints
from alexnet_tf.viz import tools as viz_tools

SUBPROCESS_TIMEOUT = 300


@pytest.fixture(scope="module")
def caffe_run(tmp_path_factory, caffe_arrays, write_caffemodel, write_mean):
    """A Caffe fixture imported with a mean file: {"root", "model_dir", "weights", "arrays",
    "mean_bgr"}."""
    root = tmp_path_factory.mktemp("caffe_import")
    arrays = caffe_arrays(seed=11)
    weights = write_caffemodel(root / "bvlc_alexnet.caffemodel", arrays)
    mean_bgr = np.random.default_rng(12).uniform(90, 140, (3, 256, 256)).astype(np.float32)
    mean = write_mean(root / "imagenet_mean.binaryproto", mean_bgr)
    model_dir = str(root / "run")
    importer.import_weights("caffe", weights, model_dir, mean_path=mean)
    return dict(root=root, model_dir=model_dir, weights=weights, arrays=arrays,
                mean_bgr=mean_bgr)


def test_run_directory_files(caffe_run):
    model_dir = caffe_run["model_dir"]
    assert sorted(os.listdir(caffe_run["root"])) == [
            "bvlc_alexnet.caffemodel", "imagenet_mean.binaryproto", "run"]  # no temporaries
    assert sorted(os.listdir(model_dir)) == ["checkpoints", "config.json", "labels.json",
                                             "model_flags.cfg", "stats.npz"]
    labels = run_dir.read_labels(model_dir)
    assert len(labels) == 1000 and labels[0] == {"index": 0, "synset": "n01440764",
                                                 "name": "tench, Tinca tinca"}
    assert [label["synset"] for label in labels] == sorted(label["synset"] for label in labels)
    stats = stats_lib.load_stats(os.path.join(model_dir, "stats.npz"))
    np.testing.assert_array_equal(stats.mean_image,
                                  caffe_run["mean_bgr"][::-1].transpose(1, 2, 0))
    config = run_dir.read_config(model_dir)
    assert (config["stats_path"], config["mean_mode"], config["resize_size"]) == (
            "stats.npz", "image", 256)
    with open(caffe_run["weights"], "rb") as f:
        assert config["imported_from"]["sha256"] == hashlib.sha256(f.read()).hexdigest()
    # The checkpoint index names its files relative to the directory: the run can move.
    with open(os.path.join(run_dir.checkpoint_dir(model_dir), "checkpoint")) as f:
        assert 'model_checkpoint_path: "ckpt-0"' in f.read()


def test_model_flags_rebuild_the_same_net(caffe_run, torchvision_fixture, tmp_path):
    torch_dir = str(tmp_path / "torch")
    importer.import_weights("torchvision", torchvision_fixture["pth"], torch_dir)
    for model_dir in (caffe_run["model_dir"], torch_dir):
        config = train_flags.parse_flagfile(os.path.join(model_dir, "model_flags.cfg"),
                                            "--data_dir=/data", "--num_classes=1000")
        assert config.model_spec() == run_dir.read_config(model_dir)["model"]
        assert config.stats_path == os.path.join(os.path.abspath(model_dir), "stats.npz")


def test_init_checkpoint_copies_all_but_a_new_fc8_and_keeps_caffe_lrn(caffe_run):
    model_dir = caffe_run["model_dir"]
    config = train_flags.parse_flagfile(os.path.join(model_dir, "model_flags.cfg"),
                                        "--data_dir=/data", "--num_classes=5",
                                        f"--init_checkpoint={model_dir}")
    _, source_spec = checkpoints.resolve_init_checkpoint(model_dir)
    checkpoints.check_same_lrn(source_spec, config.model_spec(), model_dir)
    model = run_dir.build_model(config.model_spec())
    copied = checkpoints.initialize_from(model, model_dir, run_dir.build_model)
    assert copied == ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7"]
    kernel = model.get_layer("fc7").kernel.numpy()
    np.testing.assert_array_equal(kernel, caffe_run["arrays"]["fc7"][0].T)

    paper_lrn = dataclasses.replace(config, lrn_convention="paper", lrn_k=2.0,
                                    lrn_across_towers=False)
    with pytest.raises(ValueError, match="pass --lrn_convention=caffe --lrn_k=1 "
                                         "--lrn_across_towers"):
        checkpoints.check_same_lrn(source_spec, paper_lrn.model_spec(), model_dir)


def test_export_answers_with_imagenet_names(caffe_run, encode_image, caffe_forward, tmp_path):
    loaded = model_source.load(model_dir=caffe_run["model_dir"])
    module = serving.ServingModule(loaded.keras_model, loaded.settings, labels=loaded.labels)
    version_dir = serving.export(module, str(tmp_path / "export"), verify=False)
    images = np.random.default_rng(13).integers(0, 256, (2, 256, 256, 3), dtype=np.uint8)
    outputs = tf.saved_model.load(version_dir).signatures["serving_default"](
            image_bytes=tf.constant([encode_image(image, "PNG") for image in images]))
    expected = tf.nn.softmax(caffe_forward(images, caffe_run["arrays"],
                                           caffe_run["mean_bgr"])).numpy()
    np.testing.assert_allclose(outputs["probabilities"].numpy(), expected, atol=1e-5)
    top = np.argsort(-expected, axis=1, kind="stable")[:, 0]
    labels = run_dir.read_labels(caffe_run["model_dir"])
    assert [row[0].decode() for row in outputs["names"].numpy()] == [
            labels[index]["name"] for index in top]
    assert [row[0].decode() for row in outputs["synsets"].numpy()] == [
            labels[index]["synset"] for index in top]


def test_visualize_kernels_draws_both_towers(caffe_run, tmp_path):
    loaded = model_source.load(model_dir=caffe_run["model_dir"])
    summary = viz_tools.run_kernels(loaded, str(tmp_path / "kernels.png"))
    assert summary["towers"] == [(11, 11, 3, 4), (11, 11, 3, 4)]
    assert (tmp_path / "kernels.png").stat().st_size > 0


def _command(repo_root, *args):
    return subprocess.run([sys.executable, "-m", "alexnet_tf.import_weights", *args],
                          capture_output=True, text=True, cwd=repo_root,
                          timeout=SUBPROCESS_TIMEOUT)


@pytest.mark.slow
def test_command_imports_and_reports_bad_files_in_one_line(repo_root, torchvision_fixture,
                                                           tmp_path):
    model_dir = tmp_path / "run"
    done = _command(repo_root, "--format=torchvision", f"--weights={torchvision_fixture['pth']}",
                    f"--model_dir={model_dir}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "variant=one_tower, widths=[6, 8, 10, 8, 6, 8, 8], 1000 classes" in done.stdout
    assert json.loads((model_dir / "config.json").read_text())["model"]["variant"] == "one_tower"

    truncated = tmp_path / "truncated.pth"
    with open(torchvision_fixture["pth"], "rb") as f:
        truncated.write_bytes(f.read()[:5000])
    done = _command(repo_root, "--format=torchvision", f"--weights={truncated}",
                    f"--model_dir={tmp_path / 'other'}")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == (f"alexnet_tf.import_weights: error: {truncated}: a truncated or "
                         "damaged zip archive (no central directory)")
    assert not (tmp_path / "other").exists()
