"""Local Response Normalization (Krizhevsky et al., NIPS 2012, section 3.3) as a Keras layer.

The paper's convention: alpha multiplies the window sum (Caffe and PyTorch divide alpha
by the window size first; `convention="caffe"` does that).
"""

from typing import Optional, Sequence

import keras
from keras import ops
import numpy as np
import tensorflow as tf

from alexnet_tf.nn.layer_args import PACKAGE
from alexnet_tf.nn.layer_args import check_devices
from alexnet_tf.nn.layer_args import positive_int

LRN_CONVENTIONS = ("paper", "caffe")


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """Local response normalisation across channels (AlexNet paper, section 3.3).

        b[i] = a[i] / (k + alpha * sum_{j=max(0, i-size//2)}^{min(N-1, i+size//2)} a[j]^2)^beta

    over the channel axis (last axis, channels_last), at each spatial position. With
    `convention="paper"` alpha multiplies the sum exactly as printed in the paper; with
    `convention="caffe"` alpha is divided by `size` first (Caffe's LRN layer and PyTorch's
    `nn.LocalResponseNorm`), so weights and settings from those frameworks carry over.

    `groups > 1` normalises each contiguous block of N/groups channels on its own: the
    window never crosses a block boundary. This is the paper's two-GPU network, where each
    tower normalised only the kernel maps it held.

    The window sum is a matmul of the squared activations with a banded 0/1 [C, C] matrix,
    one GEMM per layer, which is fast on CPU and GPU and exports to TF Serving. The
    gradient is written by hand (one more banded GEMM and four elementwise passes, reusing
    the forward's window sum), which is cheaper than differentiating the chain of ops.
    Under a mixed-precision policy the layer computes in float32 (the sum of squares of
    float16 activations overflows easily) and returns the layer's compute dtype.
    `bfloat16_compute=True` is an opt-in for speed under mixed_bfloat16: bfloat16 inputs
    are then normalised in bfloat16 (float32's exponent range, and the GEMM accumulates in
    float32), costing a few bfloat16 roundings (output within about 1.5% of float32,
    gradient within about 1% of its largest entry) for about half the time of casting to
    float32 and back.

    With `xla=True` (the default) each of the forward and backward passes is one XLA
    kernel (`tf.function(jit_compile=True)`): the window sum is written as shifted adds,
    and XLA fuses the casts, squares, sums, powers and products into one pass over
    memory, computing in float32 and reading and writing the layer's own dtype. That is
    1.4x to 4x faster than the GEMM formulation on CPU (conv1 / conv2 shapes, forward plus
    backward), and under mixed_bfloat16 it gives float32 arithmetic at bfloat16's memory
    traffic. `xla=False` runs plain TF ops: SavedModel export uses it, because TF
    Serving's model server does not run XLA kernels by default (see `disable_xla`).

    Args:
      size: window size n, an odd integer >= 1 (the paper uses 5).
      k: additive constant, > 0 (paper: 2).
      alpha: scale of the window sum, >= 0 (paper: 1e-4).
      beta: exponent, >= 0 (paper: 0.75).
      convention: "paper" (alpha * sum) or "caffe" (alpha / size * sum).
      groups: number of independent channel blocks (2 for the paper's towers).
      devices: optional list of `groups` device names; each block is computed there.
      bfloat16_compute: normalise bfloat16 inputs in bfloat16 instead of float32 (only
        with xla=False; the XLA kernel is as fast in float32).
      xla: compile the forward and backward passes with XLA.
      **kwargs: passed to `keras.layers.Layer` (name, dtype...).

    Raises:
      ValueError: an argument is out of range, or (at build) channels are not divisible
        by `groups`.
    """

    def __init__(self, size: int = 5, k: float = 2.0, alpha: float = 1e-4, beta: float = 0.75,
                 convention: str = "paper", groups: int = 1,
                 devices: Optional[Sequence[str]] = None, bfloat16_compute: bool = False,
                 xla: bool = True, **kwargs):
        super().__init__(**kwargs)
        name = f"LocalResponseNormalization({self.name})"
        if (isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1
                or size % 2 == 0):
            raise ValueError(f"{name}: size must be an odd integer >= 1, received {size!r}")
        if not k > 0:
            raise ValueError(f"{name}: k must be > 0, received {k!r}")
        if not alpha >= 0:
            raise ValueError(f"{name}: alpha must be >= 0, received {alpha!r}")
        if not beta >= 0:
            raise ValueError(f"{name}: beta must be >= 0, received {beta!r}")
        if convention not in LRN_CONVENTIONS:
            raise ValueError(f"{name}: convention must be one of {LRN_CONVENTIONS}, "
                             f"received {convention!r}")
        self.size = int(size)
        self.k = float(k)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.convention = convention
        self.bfloat16_compute = bool(bfloat16_compute)
        self.xla = bool(xla)
        self._xla_kernel = None
        self.groups = positive_int(groups, "groups", name)
        self.devices = check_devices(devices, self.groups, name)
        self.input_spec = keras.layers.InputSpec(min_ndim=2)

    @property
    def effective_alpha(self) -> float:
        """The factor that multiplies the window sum in the paper's formula."""
        return self.alpha / self.size if self.convention == "caffe" else self.alpha

    def build(self, input_shape):
        num_channels = input_shape[-1]
        if num_channels is None or num_channels % self.groups:
            raise ValueError(f"LocalResponseNormalization({self.name}): the channel count must "
                             f"be known and divisible by groups={self.groups}, received input "
                             f"shape {tuple(input_shape)}")
        self._group_channels = num_channels // self.groups
        # With devices each group multiplies by its own [C/g, C/g] band; without, one
        # block-diagonal [C, C] band keeps the whole layer a single GEMM.
        band_channels = self._group_channels if self.devices else num_channels
        self._band = self._band_matrix(band_channels)

    def _band_matrix(self, num_channels: int) -> np.ndarray:
        """[C, C] 0/1 matrix: entry (j, i) is 1 when channel j is in channel i's window."""
        index = np.arange(num_channels)
        same_group = (index[:, None] // self._group_channels) == (index[None, :] // self._group_channels)
        in_window = np.abs(index[:, None] - index[None, :]) <= self.size // 2
        return (same_group & in_window).astype(np.float32)

    def _normalize(self, inputs, band):
        """inputs (..., C) in any float dtype -> normalised (..., C), bfloat16 or float32."""
        if self.xla and not self.bfloat16_compute:
            if self._xla_kernel is None:
                self._xla_kernel = self._make_xla_kernel()
            # One block of channels per call when the groups sit on their own devices.
            groups = 1 if self.devices else self.groups
            return self._xla_kernel(inputs, groups)
        bfloat16 = self.bfloat16_compute and inputs.dtype == tf.bfloat16
        dtype = tf.bfloat16 if bfloat16 else tf.float32
        x = tf.cast(inputs, dtype)
        num_channels = band.shape[0]
        # (batch*H*W, C): one row of channels per spatial position.
        rows = self._normalize_rows(tf.reshape(x, (-1, num_channels)), tf.constant(band, dtype))
        return tf.reshape(rows, tf.shape(x))

    def _normalize_rows(self, rows, band):
        """rows (N, C), band (C, C) -> normalised rows (N, C), with a hand-written gradient."""
        alpha = self.effective_alpha
        gradient_scale = 2.0 * alpha * self.beta

        @tf.custom_gradient
        def normalize(x):
            # (N, C) @ (C, C): s_i = k + alpha * sum_j band[j, i] * x_j^2.
            base = self.k + alpha * tf.linalg.matmul(tf.square(x), band)
            inverse = self._inverse_power(base)  # s^-beta
            outputs = x * inverse

            def gradient(upstream):
                # dL/dx_j = g_j s_j^-beta - 2 alpha beta x_j sum_i band[j, i] g_i y_i / s_i
                weighted = upstream * outputs / base  # (N, C)
                window = tf.linalg.matmul(weighted, band, transpose_b=True)
                return upstream * inverse - gradient_scale * x * window

            return outputs, gradient

        return normalize(rows)

    def _window_sum(self, values, groups: int):
        """sum_j band[j, i] * values_j over the channel window inside each group: (..., C)."""
        num_channels = values.shape[-1]
        width, half = num_channels // groups, self.size // 2
        shape = tf.shape(values)
        blocks = tf.reshape(values, tf.concat([shape[:-1], [groups, width]], 0))
        padded = tf.pad(blocks, [[0, 0]] * (len(values.shape) - 1) + [[0, 0], [half, half]])
        total = padded[..., :width]
        for shift in range(1, self.size):
            total += padded[..., shift:shift + width]
        return tf.reshape(total, shape)

    def _make_xla_kernel(self):
        """The layer as two XLA kernels (forward, backward) joined by a custom gradient."""
        alpha = self.effective_alpha
        gradient_scale = 2.0 * alpha * self.beta

        def terms(x, groups):
            x = tf.cast(x, tf.float32)
            base = self.k + alpha * self._window_sum(tf.square(x), groups)
            return x, base, self._inverse_power(base)

        @tf.function(jit_compile=True)
        def forward(x, groups):
            values, _, inverse = terms(x, groups)
            return tf.cast(values * inverse, x.dtype)

        @tf.function(jit_compile=True)
        def backward(x, upstream, groups):
            values, base, inverse = terms(x, groups)
            upstream32 = tf.cast(upstream, tf.float32)
            # The band is symmetric: the transposed window sum is the window sum.
            window = self._window_sum(upstream32 * values * inverse / base, groups)
            return tf.cast(upstream32 * inverse - gradient_scale * values * window, x.dtype)

        def kernel(x, groups):
            @tf.custom_gradient
            def normalize(x):
                return forward(x, groups), lambda upstream: backward(x, upstream, groups)
            return normalize(x)

        return kernel

    def _inverse_power(self, base):
        """base ** -beta. pow is the slowest op of the layer on CPU: the paper's beta=0.75
        is rsqrt(base) * sqrt(rsqrt(base)), several times faster, forward and backward."""
        if self.beta == 0.75:
            inverse_root = ops.rsqrt(base)
            return inverse_root * ops.sqrt(inverse_root)
        if self.beta == 0.5:
            return ops.rsqrt(base)
        if self.beta == 1.0:
            return 1.0 / base
        if self.beta == 0.0:
            return ops.ones_like(base)
        # base >= k > 0, so the logarithm is defined.
        return ops.exp(-self.beta * ops.log(base))

    def call(self, inputs):
        if not self.devices:
            return ops.cast(self._normalize(inputs, self._band), self.compute_dtype)
        outputs = []
        for group, device in enumerate(self.devices):
            start = group * self._group_channels
            with tf.device(device):
                block = inputs[..., start:start + self._group_channels]
                outputs.append(ops.cast(self._normalize(block, self._band), self.compute_dtype))
        return ops.concatenate(outputs, axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(size=self.size, k=self.k, alpha=self.alpha, beta=self.beta,
                      convention=self.convention, groups=self.groups,
                      bfloat16_compute=self.bfloat16_compute, xla=self.xla,
                      devices=list(self.devices) if self.devices else None)
        return config


def disable_xla(model: keras.Model) -> int:
    """Switches every LocalResponseNormalization layer of `model` to plain TF ops.

    For graphs that must run without XLA, e.g. a SavedModel for TF Serving. Call it
    before the model is traced. Returns the number of layers switched.
    """
    layers = [layer for layer in model._flatten_layers(include_self=False)  # pylint: disable=protected-access
              if isinstance(layer, LocalResponseNormalization)]
    for layer in layers:
        layer.xla = False
    return len(layers)
