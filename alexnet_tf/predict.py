r"""Top-5 classes of image files, from a SavedModel written by `alexnet_tf.export`.

  python -m alexnet_tf.predict --saved_model=/tmp/alexnet_export/1 cat.jpg dog.png

`--saved_model` may also name the export base directory; its highest version is used.
Each image goes through the SavedModel's own `serving_default` signature (the same
preprocessing TF Serving applies). Before that, its size is read from its header with the
function the signature uses (`image_header.find_refused`), against the pixel limit the
model was exported with, so an image over it is never decoded, even by an export older
than the limit. A missing, undecodable or too large file is reported and the others still
run; the exit status is 1 if any image failed, 2 if the SavedModel is unusable.
"""

from alexnet_tf import startup  # noqa: F401 (first: quiets TensorFlow's start-up notices)

import os  # noqa: E402
import sys  # noqa: E402
from typing import Sequence, TextIO  # noqa: E402

from absl import app  # noqa: E402

from alexnet_tf import errors  # noqa: E402
from alexnet_tf import model_flags  # noqa: E402
from alexnet_tf.data import image_header  # noqa: E402
from alexnet_tf.data import preprocessing  # noqa: E402
from alexnet_tf.serving import layout  # noqa: E402


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
        # A class of a user's folders has its folder name as both id and name: shown once.
        label = " ".join(dict.fromkeys(part for part in (synset.decode(), name.decode())
                                       if part))
        lines.append(f"  {rank + 1}. {score:7.2%}  [{index}] {label}")
    return "\n".join(lines)


def predict_files(loaded, paths: Sequence[str], out: TextIO = sys.stdout,
                  err: TextIO = sys.stderr,
                  max_pixels: int = image_header.DEFAULT_MAX_PIXELS) -> int:
    """Prints the top-5 classes of each image file.

    Args:
      loaded: a SavedModel from `tf.saved_model.load`, with a `serving_default` signature
        taking `image_bytes`.
      paths: image files (preprocessing.IMAGE_FORMATS).
      out: where predictions go.
      err: where per-file errors go.
      max_pixels: files whose header declares more pixels are refused, not decoded.

    Returns:
      The number of files that failed.
    """
    import tensorflow as tf  # Local: keep `--help` fast.

    serve = loaded.signatures[layout.SERVING_SIGNATURE]
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
            image = tf.constant([image_bytes])
            ok, message = image_header.find_refused(image, max_pixels,
                                                    tf.constant([os.fsencode(path)]))
            if not ok:
                print(f"error: {os.fsdecode(message.numpy())}", file=err)
                num_failed += 1
                continue
            # One image per call: a bad file fails alone.
            outputs = serve(image_bytes=image)
        except tf.errors.InvalidArgumentError as error:
            print(f"error: {path}: not a decodable image, {preprocessing.IMAGE_FORMATS} "
                  f"({error_reason(error.message)})", file=err)
            num_failed += 1
            continue
        print(format_prediction(path, outputs), file=out)
    return num_failed


def main(argv):
    paths = argv[1:]
    if not paths:
        raise app.UsageError("give one or more image files after the flags")
    if not model_flags.SAVED_MODEL.value:
        raise app.UsageError("--saved_model is required")
    if model_flags.MODEL_DIR.value or model_flags.CHECKPOINT.value:
        raise app.UsageError("predict runs an export's serving signature, as TF Serving "
                             "does: give --saved_model (export a run first with "
                             "`python -m alexnet_tf.export`)")
    saved_model = layout.resolve_version(model_flags.SAVED_MODEL.value)
    import tensorflow as tf
    loaded = tf.saved_model.load(saved_model)
    if layout.SERVING_SIGNATURE not in loaded.signatures:
        raise errors.InvalidInputError(
                f"--saved_model={saved_model} has no {layout.SERVING_SIGNATURE!r} signature: "
                "export it with `python -m alexnet_tf.export`")
    max_pixels = layout.load_max_pixels(saved_model) or image_header.DEFAULT_MAX_PIXELS
    num_failed = predict_files(loaded, paths, max_pixels=max_pixels)
    if num_failed:
        print(f"{num_failed} of {len(paths)} images failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    errors.run_command(main)
