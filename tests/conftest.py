"""Test setup: two logical CPU devices, made before TensorFlow initialises.

Multi-device code (MirroredStrategy, tower placement) is tested on /CPU:0 and /CPU:1.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

# Shared fixtures. Helpers that module-scoped fixtures also need are factories: a
# session-scoped fixture that returns the function.

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import io  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import tempfile  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
import pytest  # noqa: E402

from alexnet_tf import run_dir  # noqa: E402
from alexnet_tf.data import stats as stats_lib  # noqa: E402
from alexnet_tf.training import config as config_lib  # noqa: E402


@pytest.fixture(scope="session")
def repo_root(pytestconfig) -> str:
    """The checkout's root: tools/ and flags/ are found from here, subprocesses run here."""
    return str(pytestconfig.rootpath)


@pytest.fixture(scope="session")
def write_file():
    """write_file(path, data=b"x"): writes bytes to path, making its directories."""
    def write(path, data: bytes = b"x") -> None:
        os.makedirs(os.path.dirname(str(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return write


@pytest.fixture(scope="session")
def free_ports():
    """free_ports(count): loopback ports that were free a moment ago (bound to port 0
    together, read, released)."""
    def ports(count: int) -> list:
        probes = [socket.socket() for _ in range(count)]
        try:
            for probe in probes:
                probe.bind(("127.0.0.1", 0))
            return [probe.getsockname()[1] for probe in probes]
        finally:
            for probe in probes:
                probe.close()
    return ports


# ------------------------------------------------------------------------------- images

@pytest.fixture(scope="session")
def random_image():
    """random_image(height, width, seed=0): uniform noise, (height, width, 3) uint8."""
    def make(height: int, width: int, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return make


@pytest.fixture(scope="session")
def encode_image():
    """encode_image(image, image_format="JPEG", **options) -> the file's bytes.

    `image` is a (H, W, 3) uint8 array or a PIL image (any mode: CMYK, L, P...);
    `options` go to PIL's save (quality=95...). PIL's JPEG quality is 75 by default.
    """
    def encode(image, image_format: str = "JPEG", **options) -> bytes:
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        buffer = io.BytesIO()
        image.save(buffer, image_format, **options)
        return buffer.getvalue()
    return encode


@pytest.fixture(scope="session")
def png_bomb() -> bytes:
    """A 48 KB PNG of 20000x20000 pixels (1-bit, zlib-compressed zeros): 1.2 GB as RGB."""
    from alexnet_tf.bench import pixel_limit
    return pixel_limit.png_bomb(20000, 20000)


@pytest.fixture(scope="session")
def time_limit():
    """time_limit(seconds): a context manager that fails the test with TimeoutError if its
    block takes longer, e.g. blocked forever opening a FIFO (SIGALRM interrupts the call)."""
    @contextlib.contextmanager
    def limit(seconds: int):
        def expire(signum, frame):
            raise TimeoutError(f"still running after {seconds} s: blocked?")
        previous = signal.signal(signal.SIGALRM, expire)
        signal.alarm(seconds)
        try:
            yield
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    return limit


@pytest.fixture(scope="session")
def hostile_entries():
    """hostile_entries(directory, prefix=""): makes, in `directory`, entries that are not
    image files though named like one; returns {file name: what the reason must say}.

    A symbolic link loop (two links), a dangling link, a FIFO, a socket and a link to
    the character device /dev/zero.
    """
    def make(directory, prefix: str = "") -> dict:
        directory = str(directory)
        os.makedirs(directory, exist_ok=True)
        names = {f"{prefix}{name}.JPEG": reason for name, reason in (
                ("loop_a", "symbolic link loop"), ("loop_b", "symbolic link loop"),
                ("dangling", "dangling symbolic link"), ("fifo", "not a regular file: a FIFO"),
                ("socket", "not a regular file: a socket"),
                ("device", "not a regular file: a character device"))}
        path = lambda name: os.path.join(directory, f"{prefix}{name}.JPEG")  # noqa: E731
        os.symlink(path("loop_b"), path("loop_a"))
        os.symlink(path("loop_a"), path("loop_b"))
        os.symlink(path("nowhere"), path("dangling"))
        os.mkfifo(path("fifo"))
        # Bound under a short path (socket paths are limited to ~100 bytes), then moved.
        short = tempfile.mkdtemp(prefix="sock", dir="/tmp")
        with socket.socket(socket.AF_UNIX) as unix_socket:
            unix_socket.bind(os.path.join(short, "s"))
        os.rename(os.path.join(short, "s"), path("socket"))  # The socket file outlives close.
        os.rmdir(short)
        os.symlink("/dev/zero", path("device"))
        return names
    return make


@pytest.fixture(scope="session")
def labels_of():
    """labels_of(batches): the labels of (images, labels) batches, concatenated."""
    def labels(batches) -> np.ndarray:
        return np.concatenate([labels.numpy() for _, labels in batches])
    return labels


# ------------------------------------------------------------------------------- damaged data

@pytest.fixture(scope="session")
def damage_shard():
    """damage_shard(path, how, record=None) -> {"offset", "record", "num_records"}: damages a
    TFRecord file in place and says where its first unreadable frame starts.

    how="truncate": the file is cut in half (never at a frame boundary); "flip": the
    bytes in the middle of `record`'s data (default: the middle record) are inverted;
    "flip_length": `record`'s length field is inverted. The frames are found with
    TensorFlow's own reader (each frame is 16 bytes more than its record).
    """
    def damage(path, how: str, record=None) -> dict:
        path = str(path)
        records = [r.numpy() for r in tf.data.TFRecordDataset(path)]
        starts = np.cumsum([0] + [len(r) + 16 for r in records])  # frame k starts at starts[k]
        with open(path, "rb") as f:
            data = bytearray(f.read())
        assert len(data) == starts[-1]
        if how == "truncate":
            cut = len(data) // 2
            if cut in starts:
                cut += 1
            damaged = int(np.searchsorted(starts, cut, side="right")) - 1
            del data[cut:]
        else:
            damaged = len(records) // 2 if record is None else record
            start = int(starts[damaged])
            middle = (start + 12 + len(records[damaged]) // 2 if how == "flip" else start + 2)
            for index in range(middle, middle + 4):
                data[index] ^= 0xFF
        with open(path, "wb") as f:
            f.write(bytes(data))
        return dict(offset=int(starts[damaged]), record=damaged, num_records=len(records))
    return damage


# ------------------------------------------------------------------------------- statistics

@pytest.fixture(scope="session")
def stats():
    """The shipped ImageNet statistics (per-channel mean, PCA), no mean image."""
    return stats_lib.load_stats(None)


@pytest.fixture(scope="session")
def make_stats(stats):
    """make_stats(mean_image=None, eigval=None): the shipped statistics with a mean image
    and/or other PCA eigenvalues (0..255 scale)."""
    def make(mean_image=None, eigval=None) -> stats_lib.ImageStats:
        changes = dict(mean_image=None if mean_image is None
                       else np.asarray(mean_image, np.float32))
        if eigval is not None:
            changes["eigval"] = np.asarray(eigval, np.float32)
        return dataclasses.replace(stats, **changes)
    return make


# ------------------------------------------------------------------------------- training runs

@pytest.fixture(scope="session")
def randomize_weights():
    """randomize_weights(model, seed=0): redraws every weight so outputs differ per image.

    The paper's N(0, 0.01) start (unit biases in some layers) gives nearly the same output
    and fc7 features for every image, too flat for parity, neighbour or occlusion tests.
    Kernels are drawn N(0, 2 / fan_in) (He: ReLU layers keep their activations' scale),
    biases are 0, and conv1's kernels are divided by 16: the network sees 0..255-scale
    pixels, and the smaller start keeps the logits where softmax still varies with them.
    """
    def randomize(model, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        for weight in model.weights:
            shape = tuple(weight.shape)
            if len(shape) == 1:
                weight.assign(np.zeros(shape, np.float32))
                continue
            scale = np.sqrt(2.0 / np.prod(shape[:-1]))
            if weight.path.startswith("conv1/"):
                scale /= 16.0
            weight.assign(rng.normal(0.0, scale, shape).astype(np.float32))
    return randomize


@pytest.fixture(scope="session")
def make_run(randomize_weights):
    """make_run(model_dir, class_names, seed=0, **settings): a trained run's directory.

    Written the way `train` writes it: `settings` are TrainConfig fields (input_size,
    resize_size, mean_mode, stats_path, tower_devices...; tiny defaults: 1/16 of the
    widths, 64x64 crops, data_dir beside model_dir), saved as config.json with its model
    spec; labels.json lists `class_names` (synsets n00000000, n00000001...); the model
    is built from the spec (on the tower devices, if any), its weights randomised (see
    `randomize_weights`) and saved as checkpoint ckpt-1.

    Returns:
      {"model_dir", "config" (TrainConfig), "model", "labels", "manager"
       (its tf.train.CheckpointManager, to save more checkpoints)}.
    """
    def make(model_dir, class_names, seed: int = 0, **settings) -> dict:
        model_dir = str(model_dir)
        values = dict(data_dir=os.path.join(os.path.dirname(model_dir), "data"),
                      width_multiplier=0.0625, input_size=64, num_classes=len(class_names))
        values.update(settings)
        config = config_lib.TrainConfig(**values)
        os.makedirs(model_dir, exist_ok=True)
        config_lib.save(config, model_dir)
        labels = [{"index": index, "synset": f"n{index:08d}", "name": name}
                  for index, name in enumerate(class_names)]
        run_dir.write_labels(model_dir, labels)
        model = run_dir.build_model(config.model_spec(), config.tower_devices)
        randomize_weights(model, seed)
        manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                             run_dir.checkpoint_dir(model_dir), max_to_keep=3)
        manager.save()
        return dict(model_dir=model_dir, config=config, model=model, labels=labels,
                    manager=manager)
    return make


@pytest.fixture(scope="session")
def corrupt_checkpoint():
    """corrupt_checkpoint(prefix, how): damages a real checkpoint as a disk fault would.

      "truncate-data"   its .data-00000-of-00001 file cut to half its length
      "truncate-index"  its .index file cut to half its length
      "garbage-state"   the state file `checkpoint` beside it replaced by random bytes
    """
    def corrupt(prefix, how: str) -> None:
        prefix = str(prefix)
        if how == "garbage-state":
            path = os.path.join(os.path.dirname(prefix), "checkpoint")
            with open(path, "wb") as f:
                f.write(np.random.default_rng(0).integers(128, 256, 300, np.uint8).tobytes())
            return
        path = prefix + {"truncate-data": ".data-00000-of-00001",
                         "truncate-index": ".index"}[how]
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) // 2)
    return corrupt


# ------------------------------------------------------------------------------- custom layers

@pytest.fixture(scope="session")
def check_layer_contract():
    """check_layer_contract(layer_class, kwargs, input_shape): a custom layer's contract.

    Like Keras' `run_layer_test`, for `layer_class(**kwargs)` on a random input:
      * the output has `compute_output_shape`'s shape, called eagerly and symbolically;
      * get_config / from_config gives a layer of the same class and config that, with the
        same weights, gives the same outputs; keras.saving.serialize_keras_object /
        deserialize_keras_object gives the same class and config;
      * under "float32", "mixed_float16" and "mixed_bfloat16" the layer runs, returns
        finite outputs in the policy's compute dtype, keeps float32 variables, and a
        training call under tf.GradientTape gives a finite, not all-zero gradient for
        every trainable weight and for the input.

    Returns:
      The float32 layer, built (for further checks).
    """
    def check(layer_class, kwargs: dict, input_shape) -> keras.layers.Layer:
        x = np.random.default_rng(0).normal(0, 10, input_shape).astype(np.float32)
        layer = layer_class(**kwargs)
        outputs = layer(x).numpy()
        expected_shape = tuple(layer.compute_output_shape(input_shape))
        assert outputs.shape == expected_shape
        assert tuple(layer(keras.Input(batch_shape=input_shape)).shape) == expected_shape

        config = layer.get_config()
        restored = layer_class.from_config(config)
        assert type(restored) is layer_class and restored.get_config() == config
        restored.build(input_shape)
        restored.set_weights(layer.get_weights())
        np.testing.assert_array_equal(restored(x).numpy(), outputs)
        deserialized = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(layer))
        assert type(deserialized) is layer_class and deserialized.get_config() == config

        _check_policy(layer, x, "float32")
        for policy in ("mixed_float16", "mixed_bfloat16"):
            _check_policy(layer_class(**kwargs, dtype=policy), x, policy)
        return layer
    return check


def _check_policy(layer, x, policy):
    x = tf.constant(x)
    weights = tf.constant(np.random.default_rng(1).normal(size=layer(x).shape), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = layer(x, training=True)
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * weights)
    assert outputs.dtype == layer.compute_dtype == keras.DTypePolicy(policy).compute_dtype, policy
    assert np.all(np.isfinite(tf.cast(outputs, tf.float32).numpy())), policy
    assert all(weight.dtype == "float32" for weight in layer.weights), policy
    gradients = tape.gradient(loss, [x] + layer.trainable_weights)
    for name, gradient in zip(["input"] + [w.path for w in layer.trainable_weights], gradients):
        assert gradient is not None, (policy, name)
        gradient = tf.cast(gradient, tf.float32).numpy()
        assert np.all(np.isfinite(gradient)) and np.any(gradient != 0), (policy, name)


# ------------------------------------------------------------------------------ tiny records

@pytest.fixture(scope="session")
def tiny_records(tmp_path_factory) -> str:
    """A records directory of the real converter: the demo's first 3 classes, 8 training
    and 2 validation images each (one training image truncated, so 23 are read),
    shorter sides resized to 72."""
    from alexnet_tf.data.imagenet import convert
    from alexnet_tf.data.imagenet import demo
    root = tmp_path_factory.mktemp("tiny_records")
    images, _ = demo.make_demo_data(str(root / "images"), num_classes=3,
                                    num_train_per_class=8, num_val_per_class=2, seed=1)
    output = str(root / "records")
    convert.convert(convert.ConvertOptions(
            imagenet_dir=images, output_dir=output, train_shards=2, validation_shards=1,
            resize=72, num_workers=1, show_progress=False))
    return output
