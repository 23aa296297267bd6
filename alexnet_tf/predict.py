r"""Top-5 classes of image files, from a SavedModel written by `alexnet_tf.export`.

  python -m alexnet_tf.predict --saved_model=/tmp/alexnet_export/1 cat.jpg dog.png

`--saved_model` may also name the export base directory; its highest version is used.
Each image goes through the SavedModel's own `serving_default` signature (the same
preprocessing TF Serving applies). A missing or undecodable file is reported and the
others still run; the exit status is 1 if any image failed, 2 if the SavedModel is unusable.
"""

import os
import sys
from typing import Sequence, TextIO

from absl import app
from absl import flags

_SAVED_MODEL = flags.DEFINE_string(
        "saved_model", None, "A SavedModel version directory (E/<version>) or its base "
        "directory E (the highest version is used).")

SIGNATURE = "serving_default"


def resolve_saved_model(path: str) -> str:
    """Returns the version directory to load for `path` (a version or a base directory).

    Raises:
      FileNotFoundError: `path` is neither a SavedModel nor a directory of versions.
    """
    if os.path.exists(os.path.join(path, "saved_model.pb")):
        return path
    versions = sorted((int(name) for name in (os.listdir(path) if os.path.isdir(path) else [])
                       if name.isdigit()
                       and os.path.exists(os.path.join(path, name, "saved_model.pb"))))
    if not versions:
        raise FileNotFoundError(f"--saved_model={path!r} is not a SavedModel directory (no "
                                "saved_model.pb) nor an export directory holding versions 1, 2, ...")
    return os.path.join(path, str(versions[-1]))


def error_reason(message: str) -> str:
    """The line of a TensorFlow runtime error that says what went wrong.

    Graph errors wrap it in "Graph execution error:", "Detected at node ..." and node lists.
    """
    for line in (message or "").splitlines():
        line = line.strip()
        if line and not line.startswith(("Graph execution error", "Detected at node", "<stack",
                                         "[[")):
            return line.split(" [[")[0].strip()
    return "decoding failed"


def format_prediction(path: str, outputs: dict) -> str:
    """Text lines for one image: rank, class index, synset, name, probability."""
    lines = [path]
    classes = outputs["classes"].numpy()[0]
    scores = outputs["scores"].numpy()[0]
    synsets = outputs["synsets"].numpy()[0]
    names = outputs["names"].numpy()[0]
    for rank, (index, score, synset, name) in enumerate(zip(classes, scores, synsets, names)):
        label = " ".join(part for part in (synset.decode(), name.decode()) if part)
        lines.append(f"  {rank + 1}. {score:7.2%}  [{index}] {label}")
    return "\n".join(lines)


def predict_files(loaded, paths: Sequence[str], out: TextIO = sys.stdout,
                  err: TextIO = sys.stderr) -> int:
    """Prints the top-5 classes of each image file.

    Args:
      loaded: a SavedModel from `tf.saved_model.load`, with a `serving_default` signature
        taking `image_bytes`.
      paths: image files (JPEG or PNG).
      out: where predictions go.
      err: where per-file errors go.

    Returns:
      The number of files that failed.
    """
    import tensorflow as tf  # Local: keep `--help` fast.

    serve = loaded.signatures[SIGNATURE]
    num_failed = 0
    for path in paths:
        try:
            with open(path, "rb") as f:
                image_bytes = f.read()
        except OSError as error:
            print(f"error: {path}: cannot read the file ({error.strerror or error})", file=err)
            num_failed += 1
            continue
        try:
            # One image per call: a bad file fails alone.
            outputs = serve(image_bytes=tf.constant([image_bytes]))
        except tf.errors.InvalidArgumentError as error:
            print(f"error: {path}: not a decodable JPEG or PNG image "
                  f"({error_reason(error.message)})", file=err)
            num_failed += 1
            continue
        print(format_prediction(path, outputs), file=out)
    return num_failed


def main(argv):
    paths = argv[1:]
    if not paths:
        raise app.UsageError("give one or more image files after the flags")
    if not _SAVED_MODEL.value:
        raise app.UsageError("--saved_model is required")
    try:
        saved_model = resolve_saved_model(_SAVED_MODEL.value)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # Keep TF's start-up log off the output.
    import tensorflow as tf
    loaded = tf.saved_model.load(saved_model)
    if SIGNATURE not in loaded.signatures:
        print(f"error: {saved_model!r} has no {SIGNATURE!r} signature; export it with "
              "`python -m alexnet_tf.export`", file=sys.stderr)
        sys.exit(2)
    num_failed = predict_files(loaded, paths)
    if num_failed:
        print(f"{num_failed} of {len(paths)} images failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
