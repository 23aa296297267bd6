"""Measures the ImageNet converter's speed: per worker, with more workers, against the bare cost.

  python tools/benchmark_convert.py --work_dir=/tmp/convert_bench --dataset=photos
  python tools/benchmark_convert.py --work_dir=/tmp/convert_bench --dataset=demo

`photos` writes --num_images JPEGs of 500x375 (ImageNet's typical size; smooth colour
fields plus noise, quality 90, ~100 KB like an ImageNet JPEG); `demo` uses
tools/make_demo_data.py's dataset. For each repeat (1 and N workers interleaved, so
that load from other processes hits both alike) it times:

  bare      image_recode.recode_image over the files' bytes already in memory: the
            decode + resize + centre crop + JPEG encode of one image, nothing else
  bare_xN   the bare loop split over N processes at once: the scaling this machine
            allows at the moment (it is shared), to read the converter's scaling against
  bare_tf   the same work with TF ops (preprocessing.eval_crops + tf.io.encode_jpeg), to
            justify using Pillow
  convert   imagenet_convert.convert with --workers processes, wall clock from the call
            to the manifest (reading files, records, shards, manifest, process start-up)

and prints medians, the ratios of the converter to the bare loop and of N workers to one,
and the hours 1.28M images would take.
"""

from alexnet_tf import startup  # noqa: F401 (first: quiets TensorFlow's start-up notices)

import io  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from absl import flags  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from alexnet_tf import errors  # noqa: E402
from alexnet_tf.data.imagenet import demo as demo_data  # noqa: E402
from alexnet_tf.data.imagenet import recode as image_recode  # noqa: E402
from alexnet_tf.data.imagenet import convert as imagenet_convert  # noqa: E402
from alexnet_tf.data import preprocessing  # noqa: E402

IMAGENET_TRAIN_IMAGES = 1_281_167

_WORK_DIR = flags.DEFINE_string("work_dir", "/tmp/convert_bench", "Scratch folder.")
_DATASET = flags.DEFINE_enum("dataset", "photos", ["photos", "demo"], "What to convert.")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 400, "Images for --dataset=photos.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Worker count compared with 1 worker.")
_REPEATS = flags.DEFINE_integer("repeats", 3, "Timed repeats; medians are reported.")


