"""Smoke tests for alexnet_tf.bench.pipeline and `python -m alexnet_tf.benchmark input` (no
timing asserts)."""

import numpy as np
import pytest

from alexnet_tf.bench import pipeline as bench_pipeline


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return bench_pipeline.make_records(str(tmp_path_factory.mktemp("bench")), 8, num_shards=2)


def test_records_and_pillow_pipeline(data_dir, stats):
    images = bench_pipeline.read_image_bytes(data_dir, limit=100)
    assert len(images) == 8 and all(image[:2] == b"\xff\xd8" for image in images)
    out = bench_pipeline.PillowPipeline(stats, seed=1)(images[0])
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    # Mean subtracted and a single RGB shift added: the result is centred near zero.
    assert abs(float(out.mean())) < 128


# "train" runs in the worker test below; "train_device" is the same pipeline.
@pytest.mark.parametrize("kind", ["decode", "pillow"])
def test_measure_in_process(data_dir, kind):
    value = bench_pipeline.measure(kind, data_dir, num_cores=1, batch_size=4, num_batches=2,
                                warmup_batches=1, shuffle_buffer=8)
    assert value["images_per_second"] > 0 and value["images_per_cpu_second"] > 0


def test_report_lists_every_pipeline_and_ratio():
    results = {(kind, cores): {"wall": 100.0 * cores, "cpu": 90.0, "runs": []}
               for kind in bench_pipeline.KINDS for cores in (1, 2)}
    report = bench_pipeline.format_report(results, bench_pipeline.KINDS, [1, 2])
    for kind in bench_pipeline.KINDS:
        assert f"| {kind} |" in report and f"{kind}: 2 cores / 1 core (wall) = 2.00x" in report
    assert "wall, 1 core(s): train / decode = 1.00" in report


@pytest.mark.slow
def test_entry_point_worker_reports_a_figure(data_dir):
    worker_args = [f"--data_dir={data_dir}", "--batch_size=4", "--num_batches=2",
                   "--warmup_batches=1", "--shuffle_buffer=8"]
    value = bench_pipeline.run_in_subprocess("train", 1, worker_args, pin=False, timeout=300)
    assert value["images_per_second"] > 0
