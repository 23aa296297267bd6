"""Weight-file fixtures and NumPy reference forward passes for tests/pretrained.

Caffe fixtures are written here with the importer's own protobuf messages, in both of
Caffe's layer formats: the full bvlc_alexnet layer list (data, ReLU, LRN, pooling,
dropout, accuracy and loss layers included) with small widths and random He-scaled
weights. torchvision fixtures are checked in (tests/pretrained/data, written by
tools/make_torchvision_fixture.py with torch).

The references compute each framework's net from its own description, in NCHW and
float64, independently of the importer and of Keras:

  caffe_forward        BGR input minus the mean, grouped convolutions, ReLU, LRN across
                       all channels (alpha / n, k), max pools with Caffe's ceil rounding,
                       inner products on the (C, H, W) flattening
  torchvision_forward  (x / 255 - mean) / std, convolutions padded 2 / 2 / 1, max pools
                       with floor rounding, adaptive average pool to 6x6, linear layers
"""

import importlib.util
import math
import os

import numpy as np
import pytest

from alexnet_tf.pretrained import caffe_proto

DATA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
# Caffe fixture widths conv1..conv5, fc6, fc7 (even: the towers split them).
CAFFE_WIDTHS = (8, 12, 16, 12, 8, 16, 16)
NUM_CLASSES = 1000
# (kernel, stride, pad, group) as bvlc_alexnet's train_val.prototxt.
CAFFE_CONVS = {"conv1": (11, 4, 0, 1), "conv2": (5, 1, 2, 2), "conv3": (3, 1, 1, 1),
               "conv4": (3, 1, 1, 2), "conv5": (3, 1, 1, 2)}
TORCH_PADDING = {"conv1": (4, 2), "conv2": (1, 2), "conv3": (1, 1), "conv4": (1, 1),
                 "conv5": (1, 1)}  # (stride, pad)
TORCH_MEAN = np.array([0.485, 0.456, 0.406])
TORCH_STD = np.array([0.229, 0.224, 0.225])


# ------------------------------------------------------------------------------- references

