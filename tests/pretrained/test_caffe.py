"""Caffe's bvlc_alexnet imported: logits against a NumPy Caffe forward pass, and bad files.

The imported run directory is read the way evaluate reads it (model_source.load), and
images go through the shared eval preprocessing, so the mean, the crop, BGR and the
LRN are all checked against Caffe's semantics, for both of Caffe's layer formats.
"""

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf import model_source
from alexnet_tf import run_dir
from alexnet_tf.data import preprocessing
from alexnet_tf.nn import models
from alexnet_tf.pretrained import caffe
from alexnet_tf.pretrained import caffe_proto
from alexnet_tf.pretrained import importer
from alexnet_tf.pretrained import mapping


def _images(seed: int, size: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (2, size, size, 3), dtype=np.uint8)


def _pipeline_logits(model_dir: str, images: np.ndarray, encode_image) -> np.ndarray:
    """Logits of PNG files of `images` through evaluate's loading and preprocessing."""
    loaded = model_source.load(model_dir=model_dir)
    settings = loaded.settings
    batch = tf.stack([preprocessing.preprocess_for_eval(
            tf.constant(encode_image(image, "PNG")), stats=settings.stats,
            crop_size=settings.crop_size, resize_size=settings.resize_size,
            mean_mode=settings.mean_mode) for image in images])
    return loaded.keras_model(batch, training=False).numpy()


@pytest.fixture(scope="module")
def mean_bgr():
    """A Caffe-style mean image: (3, 256, 256) BGR, smooth and different per channel."""
    rows = np.linspace(0.0, 1.0, 256)
    ramp = rows[:, None] + 0.5 * rows[None, :]
    return np.stack([100 + 10 * ramp, 115 - 8 * ramp, 125 + 5 * ramp]).astype(np.float32)


@pytest.mark.parametrize("layer_format, with_mean, lrn_k", [
    ("v1", True, 1.0),    # bvlc_alexnet.caffemodel's format, imagenet_mean.binaryproto
    ("v2", False, 2.0),   # current Caffe, Caffe's per-channel mean, LRN k written
])
def test_logits_match_caffe(tmp_path, caffe_arrays, write_caffemodel, write_mean, mean_bgr,
                            caffe_forward, encode_image, assert_logits_close, layer_format,
                            with_mean, lrn_k):
    arrays = caffe_arrays(seed=1)
    weights = write_caffemodel(tmp_path / "net.caffemodel", arrays, layer_format, lrn_k=lrn_k)
    mean = write_mean(tmp_path / "mean.binaryproto", mean_bgr) if with_mean else None
    model_dir = str(tmp_path / "run")
    importer.import_weights("caffe", weights, model_dir, mean_path=mean)

    images = _images(seed=2)
    expected = caffe_forward(images, arrays, mean_bgr if with_mean else caffe.MEAN_BGR,
                             lrn_k=lrn_k)
    assert_logits_close(_pipeline_logits(model_dir, images, encode_image), expected)
    spec = run_dir.read_config(model_dir)["model"]
    assert spec["widths"] == [8, 12, 16, 12, 8, 16, 16] and spec["input_size"] == 227
    assert models.lrn_settings(spec) == dict(use_lrn=True, lrn_convention="caffe",
                                             lrn_k=lrn_k, lrn_across_towers=True)


