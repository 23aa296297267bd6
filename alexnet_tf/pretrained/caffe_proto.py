"""The part of Caffe's protocol buffers (caffe.proto) a .caffemodel's AlexNet needs.

A .caffemodel is a serialized `caffe.NetParameter`; a mean file (.binaryproto) is a
`caffe.BlobProto`. The messages below declare only the fields this package reads, with
Caffe's field numbers and defaults, built at run time with protobuf's descriptor API:
no Caffe install and no protoc. Fields not declared are skipped by the parser (kept
as unknown fields), so files written by any Caffe version parse.

Both layer formats are declared: `NetParameter.layer` (LayerParameter, string types,
Caffe since 2015) and the older `NetParameter.layers` (V1LayerParameter, an enum type,
as in bvlc_alexnet.caffemodel). Enums are declared as int32 (the same wire encoding);
`V1_LAYER_TYPES` names the V1 values used here. Fields that were once `optional` and
later `repeated` (a convolution's pad, kernel_size, stride) are declared repeated,
which reads both encodings.

  messages()["NetParameter"]().ParseFromString(data)
"""

import functools

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory

PACKAGE = "caffe"
# V1LayerParameter.LayerType values (caffe.proto) -> LayerParameter's type strings.
V1_LAYER_TYPES = {
    1: "Accuracy", 4: "Convolution", 5: "Data", 6: "Dropout", 12: "ImageData",
    14: "InnerProduct", 15: "LRN", 17: "Pooling", 18: "ReLU", 20: "Softmax",
    21: "SoftmaxWithLoss", 22: "Split", 24: "WindowData", 29: "MemoryData", 36: "Silence",
}
V1_TYPE_NUMBERS = {name: number for number, name in V1_LAYER_TYPES.items()}
# PoolingParameter.PoolMethod and LRNParameter.NormRegion values.
POOL_MAX = 0
ACROSS_CHANNELS = 0

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL, _REPEATED = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_TYPES = {"int32": _F.TYPE_INT32, "int64": _F.TYPE_INT64, "uint32": _F.TYPE_UINT32,
          "float": _F.TYPE_FLOAT, "double": _F.TYPE_DOUBLE, "bool": _F.TYPE_BOOL,
          "string": _F.TYPE_STRING}

# message -> [(field name, number, type or message name, repeated, default)]
_MESSAGES = {
    "BlobShape": [("dim", 1, "int64", True, None)],
    "BlobProto": [
        ("num", 1, "int32", False, "0"), ("channels", 2, "int32", False, "0"),
        ("height", 3, "int32", False, "0"), ("width", 4, "int32", False, "0"),
        ("data", 5, "float", True, None), ("shape", 7, "BlobShape", False, None),
        ("double_data", 8, "double", True, None)],
    "NetStateRule": [("phase", 1, "int32", False, None)],
    "ConvolutionParameter": [
        ("num_output", 1, "uint32", False, None), ("bias_term", 2, "bool", False, "true"),
        ("pad", 3, "uint32", True, None), ("kernel_size", 4, "uint32", True, None),
        ("group", 5, "uint32", False, "1"), ("stride", 6, "uint32", True, None),
        ("pad_h", 9, "uint32", False, "0"), ("pad_w", 10, "uint32", False, "0"),
        ("kernel_h", 11, "uint32", False, None), ("kernel_w", 12, "uint32", False, None),
        ("stride_h", 13, "uint32", False, None), ("stride_w", 14, "uint32", False, None),
        ("dilation", 18, "uint32", True, None)],
    "PoolingParameter": [
        ("pool", 1, "int32", False, "0"), ("kernel_size", 2, "uint32", True, None),
        ("stride", 3, "uint32", True, None), ("pad", 4, "uint32", True, None),
        ("kernel_h", 5, "uint32", False, None), ("kernel_w", 6, "uint32", False, None),
        ("stride_h", 7, "uint32", False, None), ("stride_w", 8, "uint32", False, None),
        ("pad_h", 9, "uint32", False, "0"), ("pad_w", 10, "uint32", False, "0"),
        ("global_pooling", 12, "bool", False, "false")],
    "LRNParameter": [
        ("local_size", 1, "uint32", False, "5"), ("alpha", 2, "float", False, "1"),
        ("beta", 3, "float", False, "0.75"), ("norm_region", 4, "int32", False, "0"),
        ("k", 5, "float", False, "1")],
    "InnerProductParameter": [
        ("num_output", 1, "uint32", False, None), ("bias_term", 2, "bool", False, "true"),
        ("axis", 5, "int32", False, "1"), ("transpose", 6, "bool", False, "false")],
    "ReLUParameter": [("negative_slope", 1, "float", False, "0")],
    "LayerParameter": [
        ("name", 1, "string", False, None), ("type", 2, "string", False, None),
        ("bottom", 3, "string", True, None), ("top", 4, "string", True, None),
        ("blobs", 7, "BlobProto", True, None), ("include", 8, "NetStateRule", True, None),
        ("exclude", 9, "NetStateRule", True, None),
        ("convolution_param", 106, "ConvolutionParameter", False, None),
        ("inner_product_param", 117, "InnerProductParameter", False, None),
        ("lrn_param", 118, "LRNParameter", False, None),
        ("pooling_param", 121, "PoolingParameter", False, None),
        ("relu_param", 123, "ReLUParameter", False, None)],
    "V1LayerParameter": [
        ("bottom", 2, "string", True, None), ("top", 3, "string", True, None),
        ("name", 4, "string", False, None), ("type", 5, "int32", False, None),
        ("blobs", 6, "BlobProto", True, None),
        ("convolution_param", 10, "ConvolutionParameter", False, None),
        ("inner_product_param", 17, "InnerProductParameter", False, None),
        ("lrn_param", 18, "LRNParameter", False, None),
        ("pooling_param", 19, "PoolingParameter", False, None),
        ("relu_param", 30, "ReLUParameter", False, None),
        ("include", 32, "NetStateRule", True, None), ("exclude", 33, "NetStateRule", True, None)],
    "NetParameter": [
        ("name", 1, "string", False, None), ("layers", 2, "V1LayerParameter", True, None),
        ("layer", 100, "LayerParameter", True, None)],
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="alexnet_tf_caffe_subset.proto",
                                               package=PACKAGE, syntax="proto2")
    for message_name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=message_name)
        for name, number, kind, repeated, default in fields:
            field = message.field.add(name=name, number=number,
                                      label=_REPEATED if repeated else _OPTIONAL)
            if kind in _TYPES:
                field.type = _TYPES[kind]
            else:
                field.type, field.type_name = _F.TYPE_MESSAGE, f".{PACKAGE}.{kind}"
            if default is not None:
                field.default_value = default
            if repeated and kind in _TYPES and kind != "string":
                field.options.packed = kind in ("float", "double", "int64")
    return proto


@functools.lru_cache(maxsize=None)
def messages() -> dict:
    """{message name: generated message class} for every message declared above.

    The classes live in a descriptor pool of their own, so they never clash with a
    `caffe_pb2` module imported in the same process.
    """
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_file_descriptor())
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
            for name in _MESSAGES}
