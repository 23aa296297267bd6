"""Caffe's bvlc_alexnet: reading a .caffemodel and a mean .binaryproto.

The net must be the one of BVLC's models/bvlc_alexnet (Krizhevsky et al.'s two-tower
net trained on one GPU): conv1 11x11 stride 4 on a 227x227 BGR image, ReLU, LRN, max
pool, conv2 5x5 pad 2 in 2 groups, ReLU, LRN, max pool, conv3 3x3 pad 1, conv4 and
conv5 3x3 pad 1 in 2 groups, max pool, fc6, fc7 (ReLU, dropout), fc8. Layers that do not
compute the logits (data, dropout, accuracy, loss, softmax) are skipped. Any other
structure (CaffeNet's pool-before-LRN order, other kernel sizes, padding or groups) is
an error naming the layer, because these weights would compute something else here.

Caffe's choices that the importer carries over (see importer.py):

  * conv1 reads B, G, R: its kernels' input channels are reversed for an RGB model;
  * LRN: alpha / n times the window sum, k = 1 by default, and a window over all 96
    (256) maps of the single-GPU net rather than within each tower;
  * the 227x227 input, cropped at the centre of a 256x256 image, minus the mean image
    (the mean file, 256x256 BGR, cropped at the same window) or the per-channel mean.
"""

import dataclasses
import math
from typing import Dict, List, Optional

from google.protobuf import message as protobuf_message
import numpy as np

from alexnet_tf import errors
from alexnet_tf.pretrained import caffe_proto
from alexnet_tf.pretrained import mapping

INPUT_SIZE = 227
# The per-channel mean of Caffe's ILSVRC-2012 mean image
# (caffe/python/caffe/imagenet/ilsvrc_2012_mean.npy averaged over pixels), B, G, R.
MEAN_BGR = (104.00698793, 116.66876762, 122.67891434)
# AlexNet's layers, in order, as Caffe types; layers with weights under their names.
STRUCTURE = (
    ("conv1", "Convolution"), (None, "ReLU"), ("norm1", "LRN"), ("pool1", "Pooling"),
    ("conv2", "Convolution"), (None, "ReLU"), ("norm2", "LRN"), ("pool2", "Pooling"),
    ("conv3", "Convolution"), (None, "ReLU"), ("conv4", "Convolution"), (None, "ReLU"),
    ("conv5", "Convolution"), (None, "ReLU"), ("pool5", "Pooling"),
    ("fc6", "InnerProduct"), (None, "ReLU"), ("fc7", "InnerProduct"), (None, "ReLU"),
    ("fc8", "InnerProduct"))
# Layer types that do not change the test-time logits.
SKIPPED_TYPES = frozenset({
    "Data", "ImageData", "WindowData", "MemoryData", "HDF5Data", "DummyData", "Input",
    "Dropout", "Accuracy", "Softmax", "SoftmaxWithLoss", "Split", "Silence"})
# (kernel, stride, pad, groups) of each convolution; the max pools are 3x3 stride 2.
CONVOLUTIONS = {"conv1": (11, 4, 0, 1), "conv2": (5, 1, 2, 2), "conv3": (3, 1, 1, 1),
                "conv4": (3, 1, 1, 2), "conv5": (3, 1, 1, 2)}
POOL_SIZE, POOL_STRIDE = 3, 2
# The LRN of the paper and of bvlc_alexnet: n = 5, alpha = 1e-4, beta = 0.75.
LRN_SIZE, LRN_ALPHA, LRN_BETA = 5, 1e-4, 0.75
TEST_PHASE = 1


@dataclasses.dataclass
class Layer:
    """One layer of a Caffe net, in either of Caffe's layer formats."""
    name: str
    type: str
    params: object  # the LayerParameter or V1LayerParameter message
    blobs: list  # BlobProto messages


@dataclasses.dataclass
class CaffeAlexNet:
    """What a bvlc_alexnet .caffemodel holds for the importer.

    Attributes:
      weights: the weights, conv1's input channels already in RGB order.
      lrn_k: LRN's k (both LRN layers have the same).
    """
    weights: mapping.SourceWeights
    lrn_k: float


