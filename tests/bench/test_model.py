"""Smoke tests for alexnet_tf.bench.model and tools/compare_pytorch.py (no timing asserts).

Tiny nets only (width 1/8, 67x67 inputs, 10 classes); performance is checked by running
the benchmark, never here.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest

from alexnet_tf.bench import model as bench_model
from alexnet_tf.bench import report as bench_report
from alexnet_tf.nn import models
from alexnet_tf.nn import precision

TINY = dict(num_classes=10, input_size=67, width_multiplier=0.125)


def _torch_python():
    """An interpreter with torch: $TORCH_PYTHON, this one, or /work/torchvenv; else None."""
    candidates = [os.environ.get("TORCH_PYTHON"), sys.executable, "/work/torchvenv/bin/python"]
    for python in candidates:
        if python and shutil.which(python) and subprocess.run(
                [python, "-c", "import torch"], capture_output=True).returncode == 0:
            return python
    return None


def test_forward_flops_of_the_paper_net():
    """0.72 G multiply-adds per 224 image forward (1.44 GFLOP; a training step counts 3x:
    about 4.3 GFLOP per image, the module docstring's convention)."""
    model = models.alexnet(num_classes=1000)
    flops = bench_model.forward_flops_per_image(model)
    assert 1.40e9 < flops < 1.48e9
    # Counted by hand for the classifier: fc6 + fc7 + fc8 multiply-adds, times 2.
    fc = 2 * (9216 * 4096 + 4096 * 4096 + 4096 * 1000)
    conv_only = bench_model.forward_flops_per_image(
        keras.Model(model.input, model.get_layer("pool5").output))
    assert flops - conv_only == pytest.approx(fc)


def _check_result(result, mode, precision):
    assert len(result.run_images_per_second) == 2
    assert result.images_per_second > 0 and result.matmul_gflops["fp32"] > 0
    assert result.gflop_per_image > 0 and result.peak_memory_mb > 0
    table = bench_report.format_table([result], command="cmd --x")
    assert "`cmd --x`" in table and f"| {mode} | {precision} |" in table


def test_benchmark_runs_and_reports():
    spec = bench_model.ModelSpec(precision="mixed_bfloat16", **TINY)
    result = bench_model.benchmark(spec, "train", batch_size=2, num_runs=2, steps_per_run=1,
                                   num_warmup=1, matmul_dtypes=("float32",), matmul_size=256)
    _check_result(result, "train", "mixed_bfloat16")
    # The policy is restored: a model built afterwards computes in float32.
    assert keras.mixed_precision.dtype_policy().name == "float32"


def test_worker_prints_a_result_the_driver_reads(capsys):
    """The JSON line a `--model_worker` process prints round-trips to the same Result."""
    spec = bench_model.ModelSpec(**TINY)
    request = dict(spec=dataclasses.asdict(spec), mode="inference", batch_size=1, num_runs=2,
                   steps_per_run=1, num_warmup=1, matmul_dtypes=["float32"], matmul_size=256)
    bench_model.run_worker(json.dumps(request))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(bench_model.RESULT_PREFIX)
    result = bench_model.result_from_json(line[len(bench_model.RESULT_PREFIX):])
    assert result.spec == spec
    _check_result(result, "inference", "fp32")


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="precision"):
        with precision.dtype_policy("fp8"):
            pass
    with pytest.raises(ValueError, match="mode"):
        bench_model.make_model_runner(bench_model.ModelSpec(**TINY), "eval", 2, 1, 0)


def test_train_step_changes_the_weights():
    model = models.alexnet(**TINY)
    before = [w.numpy().copy() for w in model.trainable_variables]
    step = bench_model.make_train_step(model, bench_model.PaperSGD(learning_rate=0.01))
    images = np.random.default_rng(0).uniform(-100, 100, (2, 67, 67, 3)).astype(np.float32)
    loss = step(images, np.array([1, 2], np.int32))
    assert np.isfinite(loss.numpy())
    assert all(not np.array_equal(b, w.numpy())
               for b, w in zip(before, model.trainable_variables))


@pytest.mark.slow
def test_compare_pytorch_parity(repo_root):
    """The PyTorch net with the TF weights gives the same logits (skipped without torch)."""
    python = _torch_python()
    if python is None:
        pytest.skip("no interpreter with torch (set TORCH_PYTHON)")
    args = [sys.executable, os.path.join(repo_root, "tools", "compare_pytorch.py"),
            f"--torch_python={python}", "--parity_only", "--num_classes=10",
            "--input_size=67", "--width_multiplier=0.125"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "parity: max |TF - PyTorch|" in done.stdout