def _conv(x, weights, bias, stride, pad, groups):
    """x (N, C, H, W) * weights (O, C/groups, kh, kw), zero padding, grouped."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    kh, kw = weights.shape[2:]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
    windows = windows[:, :, ::stride, ::stride]  # (N, C, Ho, Wo, kh, kw)
    outputs = []
    for inputs, kernels in zip(np.split(windows, groups, axis=1),
                               np.split(weights, groups, axis=0)):
        outputs.append(np.einsum("nchwij,ocij->nohw", inputs, kernels))
    return np.concatenate(outputs, axis=1) + bias[None, :, None, None]


def _max_pool(x, size, stride, ceil):
    """3x3 max pool; Caffe rounds the output size up (windows clipped), PyTorch down."""
    height = x.shape[2]
    rounding = math.ceil if ceil else math.floor
    out = int(rounding((height - size) / stride)) + 1
    result = np.empty(x.shape[:2] + (out, out))
    for i in range(out):
        for j in range(out):
            result[:, :, i, j] = x[:, :, i * stride:min(i * stride + size, height),
                                   j * stride:min(j * stride + size, height)].max(axis=(2, 3))
    return result


def _caffe_lrn(x, size, alpha, beta, k):
    """Caffe's across-channel LRN: x / (k + alpha / size * sum of squares)^beta."""
    squares = np.pad(x ** 2, ((0, 0), (size // 2, size // 2), (0, 0), (0, 0)))
    window = sum(squares[:, offset:offset + x.shape[1]] for offset in range(size))
    return x / (k + alpha / size * window) ** beta


def _adaptive_avg_pool(x, out):
    """PyTorch's AdaptiveAvgPool2d: window i covers [floor(i H / out), ceil((i + 1) H / out))."""
    height = x.shape[2]
    result = np.empty(x.shape[:2] + (out, out))
    for i in range(out):
        rows = slice(i * height // out, -(-(i + 1) * height // out))
        for j in range(out):
            cols = slice(j * height // out, -(-(j + 1) * height // out))
            result[:, :, i, j] = x[:, :, rows, cols].mean(axis=(2, 3))
    return result


def _relu(x):
    return np.maximum(x, 0.0)


@pytest.fixture(scope="session")
def caffe_forward():
    """caffe_forward(images_rgb, arrays, mean_bgr, lrn_k=1.0): Caffe's logits (N, 1000).

    images_rgb: uint8 (N, S, S, 3) with S the mean's side (256) or 227; mean_bgr: the
    (3, S, S) mean image or a per-channel (3,) mean, BGR; the 227 centre crop is taken
    from image and mean alike. arrays: {layer: (weights, bias)} in Caffe's layout.
    """
    def forward(images_rgb, arrays, mean_bgr, lrn_k=1.0):
        x = images_rgb[..., ::-1].transpose(0, 3, 1, 2).astype(np.float64)  # BGR, NCHW
        mean = np.asarray(mean_bgr, np.float64)
        x = x - (mean[None] if mean.ndim == 3 else mean[None, :, None, None])
        offset = (x.shape[2] - 227) // 2
        x = x[:, :, offset:offset + 227, offset:offset + 227]
        for name in ("conv1", "conv2", "conv3", "conv4", "conv5"):
            kernel, stride, pad, group = CAFFE_CONVS[name]
            weights, bias = (np.asarray(a, np.float64) for a in arrays[name])
            x = _relu(_conv(x, weights, bias, stride, pad, group))
            if name in ("conv1", "conv2"):
                x = _max_pool(_caffe_lrn(x, 5, 1e-4, 0.75, lrn_k), 3, 2, ceil=True)
        x = _max_pool(x, 3, 2, ceil=True).reshape(len(x), -1)  # (N, C * 6 * 6), C-major
        for name in ("fc6", "fc7", "fc8"):
            weights, bias = (np.asarray(a, np.float64) for a in arrays[name])
            x = x @ weights.T + bias
            x = _relu(x) if name != "fc8" else x
        return x
    return forward


@pytest.fixture(scope="session")
def torchvision_forward():
    """torchvision_forward(images_rgb, state): torchvision AlexNet's logits (N, classes).

    images_rgb: uint8 (N, 224, 224, 3); state: {torchvision key: array}.
    """
    def forward(images_rgb, state):
        x = images_rgb.transpose(0, 3, 1, 2).astype(np.float64) / 255.0
        x = (x - TORCH_MEAN[None, :, None, None]) / TORCH_STD[None, :, None, None]
        modules = {"conv1": "features.0", "conv2": "features.3", "conv3": "features.6",
                   "conv4": "features.8", "conv5": "features.10"}
        for name, module in modules.items():
            stride, pad = TORCH_PADDING[name]
            x = _relu(_conv(x, np.asarray(state[f"{module}.weight"], np.float64),
                            np.asarray(state[f"{module}.bias"], np.float64), stride, pad, 1))
            if name in ("conv1", "conv2", "conv5"):
                x = _max_pool(x, 3, 2, ceil=False)
        x = _adaptive_avg_pool(x, 6).reshape(len(x), -1)
        for index, module in enumerate(("classifier.1", "classifier.4", "classifier.6")):
            x = x @ np.asarray(state[f"{module}.weight"], np.float64).T + state[f"{module}.bias"]
            x = _relu(x) if index < 2 else x
        return x
    return forward


@pytest.fixture(scope="session")
def assert_logits_close():
    """assert_logits_close(got, expected, rtol=1e-4): |got - expected| <= rtol * max|expected|
    everywhere (a relative tolerance on the logits' scale); prints the ratio (pytest -s
    shows it: docs/pretrained.md's parity figures) and returns it."""
    def check(got, expected, rtol=1e-4) -> float:
        got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
        assert got.shape == expected.shape
        ratio = float(np.abs(got - expected).max() / np.abs(expected).max())
        print(f"\nparity: max |difference| / max |logit| = {ratio:.1e} "
              f"(logits up to {np.abs(expected).max():.3g})")
        assert ratio <= rtol, f"max |difference| / max |logit| = {ratio:.2e} > {rtol:g}"
        return ratio
    return check


# ------------------------------------------------------------------------------- Caffe files

@pytest.fixture(scope="session")
def caffe_arrays():
    """caffe_arrays(seed=0, widths=CAFFE_WIDTHS): {layer: (weights, bias)} in Caffe's
    layout (conv1 reads BGR), He-scaled: every layer keeps its input's scale."""
    def make(seed: int = 0, widths=CAFFE_WIDTHS) -> dict:
        rng = np.random.default_rng(seed)
        inputs = [3] + list(widths[:4])
        shapes = {}
        for index, (name, (kernel, _, _, group)) in enumerate(CAFFE_CONVS.items()):
            shapes[name] = (widths[index], inputs[index] // group, kernel, kernel)
        shapes.update(fc6=(widths[5], widths[4] * 36), fc7=(widths[6], widths[5]),
                      fc8=(NUM_CLASSES, widths[6]))
        arrays = {}
        for name, shape in shapes.items():
            fan_in = int(np.prod(shape[1:]))
            # On 0..255-scale inputs conv1's maps are ~100, where Caffe's LRN (alpha / n
            # = 2e-5) divides by about 2: the normalisation matters in these tests.
            arrays[name] = (rng.normal(0, np.sqrt(2.0 / fan_in), shape).astype(np.float32),
                            rng.uniform(-0.1, 0.1, shape[0]).astype(np.float32))
        return arrays
    return make


def _set_blob(blob, array, legacy: bool):
    array = np.asarray(array, np.float32)
    if legacy:  # V1 files: 4-D num/channels/height/width, leading 1s.
        dims = (1,) * (4 - array.ndim) + array.shape
        blob.num, blob.channels, blob.height, blob.width = dims
    else:
        blob.shape.dim.extend(array.shape)
    blob.data.extend(array.reshape(-1).tolist())


def _caffe_layer_list(lrn_k: float, caffenet_order: bool):
    """bvlc_alexnet's train_val layers: (name, type, params) in order."""
    layers = [("data", "Data", {"phase": 0}), ("data", "Data", {"phase": 1})]
    for index, name in enumerate(("conv1", "conv2", "conv3", "conv4", "conv5")):
        layers += [(name, "Convolution", {}), (f"relu{index + 1}", "ReLU", {})]
        if name in ("conv1", "conv2"):
            norm = (f"norm{index + 1}", "LRN", {"k": lrn_k})
            pool = (f"pool{index + 1}", "Pooling", {})
            layers += [pool, norm] if caffenet_order else [norm, pool]
    layers.append(("pool5", "Pooling", {}))
    for name in ("fc6", "fc7"):
        layers += [(name, "InnerProduct", {}), (f"relu{name[2:]}", "ReLU", {}),
                   (f"drop{name[2:]}", "Dropout", {})]
    layers += [("fc8", "InnerProduct", {}), ("accuracy", "Accuracy", {"phase": 1}),
               ("loss", "SoftmaxWithLoss", {})]
    return layers


@pytest.fixture(scope="session")
def write_caffemodel():
    """write_caffemodel(path, arrays, layer_format="v1" | "v2", lrn_k=1.0, **changes):
    writes a bvlc_alexnet .caffemodel holding `arrays` (Caffe's layout); returns the path.

    changes: caffenet_order=True puts pooling before LRN; conv_params={layer: dict of
    ConvolutionParameter fields} overrides a convolution's settings.
    """
    def write(path, arrays, layer_format: str = "v1", lrn_k: float = 1.0,
              caffenet_order: bool = False, conv_params=None) -> str:
        messages = caffe_proto.messages()
        net = messages["NetParameter"](name="AlexNet")
        legacy = layer_format == "v1"
        previous = "data"
        for name, layer_type, options in _caffe_layer_list(lrn_k, caffenet_order):
            if legacy:
                layer = net.layers.add(name=name, type=caffe_proto.V1_TYPE_NUMBERS[layer_type])
            else:
                layer = net.layer.add(name=name, type=layer_type)
            if "phase" in options:
                layer.include.add(phase=options["phase"])
            if layer_type not in ("Data", "ReLU", "Dropout"):
                layer.bottom.append(previous)
            if layer_type in ("ReLU", "Dropout"):
                layer.bottom.append(previous)
                layer.top.append(previous)
            elif layer_type not in ("Accuracy", "SoftmaxWithLoss"):
                layer.top.append(name)
                previous = name
            if layer_type == "Convolution":
                kernel, stride, pad, group = CAFFE_CONVS[name]
                params = layer.convolution_param
                params.num_output = arrays[name][0].shape[0]
                params.kernel_size.append(kernel)
                if stride != 1:
                    params.stride.append(stride)
                if pad:
                    params.pad.append(pad)
                if group != 1:
                    params.group = group
                for field, value in ((conv_params or {}).get(name) or {}).items():
                    if isinstance(value, list):
                        del getattr(params, field)[:]
                        getattr(params, field).extend(value)
                    else:
                        setattr(params, field, value)
            elif layer_type == "InnerProduct":
                layer.inner_product_param.num_output = arrays[name][0].shape[0]
            elif layer_type == "LRN":
                layer.lrn_param.local_size = 5
                layer.lrn_param.alpha = 1e-4
                layer.lrn_param.beta = 0.75
                if options["k"] != 1.0:
                    layer.lrn_param.k = options["k"]
            elif layer_type == "Pooling":
                layer.pooling_param.kernel_size.append(3)
                layer.pooling_param.stride.append(2)
            if name in arrays:
                for array in arrays[name]:
                    _set_blob(layer.blobs.add(), array, legacy)
        with open(path, "wb") as f:
            f.write(net.SerializeToString())
        return str(path)
    return write


@pytest.fixture(scope="session")
def write_mean():
    """write_mean(path, mean_bgr (3, S, S)): Caffe's mean .binaryproto (num=1, legacy dims)."""
    def write(path, mean_bgr) -> str:
        blob = caffe_proto.messages()["BlobProto"]()
        _set_blob(blob, np.asarray(mean_bgr)[None], legacy=True)
        with open(path, "wb") as f:
            f.write(blob.SerializeToString())
        return str(path)
    return write


# ------------------------------------------------------------------------------- torchvision

@pytest.fixture(scope="session")
def torchvision_fixture(repo_root):
    """The checked-in torchvision fixture: {"pth", "legacy_pth", "logits" (torch's),
    "images" (uint8 (2, 224, 224, 3), regenerated by the tool that wrote it)}."""
    spec = importlib.util.spec_from_file_location(
            "make_torchvision_fixture", os.path.join(repo_root, "tools",
                                                     "make_torchvision_fixture.py"))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)  # Imports numpy only; torch is needed to write, not read.
    saved = np.load(os.path.join(DATA_DIR, "alexnet_owt_tiny_logits.npz"))
    images = tool.fixture_images()
    np.testing.assert_array_equal(tool.images_checksum(images), saved["images_checksum"],
                                  err_msg="NumPy no longer draws the fixture's images")
    return dict(pth=os.path.join(DATA_DIR, "alexnet_owt_tiny.pth"),
                legacy_pth=os.path.join(DATA_DIR, "alexnet_owt_tiny_legacy.pth"),
                logits=saved["logits"], images=images, widths=tuple(saved["widths"]))