def _parse(message_name: str, path: str, what: str):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise errors.MissingInputError(f"{path} does not exist") from None
    message = caffe_proto.messages()[message_name]()
    try:
        message.ParseFromString(data)
    except (protobuf_message.DecodeError, ValueError, RuntimeError) as error:
        raise errors.InvalidInputError(
                f"{path}: not a {what} (truncated, damaged or another format): "
                f"{errors.one_line(error)}") from None
    return message


def _in_test_phase(layer) -> bool:
    """Caffe's NetStateRule for the TEST phase (the phase rules only)."""
    if any(rule.HasField("phase") for rule in layer.include):
        return any(rule.phase == TEST_PHASE for rule in layer.include if rule.HasField("phase"))
    return not any(rule.HasField("phase") and rule.phase == TEST_PHASE
                   for rule in layer.exclude)


def read_layers(path: str) -> List[Layer]:
    """The layers of a .caffemodel (V1 `layers` or current `layer`), TEST phase.

    Raises:
      MissingInputError: no such file.
      InvalidInputError: not a NetParameter, or one without layers.
    """
    net = _parse("NetParameter", path, "Caffe model (caffe.NetParameter)")
    layers = [Layer(layer.name, layer.type, layer, list(layer.blobs)) for layer in net.layer]
    layers += [Layer(layer.name, caffe_proto.V1_LAYER_TYPES.get(layer.type,
                                                                f"V1 type {layer.type}"),
                     layer, list(layer.blobs)) for layer in net.layers]
    if net.layer and net.layers:
        raise errors.InvalidInputError(f"{path}: holds layers in both of Caffe's formats "
                                       "(`layer` and the older `layers`)")
    if not layers:
        raise errors.InvalidInputError(f"{path}: a Caffe model holds layers; this file has "
                                       "none (not a .caffemodel?)")
    return [layer for layer in layers if _in_test_phase(layer.params)]


