"""Input benchmark: images/s per CPU core of the tf.data pipeline against its limit and Pillow.

Three ways through the same records, each measured with a given number of cores:

  decode   raw JPEG decoding alone (read, parse, full `tf.io.decode_jpeg`, batch): the limit
  train    `input_pipeline.build_dataset(training=True)`: the full training pipeline
  train_device  the same with augment_on_device=True: the host stops at uint8 crops and
           leaves mean subtraction and PCA lighting to the accelerator's first step
  pillow   a plain Python pipeline with Pillow and NumPy doing the same augmentation
           (random crop, flip, mean subtraction, PCA lighting), one image at a time, the
           way a torchvision-style loader does it; one worker process per core

The entry point (`python -m alexnet_tf.benchmark input`) runs every measurement in a
fresh process pinned to the cores with `taskset` (when available), so "1 core" means one.
"""

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from typing import List

import numpy as np
from PIL import Image
import tensorflow as tf

from alexnet_tf.data import pipeline as input_pipeline
from alexnet_tf.data import schema
from alexnet_tf.data import stats as stats_lib

KINDS = ("decode", "train", "train_device", "pillow")
RESULT_PREFIX = "BENCH_INPUT_RESULT "  # how a worker process reports its figure


def make_records(data_dir: str, num_images: int, num_shards: int = 4, seed: int = 0) -> str:
    """Writes `num_images` 256x256 JPEG records (smooth content plus noise, ~30 KB each).

    Stand-ins for converted ImageNet when no data directory is given.
    """
    os.makedirs(data_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    writers = [tf.io.TFRecordWriter(os.path.join(data_dir, schema.shard_name("train", i, num_shards)))
               for i in range(num_shards)]
    for k in range(num_images):
        small = Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        smooth = np.asarray(small.resize((256, 256), Image.BICUBIC), np.int16)
        array = np.clip(smooth + rng.integers(-12, 12, smooth.shape), 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "JPEG", quality=90)
        writers[k % num_shards].write(schema.make_example(
                encoded=buffer.getvalue(), image_format="JPEG", height=256, width=256,
                filename=f"bench_{k}.JPEG", label=k % 1000, synset="n00000000"))
    for writer in writers:
        writer.close()
    # What the converter's manifest says about such records (all 256x256 JPEGs), so the
    # pipeline treats them exactly as converted ImageNet.
    with open(os.path.join(data_dir, schema.MANIFEST_FILE), "w") as f:
        json.dump({"options": {"resize": 256},
                   "splits": {schema.TRAIN: {"num_images": num_images}}}, f)
    return data_dir


def _rates(num_images: int, wall_seconds: float, cpu_seconds: float) -> dict:
    # CPU seconds (all threads of the process) give a per-core rate that other programs
    # on a shared machine disturb much less than wall time does.
    return {"images_per_second": num_images / wall_seconds,
            "images_per_cpu_second": num_images / max(cpu_seconds, 1e-9)}


def _time_dataset(dataset: tf.data.Dataset, batch_size: int, num_batches: int,
                  warmup_batches: int) -> dict:
    """Rates (see `_rates`) over `num_batches` batches after `warmup_batches`."""
    iterator = iter(dataset)
    for _ in range(warmup_batches):
        next(iterator)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(num_batches):
        next(iterator)
    return _rates(num_batches * batch_size, time.perf_counter() - wall, time.process_time() - cpu)


def _with_threads(dataset: tf.data.Dataset, num_cores: int) -> tf.data.Dataset:
    options = tf.data.Options()
    options.threading.private_threadpool_size = num_cores
    return dataset.with_options(options)


def decode_dataset(data_dir: str, batch_size: int, num_cores: int) -> tf.data.Dataset:
    """Read, parse and fully decode every record: the work no JPEG pipeline can avoid."""
    files = input_pipeline.list_shards(data_dir, schema.TRAIN)

    def decode(serialized):
        image_bytes, label = input_pipeline.parse_record(serialized)
        return tf.io.decode_jpeg(image_bytes, channels=3), label

    dataset = tf.data.Dataset.from_tensor_slices(files).interleave(
            tf.data.TFRecordDataset, cycle_length=len(files), num_parallel_calls=num_cores)
    dataset = dataset.repeat().map(decode, num_parallel_calls=num_cores)
    return _with_threads(dataset.batch(batch_size).prefetch(2), num_cores)


def measure_tf(kind: str, data_dir: str, *, batch_size: int, num_batches: int,
               warmup_batches: int, num_cores: int,
               shuffle_buffer: int = input_pipeline.DEFAULT_SHUFFLE_BUFFER) -> dict:
    """Rates of the `decode`, `train` or `train_device` pipeline with `num_cores` threads."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(num_cores)
        tf.config.threading.set_inter_op_parallelism_threads(num_cores)
    except RuntimeError:
        pass  # TF already started in this process (tests); the private thread pool still applies.
    if kind == "decode":
        dataset = decode_dataset(data_dir, batch_size, num_cores)
    elif kind in ("train", "train_device"):
        dataset = input_pipeline.build_dataset(
                data_dir, schema.TRAIN, global_batch_size=batch_size, training=True, seed=0,
                stats=stats_lib.load_stats(None), num_classes=1000,
                private_threadpool_size=num_cores, shuffle_buffer=shuffle_buffer,
                augment_on_device=kind == "train_device")
    else:
        raise ValueError(f"kind must be 'decode', 'train' or 'train_device' here, got {kind!r}")
    return _time_dataset(dataset, batch_size, num_batches, warmup_batches)


def read_image_bytes(data_dir: str, limit: int) -> List[bytes]:
    """The encoded images of up to `limit` train records, read with plain Python."""
    images = []
    for path in input_pipeline.list_shards(data_dir, schema.TRAIN):
        with open(path, "rb") as f:
            while len(images) < limit:
                header = f.read(12)  # uint64 length, uint32 masked CRC of the length
                if len(header) < 12:
                    break
                (length,) = struct.unpack("<Q", header[:8])
                example = tf.train.Example.FromString(f.read(length))
                f.read(4)  # the data CRC
                images.append(example.features.feature[schema.IMAGE_ENCODED].bytes_list.value[0])
    if not images:
        raise ValueError(f"no records read from {data_dir!r}")
    return images


class PillowPipeline:
    """The paper's augmentation, one image at a time, in Pillow and NumPy."""

    def __init__(self, stats: stats_lib.ImageStats, crop_size: int = 224, seed: int = 0):
        self.mean = np.asarray(stats.mean_rgb, np.float32)
        self.eigval = np.asarray(stats.eigval, np.float32)
        self.eigvec = np.asarray(stats.eigvec, np.float32)
        self.crop_size = crop_size
        self.rng = np.random.default_rng(seed)

    def __call__(self, image_bytes: bytes) -> np.ndarray:
        image = Image.open(io.BytesIO(image_bytes)).convert("RGB")
        width, height = image.size
        top = int(self.rng.integers(0, height - self.crop_size + 1))
        left = int(self.rng.integers(0, width - self.crop_size + 1))
        image = image.crop((left, top, left + self.crop_size, top + self.crop_size))
        if self.rng.random() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        shift = self.eigvec @ (self.rng.normal(0.0, 0.1, 3).astype(np.float32) * self.eigval)
        return np.asarray(image, np.float32) - self.mean + shift


def pillow_worker(images: List[bytes], num_images: int, seed: int) -> dict:
    """Rates of `num_images` images (cycling through `images`) through Pillow."""
    pipeline = PillowPipeline(stats_lib.load_stats(None), seed=seed)
    for image_bytes in images[:8]:
        pipeline(image_bytes)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(num_images):
        pipeline(images[i % len(images)])
    return _rates(num_images, time.perf_counter() - wall, time.process_time() - cpu)


def measure_pillow(data_dir: str, *, num_images: int, num_cores: int) -> dict:
    """Rates of the Pillow pipeline with one worker process per core.

    With several workers, images/s is the sum of the workers' own rates (they run side
    by side; process start-up is not counted) and images per CPU-second is over all of
    their CPU time, as for the tf.data pipelines.
    """
    images = read_image_bytes(data_dir, limit=1024)
    if num_cores == 1:
        return pillow_worker(images, num_images, 0)
    import multiprocessing  # Only for the multi-core figure.
    with multiprocessing.get_context("spawn").Pool(num_cores) as pool:
        rates = pool.starmap(pillow_worker,
                             [(images, num_images, seed) for seed in range(num_cores)])
    cpu_seconds = sum(num_images / rate["images_per_cpu_second"] for rate in rates)
    return {"images_per_second": sum(rate["images_per_second"] for rate in rates),
            "images_per_cpu_second": num_cores * num_images / cpu_seconds}


def measure(kind: str, data_dir: str, *, num_cores: int, batch_size: int, num_batches: int,
            warmup_batches: int,
            shuffle_buffer: int = input_pipeline.DEFAULT_SHUFFLE_BUFFER) -> dict:
    """{"images_per_second", "images_per_cpu_second"} of one `kind` (see KINDS), in this process."""
    if kind == "pillow":
        return measure_pillow(data_dir, num_images=batch_size * num_batches, num_cores=num_cores)
    return measure_tf(kind, data_dir, batch_size=batch_size, num_batches=num_batches,
                      warmup_batches=warmup_batches, num_cores=num_cores,
                      shuffle_buffer=shuffle_buffer)


def _worker_command(kind: str, num_cores: int, worker_args: List[str], pin: bool) -> List[str]:
    command = [sys.executable, "-m", "alexnet_tf.benchmark", "input",
               f"--worker={kind}:{num_cores}"] + worker_args
    if pin and shutil.which("taskset") and num_cores <= (os.cpu_count() or 1):
        command = ["taskset", "-c", ",".join(str(core) for core in range(num_cores))] + command
    return command


def run_in_subprocess(kind: str, num_cores: int, worker_args: List[str], *, pin: bool,
                      timeout: float = 900) -> dict:
    """Runs one measurement in a fresh (pinned) process; returns its rates."""
    command = _worker_command(kind, num_cores, worker_args, pin)
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    for line in reversed(result.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"benchmark worker {' '.join(command)} failed (exit {result.returncode}):\n"
                       f"{result.stderr[-2000:]}")


def run_benchmark(kinds, cores, *, num_runs: int, worker_args: List[str], pin: bool,
                  log=print) -> dict:
    """Median rates for every (kind, cores); runs interleaved so load hits all alike.

    Returns:
      {(kind, num_cores): {"wall": median images/s, "cpu": median images per CPU
      second, "runs": [rates of each run]}}.
    """
    runs = {(kind, num_cores): [] for kind in kinds for num_cores in cores}
    for run in range(num_runs):
        for kind, num_cores in runs:
            rates = run_in_subprocess(kind, num_cores, worker_args, pin=pin)
            runs[(kind, num_cores)].append(rates)
            log(f"run {run + 1}/{num_runs} {kind:12s} cores={num_cores}: "
                f"{rates['images_per_second']:8.1f} images/s, "
                f"{rates['images_per_cpu_second']:8.1f} images per CPU second")
    return {key: {"runs": values,
                  "wall": float(np.median([r["images_per_second"] for r in values])),
                  "cpu": float(np.median([r["images_per_cpu_second"] for r in values]))}
            for key, values in runs.items()}


def format_report(results: dict, kinds, cores) -> str:
    """A Markdown table of the medians, then the ratios: train / decode, train / Pillow
    and 2 cores / 1 core."""
    header = " | ".join(f"{c} core(s): images/s wall (per core)" for c in cores)
    lines = [f"| pipeline | {header} | images per CPU-second |",
             "|---|" + "---|" * (len(cores) + 1)]
    for kind in kinds:
        cells = [f"{results[(kind, c)]['wall']:.0f} ({results[(kind, c)]['wall'] / c:.0f})"
                 for c in cores]
        cpu = results[(kind, cores[0])]["cpu"]
        lines.append(f"| {kind} | " + " | ".join(cells) + f" | {cpu:.0f} |")
    for measure in ("wall", "cpu"):
        for c in cores if measure == "wall" else cores[:1]:
            def rate(kind):
                return results[(kind, c)][measure] if (kind, c) in results else float("nan")
            for kind, base in (("train", "decode"), ("train_device", "decode"),
                               ("train", "pillow")):
                if kind in kinds and base in kinds:
                    lines.append(f"- {measure}, {c} core(s): {kind} / {base} = "
                                 f"{rate(kind) / rate(base):.2f}")
    if len(cores) > 1:
        for kind in kinds:
            ratio = results[(kind, cores[-1])]["wall"] / results[(kind, cores[0])]["wall"]
            lines.append(f"- {kind}: {cores[-1]} cores / {cores[0]} core (wall) = {ratio:.2f}x")
    return "\n".join(lines)