def _photo(rng: np.random.Generator) -> bytes:
    coarse = rng.integers(0, 256, (375 // 25 + 2, 500 // 25 + 2, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(coarse).resize((500, 375), Image.Resampling.BICUBIC))
    pixels = np.clip(smooth + rng.normal(0, 12, smooth.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def make_dataset(work_dir: str) -> str:
    """Returns an ImageNet-layout folder to convert."""
    if _DATASET.value == "demo":
        path = os.path.join(work_dir, "demo")
        demo_data.make_demo_data(path)
        return path
    path = os.path.join(work_dir, f"photos_{_NUM_IMAGES.value}")
    if not os.path.isdir(path):
        rng = np.random.default_rng(0)
        for index in range(_NUM_IMAGES.value):
            folder = os.path.join(path + ".incomplete", "train", demo_data.synset_id(index % 10))
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{index}.JPEG"), "wb") as f:
                f.write(_photo(rng))
        os.replace(path + ".incomplete", path)
    return path


def _all_bytes(imagenet_dir: str) -> list:
    contents = []
    for directory, _, names in sorted(os.walk(os.path.join(imagenet_dir, "train"))):
        for name in sorted(names):
            with open(os.path.join(directory, name), "rb") as f:
                contents.append(f.read())
    return contents


def time_bare(contents: list):
    """(wall seconds, CPU seconds) of recode_image over every file's bytes."""
    start, cpu_start = time.perf_counter(), time.process_time()
    for data in contents:
        try:
            image_recode.recode_image(data)
        except image_recode.BadImageError:
            pass  # The demo's truncated file: counted like the converter counts it.
    return time.perf_counter() - start, time.process_time() - cpu_start


def time_bare_parallel(contents: list, num_processes: int):
    """(wall seconds, None) of time_bare's loop split over `num_processes` processes.

    What the machine gives N independent copies of the bare work right now: the
    reference for the converter's scaling (other users' load changes it from minute to
    minute). Forked: the children run only Pillow code, never TensorFlow.
    """
    context = multiprocessing.get_context("fork")
    start = time.perf_counter()
    processes = [context.Process(target=time_bare, args=(contents[i::num_processes],))
                 for i in range(num_processes)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    return time.perf_counter() - start, None


def time_bare_tf(contents: list):
    """(wall, CPU seconds of all of TF's threads) for the same work in TF ops."""
    import tensorflow as tf

    @tf.function
    def recode(data):
        frame = preprocessing.eval_crops(data, crop_size=256, resize_size=256)
        return tf.io.encode_jpeg(frame[preprocessing.IMAGE_KEY][0], quality=90)

    images = [data for data in contents if data[:3] == b"\xff\xd8\xff"][:200]
    recode(tf.constant(images[0]))  # Trace once, outside the timing.
    start, cpu_start = time.perf_counter(), time.process_time()
    for data in images:
        recode(tf.constant(data))
    scale = len(contents) / len(images)
    return ((time.perf_counter() - start) * scale, (time.process_time() - cpu_start) * scale)


def time_convert(imagenet_dir: str, work_dir: str, num_workers: int):
    """(wall seconds, CPU seconds summed over workers) of one conversion."""
    output_dir = os.path.join(work_dir, f"records_{num_workers}")
    shutil.rmtree(output_dir, ignore_errors=True)
    options = imagenet_convert.ConvertOptions(
            imagenet_dir=imagenet_dir, output_dir=output_dir, splits=("train",),
            train_shards=8 * _WORKERS.value, num_workers=num_workers, show_progress=False)
    start = time.perf_counter()
    result = imagenet_convert.convert(options)
    return time.perf_counter() - start, result.cpu_seconds


def main(argv):
    if len(argv) > 1:
        raise errors.InvalidInputError(f"unexpected arguments: {argv[1:]}")
    errors.check_output_directory(_WORK_DIR.value, "--work_dir")
    os.makedirs(_WORK_DIR.value, exist_ok=True)
    imagenet_dir = make_dataset(_WORK_DIR.value)
    contents = _all_bytes(imagenet_dir)
    count = len(contents)
    load_before = os.getloadavg()
    # The fork server starts (and imports TensorFlow) once, on the first multi-worker run.
    time_convert(imagenet_dir, _WORK_DIR.value, _WORKERS.value)
    many = f"convert_{_WORKERS.value}"
    names = ("bare", f"bare_x{_WORKERS.value}", "bare_tf", "convert_1", many)
    wall, cpu = {name: [] for name in names}, {name: [] for name in names}
    for _ in range(_REPEATS.value):
        for name, measure in zip(names, (
                lambda: time_bare(contents),
                lambda: time_bare_parallel(contents, _WORKERS.value),
                lambda: time_bare_tf(contents),
                lambda: time_convert(imagenet_dir, _WORK_DIR.value, 1),
                lambda: time_convert(imagenet_dir, _WORK_DIR.value, _WORKERS.value))):
            seconds, cpu_seconds = measure()
            wall[name].append(seconds)
            cpu[name].append(cpu_seconds)
    rate = {name: count / statistics.median(values) for name, values in wall.items()}
    cpu_ms = {name: 1000 * statistics.median(values) / count for name, values in cpu.items()
              if None not in values}
    result = {
            "dataset": _DATASET.value, "num_images": count, "repeats": _REPEATS.value,
            "wall_images_per_s": {name: round(value, 1) for name, value in rate.items()},
            "cpu_ms_per_image": {name: round(value, 2) for name, value in cpu_ms.items()},
            # Converter against the bare loop, wall clock (load-sensitive) and CPU time
            # (load-robust):
            "per_worker_vs_bare_wall": round(rate["convert_1"] / rate["bare"], 3),
            "per_worker_vs_bare_cpu": round(cpu_ms["bare"] / cpu_ms["convert_1"], 3),
            f"scaling_1_to_{_WORKERS.value}_wall": round(rate[many] / rate["convert_1"], 2),
            # The same for N copies of the bare loop: what this machine allowed meanwhile.
            f"bare_scaling_1_to_{_WORKERS.value}_wall": round(
                    rate[f"bare_x{_WORKERS.value}"] / rate["bare"], 2),
            # If N cores were free: N workers, each at its measured CPU cost per image.
            f"scaling_1_to_{_WORKERS.value}_if_free_cores_cpu": round(
                    _WORKERS.value * cpu_ms["convert_1"] / cpu_ms[many], 2),
            "pillow_vs_tf_cpu": round(cpu_ms["bare_tf"] / cpu_ms["bare"], 2),
            f"hours_imagenet_{_WORKERS.value}_workers_wall": round(
                    IMAGENET_TRAIN_IMAGES / rate[many] / 3600, 2),
            # Free cores assumed: the converter's CPU cost per image divided among them.
            "hours_imagenet_2_cores_cpu": round(
                    IMAGENET_TRAIN_IMAGES * cpu_ms[many] / 1000 / 2 / 3600, 2),
            "hours_imagenet_16_cores_cpu": round(
                    IMAGENET_TRAIN_IMAGES * cpu_ms[many] / 1000 / 16 / 3600, 2),
            "load_average_before_after": [round(load_before[0], 1),
                                          round(os.getloadavg()[0], 1)],
            "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result, indent=1))
    with open(os.path.join(_WORK_DIR.value, f"results_{_DATASET.value}.json"), "w") as f:
        json.dump(result, f, indent=1)


if __name__ == "__main__":
    errors.run_command(main)
