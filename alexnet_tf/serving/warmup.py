"""TF Serving's warm-up requests: written with each export, replayed to verify it.

TF Serving runs the PredictionLog records in assets.extra/tf_serving_warmup_requests
when it loads a version, before serving traffic, so the first real request does not
pay for graph initialisation. Export writes one request per sample image and one with
the whole batch for `serving_default`, and one for `preprocessed`.
"""

import os
from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from alexnet_tf.serving import layout


def sample_images(size: int = 300) -> list:
    """Two small encoded images (a JPEG and a PNG, not square) for warm-up requests."""
    rows = np.linspace(0, 255, size, dtype=np.float32)[:, None]
    cols = np.linspace(255, 0, size * 4 // 3, dtype=np.float32)[None, :]
    # (size, 4/3 size, 3): a colour gradient, so resize and crop both have work to do.
    pixels = np.stack(np.broadcast_arrays(rows, cols, (rows + cols) / 2), axis=-1)
    pixels = tf.constant(pixels.astype(np.uint8))
    return [tf.io.encode_jpeg(pixels).numpy(), tf.io.encode_png(pixels).numpy()]


def warmup_records(crop_size: int, model_name: str,
                   images: Optional[Sequence[bytes]] = None) -> list:
    """Serialized PredictionLog records: Predict requests for both signatures.

    Args:
      crop_size: S, the input size of the `preprocessed` signature.
      model_name: the name TF Serving serves the model under (--model_name).
      images: encoded images for `serving_default`; default `sample_images()`.

    Returns:
      A list of serialized `tensorflow.serving.PredictionLog` protos.
    """
    # Imported here: only export needs TF Serving's protos.
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.apis import prediction_log_pb2

    images = list(images) if images is not None else sample_images()
    requests = []
    # One request per image and one with the whole batch: TF Serving warms each batch size.
    for batch in [[image] for image in images] + [images]:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = layout.SERVING_SIGNATURE
        request.inputs[layout.IMAGE_BYTES_INPUT].CopyFrom(
                tf.make_tensor_proto(batch, dtype=tf.string, shape=[len(batch)]))
        requests.append(request)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = layout.PREPROCESSED_SIGNATURE
    request.inputs[layout.IMAGES_INPUT].CopyFrom(
            tf.make_tensor_proto(np.zeros([1, crop_size, crop_size, 3], np.float32)))
    requests.append(request)
    return [prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request)).SerializeToString()
            for request in requests]


def replay_warmup(saved_model_dir: str, loaded=None) -> int:
    """Runs every warm-up request against the SavedModel, as TF Serving does at load time.

    Args:
      saved_model_dir: one version directory.
      loaded: the already loaded SavedModel, or None to load it.

    Returns:
      The number of requests run.

    Raises:
      FileNotFoundError: the version has no warm-up file.
      tf.errors.OpError: a request fails.
    """
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(saved_model_dir, layout.EXTRA_DIR, layout.WARMUP_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no warm-up file at {path!r}")
    loaded = loaded if loaded is not None else tf.saved_model.load(saved_model_dir)
    count = 0
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
        signature = loaded.signatures[request.model_spec.signature_name]
        signature(**{key: tf.make_ndarray(value) for key, value in request.inputs.items()})
        count += 1
    return count


def write_warmup(version_dir: str, crop_size: int, model_name: str) -> str:
    """Writes the warm-up file into version_dir/assets.extra; returns its path."""
    extra_dir = os.path.join(version_dir, layout.EXTRA_DIR)
    os.makedirs(extra_dir, exist_ok=True)
    path = os.path.join(extra_dir, layout.WARMUP_FILE)
    with tf.io.TFRecordWriter(path) as writer:
        for record in warmup_records(crop_size, model_name):
            writer.write(record)
    return path
