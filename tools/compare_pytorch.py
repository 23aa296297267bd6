r"""The paper's AlexNet in PyTorch and in alexnet_tf, measured side by side in one run.

One command, run with the project's Python; PyTorch is not a dependency of the project:
the PyTorch side runs in a subprocess of an interpreter that has torch (--torch_python):

  python tools/compare_pytorch.py --torch_python=/work/torchvenv/bin/python \
      --batch_sizes=32,128 --modes=train,inference

Both frameworks build the same net: conv1 96 11x11/4 on the 224 input zero-padded to
227, LRN (n=5, k=2, alpha=1e-4 in the paper's convention, beta=0.75) inside each tower,
conv2/conv4/conv5 in two groups, 3x3/2 max-pools, fc6/fc7 4096 with dropout, fc8.
PyTorch's `nn.LocalResponseNorm` divides alpha by the window size, so it gets
alpha = 5 * 1e-4; it runs on each tower's channels so the window never crosses towers.
Before timing, the TF weights are copied into the PyTorch net and the two outputs are
compared (--parity_only stops there).

The two frameworks never run at the same time: for every measured run the driver asks
the PyTorch worker (each of its settings: NCHW, channels_last, optionally torch.compile)
for one timed run, then times TensorFlow itself; each worker keeps its warm model
between runs. Reported: medians over the runs and the median of the per-round ratios.
Both sides use --threads intra-op threads, the same batch and synthetic data, and the
same step: forward, softmax cross-entropy, backward, SGD with momentum and weight decay.

The PyTorch worker (this file run with `--torch_worker` as its first argument) imports
only torch and numpy and reads one JSON request per line on stdin.
"""

import json
import os
import statistics
import subprocess
import sys
import time

# --------------------------------------------------------------------------- PyTorch side
# Everything in this section runs in the PyTorch interpreter (torch + numpy only).


def _torch_alexnet(config):
    """The paper net in PyTorch (NCHW), mirroring alexnet_tf.nn.models.alexnet(variant='paper')."""
    import torch
    from torch import nn
    widths, num_classes = config["widths"], config["num_classes"]
    conv1_padding = (0, 0, 0, 0) if config["input_size"] % 4 == 3 else (1, 2, 1, 2)

    class TowerLRN(nn.Module):
        """LRN on each tower's channels (paper section 3.3 with the two-GPU split)."""

        def __init__(self):
            super().__init__()
            # PyTorch computes alpha / size * sum: the paper's alpha=1e-4 is 5e-4 here.
            self.lrn = nn.LocalResponseNorm(size=5, alpha=5 * 1e-4, beta=0.75, k=2.0)

        def forward(self, x):
            return torch.cat([self.lrn(t) for t in torch.chunk(x, 2, dim=1)], dim=1)

    pool = dict(kernel_size=3, stride=2)
    features = nn.Sequential(
        nn.ZeroPad2d(conv1_padding),
        nn.Conv2d(3, widths[0], 11, stride=4), nn.ReLU(inplace=True), TowerLRN(),
        nn.MaxPool2d(**pool),
        nn.Conv2d(widths[0], widths[1], 5, padding=2, groups=2), nn.ReLU(inplace=True),
        TowerLRN(), nn.MaxPool2d(**pool),
        nn.Conv2d(widths[1], widths[2], 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(widths[2], widths[3], 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.Conv2d(widths[3], widths[4], 3, padding=1, groups=2), nn.ReLU(inplace=True),
        nn.MaxPool2d(**pool))
    pooled = config["pool5_size"]
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(widths[4] * pooled * pooled, widths[5]), nn.ReLU(inplace=True),
        nn.Dropout(config["dropout_rate"]),
        nn.Linear(widths[5], widths[6]), nn.ReLU(inplace=True), nn.Dropout(config["dropout_rate"]),
        nn.Linear(widths[6], num_classes))
    return nn.Sequential(features, classifier)


class _TorchWorker:
    """Holds the PyTorch model and one warm step per setting; answers JSON requests."""

    def __init__(self):
        import torch
        self.torch = torch
        self.model = None
        self.steps = {}

    def build(self, config, threads):
        self.torch.set_num_threads(threads)
        self.torch.manual_seed(0)
        self.model = _torch_alexnet(config)
        self.config = config
        return {"torch": self.torch.__version__, "threads": self.torch.get_num_threads()}

    def load_weights(self, path):
        """Loads the TF weights saved by the driver (already in PyTorch's layout)."""
        import numpy as np
        arrays = np.load(path)
        state = self.model.state_dict()
        for name in state:
            state[name] = self.torch.from_numpy(arrays[name])
        self.model.load_state_dict(state)
        return {"loaded": len(state)}

    def forward(self, path):
        import numpy as np
        images = self.torch.from_numpy(np.load(path)["images"])  # (b, S, S, 3) NHWC
        self.model.eval()
        with self.torch.no_grad():
            logits = self.model(images.permute(0, 3, 1, 2).contiguous())
        np.save(path + ".out.npy", logits.numpy())
        return {"output": path + ".out.npy"}

    def _make_step(self, mode, batch_size, setting):
        torch = self.torch
        model = _torch_alexnet(self.config)
        layout = torch.channels_last if "channels_last" in setting else torch.contiguous_format
        model = model.to(memory_format=layout)
        size = self.config["input_size"]
        images = torch.empty(batch_size, 3, size, size).uniform_(-128, 128)
        images = images.contiguous(memory_format=layout)
        labels = torch.randint(0, self.config["num_classes"], (batch_size,))
        forward = torch.compile(model) if "compile" in setting else model
        if mode == "inference":
            model.eval()

            def step():
                with torch.inference_mode():
                    return forward(images)
            return step
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9,
                                    weight_decay=5e-4)
        loss_fn = torch.nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(forward(images), labels)
            loss.backward()
            optimizer.step()
            return loss
        return step

    def measure(self, mode, batch_size, setting, steps, warmup):
        key = (mode, batch_size, setting)
        if key not in self.steps:
            self.steps[key] = self._make_step(mode, batch_size, setting)
            for _ in range(warmup):
                self.steps[key]()
        step = self.steps[key]
        start = time.perf_counter()
        for _ in range(steps):
            step()
        return {"images_per_second": batch_size * steps / (time.perf_counter() - start)}


