"""Tests for alexnet_tf.evaluation.metrics: top-1/top-5 counts, crop averaging, reports."""

import json

import numpy as np
import pytest

from alexnet_tf.evaluation import classification as evaluation
from alexnet_tf.evaluation import metrics


def _numpy_topk_hits(scores, labels, k):
    # Stable sort on -score: equal scores keep the lower index first, like tf.math.top_k.
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return int((order[:, 0] == labels).sum()), int((order == labels[:, None]).any(axis=1).sum())


def test_count_correct_matches_numpy():
    rng = np.random.default_rng(0)
    scores = rng.random((64, 12)).astype(np.float32)
    labels = rng.integers(0, 12, 64)
    top1, top5 = metrics.count_correct(scores, labels)
    assert (int(top1), int(top5)) == _numpy_topk_hits(scores, labels, 5)


def test_count_correct_constant_output_is_not_always_right():
    # in_top_k would call every label correct here; the paper's metric must not.
    scores = np.zeros((10, 10), np.float32)
    top1, top5 = metrics.count_correct(scores, np.arange(10))
    assert int(top1) == 1 and int(top5) == 5


def test_count_correct_caps_k_at_num_classes():
    top1, top5 = metrics.count_correct(np.array([[0.1, 0.9, 0.0]]), np.array([2]))
    assert int(top1) == 0 and int(top5) == 1


def test_count_correct_rejects_bad_shapes():
    with pytest.raises(ValueError, match="probabilities"):
        metrics.count_correct(np.zeros((2, 3, 4)), np.zeros(2))


def test_average_crops_keeps_crops_of_one_image_together():
    # Image 0's ten crops say class 0, image 1's say class 1.
    probabilities = np.zeros((20, 3), np.float32)
    probabilities[:10, 0] = 1.0
    probabilities[10:, 1] = 1.0
    probabilities[3] = [0.0, 0.0, 1.0]  # One crop of image 0 disagrees.
    averaged = metrics.average_crops(probabilities, 10).numpy()
    np.testing.assert_allclose(averaged, [[0.9, 0.0, 0.1], [0.0, 1.0, 0.0]], atol=1e-6)


def test_write_json_and_table(tmp_path):
    counts = {evaluation.CENTRE: metrics.Counts(4, 1, 3)}
    path = tmp_path / "eval.json"
    metrics.write_json(str(path), counts, checkpoint="ckpt-7")
    written = json.loads(path.read_text())
    assert written["checkpoint"] == "ckpt-7"
    assert written[evaluation.CENTRE]["top5_correct"] == 3
    assert written[evaluation.CENTRE]["top1_error"] == pytest.approx(0.75)
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]
    assert "75.00%" in metrics.format_table(counts)
