"""Model throughput on synthetic data: training and inference images/s, like tf_cnn_benchmarks.

Measures one model configuration (variant, batch size, precision, XLA) on random images
that already live on the device, so the number is the network's cost alone. Warm-up
steps (tracing, XLA compilation, oneDNN kernel selection) are excluded; the result is
the median of several timed runs. Each run is interleaved with a run of the machine's
own matrix multiply (fp32 and bf16), so "fraction of the machine's rate" compares two
numbers measured at the same moment: on a shared machine both drop together.

FLOP counting: a forward pass costs 2 * multiply-adds of every convolution and dense
layer (pooling, LRN, ReLU are left out); a training step costs 3x the forward pass
(forward, gradient with respect to the inputs and with respect to the weights), the
usual convention, which gives about 4.3 GFLOP per 224x224 image for the paper's net.
"""

import contextlib
import dataclasses
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from alexnet_tf.nn import lrn
from alexnet_tf.nn import models
from alexnet_tf.nn import precision
from alexnet_tf.training.optimizer import PaperSGD

MODES = ("train", "inference")
# Square matmul size for the machine's rate: 2048^3 * 2 = 17 GFLOP, large enough to
# reach the GEMM kernel's steady rate, small enough for ~0.1 s per product on 2 cores.
MATMUL_SIZE = 2048
_DTYPE_KEYS = {"float32": "fp32", "bfloat16": "bf16"}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """What to benchmark: a model built by `models.build_model` and how it is run."""

    name: str = "alexnet"
    variant: str = "paper"
    num_classes: int = 1000
    input_size: int = 224
    width_multiplier: float = 1.0
    precision: str = "fp32"
    jit_compile: bool = False
    lrn_bfloat16: bool = False
    lrn_xla: bool = True

    def build(self) -> keras.Model:
        """The model; with lrn_xla=False its LRN layers run plain TF ops (`lrn.disable_xla`)."""
        model = models.build_model(**self.build_kwargs())
        if not self.lrn_xla:
            lrn.disable_xla(model)
        return model

    def build_kwargs(self) -> dict:
        kwargs = dict(name=self.name, num_classes=self.num_classes,
                      input_size=self.input_size, width_multiplier=self.width_multiplier,
                      lrn_bfloat16=self.lrn_bfloat16)
        if self.name == "alexnet":
            kwargs["variant"] = self.variant
        return kwargs


@dataclasses.dataclass
class Result:
    """One measured row: throughput, FLOP rate and the matmul rates of the same run."""

    mode: str
    batch_size: int
    spec: ModelSpec
    images_per_second: float
    run_images_per_second: List[float]
    gflop_per_image: float
    matmul_gflops: Dict[str, float]
    peak_memory_mb: float

    @property
    def achieved_gflops(self) -> float:
        return self.images_per_second * self.gflop_per_image

    @property
    def fraction_of_matmul(self) -> float:
        """Achieved GFLOP/s over the matmul rate of the precision the step computes in."""
        key = "bf16" if self.spec.precision == "mixed_bfloat16" else "fp32"
        rate = self.matmul_gflops.get(key, 0.0)
        return self.achieved_gflops / rate if rate else float("nan")


def forward_flops_per_image(model: keras.Model) -> float:
    """2 * multiply-adds of every kernel (conv and dense) for one image's forward pass.

    Args:
      model: a built functional model whose layers have known output shapes.

    Returns:
      FLOPs per image (float).
    """
    total = 0.0
    for layer in model.layers:
        kernels = [w for w in layer.weights if w.path.split("/")[-1] == "kernel"]
        if not kernels:
            continue
        output_shape = layer.output.shape  # (batch, H, W, C) for convs, (batch, C) dense
        positions = int(np.prod(output_shape[1:-1])) if len(output_shape) > 2 else 1
        total += 2.0 * positions * sum(int(np.prod(w.shape)) for w in kernels)
    return total