def torch_worker_main():
    """Serves requests {"op": ..., **args} from stdin, one JSON answer per line."""
    # The same malloc settings as the TensorFlow side (ALEXNET_TF_MALLOC_TUNING, passed
    # down by the driver): PyTorch's CPU tensors come from malloc too. The module is
    # plain Python, so the PyTorch interpreter can load it from this checkout.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from alexnet_tf import malloc  # standard library only, unlike alexnet_tf.startup
    malloc.tune_malloc()
    worker = _TorchWorker()
    for line in sys.stdin:
        request = json.loads(line)
        operation = request.pop("op")
        try:
            answer = getattr(worker, operation)(**request)
        except Exception as error:  # reported to the driver, which decides
            answer = {"error": f"{type(error).__name__}: {error}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__" and sys.argv[1:2] == ["--torch_worker"]:
    torch_worker_main()
    sys.exit(0)

# --------------------------------------------------------------------------- driver side

from absl import flags  # noqa: E402

from alexnet_tf import errors  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("torch_python", "/work/torchvenv/bin/python",
                    "Python interpreter that has torch (runs the PyTorch worker).")
flags.DEFINE_list("batch_sizes", ["32", "128"], "Batch sizes to compare.")
flags.DEFINE_list("modes", ["train", "inference"], "train and/or inference.")
flags.DEFINE_list("inference_batch_sizes", ["1", "128"], "Batch sizes for inference.")
flags.DEFINE_list("torch_settings", ["nchw", "channels_last"],
                  "PyTorch settings to try: nchw, channels_last, nchw+compile, "
                  "channels_last+compile (torch.compile needs a C++ compiler).")
flags.DEFINE_integer("threads", 2, "Intra-op threads for both frameworks.")
flags.DEFINE_integer("num_runs", 5, "Alternating rounds; medians are reported.")
flags.DEFINE_integer("steps_per_run", 3, "Steps per timed run (inference at batch 1: x10).")
flags.DEFINE_integer("warmup", 2, "Untimed steps before the first run of each setting.")
flags.DEFINE_enum("precision", "fp32", ["fp32", "mixed_bfloat16"], "TensorFlow precision "
                  "(PyTorch always runs fp32).")
flags.DEFINE_bool("jit_compile", False, "XLA-compile TensorFlow's step.")
flags.DEFINE_integer("input_size", 224, "Image side.")
flags.DEFINE_integer("num_classes", 1000, "Logits.")
flags.DEFINE_float("width_multiplier", 1.0, "Scales every width (small nets for tests).")
flags.DEFINE_bool("malloc_tuning", True, "Raise glibc's mmap/trim thresholds in BOTH "
                  "processes (alexnet_tf/startup.py; the trainer does it), so neither "
                  "pays page faults for large buffers every step; false = glibc defaults.")
flags.DEFINE_bool("parity_only", False, "Only check that both nets give the same logits.")
flags.DEFINE_float("parity_tolerance", 1e-3, "Max |TF - PyTorch| / max |TF| of the logits.")


class TorchClient:
    """Drives the PyTorch worker subprocess over stdin/stdout JSON lines."""

    def __init__(self, python: str):
        env = dict(os.environ, ALEXNET_TF_MALLOC_TUNING="1" if FLAGS.malloc_tuning else "0")
        self.process = subprocess.Popen(
            [python, os.path.abspath(__file__), "--torch_worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, text=True, bufsize=1, env=env)

    def call(self, op: str, **kwargs) -> dict:
        self.process.stdin.write(json.dumps(dict(op=op, **kwargs)) + "\n")
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the PyTorch worker exited (code {self.process.poll()}) "
                               f"during {op!r}")
        return json.loads(line)

    def close(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def _group_kernel(layer):
    """A conv (or GroupedConv2D) kernel in PyTorch's (out, in/groups, kh, kw) layout."""
    import numpy as np
    convs = getattr(layer, "group_convs", [layer])
    kernel = np.concatenate([conv.kernel.numpy() for conv in convs], axis=-1)
    bias = np.concatenate([conv.bias.numpy() for conv in convs])
    return np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)), bias


def torch_config(model) -> dict:
    """The widths and sizes the PyTorch builder needs, read from the Keras model."""
    widths = [model.get_layer(f"conv{i}").filters for i in range(1, 6)]
    widths += [model.get_layer("fc6").units, model.get_layer("fc7").units]
    return dict(widths=widths, num_classes=model.get_layer("fc8").units,
                input_size=model.input_shape[1],
                pool5_size=model.get_layer("pool5").output.shape[1],
                dropout_rate=model.get_layer("dropout6").rate)


def torch_state(model) -> dict:
    """The Keras model's weights under the PyTorch net's parameter names."""
    import numpy as np
    state = {}
    for index, name in ((1, "conv1"), (5, "conv2"), (9, "conv3"), (11, "conv4"), (13, "conv5")):
        state[f"0.{index}.weight"], state[f"0.{index}.bias"] = _group_kernel(model.get_layer(name))
    pooled, channels = torch_config(model)["pool5_size"], model.get_layer("conv5").filters
    fc6 = model.get_layer("fc6").kernel.numpy()
    # Keras flattens pool5 as (h, w, c), PyTorch as (c, h, w): reorder fc6's input rows.
    fc6 = fc6.reshape(pooled, pooled, channels, -1).transpose(2, 0, 1, 3).reshape(fc6.shape)
    for index, name, kernel in ((1, "fc6", fc6), (4, "fc7", None), (7, "fc8", None)):
        layer = model.get_layer(name)
        kernel = layer.kernel.numpy() if kernel is None else kernel
        state[f"1.{index}.weight"] = np.ascontiguousarray(kernel.T)
        state[f"1.{index}.bias"] = layer.bias.numpy()
    return state


def check_parity(client, model, scratch: str, tolerance: float) -> float:
    """Copies the Keras weights into the PyTorch net and compares logits on random images.

    Returns:
      max |TF - PyTorch| / max |TF| over the logits.

    Raises:
      RuntimeError: the PyTorch worker failed or the difference exceeds `tolerance`.
    """
    import numpy as np
    weights = os.path.join(scratch, "weights.npz")
    np.savez(weights, **torch_state(model))
    _raise_on_error(client.call("load_weights", path=weights))
    size = model.input_shape[1]
    images = np.random.default_rng(0).uniform(-128, 128, (2, size, size, 3)).astype(np.float32)
    inputs = os.path.join(scratch, "images.npz")
    np.savez(inputs, images=images)
    answer = _raise_on_error(client.call("forward", path=inputs))
    torch_logits = np.load(answer["output"])
    tf_logits = model(images, training=False).numpy()
    difference = float(np.max(np.abs(tf_logits - torch_logits)) / np.max(np.abs(tf_logits)))
    if not difference <= tolerance:
        raise RuntimeError(f"TF and PyTorch logits differ: relative max difference "
                           f"{difference:.2e} > {tolerance:.0e}")
    return difference


def _raise_on_error(answer: dict) -> dict:
    if "error" in answer:
        raise RuntimeError(f"PyTorch worker: {answer['error']}")
    return answer


def _cases():
    """(mode, batch size, steps per run) in measuring order."""
    cases = []
    for mode in FLAGS.modes:
        sizes = FLAGS.batch_sizes if mode == "train" else FLAGS.inference_batch_sizes
        for batch_size in (int(value) for value in sizes):
            steps = FLAGS.steps_per_run * (10 if batch_size == 1 else 1)
            cases.append((mode, batch_size, steps))
    return cases


def compare(client, spec) -> list:
    """Alternating runs of every PyTorch setting and TensorFlow; returns table rows."""
    from alexnet_tf.bench import model as bench_model
    rows = []
    for mode, batch_size, steps in _cases():
        tf_run, _ = bench_model.make_model_runner(spec, mode, batch_size, steps, FLAGS.warmup)
        settings = list(FLAGS.torch_settings)
        runs = {setting: [] for setting in settings + ["tf"]}
        for _ in range(FLAGS.num_runs):
            for setting in list(settings):
                answer = client.call("measure", mode=mode, batch_size=batch_size,
                                     setting=setting, steps=steps, warmup=FLAGS.warmup)
                if "error" in answer:  # e.g. torch.compile without a working compiler
                    print(f"PyTorch {setting}: {answer['error']} (setting dropped)")
                    settings.remove(setting)
                    del runs[setting]
                    continue
                runs[setting].append(answer["images_per_second"])
            runs["tf"].append(tf_run())
        medians = {key: statistics.median(values) for key, values in runs.items()}
        best = max(settings, key=medians.get)
        # The ratio of each round (both measured within seconds of each other), then the median.
        ratios = [t / p for t, p in zip(runs["tf"], runs[best])]
        rows.append(dict(mode=mode, batch_size=batch_size, tf=medians["tf"], best=best,
                         torch=medians, ratio=statistics.median(ratios)))
        print(rows[-1], flush=True)
    return rows


def format_rows(rows, spec, torch_version: str) -> str:
    import datetime
    import tensorflow as tf
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"{now}, {os.cpu_count()} logical CPUs, load average {os.getloadavg()[0]:.1f} at "
             f"the end (other jobs share the machine), {FLAGS.threads} threads each; TensorFlow {tf.__version__} "
             f"({spec.precision}, XLA {'on' if spec.jit_compile else 'off'}) vs PyTorch "
             f"{torch_version} (fp32); medians of {FLAGS.num_runs} alternating runs.", "",
             f"`python tools/compare_pytorch.py {' '.join(sys.argv[1:])}`", "",
             "| mode | batch | alexnet_tf images/s | PyTorch images/s (best setting) "
             "| other PyTorch settings | alexnet_tf / PyTorch: per round (median) "
             "| ratio of the medians |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        others = ", ".join(f"{key} {value:.1f}" for key, value in row["torch"].items()
                           if key not in ("tf", row["best"]))
        lines.append(f"| {row['mode']} | {row['batch_size']} | {row['tf']:.1f} | "
                     f"{row['torch'][row['best']]:.1f} ({row['best']}) | {others or '-'} | "
                     f"{row['ratio']:.2f}x | {row['tf'] / row['torch'][row['best']]:.2f}x |")
    return "\n".join(lines)


