"""Tests for alexnet_tf.data.imagenet.compute_stats and tools/compute_stats.py, against NumPy."""

import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf.data import schema
from alexnet_tf.data import stats as stats_lib
from alexnet_tf.data.imagenet import compute_stats as stats_compute
from alexnet_tf.data.imagenet import convert as imagenet_convert

SIZE = 16


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, encode_image):
    """Records from the real converter: 2 classes of random, differently tinted images."""
    root = tmp_path_factory.mktemp("stats")
    rng = np.random.default_rng(0)
    for c, tint in enumerate(((60, 0, 0), (0, 30, 50))):
        folder = root / "imagenet" / "train" / f"n0000000{c + 1}"
        folder.mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 200, (20 + 3 * i, 24, 3)) + np.asarray(tint)
            image = encode_image(pixels.clip(0, 255).astype(np.uint8), "PNG")
            (folder / f"{i}.JPEG").write_bytes(image)
    output_dir = str(root / "records")
    imagenet_convert.convert(imagenet_convert.ConvertOptions(
            imagenet_dir=str(root / "imagenet"), output_dir=output_dir,
            splits=(schema.TRAIN,), train_shards=2, resize=SIZE, show_progress=False))
    return output_dir


def decoded_frames(data_dir: str) -> np.ndarray:
    """All training images as float64 (N, SIZE, SIZE, 3), decoded independently."""
    frames = []
    for name in sorted(os.listdir(data_dir)):
        if name.startswith("train-"):
            for record in tf.data.TFRecordDataset(os.path.join(data_dir, name)):
                encoded = schema.parse_example(record)[schema.IMAGE_ENCODED]
                frames.append(tf.io.decode_jpeg(encoded, channels=3).numpy())
    return np.asarray(frames, np.float64)


def test_statistics_match_numpy(data_dir):
    stats = stats_compute.compute_stats(data_dir, resize_size=SIZE, batch_size=5)
    frames = decoded_frames(data_dir)  # (12, 16, 16, 3)
    assert stats.num_images == len(frames) == 12
    np.testing.assert_allclose(stats.mean_image, frames.mean(0), atol=1e-3)
    np.testing.assert_allclose(stats.mean_rgb, frames.mean((0, 1, 2)), atol=1e-3)
    covariance = np.cov(frames.reshape(-1, 3) / 255.0, rowvar=False, bias=True)
    eigval, eigvec = np.linalg.eigh(covariance)
    np.testing.assert_allclose(stats.eigval, eigval[::-1] * 255.0, rtol=1e-4)
    for i in range(3):  # Same axes up to sign.
        np.testing.assert_allclose(abs(stats.eigvec[:, i] @ eigvec[:, 2 - i]), 1.0, atol=1e-4)
    # The stored decomposition rebuilds the covariance: P diag(l) P^T.
    rebuilt = stats.eigvec @ np.diag(stats.eigval / 255.0) @ stats.eigvec.T
    np.testing.assert_allclose(rebuilt, covariance, atol=1e-6)
    assert np.all(np.diff(stats.eigval) <= 0) and np.all(stats.eigvec.sum(0) <= 0)


def test_max_images_reads_a_prefix(data_dir):
    stats = stats_compute.compute_stats(data_dir, resize_size=SIZE, max_images=5)
    assert stats.num_images == 5
    np.testing.assert_allclose(stats.mean_image, decoded_frames(data_dir)[:5].mean(0),
                               atol=1e-3)


def test_stats_from_sums_recovers_a_known_covariance():
    # Pixels drawn with a known covariance on 0..1: the PCA must find it back.
    rng = np.random.default_rng(1)
    true_cov = np.array([[0.05, 0.03, 0.01], [0.03, 0.04, 0.0], [0.01, 0.0, 0.02]])
    pixels = rng.multivariate_normal([0.5, 0.4, 0.3], true_cov, size=(200, 8, 8))
    image_sum = (pixels * 255.0).sum(0)
    flat = pixels.reshape(-1, 3)
    outer = flat.T @ flat
    stats = stats_compute.stats_from_sums(image_sum, outer, 200, "synthetic")
    rebuilt = stats.eigvec @ np.diag(stats.eigval / 255.0) @ stats.eigvec.T
    np.testing.assert_allclose(rebuilt, true_cov, atol=3e-3)
    np.testing.assert_allclose(stats.mean_rgb, [127.5, 102.0, 76.5], atol=1.0)
    with pytest.raises(ValueError, match="0 images"):
        stats_compute.stats_from_sums(image_sum, outer, 0, "none")


def test_missing_shards_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no 'train' shards"):
        stats_compute.compute_stats(str(tmp_path))


@pytest.mark.slow
def test_command_line_writes_a_file_the_pipeline_loads(data_dir, tmp_path, repo_root):
    output = str(tmp_path / "stats.npz")
    run = subprocess.run([sys.executable, os.path.join(repo_root, "tools", "compute_stats.py"),
                          f"--data_dir={data_dir}", f"--output={output}", f"--resize={SIZE}"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    loaded = stats_lib.load_stats(output)
    expected = stats_compute.compute_stats(data_dir, resize_size=SIZE)
    np.testing.assert_allclose(loaded.mean_image, expected.mean_image, atol=1e-4)
    np.testing.assert_allclose(loaded.eigvec, expected.eigvec, atol=1e-5)
    assert loaded.num_images == 12 and "compute_stats" in loaded.source