def peak_memory_mb() -> float:
    """The process's peak resident memory so far (VmHWM, else ru_maxrss), in MiB."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0  # kB
    except OSError:
        pass
    bytes_per_unit = 1 if platform.system() == "Darwin" else 1024  # Linux reports kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * bytes_per_unit / 2**20


def make_matmul_runner(dtype: str = "float32", size: int = MATMUL_SIZE,
                       num_products: int = 4) -> Callable[[], float]:
    """Returns a function that times `num_products` [size, size] matmuls -> GFLOP/s.

    Args:
      dtype: "float32" or "bfloat16".
      size: side of the square matrices.
      num_products: matmuls per timed call (chained so none can be skipped).
    """
    a = tf.cast(tf.random.stateless_normal((size, size), seed=(1, 2)), dtype)
    b = tf.cast(tf.random.stateless_normal((size, size), seed=(3, 4)) / size, dtype)

    @tf.function(autograph=False)  # the Python loop unrolls; nothing to convert
    def products(x):
        for _ in range(num_products):
            x = tf.linalg.matmul(x, b)
        return tf.reduce_sum(tf.cast(x[:1, :1], tf.float32))

    products(a).numpy()  # warm-up: tracing and kernel selection

    def run() -> float:
        start = time.perf_counter()
        products(a).numpy()
        return 2.0 * size**3 * num_products / (time.perf_counter() - start) / 1e9

    return run


def _synthetic_batch(batch_size: int, input_size: int, num_classes: int):
    """Random mean-subtracted-like images (batch, S, S, 3) float32 and int32 labels."""
    images = tf.random.stateless_uniform((batch_size, input_size, input_size, 3),
                                         seed=(5, 6), minval=-128.0, maxval=128.0)
    labels = tf.random.stateless_uniform((batch_size,), seed=(7, 8), maxval=num_classes,
                                         dtype=tf.int32)
    return images, labels


def make_train_step(model: keras.Model, optimizer, jit_compile: bool = False):
    """tf.function(images, labels) -> loss: forward, backward and the paper's SGD update.

    The same structure as the trainer's step (float32 cross-entropy on float32 logits);
    with `jit_compile` the forward/backward is XLA-compiled, the update is not.
    """
    def forward_backward(images, labels):
        with tf.GradientTape() as tape:
            logits = tf.cast(model(images, training=True), tf.float32)  # (b, classes)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
                labels=labels, logits=logits))
        return loss, tape.gradient(loss, model.trainable_variables)

    if jit_compile:
        forward_backward = tf.function(forward_backward, jit_compile=True)

    @tf.function
    def train_step(images, labels):
        loss, gradients = forward_backward(images, labels)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables))
        return loss

    return train_step


def make_inference_step(model: keras.Model, jit_compile: bool = False):
    """tf.function(images) -> logits (batch, classes) with training=False."""
    return tf.function(lambda images: model(images, training=False), jit_compile=jit_compile)


def make_model_runner(spec: ModelSpec, mode: str, batch_size: int, steps_per_run: int,
                      num_warmup: int, device: Optional[str] = None):
    """Builds the model and returns (run() -> images/s, gflop_per_image).

    Raises:
      ValueError: unknown mode or batch_size < 1.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, received {mode!r}")
    if batch_size < 1 or steps_per_run < 1:
        raise ValueError(f"batch_size and steps_per_run must be >= 1, received {batch_size}, "
                         f"{steps_per_run}")
    with tf.device(device) if device else contextlib.nullcontext():
        with precision.dtype_policy(spec.precision):
            model = spec.build()
        images, labels = _synthetic_batch(batch_size, spec.input_size, spec.num_classes)
        if mode == "train":
            step = make_train_step(model, PaperSGD(learning_rate=1e-4), spec.jit_compile)
            args = (images, labels)
        else:
            step = make_inference_step(model, spec.jit_compile)
            args = (images,)
    forward = forward_flops_per_image(model)
    gflop_per_image = (3.0 if mode == "train" else 1.0) * forward / 1e9

    def run_steps(num_steps):
        output = None
        for _ in range(num_steps):
            output = step(*args)
        np.asarray(output)  # waits for the last step

    run_steps(num_warmup)

    def run() -> float:
        start = time.perf_counter()
        run_steps(steps_per_run)
        return batch_size * steps_per_run / (time.perf_counter() - start)

    return run, gflop_per_image


def benchmark(spec: ModelSpec, mode: str = "train", batch_size: int = 32, num_runs: int = 5,
              steps_per_run: int = 5, num_warmup: int = 3, matmul_dtypes=("float32", "bfloat16"),
              device: Optional[str] = None, matmul_size: int = MATMUL_SIZE) -> Result:
    """Measures one configuration, interleaving each model run with a matmul run.

    Args:
      spec: the model and how it runs (precision, XLA).
      mode: "train" (forward, backward, SGD update) or "inference".
      batch_size: images per step.
      num_runs: timed runs; the median is reported.
      steps_per_run: steps per timed run.
      num_warmup: untimed steps first (tracing, compilation).
      matmul_dtypes: matmul rates measured between the runs ("float32", "bfloat16");
        empty to skip.
      device: optional device name ("/GPU:0"); default: TensorFlow's choice.
      matmul_size: side of the square matrices of the matmul rate.

    Returns:
      A `Result`.

    Raises:
      ValueError: num_runs < 1, or an argument `make_model_runner` rejects.
    """
    return benchmark_interleaved([(spec, mode, batch_size, steps_per_run)], num_runs,
                                 num_warmup, matmul_dtypes, device, matmul_size)[0]


def benchmark_interleaved(cases: Sequence[tuple], num_runs: int = 5, num_warmup: int = 3,
                          matmul_dtypes=("float32", "bfloat16"), device: Optional[str] = None,
                          matmul_size: int = MATMUL_SIZE) -> List[Result]:
    """Measures several configurations in one process, round-robin.

    Each round times one run of every case, then the matmuls, so the ratio of two cases
    (bf16 over fp32, say) compares runs made within a minute of each other. All cases
    share the process, so `peak_memory_mb` is the process's, not a case's.

    Args:
      cases: (spec, mode, batch_size, steps_per_run) tuples.
      num_runs, num_warmup, matmul_dtypes, device, matmul_size: as for `benchmark`.

    Returns:
      One `Result` per case, in order.

    Raises:
      ValueError: num_runs < 1, or an argument `make_model_runner` rejects.
    """
    if num_runs < 1:
        raise ValueError(f"num_runs must be >= 1, received {num_runs!r}")
    with tf.device(device) if device else contextlib.nullcontext():
        matmuls = {_DTYPE_KEYS[dtype]: make_matmul_runner(dtype, matmul_size)
                   for dtype in matmul_dtypes}
    runners = [make_model_runner(spec, mode, batch_size, steps, num_warmup, device)
               for spec, mode, batch_size, steps in cases]
    rates = {key: [] for key in matmuls}
    throughputs = [[] for _ in cases]
    for _ in range(num_runs):
        for (run, _), runs in zip(runners, throughputs):
            runs.append(run())
        for key, matmul in matmuls.items():
            rates[key].append(matmul())
    matmul_gflops = {key: statistics.median(values) for key, values in rates.items()}
    return [Result(mode=mode, batch_size=batch_size, spec=spec,
                   images_per_second=statistics.median(runs), run_images_per_second=runs,
                   gflop_per_image=gflop_per_image, matmul_gflops=matmul_gflops,
                   peak_memory_mb=peak_memory_mb())
            for (spec, mode, batch_size, _), (_, gflop_per_image), runs
            in zip(cases, runners, throughputs)]


# ------------------------------------------------------------------ one row per process

RESULT_PREFIX = "BENCH_MODEL_RESULT "


def result_to_json(result: Result) -> str:
    return json.dumps(dataclasses.asdict(result))


def result_from_json(text: str) -> Result:
    fields = json.loads(text)
    fields["spec"] = ModelSpec(**fields["spec"])
    return Result(**fields)


def benchmark_in_subprocess(spec: ModelSpec, mode: str, batch_size: int, timeout: float,
                            **kwargs) -> Result:
    """Runs `benchmark` in a fresh `python -m alexnet_tf.benchmark model` process.

    A fresh process per row makes the peak memory that row's own (VmHWM never goes
    down) and keeps a previous row's threads and caches out of the measurement.

    Args:
      spec, mode, batch_size, **kwargs: as for `benchmark` (num_runs, steps_per_run,
        num_warmup, device).
      timeout: seconds before the process is killed.

    Raises:
      RuntimeError: the process failed or printed no result.
    """
    request = dict(spec=dataclasses.asdict(spec), mode=mode, batch_size=batch_size, **kwargs)
    command = [sys.executable, "-m", "alexnet_tf.benchmark", "model",
               "--model_worker=" + json.dumps(request)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return result_from_json(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"benchmark process failed (exit {done.returncode}) for {request}:\n"
                       f"{done.stderr[-3000:]}")


def run_worker(request_json: str) -> None:
    """The `--model_worker` side of `benchmark_in_subprocess`: prints one result line."""
    request = json.loads(request_json)
    request["spec"] = ModelSpec(**request["spec"])
    print(RESULT_PREFIX + result_to_json(benchmark(**request)), flush=True)


# ------------------------------------------------------------------ loss-curve parity

def loss_curve(spec: ModelSpec, num_steps: int, batch_size: int, num_batches: int = 4,
               learning_rate: float = 0.01, seed: int = 0) -> List[float]:
    """Training losses of `num_steps` steps on a fixed synthetic set, from fixed weights.

    The weights (keras.utils.set_random_seed(seed)) and the data are the same for every
    precision, so two curves differ only by arithmetic; dropout masks are drawn from the
    same seed unless `seed` is not 0. Comparing fp32 with bf16 against fp32 with another
    dropout seed shows whether bf16's difference is within the run-to-run noise.
    """
    with precision.dtype_policy(spec.precision):
        keras.utils.set_random_seed(0)
        model = spec.build()
        if seed:  # another dropout seed, the same initial weights
            initial_weights = model.get_weights()
            keras.utils.set_random_seed(seed)
            model = spec.build()
            model.set_weights(initial_weights)
    images, labels = _synthetic_batch(batch_size * num_batches, spec.input_size,
                                      min(spec.num_classes, 10))
    step = make_train_step(model, PaperSGD(learning_rate=learning_rate), spec.jit_compile)
    losses = []
    for index in range(num_steps):
        start = (index % num_batches) * batch_size
        losses.append(float(step(images[start:start + batch_size],
                                 labels[start:start + batch_size])))
    return losses
