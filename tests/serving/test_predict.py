"""Tests for alexnet_tf.predict, on a SavedModel written by `python -m alexnet_tf.export`."""

import io
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import predict
from alexnet_tf.data import image_header
from alexnet_tf.data import preprocessing
from alexnet_tf.serving import layout

TIMEOUT = 180
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
MAX_PIXELS = 150_000  # The export's limit: above the test images (at most 400x300).


def _python_module(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True,
                          timeout=TIMEOUT, env=ENV)


@pytest.fixture(scope="module")
def cli_export(tmp_path_factory, serving_run, png_bomb):
    """The serving run exported by the export command (the SavedModel predict reads)."""
    root = tmp_path_factory.mktemp("predict")
    export_dir = root / "export"
    process = _python_module("alexnet_tf.export", f"--model_dir={serving_run['model_dir']}",
                             f"--export_dir={export_dir}", f"--max_pixels={MAX_PIXELS}")
    assert process.returncode == 0, process.stderr[-3000:]
    assert f"exported {export_dir / '1'}" in process.stdout
    bad = root / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    bomb = root / "bomb.png"
    bomb.write_bytes(png_bomb)
    return dict(serving_run, export_dir=str(export_dir), bad=str(bad), bomb=str(bomb),
                missing=str(root / "missing.jpg"))


def _top5_blocks(stdout):
    """{path: [(probability, class index, label), ...]} parsed from predict's output."""
    blocks, current = {}, None
    for line in stdout.splitlines():
        match = re.match(r"\s+\d\.\s+([\d.]+)%\s+\[(\d+)\] (.*)$", line)
        if match:
            blocks[current].append((float(match[1]) / 100, int(match[2]), match[3]))
        elif line.strip():
            current = line.strip()
            blocks[current] = []
    return blocks


@pytest.mark.slow
def test_predict_reports_bad_files_and_still_runs_the_others(cli_export):
    good = cli_export["image_paths"][:3]  # Two JPEGs and a PNG.
    process = _python_module("alexnet_tf.predict", f"--saved_model={cli_export['export_dir']}",
                             good[0], cli_export["missing"], cli_export["bad"], good[1],
                             cli_export["bomb"], good[2])
    assert process.returncode == 1
    assert f"error: {cli_export['missing']}: cannot read the file" in process.stderr
    assert (f"error: {cli_export['bad']}: not a decodable image, "
            f"{preprocessing.IMAGE_FORMATS} (") in process.stderr
    assert "Graph execution error" not in process.stderr
    assert (f"error: {cli_export['bomb']}: 20000x20000 = 400000000 pixels, over the limit of "
            f"{MAX_PIXELS} (--max_pixels); not decoded") in process.stderr
    assert "3 of 6 images failed" in process.stderr
    blocks = _top5_blocks(process.stdout)
    assert list(blocks) == good
    for path in good:
        with open(path, "rb") as f:
            image = preprocessing.preprocess_for_eval(f.read(), stats=cli_export["stats"],
                                                      crop_size=cli_export["settings"].crop_size)
        probabilities = tf.nn.softmax(cli_export["model"](image[None], training=False))[0].numpy()
        expected = np.argsort(-probabilities, kind="stable")[:5]
        assert [index for _, index, _ in blocks[path]] == list(expected)
        for probability, index, label in blocks[path]:
            assert probability == pytest.approx(probabilities[index], abs=6e-5)  # Printed %.2f%%.
            assert label == f"n0000000{index} class {index}"


@pytest.mark.slow
def test_predict_exit_codes(cli_export):
    version_dir = os.path.join(cli_export["export_dir"], "1")
    process = _python_module("alexnet_tf.predict", f"--saved_model={version_dir}",
                             cli_export["image_paths"][3])
    assert process.returncode == 0, process.stderr[-3000:]
    assert len(_top5_blocks(process.stdout)[cli_export["image_paths"][3]]) == 5
    process = _python_module("alexnet_tf.predict", f"--saved_model={cli_export['missing']}",
                             cli_export["image_paths"][3])
    assert process.returncode == 2
    assert "is neither a SavedModel directory" in process.stderr


def test_export_max_pixels_is_in_the_graph_and_beside_it(cli_export, encode_image, random_image):
    version_dir = os.path.join(cli_export["export_dir"], "1")
    assert layout.load_max_pixels(version_dir) == MAX_PIXELS
    serve = tf.saved_model.load(version_dir).signatures[layout.SERVING_SIGNATURE]
    over = encode_image(random_image(300, MAX_PIXELS // 300 + 1), "PNG")
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
            f"image_bytes[0]: {MAX_PIXELS // 300 + 1}x300 = {300 * (MAX_PIXELS // 300 + 1)} "
            f"pixels, over the limit of {MAX_PIXELS}")):
        serve(image_bytes=tf.constant([over]))


class _NeverServe:
    """A stand-in SavedModel whose signature must not be called."""

    def __init__(self):
        self.signatures = {layout.SERVING_SIGNATURE: self._serve}

    def _serve(self, **inputs):
        raise AssertionError("the image was sent to the signature")


def test_predict_refuses_images_over_the_limit_before_serving_them(tmp_path, png_bomb,
                                                                   encode_image, random_image):
    bomb, small = tmp_path / "bomb.png", tmp_path / "small.png"
    bomb.write_bytes(png_bomb)
    small.write_bytes(encode_image(random_image(20, 30), "PNG"))
    out, err = io.StringIO(), io.StringIO()
    assert predict.predict_files(_NeverServe(), [str(bomb)], out, err) == 1
    assert err.getvalue() == (f"error: {bomb}: 20000x20000 = 400000000 pixels, over the limit "
                              f"of {image_header.DEFAULT_MAX_PIXELS} (--max_pixels); not "
                              "decoded\n")
    assert predict.predict_files(_NeverServe(), [str(small)], out, err, max_pixels=599) == 1
    assert f"error: {small}: 30x20 = 600 pixels, over the limit of 599" in err.getvalue()
    assert out.getvalue() == ""
