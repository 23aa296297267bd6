"""glibc malloc tuning for a process that trains or serves: large buffers are reused.

`tune_malloc` keeps glibc from returning large buffers to the OS after every training
step. TensorFlow's CPU allocator asks malloc for every tensor; glibc serves requests
above its mmap threshold (128 KB, adapting up to 32 MB) with a fresh mmap and unmaps
them on free, so every large activation and gradient of a step (fc6's weight gradient
is 151 MB) would arrive as new pages that the kernel zero-fills on first touch, every
step. Raising the mmap and trim thresholds keeps those buffers in malloc's heap for
reuse (docs/performance.md has the measured effect). Memory freed by the process is
then kept rather than returned to the OS, which suits a training or serving process
with a steady working set. ALEXNET_TF_MALLOC_TUNING=0 leaves malloc alone; elsewhere
than glibc it does nothing.

This module imports nothing but the standard library, so another interpreter (the
PyTorch worker of tools/compare_pytorch.py) can use it from this checkout.
"""

import ctypes
import ctypes.util
import os

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 1 << 30  # requests up to 1 GiB come from the heap
TRIM_THRESHOLD = (1 << 31) - 1  # keep up to 2 GiB of free heap before giving memory back
_done = False


def tune_malloc() -> bool:
    """Raises glibc's mmap and trim thresholds once per process; True if it did.

    Call it early (the entry points do, before building the model); it only affects
    allocations made afterwards.
    """
    global _done
    if _done:
        return True
    if os.environ.get("ALEXNET_TF_MALLOC_TUNING", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to tune
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done