def main(argv):
    if len(argv) > 1:
        raise errors.InvalidInputError(f"unexpected arguments: {argv[1:]}")
    if not os.access(FLAGS.torch_python, os.X_OK) or os.path.isdir(FLAGS.torch_python):
        raise errors.MissingInputError(f"--torch_python={FLAGS.torch_python} is not an "
                                       "executable file: expected a Python interpreter that "
                                       "imports torch")
    import tempfile
    from alexnet_tf import startup
    if FLAGS.malloc_tuning:
        startup.tune_malloc()
    import tensorflow as tf
    tf.config.threading.set_intra_op_parallelism_threads(FLAGS.threads)
    from alexnet_tf.bench import model as bench_model
    from alexnet_tf.nn import models
    spec = bench_model.ModelSpec(num_classes=FLAGS.num_classes, input_size=FLAGS.input_size,
                                 width_multiplier=FLAGS.width_multiplier,
                                 precision=FLAGS.precision, jit_compile=FLAGS.jit_compile)
    model = models.build_model(**spec.build_kwargs())
    client = TorchClient(FLAGS.torch_python)
    try:
        info = _raise_on_error(client.call("build", config=torch_config(model),
                                           threads=FLAGS.threads))
        with tempfile.TemporaryDirectory(prefix="compare_pytorch_") as scratch:
            difference = check_parity(client, model, scratch, FLAGS.parity_tolerance)
        print(f"parity: max |TF - PyTorch| / max |TF| = {difference:.2e} "
              f"(PyTorch {info['torch']}, {info['threads']} threads)", flush=True)
        if FLAGS.parity_only:
            return
        del model
        rows = compare(client, spec)
    finally:
        client.close()
    print()
    print(format_rows(rows, spec, info["torch"]))


if __name__ == "__main__":
    errors.run_command(main)
