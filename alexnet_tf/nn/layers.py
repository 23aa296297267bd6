"""Keras layers of the AlexNet paper that Keras does not ship.

Krizhevsky, Sutskever and Hinton, "ImageNet Classification with Deep Convolutional
Neural Networks", NIPS 2012:

  * `LocalResponseNormalization` (section 3.3) lives in `alexnet_tf/nn/lrn.py`.
  * `GroupedConv2D` (section 3.2, figure 2): the two-tower convolution whose groups
    only see their own tower's channels, optionally one device per group.
  * `GroupedMaxPooling2D`: max pooling that keeps each tower on its own device.
  * `FullyConnected`: `keras.layers.Dense` with a faster input gradient on CPU.
"""

from typing import Optional, Sequence

import keras
from keras import ops
import tensorflow as tf

from alexnet_tf.nn.layer_args import PACKAGE
from alexnet_tf.nn.layer_args import check_devices
from alexnet_tf.nn.layer_args import positive_int

# Re-exported so `import alexnet_tf.nn.layers` registers every layer (for keras.models.load_model).
from alexnet_tf.nn.lrn import LRN_CONVENTIONS  # noqa: F401
from alexnet_tf.nn.lrn import LocalResponseNormalization  # noqa: F401


def _group_initializer(initializer, group: int):
    """A separate initializer for each group, so the towers are independent draws.

    Keras fixes an unseeded random initializer's seed when it is constructed, so one
    instance shared by two convolutions gives both the same kernel. Each group gets a copy
    rebuilt from the config (a fresh seed), or the user's integer seed plus the group index.
    """
    config = keras.initializers.serialize(keras.initializers.get(initializer))
    inner = config.get("config") if isinstance(config, dict) else None
    if isinstance(inner, dict) and isinstance(inner.get("seed"), int):
        inner["seed"] += group
    return keras.initializers.deserialize(config)


