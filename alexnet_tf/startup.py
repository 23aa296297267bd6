"""What every command does before its work: quiet TensorFlow's start-up, tune malloc.

Importing this module first in a command (before anything imports TensorFlow) imports
TensorFlow with its start-up notices filtered: on a machine without a GPU, TensorFlow
prints CUDA driver, oneDNN and CPU-instruction notices that say nothing a user can act
on. Every other line it prints goes to stderr as usual, C++ warnings and info are off
unless TF_CPP_MIN_LOG_LEVEL says otherwise, TensorFlow's and Keras' own INFO log
records are dropped (their warnings pass), and ALEXNET_TF_QUIET=0 keeps everything.

`tune_malloc` (alexnet_tf/malloc.py) keeps glibc from returning large buffers to the OS
after every training step.
"""

import logging
import os
import re
import sys
import tempfile

from absl import logging as absl_logging

from alexnet_tf.malloc import tune_malloc  # noqa: F401  (every command calls startup.tune_malloc)

# What TensorFlow prints while it loads on a machine with no GPU, and nothing else.
_NO_GPU_NOTICES = re.compile(
        r"All log messages before absl::InitializeLog|oneDNN custom operations are on|"
        r"cpu_feature_guard|To enable the following instructions|"
        r"Could not find cuda drivers|failed call to cuInit|cuda_diagnostics|"
        r"could not open file to read NUMA node")


def import_tensorflow_quietly() -> None:
    """Imports TensorFlow, dropping its start-up notices if it finds no GPU.

    TensorFlow writes them from C++ before its logging is configured, so no setting
    turns them off: they are captured from file descriptor 2 while TensorFlow loads
    and finds its devices, and every line that is not such a notice is written back.
    """
    if "tensorflow" in sys.modules or os.environ.get("ALEXNET_TF_QUIET", "1") == "0":
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf
            has_gpu = bool(tf.config.list_physical_devices("GPU"))
        finally:
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
        captured.seek(0)
        lines = captured.read().decode(errors="replace").splitlines(keepends=True)
    kept = [line for line in lines if has_gpu or not _NO_GPU_NOTICES.search(line)]
    sys.stderr.write("".join(kept))


class _NoLibraryInfo(logging.Filter):
    """Drops INFO records that TensorFlow and Keras log through absl (e.g. "Sharding
    callback duration" at every checkpoint); their warnings and errors pass."""

    _LIBRARIES = tuple(os.sep + name + os.sep for name in ("tensorflow", "keras", "tf_keras"))

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not any(
                library in record.pathname for library in self._LIBRARIES)


import_tensorflow_quietly()
if os.environ.get("ALEXNET_TF_QUIET", "1") != "0":
    absl_logging.get_absl_handler().addFilter(_NoLibraryInfo())
    # TensorFlow's own Python logger ("INFO:tensorflow:Assets written to ..."): warnings up.
    logging.getLogger("tensorflow").setLevel(logging.WARNING)