def blob_array(blob, label: str, path: str) -> np.ndarray:
    """A BlobProto's values as float32 in its shape (`shape`, else num/channels/h/w).

    Raises:
      InvalidInputError: the value count does not match the shape.
    """
    if blob.HasField("shape"):
        shape = tuple(int(dim) for dim in blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    values = blob.double_data if len(blob.double_data) else blob.data
    count = math.prod(shape)
    if len(values) != count or min(shape, default=1) < 0:
        raise errors.InvalidInputError(f"{path}: {label}: shape {shape} needs {count} values, "
                                       f"the blob holds {len(values)} (truncated or damaged)")
    return np.asarray(values, np.float32).reshape(shape)


def _squeeze_leading(array: np.ndarray, ndim: int) -> np.ndarray:
    """Drops leading 1s down to `ndim` axes: legacy blobs are 4-D, fc weights (1, 1, out, in)."""
    while array.ndim > ndim and array.shape[0] == 1:
        array = array[0]
    return array


def _check_structure(layers: List[Layer], path: str) -> Dict[str, Layer]:
    """Checks the layer sequence against STRUCTURE; returns {conv1..fc8, norm1, norm2,
    pool1, pool2, pool5: layer}."""
    computing = [layer for layer in layers if layer.type not in SKIPPED_TYPES]
    named = {}
    previous = "the input"
    for index, (name, layer_type) in enumerate(STRUCTURE):
        if index >= len(computing):
            raise errors.InvalidInputError(f"{path}: the net ends after {previous}; AlexNet "
                                           f"continues with {name or layer_type}")
        layer = computing[index]
        if layer.type != layer_type:
            raise errors.InvalidInputError(
                    f"{path}: layer {layer.name!r} ({layer.type}) follows {previous} where "
                    f"AlexNet (bvlc_alexnet) has {layer_type}{f' {name}' if name else ''}")
        if name:
            named[name] = layer
        previous = repr(layer.name)
    if len(computing) > len(STRUCTURE):
        extra = computing[len(STRUCTURE)]
        raise errors.InvalidInputError(f"{path}: layer {extra.name!r} ({extra.type}) follows "
                                       "fc8; AlexNet ends there")
    return named


def _one(values, default: int) -> int:
    values = list(values)
    if len(set(values)) > 1:
        return -1  # Differs per axis: never AlexNet's.
    return int(values[0]) if values else default


def _check_params(named: Dict[str, Layer], relus: List[Layer], path: str) -> float:
    """Checks kernel sizes, strides, padding, groups, pooling and LRN; returns LRN's k."""
    for name, (kernel, stride, pad, groups) in CONVOLUTIONS.items():
        conv = named[name].params.convolution_param
        found = (_one(list(conv.kernel_size) + [v for v in (conv.kernel_h, conv.kernel_w) if v],
                      0),
                 _one(list(conv.stride) + [v for v in (conv.stride_h, conv.stride_w) if v], 1),
                 _one(list(conv.pad) + [v for v in (conv.pad_h, conv.pad_w) if v], 0),
                 conv.group)
        if found != (kernel, stride, pad, groups) or _one(conv.dilation, 1) != 1:
            raise errors.InvalidInputError(
                    f"{path}: layer {named[name].name!r}: kernel {found[0]}, stride {found[1]}, "
                    f"pad {found[2]}, group {found[3]}; AlexNet's {name} has kernel {kernel}, "
                    f"stride {stride}, pad {pad}, group {groups}")
    for name in ("pool1", "pool2", "pool5"):
        pool = named[name].params.pooling_param
        found = (pool.pool, _one(list(pool.kernel_size) + [v for v in (pool.kernel_h,
                                                                         pool.kernel_w) if v], 0),
                 _one(list(pool.stride) + [v for v in (pool.stride_h, pool.stride_w) if v], 1),
                 _one(list(pool.pad) + [v for v in (pool.pad_h, pool.pad_w) if v], 0))
        if found != (caffe_proto.POOL_MAX, POOL_SIZE, POOL_STRIDE, 0) or pool.global_pooling:
            raise errors.InvalidInputError(
                    f"{path}: layer {named[name].name!r}: pooling method {found[0]}, kernel "
                    f"{found[1]}, stride {found[2]}, pad {found[3]}; AlexNet's {name} is MAX "
                    f"(0), kernel {POOL_SIZE}, stride {POOL_STRIDE}, pad 0")
    ks = []
    for name in ("norm1", "norm2"):
        lrn = named[name].params.lrn_param
        if (lrn.local_size != LRN_SIZE or not math.isclose(lrn.alpha, LRN_ALPHA, rel_tol=1e-6)
                or not math.isclose(lrn.beta, LRN_BETA, rel_tol=1e-6)
                or lrn.norm_region != caffe_proto.ACROSS_CHANNELS or not lrn.k > 0):
            raise errors.InvalidInputError(
                    f"{path}: layer {named[name].name!r}: LRN local_size {lrn.local_size}, "
                    f"alpha {lrn.alpha:g}, beta {lrn.beta:g}, k {lrn.k:g}, norm_region "
                    f"{lrn.norm_region}; AlexNet's is local_size {LRN_SIZE}, alpha "
                    f"{LRN_ALPHA:g}, beta {LRN_BETA:g}, across channels (0), k > 0")
        ks.append(float(np.float32(lrn.k)))
    if ks[0] != ks[1]:
        raise errors.InvalidInputError(f"{path}: norm1 has k={ks[0]:g} and norm2 k={ks[1]:g}; "
                                       "the model has one LRN k")
    for relu in relus:
        if relu.params.relu_param.negative_slope != 0:
            raise errors.InvalidInputError(
                    f"{path}: layer {relu.name!r}: a leaky ReLU (negative_slope "
                    f"{relu.params.relu_param.negative_slope:g}); AlexNet's ReLU has none")
    for name in mapping.DENSE_LAYERS:
        if named[name].params.inner_product_param.axis != 1:
            raise errors.InvalidInputError(f"{path}: layer {named[name].name!r}: axis "
                                           f"{named[name].params.inner_product_param.axis}; "
                                           "AlexNet's fully-connected layers use axis 1")
    return ks[0]


def _layer_arrays(layer: Layer, name: str, path: str):
    """(weights, bias) of a conv (4-D) or fully-connected (2-D) layer."""
    if len(layer.blobs) != 2:
        raise errors.InvalidInputError(f"{path}: layer {layer.name!r} ({name}) has "
                                       f"{len(layer.blobs)} blobs; expected 2 (weights, bias)")
    ndim = 4 if name in mapping.CONV_LAYERS else 2
    weights = _squeeze_leading(blob_array(layer.blobs[0], f"{layer.name} weights", path), ndim)
    bias = _squeeze_leading(blob_array(layer.blobs[1], f"{layer.name} bias", path), 1)
    if ndim == 2 and layer.params.inner_product_param.transpose:
        weights = weights.T  # Stored (in, out).
    return weights, bias


def read_alexnet(path: str) -> CaffeAlexNet:
    """Reads a bvlc_alexnet .caffemodel (V1 or current layer format).

    Returns:
      CaffeAlexNet: the weights in NCHW layout with conv1's channels in RGB order, and
      LRN's k. The shapes are checked by `mapping.check` (the importer calls it).

    Raises:
      MissingInputError: no such file.
      InvalidInputError: not a Caffe model, or a net other than AlexNet (the message
        names the layer and what AlexNet has there).
    """
    layers = read_layers(path)
    named = _check_structure(layers, path)
    computing = [layer for layer in layers if layer.type not in SKIPPED_TYPES]
    lrn_k = _check_params(named, [layer for layer in computing if layer.type == "ReLU"], path)
    arrays = {name: _layer_arrays(named[name], name, path) for name in mapping.LAYERS}
    conv1, bias1 = arrays["conv1"]
    if conv1.ndim == 4 and conv1.shape[1] == mapping.IMAGE_CHANNELS:
        arrays["conv1"] = (np.ascontiguousarray(conv1[:, ::-1]), bias1)  # BGR -> RGB inputs
    weights = mapping.SourceWeights(
            arrays=arrays, groups={name: CONVOLUTIONS[name][3] for name in CONVOLUTIONS},
            source_names={name: named[name].name for name in mapping.LAYERS}, path=path)
    return CaffeAlexNet(weights=weights, lrn_k=lrn_k)


def read_mean(path: str) -> np.ndarray:
    """Caffe's mean image (a BlobProto .binaryproto, BGR, (1, 3, H, W)) as RGB (H, W, 3).

    Raises:
      MissingInputError: no such file.
      InvalidInputError: not a BlobProto of 3 channels, or not square and >= 227 pixels.
    """
    blob = _parse("BlobProto", path, "Caffe mean file (caffe.BlobProto .binaryproto)")
    mean = _squeeze_leading(blob_array(blob, "mean", path), 3)
    if mean.ndim != 3 or mean.shape[0] != 3 or mean.shape[1] != mean.shape[2] \
            or mean.shape[1] < INPUT_SIZE:
        raise errors.InvalidInputError(
                f"{path}: a mean image of shape {tuple(mean.shape)}; expected (1, 3, S, S) BGR "
                f"with S >= {INPUT_SIZE} (Caffe's is 256x256)")
    return np.ascontiguousarray(mean[::-1].transpose(1, 2, 0))  # (H, W, RGB)


def mean_rgb(mean_image: Optional[np.ndarray]) -> np.ndarray:
    """The per-channel mean (R, G, B): of the mean image, else Caffe's ILSVRC-2012 values."""
    if mean_image is not None:
        return mean_image.reshape(-1, 3).mean(axis=0, dtype=np.float64).astype(np.float32)
    return np.asarray(MEAN_BGR[::-1], np.float32)
