"""What a decompression bomb costs, with and without the pixel limit.

  python -m alexnet_tf.benchmark pixel_limit

A PNG bomb (`png_bomb`: a 1-bit grayscale PNG whose pixels are all zero) of 20000x20000
pixels is about 48 KB and decodes to 1.2 GB of RGB. Each row sends one image through
one path, in its own fresh process, and reports that process's peak resident memory
(ru_maxrss) before and after, and the time the image took:

  serving    `ServingModule.serve_image_bytes`, the function exported as the
             `serving_default` signature (a tiny classifier behind it: the model's cost
             is not what is measured), after a warm-up request of a small image
  converter  `recode.recode_image`, what each converter worker runs per file

with no limit (`max_pixels` as large as the path allows) and with the default limit,
for the bomb and for an image exactly at the default limit (10000x10000: the largest an
image may be and still be decoded).
"""

import dataclasses
import json
import re
import resource
import struct
import subprocess
import sys
import time
from typing import List, Optional, Sequence
import zlib

RESULT_PREFIX = "PIXEL_LIMIT_RESULT "
_ROWS_PER_BLOCK = 256  # rows compressed per zlib call


def png_bomb(width: int, height: int, data_rows: Optional[int] = None) -> bytes:
    """A valid PNG of width x height black 1-bit pixels: a few bytes per 1000 pixels.

    Every row is a filter byte and width / 8 zero bytes, which zlib compresses about
    1000:1; the decoder expands each bit to an RGB pixel, 24 times more.

    Args:
      width, height: the size the header declares.
      data_rows: how many rows the file holds (default all): fewer gives, quickly, a
        truncated file with the same header.
    """
    data_rows = height if data_rows is None else data_rows
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    row = b"\0" * (1 + (width + 7) // 8)
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(row * _ROWS_PER_BLOCK)
             for _ in range(data_rows // _ROWS_PER_BLOCK)]
    parts += [compressor.compress(row * (data_rows % _ROWS_PER_BLOCK)), compressor.flush()]
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(parts))
            + chunk(b"IEND", b""))


@dataclasses.dataclass(frozen=True)
class Row:
    path: str  # "serving" or "converter"
    side: int  # the image is side x side pixels
    max_pixels: Optional[int]  # None: as large as the path allows


@dataclasses.dataclass
class Result:
    row: Row
    file_bytes: int
    outcome: str  # "decoded" or "refused: <message>"
    seconds: float
    peak_before_mib: float  # after imports and warm-up
    peak_after_mib: float


def default_rows() -> List[Row]:
    from alexnet_tf.data import image_header
    limit = image_header.DEFAULT_MAX_PIXELS
    at_limit = int(limit ** 0.5)
    return [Row(path, side, max_pixels) for path in ("serving", "converter")
            for side, max_pixels in ((20000, None), (20000, limit), (at_limit, limit))]


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def _serving_function(max_pixels: Optional[int]):
    """The serving_default function of a ServingModule around a tiny classifier."""
    import keras

    from alexnet_tf.data import image_header
    from alexnet_tf.data import preprocessing
    from alexnet_tf.data import stats as stats_lib
    from alexnet_tf.serving import saved_model

    size = 32
    model = keras.Sequential([keras.Input((size, size, 3)), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(2)])
    settings = preprocessing.EvalSettings(stats=stats_lib.load_stats(), mean_mode="rgb",
                                          crop_size=size, resize_size=preprocessing.RESIZE_SIZE)
    limit = max_pixels or image_header.MAX_PIXELS_CAP
    return saved_model.ServingModule(model, settings, max_pixels=limit).serve_image_bytes


def _converter_function(max_pixels: Optional[int]):
    from alexnet_tf.data.imagenet import recode
    limit = max_pixels or recode.LARGEST_MAX_PIXELS
    return lambda data: recode.recode_image(data, max_pixels=limit)


def measure(row: Row) -> Result:
    """Runs one row in this process (which should be fresh: ru_maxrss never goes down)."""
    import tensorflow as tf

    from alexnet_tf.data.imagenet import recode

    if row.path == "serving":
        serve = _serving_function(row.max_pixels)
        run = lambda data: serve(tf.constant([data]))  # noqa: E731
        refusal = tf.errors.InvalidArgumentError
    else:
        run = _converter_function(row.max_pixels)
        refusal = recode.BadImageError
    run(png_bomb(300, 200))  # Warm-up: traces the function, loads the codecs.
    data = png_bomb(row.side, row.side)
    before = _peak_mib()
    start = time.perf_counter()
    try:
        run(data)
        outcome = "decoded"
    except refusal as error:
        message = str(getattr(error, "message", error))
        # The signature's message, without TensorFlow's node lists around it.
        found = re.search(r"image_bytes\[0\]: [^\]\n]*", message)
        outcome = "refused: " + (found[0] if found else message.splitlines()[0])
    return Result(row, len(data), outcome, time.perf_counter() - start, before, _peak_mib())


def run_worker(row_json: str) -> None:
    """The `--pixel_limit_worker` side of `measure_in_subprocess`: prints one result line."""
    result = measure(Row(**json.loads(row_json)))
    print(RESULT_PREFIX + json.dumps(dataclasses.asdict(result)), flush=True)


def measure_in_subprocess(row: Row, timeout: float = 600) -> Result:
    """`measure(row)` in a fresh `python -m alexnet_tf.benchmark pixel_limit` process.

    Raises:
      RuntimeError: the process failed or printed no result.
    """
    command = [sys.executable, "-m", "alexnet_tf.benchmark", "pixel_limit",
               "--pixel_limit_worker=" + json.dumps(dataclasses.asdict(row))]
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            values = json.loads(line[len(RESULT_PREFIX):])
            return Result(**dict(values, row=Row(**values["row"])))
    raise RuntimeError(f"pixel_limit process failed (exit {done.returncode}) for {row}:\n"
                       f"{done.stderr[-3000:]}")


def format_table(results: Sequence[Result]) -> str:
    """A markdown table: one line per row."""
    lines = ["| path | image | file | max_pixels | outcome | time | peak RSS before | "
             "peak RSS after | increase |", "|---|---|---|---|---|---|---|---|---|"]
    for result in results:
        row = result.row
        limit = f"{row.max_pixels:,}" if row.max_pixels else "none"
        lines.append(
                f"| {row.path} | {row.side}x{row.side} PNG | {result.file_bytes / 1000:.0f} KB "
                f"| {limit} | {result.outcome} | {result.seconds:.2f} s "
                f"| {result.peak_before_mib:.0f} MiB | {result.peak_after_mib:.0f} MiB "
                f"| {result.peak_after_mib - result.peak_before_mib:.0f} MiB |")
    return "\n".join(lines)