@keras.saving.register_keras_serializable(package=PACKAGE)
class GroupedConv2D(keras.layers.Layer):
    """A 2D convolution split into groups (the AlexNet paper's towers, section 3.2).

    Group g convolves its own contiguous slice of C_in/groups input channels with
    filters/groups kernels; the group outputs are concatenated along the channel axis. It is
    built from one ordinary convolution per group rather than TensorFlow's fused grouped
    convolution, which has no CPU kernel without XLA and is rejected by TF Serving.

    With `split_input=False` every group sees all input channels: the paper's first layer,
    where both towers convolved the same image with 48 kernels each. Without `devices` such
    a layer runs as one convolution with the group kernels concatenated.

    With `devices=["/GPU:0", "/GPU:1"]` each group's variables are created and its
    convolution runs on its own device, the paper's model parallelism.

    Args:
      filters: total number of output channels, divisible by `groups`.
      kernel_size: int or (height, width).
      groups: number of groups (towers).
      strides: int or (height, width).
      padding: "valid" or "same".
      activation: activation applied to each group's output (e.g. "relu").
      use_bias: whether each group has a bias.
      kernel_initializer, bias_initializer, kernel_regularizer, bias_regularizer: as in
        `keras.layers.Conv2D`, used by every group.
      devices: optional list of `groups` device names.
      split_input: True (default) for grouped input channels; False to give every group
        the whole input.
      data_format: "channels_last" or "channels_first".
      **kwargs: passed to `keras.layers.Layer`.

    Raises:
      ValueError: `filters` not divisible by `groups`, bad `devices`, or (at build) input
        channels not divisible by `groups`.
    """

    def __init__(self, filters: int, kernel_size, groups: int = 2, strides=1, padding="valid",
                 activation=None, use_bias: bool = True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 devices: Optional[Sequence[str]] = None, split_input: bool = True,
                 data_format: str = "channels_last", **kwargs):
        super().__init__(**kwargs)
        name = f"GroupedConv2D({self.name})"
        self.filters = positive_int(filters, "filters", name)
        self.groups = positive_int(groups, "groups", name)
        if self.filters % self.groups:
            raise ValueError(f"{name}: filters={filters!r} must be divisible by "
                             f"groups={groups!r}")
        if data_format not in ("channels_last", "channels_first"):
            raise ValueError(f"{name}: data_format must be 'channels_last' or 'channels_first',"
                             f" received {data_format!r}")
        self.devices = check_devices(devices, self.groups, name)
        self.split_input = bool(split_input)
        self.data_format = data_format
        self._channel_axis = -1 if data_format == "channels_last" else 1
        self.group_convs = [
            keras.layers.Conv2D(
                self.filters // self.groups, kernel_size, strides=strides, padding=padding,
                activation=activation, use_bias=use_bias, data_format=data_format,
                kernel_initializer=_group_initializer(kernel_initializer, group),
                bias_initializer=_group_initializer(bias_initializer, group),
                kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                dtype=self.dtype_policy, name=f"group{group}")
            for group in range(self.groups)]
        # Keras' TrackedList is invisible to tf.train.Checkpoint and SavedModel (keras 3.15):
        # an attribute per group makes each convolution's variables a tracked child.
        for group, conv in enumerate(self.group_convs):
            setattr(self, f"group{group}_conv", conv)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def _group_input_shape(self, input_shape):
        shape = list(input_shape)
        if self.split_input:
            shape[self._channel_axis] //= self.groups
        return tuple(shape)

    def build(self, input_shape):
        num_channels = input_shape[self._channel_axis]
        if num_channels is None or (self.split_input and num_channels % self.groups):
            raise ValueError(f"GroupedConv2D({self.name}): input channels must be known and "
                             f"divisible by groups={self.groups}, received input shape "
                             f"{tuple(input_shape)}")
        self._group_channels = num_channels // self.groups if self.split_input else num_channels
        group_shape = self._group_input_shape(input_shape)
        for group, conv in enumerate(self.group_convs):
            if self.devices:
                with tf.device(self.devices[group]):
                    conv.build(group_shape)
            else:
                conv.build(group_shape)

    def _group_slice(self, inputs, group):
        if not self.split_input:
            return inputs
        start = group * self._group_channels
        if self._channel_axis == -1:
            return inputs[..., start:start + self._group_channels]
        return inputs[:, start:start + self._group_channels]

    def call(self, inputs):
        if not self.split_input and not self.devices:
            return self._fused_call(inputs)
        if self.devices:
            outputs = []
            for group, conv in enumerate(self.group_convs):
                with tf.device(self.devices[group]):
                    outputs.append(conv(self._group_slice(inputs, group)))
        else:
            # One split rather than a slice per group: its gradient is a single concat,
            # where slices' gradients are zero-padded full-size tensors summed together.
            parts = ops.split(inputs, self.groups, axis=self._channel_axis)
            outputs = [conv(part) for conv, part in zip(self.group_convs, parts)]
        return ops.concatenate(outputs, axis=self._channel_axis)

    def _fused_call(self, inputs):
        """All groups see the same input: one convolution with the kernels concatenated."""
        first = self.group_convs[0]
        kernel = ops.cast(ops.concatenate([conv.kernel for conv in self.group_convs], axis=-1),
                          self.compute_dtype)
        outputs = ops.conv(inputs, kernel, strides=first.strides, padding=first.padding,
                           data_format=self.data_format, dilation_rate=first.dilation_rate)
        if first.use_bias:
            bias = ops.cast(ops.concatenate([conv.bias for conv in self.group_convs], axis=0),
                            self.compute_dtype)
            if self._channel_axis == -1:
                outputs = outputs + bias
            else:
                outputs = outputs + ops.reshape(bias, (1, -1, 1, 1))
        if first.activation is not None:
            outputs = first.activation(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        shape = list(self.group_convs[0].compute_output_shape(self._group_input_shape(input_shape)))
        shape[self._channel_axis] = self.filters
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        first = self.group_convs[0]
        config.update(
            filters=self.filters, kernel_size=first.kernel_size, groups=self.groups,
            strides=first.strides, padding=first.padding,
            activation=keras.activations.serialize(first.activation),
            use_bias=first.use_bias,
            kernel_initializer=keras.initializers.serialize(first.kernel_initializer),
            bias_initializer=keras.initializers.serialize(first.bias_initializer),
            kernel_regularizer=keras.regularizers.serialize(first.kernel_regularizer),
            bias_regularizer=keras.regularizers.serialize(first.bias_regularizer),
            devices=list(self.devices) if self.devices else None,
            split_input=self.split_input, data_format=self.data_format)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key, deserialize in (("activation", keras.activations.deserialize),
                                 ("kernel_initializer", keras.initializers.deserialize),
                                 ("bias_initializer", keras.initializers.deserialize),
                                 ("kernel_regularizer", keras.regularizers.deserialize),
                                 ("bias_regularizer", keras.regularizers.deserialize)):
            if config.get(key) is not None:
                config[key] = deserialize(config[key])
        return cls(**config)


@keras.saving.register_keras_serializable(package=PACKAGE)
class GroupedMaxPooling2D(keras.layers.Layer):
    """Max pooling run separately on each group's channels, each on its own device.

    Pooling is per channel, so the result equals `keras.layers.MaxPooling2D`; the layer
    exists so the paper's two-GPU network pools each tower's maps where they were computed
    (section 3.2) instead of gathering both towers on one device. Without `devices` it is
    a single max-pool. channels_last only.

    Args:
      pool_size: int or (height, width).
      strides: int or (height, width).
      padding: "valid" or "same".
      groups: number of contiguous channel blocks.
      devices: optional list of `groups` device names.
      **kwargs: passed to `keras.layers.Layer`.

    Raises:
      ValueError: bad `devices`, or (at build) channels not divisible by `groups`.
    """

    def __init__(self, pool_size=3, strides=2, padding="valid", groups: int = 2,
                 devices: Optional[Sequence[str]] = None, **kwargs):
        super().__init__(**kwargs)
        name = f"GroupedMaxPooling2D({self.name})"
        self.groups = positive_int(groups, "groups", name)
        self.devices = check_devices(devices, self.groups, name)
        self.pool = keras.layers.MaxPooling2D(pool_size, strides, padding=padding,
                                              dtype=self.dtype_policy, name="pool")
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        if input_shape[-1] is None or input_shape[-1] % self.groups:
            raise ValueError(f"GroupedMaxPooling2D({self.name}): channels must be known and "
                             f"divisible by groups={self.groups}, received input shape "
                             f"{tuple(input_shape)}")
        self._group_channels = input_shape[-1] // self.groups

    def call(self, inputs):
        if not self.devices:
            return self.pool(inputs)
        outputs = []
        for group, device in enumerate(self.devices):
            start = group * self._group_channels
            with tf.device(device):
                outputs.append(self.pool(inputs[..., start:start + self._group_channels]))
        return ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        return self.pool.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(pool_size=self.pool.pool_size, strides=self.pool.strides,
                      padding=self.pool.padding, groups=self.groups,
                      devices=list(self.devices) if self.devices else None)
        return config


def _matmul_with_fast_input_gradient(inputs, kernel):
    """inputs (b, in) @ kernel (in, out), whose input gradient avoids g @ kernel^T.

    TensorFlow differentiates x @ w into dx = g @ w^T. On CPU (oneDNN, float32) that
    product with a wide transposed w runs about 5x slower than the forward product: fc6's
    (32, 4096) @ (4096, 9216) took longer than its forward and weight gradient together.
    (w @ g^T)^T is the same numbers in the same order of summation, at the forward's rate.
    """
    @tf.custom_gradient
    def matmul(x, w):
        def gradient(upstream):  # upstream (b, out)
            # (in, out) @ (out, b) -> (in, b) -> (b, in)
            input_gradient = tf.transpose(tf.linalg.matmul(w, upstream, transpose_b=True))
            return input_gradient, tf.linalg.matmul(x, upstream, transpose_a=True)
        return tf.linalg.matmul(x, w), gradient

    return matmul(inputs, kernel)


@keras.saving.register_keras_serializable(package=PACKAGE)
class FullyConnected(keras.layers.Dense):
    """`keras.layers.Dense` with the same weights and outputs and a faster backward pass.

    For 2-D inputs the input gradient is computed as (kernel @ g^T)^T instead of
    g @ kernel^T (see `_matmul_with_fast_input_gradient`); everything else, including
    the variables, their names and `get_config`, is `keras.layers.Dense`'s, so checkpoints
    of either load into the other. Other ranks fall back to `Dense.call`.
    """

    def call(self, inputs, training=None):
        if len(inputs.shape) != 2:
            return super().call(inputs, training=training)
        outputs = _matmul_with_fast_input_gradient(inputs, ops.cast(self.kernel, inputs.dtype))
        if self.bias is not None:
            outputs = ops.add(outputs, self.bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs
