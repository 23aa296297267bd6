"""Tests for alexnet_tf.startup: glibc's malloc thresholds are raised once, and the
switch-off is honoured."""

import os
import subprocess
import sys

import pytest

_CHILD = """
import ctypes, sys
from alexnet_tf import startup
print(startup.tune_malloc(), startup.tune_malloc())
# With the thresholds raised a 64 MB block comes from the heap; with glibc's default
# it is a new mmapped chunk (mallinfo2's hblks counts those in use).
libc = ctypes.CDLL("libc.so.6")
class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
                 "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = Mallinfo2
libc.malloc.restype = ctypes.c_void_p
before = libc.mallinfo2().hblks
block = libc.malloc(64 << 20)
print("new_mmapped_chunks", libc.mallinfo2().hblks - before)
libc.free(ctypes.c_void_p(block))
"""


def _run(env_value, cwd):
    env = dict(os.environ, ALEXNET_TF_MALLOC_TUNING=env_value)
    result = subprocess.run([sys.executable, "-c", _CHILD], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.split("\n")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_large_blocks_come_from_the_heap_after_tuning(repo_root):
    tuned = _run("1", repo_root)
    assert tuned[0] == "True True"
    assert tuned[1] == "new_mmapped_chunks 0"
    untouched = _run("0", repo_root)
    assert untouched[0] == "False False"
    assert untouched[1] == "new_mmapped_chunks 1"


_NOTICES = ("absl::InitializeLog", "oneDNN custom operations", "cuda drivers",
            "cpu_feature_guard", "cuInit")


def _predict_stderr(tmp_path, quiet: str) -> str:
    env = dict(os.environ, ALEXNET_TF_QUIET=quiet)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)
    result = subprocess.run(
            [sys.executable, "-m", "alexnet_tf.predict", f"--saved_model={tmp_path}/none",
             f"{tmp_path}/x.jpg"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    return result.stderr


def test_commands_keep_tensorflows_start_up_notices_off_stderr(tmp_path):
    quiet = _predict_stderr(tmp_path, "1")
    assert "error: --saved_model=" in quiet  # what the user needs is still there
    assert not [notice for notice in _NOTICES if notice in quiet], quiet
    loud = _predict_stderr(tmp_path, "0")
    if not any(notice in loud for notice in _NOTICES):
        pytest.skip("this TensorFlow prints no start-up notices here")
