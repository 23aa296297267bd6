"""Writing a file so that no reader ever sees part of it.

Every file the project writes for another process to read (config.json, labels.json,
manifests, statistics, evaluation results, figures, caches) is written under a
temporary name in the same directory and renamed onto its final name when complete.
A rename within one file system is atomic, so a crash leaves either the previous file
or the new one, never a truncated one that looks complete.
"""

import contextlib
import json
import os
from typing import Iterator


@contextlib.contextmanager
def replacing(path: str, suffix: str = "") -> Iterator[str]:
    """Yields a temporary path next to `path`, renamed onto `path` when the block ends.

    If the block raises, the temporary file is removed and `path` is left as it was.

    Args:
      path: the file to write.
      suffix: an ending the writer needs on the temporary name (np.savez adds ".npz"
        to any other name).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp_path = os.path.join(directory, f".{os.path.basename(path)}.tmp-{os.getpid()}{suffix}")
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


def write_text(path: str, text: str) -> None:
    """Writes `text` to `path` atomically."""
    with replacing(path) as tmp_path:
        with open(tmp_path, "w") as f:
            f.write(text)


def write_json(path: str, value, *, indent: int = 2, **dump_args) -> None:
    """Writes `value` as JSON (with a final newline) to `path` atomically."""
    write_text(path, json.dumps(value, indent=indent, **dump_args) + "\n")
