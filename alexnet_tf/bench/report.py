"""Reporting for `python -m alexnet_tf.benchmark model`: the markdown table and bf16 ratios."""

import datetime
import os
import platform
import statistics
from typing import List, Sequence

import keras
import tensorflow as tf

from alexnet_tf.bench.model import Result


def paired_ratios(results: Sequence[Result]) -> List[str]:
    """For interleaved results: mixed_bfloat16 / fp32 throughput, the median of the
    per-round ratios, for every (mode, batch size, XLA) measured in both precisions."""
    by_key = {(r.mode, r.batch_size, r.spec.jit_compile, r.spec.precision): r for r in results}
    lines = []
    for (mode, batch_size, jit, precision), fast in by_key.items():
        slow = by_key.get((mode, batch_size, jit, "fp32"))
        if precision != "mixed_bfloat16" or slow is None:
            continue
        ratio = statistics.median(a / b for a, b in zip(fast.run_images_per_second,
                                                          slow.run_images_per_second))
        lines.append(f"{mode} batch {batch_size}: mixed_bfloat16 / fp32 = {ratio:.2f}x "
                     f"(median of {len(fast.run_images_per_second)} paired runs)")
    return lines



def format_table(results: Sequence[Result], command: str = "") -> str:
    """A markdown table of results, headed by the date, machine and command."""
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    processor = platform.processor() or platform.machine()
    lines = [f"Measured {now} on {os.cpu_count()} logical CPUs ({processor}), load average "
             f"{os.getloadavg()[0]:.1f} at the end (other jobs share the machine), TensorFlow "
             f"{tf.__version__}, Keras {keras.__version__}; medians of the runs.",
             ""]
    if command:
        lines += [f"`{command}`", ""]
    lines += ["| model | mode | precision | XLA | batch | images/s | GFLOP/img | GFLOP/s "
              "| matmul fp32 / bf16 GFLOP/s | of matmul | peak RSS MiB |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        model = r.spec.name + (f"/{r.spec.variant}" if r.spec.name == "alexnet" else "")
        matmul = " / ".join(f"{r.matmul_gflops[k]:.0f}" if k in r.matmul_gflops else "-"
                            for k in ("fp32", "bf16"))
        lines.append(f"| {model} | {r.mode} | {r.spec.precision} | "
                     f"{'on' if r.spec.jit_compile else 'off'} | {r.batch_size} | "
                     f"{r.images_per_second:.1f} | {r.gflop_per_image:.2f} | "
                     f"{r.achieved_gflops:.0f} | {matmul} | {r.fraction_of_matmul:.0%} | "
                     f"{r.peak_memory_mb:.0f} |")
    return "\n".join(lines)
