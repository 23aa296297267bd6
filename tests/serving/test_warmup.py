"""Tests for alexnet_tf.serving.warmup: the warm-up records TF Serving replays at load."""

import os

import tensorflow as tf

from alexnet_tf.serving import layout
from alexnet_tf.serving import warmup


def test_warmup_file_holds_predict_requests_for_both_signatures(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(exported["version_dir"], layout.EXTRA_DIR, layout.WARMUP_FILE)
    logs = [prediction_log_pb2.PredictionLog.FromString(record)
            for record in tf.data.TFRecordDataset(path).as_numpy_iterator()]
    assert 0 < len(logs) <= 1000  # TF Serving reads at most 1000 warm-up records.
    requests = [log.predict_log.request for log in logs]
    signatures = {request.model_spec.signature_name for request in requests}
    assert signatures == {layout.SERVING_SIGNATURE, layout.PREPROCESSED_SIGNATURE}
    for request in requests:
        if request.model_spec.signature_name == layout.SERVING_SIGNATURE:
            encoded = tf.make_ndarray(request.inputs[layout.IMAGE_BYTES_INPUT])
            assert encoded.ndim == 1 and len(encoded) >= 1
    loaded = tf.saved_model.load(exported["version_dir"])
    assert warmup.replay_warmup(exported["version_dir"], loaded) == len(logs)
