"""torchvision's AlexNet imported: logits against torch's own and a NumPy forward pass.

The fixture (tools/make_torchvision_fixture.py) holds torch's logits for two images;
the imported model, fed those images through the shared eval preprocessing, must
reproduce them, and so must a NumPy pass following torchvision's definition.
"""

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf import model_source
from alexnet_tf import run_dir
from alexnet_tf.data import preprocessing
from alexnet_tf.pretrained import importer
from alexnet_tf.pretrained import mapping
from alexnet_tf.pretrained import torch_pickle
from alexnet_tf.pretrained import torchvision


@pytest.fixture(scope="module")
def imported_dir(tmp_path_factory, torchvision_fixture):
    model_dir = str(tmp_path_factory.mktemp("torchvision") / "run")
    importer.import_weights("torchvision", torchvision_fixture["pth"], model_dir)
    return model_dir


def _framed(images: np.ndarray, seed: int = 7) -> np.ndarray:
    """Each 224x224 image centred in a 256x256 frame of noise: its centre crop is the image."""
    frames = np.random.default_rng(seed).integers(0, 256, (len(images), 256, 256, 3),
                                                  dtype=np.uint8)
    frames[:, 16:240, 16:240] = images
    return frames


def test_pipeline_reproduces_torch_logits(imported_dir, torchvision_fixture, encode_image,
                                          torchvision_forward, assert_logits_close):
    loaded = model_source.load(model_dir=imported_dir)
    settings = loaded.settings
    assert (settings.crop_size, settings.resize_size, settings.mean_mode) == (224, 256, "rgb")
    batch = tf.stack([preprocessing.preprocess_for_eval(
            tf.constant(encode_image(frame, "PNG")), stats=settings.stats, crop_size=224,
            resize_size=256, mean_mode="rgb") for frame in _framed(torchvision_fixture["images"])])
    logits = loaded.keras_model(batch, training=False).numpy()
    assert_logits_close(logits, torchvision_fixture["logits"])
    state = torch_pickle.load_state_dict(torchvision_fixture["pth"])
    assert_logits_close(logits, torchvision_forward(torchvision_fixture["images"], state))
    assert run_dir.read_config(imported_dir)["model"] == dict(
            name="alexnet", variant="one_tower", num_classes=1000, input_size=224,
            dropout_rate=0.5, use_lrn=True, width_multiplier=1.0,
            widths=list(torchvision_fixture["widths"]))


def test_reference_reproduces_torch(torchvision_fixture, torchvision_forward,
                                    assert_logits_close):
    """The NumPy reference is itself torchvision's net: it matches torch's logits."""
    state = torch_pickle.load_state_dict(torchvision_fixture["pth"])
    assert_logits_close(torchvision_forward(torchvision_fixture["images"], state),
                        torchvision_fixture["logits"], rtol=1e-5)


def test_legacy_format_reads_the_same_tensors(torchvision_fixture):
    zipped = torch_pickle.load_state_dict(torchvision_fixture["pth"])
    legacy = torch_pickle.load_state_dict(torchvision_fixture["legacy_pth"])
    assert list(zipped) == list(legacy) == [
            f"{module}.{part}" for module in ("features.0", "features.3", "features.6",
                                              "features.8", "features.10", "classifier.1",
                                              "classifier.4", "classifier.6")
            for part in ("weight", "bias")]
    for key in zipped:
        assert zipped[key].dtype == np.float32
        np.testing.assert_array_equal(zipped[key], legacy[key], err_msg=key)


def test_std_folded_into_conv1_and_mean_into_the_stats(torchvision_fixture):
    imported = importer.read("torchvision", torchvision_fixture["legacy_pth"])
    state = torch_pickle.load_state_dict(torchvision_fixture["legacy_pth"])
    conv1 = imported.weights.arrays["conv1"][0]
    np.testing.assert_allclose(conv1 * 255 * np.array([0.229, 0.224, 0.225])[None, :, None, None],
                               state["features.0.weight"], rtol=1e-6)
    np.testing.assert_allclose(imported.stats.mean_rgb, [123.675, 116.28, 103.53], rtol=1e-6)
    assert imported.stats.mean_image is None and imported.config.mean_mode == "rgb"


def test_a_layer_of_another_shape_is_named_with_both_names(torchvision_fixture):
    weights = torchvision.read_alexnet(torchvision_fixture["pth"])
    kernel, bias = weights.arrays["conv4"]
    weights.arrays["conv4"] = (kernel[:, :5], bias)
    with pytest.raises(errors.InvalidInputError,
                       match=r"alexnet_owt_tiny\.pth: conv4 \(features\.8\) weights: expected "
                             r"shape \(8, 10, 3, 3\) \(from the layers before it\), found "
                             r"\(8, 5, 3, 3\)"):
        mapping.check(weights)


def _rename_key(source: str, target: str, old: bytes, new: bytes) -> None:
    """Copies a zip .pth, replacing a key in data.pkl with one of the same length."""
    import zipfile
    with zipfile.ZipFile(source) as archive, zipfile.ZipFile(target, "w") as out:
        for item in archive.infolist():
            data = archive.read(item.filename)
            out.writestr(item, data.replace(old, new) if item.filename.endswith(".pkl")
                         else data)


@pytest.mark.parametrize("case, message", [
    ("truncated zip", r"tiny\.pth: a truncated or damaged zip archive"),
    ("truncated legacy", r"storage \S+ holds \d+ bytes, \d+ elements of 4 bytes expected "
                         r"\(truncated file\)"),
    ("caffe file", r"not a PyTorch file"),
    ("renamed key", r"not torchvision's AlexNet state dict: missing \['features\.3\.weight'\], "
                    r"unexpected \['features\.4\.weight'\]"),
])
def test_bad_files_are_one_line_errors(tmp_path, torchvision_fixture, case, message):
    path = str(tmp_path / "tiny.pth")
    source = torchvision_fixture["legacy_pth" if case == "truncated legacy" else "pth"]
    with open(source, "rb") as f:
        data = f.read()
    if case.startswith("truncated"):
        data = data[:len(data) // 2]
    elif case == "caffe file":
        data = b"\x0a\x07AlexNet" + data[:100]  # a NetParameter's name field, then noise
    if case == "renamed key":
        _rename_key(source, path, b"features.3.weight", b"features.4.weight")
    else:
        with open(path, "wb") as f:
            f.write(data)
    with pytest.raises(errors.InvalidInputError, match=message) as raised:
        importer.import_weights("torchvision", path, str(tmp_path / "run"))
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "run").exists()
