"""Tests for alexnet_tf.evaluation (counting) and alexnet_tf.evaluate (the entry point)."""

import json

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import evaluation


def _numpy_topk_hits(scores, labels, k):
    # Stable sort on -score: equal scores keep the lower index first, like tf.math.top_k.
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return int((order[:, 0] == labels).sum()), int((order == labels[:, None]).any(axis=1).sum())


def test_count_correct_matches_numpy():
    rng = np.random.default_rng(0)
    scores = rng.random((64, 12)).astype(np.float32)
    labels = rng.integers(0, 12, 64)
    top1, top5 = evaluation.count_correct(scores, labels)
    assert (int(top1), int(top5)) == _numpy_topk_hits(scores, labels, 5)


def test_count_correct_constant_output_is_not_always_right():
    # in_top_k would call every label correct here; the paper's metric must not.
    scores = np.zeros((10, 10), np.float32)
    top1, top5 = evaluation.count_correct(scores, np.arange(10))
    assert int(top1) == 1 and int(top5) == 5


def test_count_correct_caps_k_at_num_classes():
    top1, top5 = evaluation.count_correct(np.array([[0.1, 0.9, 0.0]]), np.array([2]))
    assert int(top1) == 0 and int(top5) == 1


def test_count_correct_rejects_bad_shapes():
    with pytest.raises(ValueError, match="probabilities"):
        evaluation.count_correct(np.zeros((2, 3, 4)), np.zeros(2))


def test_average_crops_keeps_crops_of_one_image_together():
    # Image 0's ten crops say class 0, image 1's say class 1.
    probabilities = np.zeros((20, 3), np.float32)
    probabilities[:10, 0] = 1.0
    probabilities[10:, 1] = 1.0
    probabilities[3] = [0.0, 0.0, 1.0]  # One crop of image 0 disagrees.
    averaged = evaluation.average_crops(probabilities, 10).numpy()
    np.testing.assert_allclose(averaged, [[0.9, 0.0, 0.1], [0.0, 1.0, 0.0]], atol=1e-6)


def _fake_classifier(num_classes):
    """'Predicts' the class written in pixel [0, 0, 0] of each image."""
    def probabilities(images):
        return tf.one_hot(tf.cast(images[:, 0, 0, 0], tf.int32), num_classes)
    return probabilities


def test_evaluate_centre_crop_counts():
    images = np.zeros((6, 4, 4, 3), np.float32)
    images[:, 0, 0, 0] = [0, 1, 2, 3, 4, 0]
    labels = np.array([0, 1, 2, 0, 0, 1])
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    counts = evaluation.evaluate(_fake_classifier(8), batches)
    centre = counts[evaluation.CENTRE]
    assert (centre.num_examples, centre.top1_correct) == (6, 3)
    assert centre.top1_error == pytest.approx(0.5)


def test_evaluate_ten_crop_averages_and_reports_centre():
    images = np.zeros((2, 10, 4, 4, 3), np.float32)
    images[0, :, 0, 0, 0] = 1  # Image 0: all crops say 1 (right).
    images[1, :6, 0, 0, 0] = 2  # Image 1: most crops say 2 (wrong), the centre says 3 (right).
    images[1, 6:, 0, 0, 0] = 3
    labels = np.array([1, 3])
    batches = [(tf.constant(images), tf.constant(labels))]
    counts = evaluation.evaluate(_fake_classifier(5), batches, ten_crop=True, centre_index=8)
    assert counts[evaluation.TEN_CROP].top1_correct == 1
    assert counts[evaluation.CENTRE].top1_correct == 2
    assert counts[evaluation.TEN_CROP].top5_correct == 2


def test_evaluate_rejects_centre_batches_in_ten_crop_mode():
    batches = [(tf.zeros((2, 4, 4, 3)), tf.zeros((2,), tf.int64))]
    with pytest.raises(ValueError, match="rank 5"):
        evaluation.evaluate(_fake_classifier(3), batches, ten_crop=True)


def test_write_json_and_table(tmp_path):
    counts = {evaluation.CENTRE: evaluation.Counts(4, 1, 3)}
    path = tmp_path / "eval.json"
    evaluation.write_json(str(path), counts, checkpoint="ckpt-7")
    written = json.loads(path.read_text())
    assert written["checkpoint"] == "ckpt-7"
    assert written[evaluation.CENTRE]["top5_correct"] == 3
    assert written[evaluation.CENTRE]["top1_error"] == pytest.approx(0.75)
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]
    assert "75.00%" in evaluation.format_table(counts)