def test_each_caffe_convention_changes_the_logits(tmp_path, caffe_arrays, write_caffemodel,
                                                  caffe_forward):
    """The parity test can fail: dropping any one of Caffe's conventions, or mapping fc6 or
    the towers otherwise, moves the logits far beyond its tolerance."""
    arrays = caffe_arrays(seed=3)
    imported = importer.read("caffe", write_caffemodel(tmp_path / "net.caffemodel", arrays))
    images = _images(seed=4, size=227)
    inputs = images.astype(np.float32) - np.asarray(caffe.MEAN_BGR[::-1], np.float32)
    expected = caffe_forward(images, arrays, caffe.MEAN_BGR)
    spec = imported.config.model_spec()
    keras_arrays = mapping.keras_arrays(imported.weights)
    variants = {
        "as imported": (spec, keras_arrays),
        "LRN within towers": (dict(spec, lrn_across_towers=False), keras_arrays),
        "LRN k=2": (dict(spec, lrn_k=2.0), keras_arrays),
        "LRN alpha, not alpha/n": (dict(spec, lrn_convention="paper"), keras_arrays),
        "conv1 reading BGR": (spec, dict(keras_arrays, conv1=(
                keras_arrays["conv1"][0][:, :, ::-1], keras_arrays["conv1"][1]))),
        "fc6 read as (C, H, W)": (spec, dict(keras_arrays, fc6=(
                imported.weights.arrays["fc6"][0].T, keras_arrays["fc6"][1]))),
        "conv2's groups swapped": (spec, dict(keras_arrays, conv2=tuple(
                np.roll(array, array.shape[-1] // 2, axis=-1) for array in keras_arrays["conv2"]))),
    }
    errors_by_variant = {}
    for name, (variant_spec, variant_arrays) in variants.items():
        model = run_dir.build_model(variant_spec)
        mapping.assign(model, variant_arrays)
        got = model(inputs, training=False).numpy()
        errors_by_variant[name] = np.abs(got - expected).max() / np.abs(expected).max()
    assert errors_by_variant.pop("as imported") < 1e-4
    assert min(errors_by_variant.values()) > 1e-2, errors_by_variant


def _rewrite(path, edit):
    """Parses a .caffemodel, applies edit(net), writes it back."""
    net = caffe_proto.messages()["NetParameter"]()
    with open(path, "rb") as f:
        net.ParseFromString(f.read())
    edit(net)
    with open(path, "wb") as f:
        f.write(net.SerializeToString())


def _drop_values(net):
    fc7 = next(layer for layer in net.layers if layer.name == "fc7")
    del fc7.blobs[0].data[-5:]


@pytest.mark.parametrize("case, message", [
    ("truncated", r"net\.caffemodel: not a Caffe model .*truncated, damaged or another format"),
    ("torch file", r"not a Caffe model"),
    ("caffenet order", r"layer 'pool1' \(Pooling\) follows 'relu1' where AlexNet "
                       r"\(bvlc_alexnet\) has LRN norm1"),
    ("conv2 shape", r"conv2 weights: expected shape \(12, 4, 5, 5\) \(from the layers before "
                    r"it\), found \(12, 8, 5, 5\)"),
    ("conv3 groups", r"layer 'conv3': kernel 3, stride 1, pad 1, group 2; AlexNet's conv3 "
                     r"has kernel 3, stride 1, pad 1, group 1"),
    ("blob values", r"fc7 weights: shape \(1, 1, 16, 16\) needs 256 values, the blob holds "
                    r"251"),
    ("classes", r"fc8 has 10 outputs; ImageNet weights have 1000"),
    ("mean shape", r"mean\.binaryproto: a mean image of shape \(3, 200, 200\); expected"),
])
def test_bad_files_are_one_line_errors(tmp_path, caffe_arrays, write_caffemodel, write_mean,
                                       torchvision_fixture, case, message):
    arrays = caffe_arrays(seed=5)
    path = str(tmp_path / "net.caffemodel")
    mean = None
    if case == "conv2 shape":
        weights, bias = arrays["conv2"]
        arrays["conv2"] = (np.concatenate([weights, weights], axis=1), bias)
    if case == "classes":
        arrays["fc8"] = tuple(array[:10] for array in arrays["fc8"])
    write_caffemodel(path, arrays, "v1", caffenet_order=case == "caffenet order",
                     conv_params={"conv3": {"group": 2}} if case == "conv3 groups" else None)
    if case == "truncated":
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[:len(data) * 3 // 5])
    elif case == "torch file":
        path = torchvision_fixture["pth"]
    elif case == "blob values":
        _rewrite(path, _drop_values)
    elif case == "mean shape":
        mean = write_mean(tmp_path / "mean.binaryproto", np.zeros((3, 200, 200), np.float32))
    with pytest.raises(errors.InvalidInputError, match=message) as raised:
        importer.import_weights("caffe", path, str(tmp_path / "run"), mean_path=mean)
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "run").exists()


def test_missing_file_and_existing_output(tmp_path, caffe_arrays, write_caffemodel):
    with pytest.raises(errors.MissingInputError, match="does not exist"):
        importer.import_weights("caffe", str(tmp_path / "none.caffemodel"),
                                str(tmp_path / "run"))
    path = write_caffemodel(tmp_path / "net.caffemodel", caffe_arrays(seed=6))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(errors.ExistingOutputError, match="exists and is not empty"):
        importer.import_weights("caffe", path, str(tmp_path / "run"))
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["notes.txt"]
    with pytest.raises(errors.InvalidInputError, match="--mean is Caffe's mean file"):
        importer.read("torchvision", path, mean_path=path)
    with pytest.raises(errors.MissingInputError, match="--mean=.*none.binaryproto does not"):
        importer.read("caffe", path, mean_path=str(tmp_path / "none.binaryproto"))
