"""alexnet_tf.replication and `python -m alexnet_tf.experiments`: the ratio and the table
from known curves and results, then figure1 and ablations end to end on tiny records
(real converter, real training loop), reruns that skip finished runs and resume the rest,
and one-line errors for bad input."""

import os
import subprocess
import sys

import pytest

from alexnet_tf import errors
from alexnet_tf import run_dir
from alexnet_tf.replication import ablations
from alexnet_tf.replication import figure1
from alexnet_tf.replication import runs
from alexnet_tf.training import loop

SUBPROCESS_TIMEOUT = 300
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TINY_ABLATIONS = ["--steps=2", "--batch_size=4", "--width_multiplier=0.05",
                  "--input_size=64"]


@pytest.fixture
def records(tiny_records):
    return tiny_records


def _command(cwd, *args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=str(cwd))
    return subprocess.run([sys.executable, "-m", "alexnet_tf.experiments", *args], cwd=cwd,
                          env=env, timeout=SUBPROCESS_TIMEOUT, capture_output=True,
                          text=True)


def test_epochs_to_reach_and_the_ratio():
    curves = {"relu": [0.6, 0.3, 0.2, 0.1], "tanh": [0.9, 0.8, 0.5, 0.4, 0.3, 0.25]}
    assert figure1.epochs_to_reach(curves["relu"], 0.25) == 3
    assert figure1.epochs_to_reach(curves["tanh"], 0.25) == 6
    summary = figure1.summarize(curves, 0.25, num_epochs=6)
    assert summary["epochs"] == {"relu": 3, "tanh": 6} and summary["ratio"] == 2.0
    assert "2.00x" in summary["note"]


def test_a_net_that_never_reaches_the_target_gets_no_ratio():
    summary = figure1.summarize({"relu": [0.5, 0.2], "tanh": [0.9, 0.6]}, 0.25, num_epochs=2)
    assert summary["ratio"] is None and summary["epochs"]["tanh"] is None
    assert summary["note"] == ("tanh did not reach a training error of 0.25 in 2 epochs: "
                               "no ratio is measured")
    diverged = figure1.summarize({"relu": [], "tanh": [0.2]}, 0.25, num_epochs=2,
                                 diverged={"relu": "training loss is nan at step 3"})
    assert diverged["ratio"] is None
    assert diverged["note"].startswith("relu diverged (training loss is nan at step 3)")


def _result(top1, top5, status=runs.FINISHED):
    return dict(status=status, top1_error=top1, top5_error=top5)


def test_ablation_table_gives_deltas_in_points_and_marks_divergence():
    rows = {row.name: row for row in ablations.ROWS}
    table = ablations.markdown_table([
            (rows["baseline"], _result(0.40, 0.10)),
            (rows["no_lrn"], _result(0.425, 0.09)),
            (rows["tanh"], _result(None, None, runs.DIVERGED))], ablations.Settings(steps=7))
    lines = table.splitlines()
    assert "7 steps" in lines[2]
    assert lines[-3] == "| baseline | the paper's net | 40.0 | 10.0 | +0.0 | +0.0 | - |"
    assert lines[-2] == ("| no_lrn | no response normalisation | 42.5 | 9.0 | +2.5 | -1.0 "
                         "| +1.4 / +1.2 (3.3) |")
    assert lines[-1].startswith("| tanh | tanh instead of ReLU | diverged (loss NaN/Inf) |")


def test_rows_are_checked_and_kept_in_table_order():
    assert [row.name for row in ablations.check_rows(["tanh", "no_lrn"])] == [
            "baseline", "no_lrn", "tanh"]
    with pytest.raises(errors.InvalidInputError, match="unknown no_relu"):
        ablations.check_rows(["no_relu"])
    assert ablations.resize_size(224) == 256 and ablations.resize_size(96) == 110


@pytest.mark.slow
def test_figure1_end_to_end_then_reruns(records, tmp_path, monkeypatch):
    settings = figure1.Settings(num_epochs=2, batch_size=4, input_size=16,
                                width_multiplier=0.25, target_error=0.99)
    output = str(tmp_path / "figure1")
    outcome = figure1.run_figure1(records, output, settings)
    assert not outcome["preempted"]
    assert set(outcome["curves"]) == {"relu", "tanh"}
    assert all(len(curve) == 2 for curve in outcome["curves"].values())
    # Any error is below 0.99: both nets reach it after their first epoch.
    assert outcome["epochs"] == {"relu": 1, "tanh": 1} and outcome["ratio"] == 1.0
    for activation in ("relu", "tanh"):
        saved = run_dir.read_config(os.path.join(output, f"cnn4_{activation}"))
        assert saved["model"]["name"] == "cnn4" and saved["eval_split"] == "train"
        assert saved["model"].get("activation", "relu") == activation
        assert saved["pca_std"] == 0.0 and saved["flip"] is False
    with open(outcome["plot_path"], "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    with open(outcome["results_path"]) as f:
        text = f.read()
    assert "| 2 |" in text and "tanh needed 1.00x the epochs of ReLU" in text

    # A rerun trains nothing: both runs finished.
    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")
    monkeypatch.setattr(loop, "train_and_evaluate", no_training)
    assert figure1.run_figure1(records, output, settings)["curves"] == outcome["curves"]
    # A finished run is not silently reused for other settings.
    with pytest.raises(errors.InvalidInputError, match="num_epochs: 2 there, 3 now"):
        figure1.run_figure1(records, output, figure1.Settings(
                num_epochs=3, batch_size=4, input_size=16, width_multiplier=0.25))


@pytest.mark.slow
def test_an_unfinished_run_resumes_from_its_checkpoint(records, tmp_path):
    config = figure1.figure1_configs(records, figure1.Settings(
            num_epochs=2, batch_size=4, input_size=16, width_multiplier=0.25))["relu"]
    output = str(tmp_path / "resume")
    first = runs.run("cnn4_relu", config, output)
    model_dir = os.path.join(output, "cnn4_relu")
    checkpoints = sorted(os.listdir(run_dir.checkpoint_dir(model_dir)))
    # As if killed after its last checkpoint, before result.json was written.
    os.remove(os.path.join(model_dir, runs.RESULT_FILE))
    again = runs.run("cnn4_relu", config, output)
    assert again["step"] == first["step"] and again["history"] == first["history"]
    assert sorted(os.listdir(run_dir.checkpoint_dir(model_dir))) == checkpoints


@pytest.mark.slow
def test_ablations_command_end_to_end_then_rerun_skips(records, tmp_path, repo_root):
    output = str(tmp_path / "ablations")
    args = ["ablations", f"--data_dir={records}", f"--output_dir={output}",
            "--rows=sixth_conv,no_lrn", *TINY_ABLATIONS]
    process = _command(repo_root, *args)
    assert process.returncode == 0, process.stderr[-3000:]
    with open(os.path.join(output, ablations.RESULTS_FILE)) as f:
        rows = [line for line in f.read().splitlines() if line.startswith("| ")][1:]
    assert [row.split(" | ")[0] for row in rows] == ["| baseline", "| no_lrn", "| sixth_conv"]
    with open(os.path.join(output, ablations.PLOT_FILE), "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    specs = {name: run_dir.read_config(os.path.join(output, name))["model"]
             for name in ("baseline", "no_lrn", "sixth_conv")}
    assert specs["baseline"]["use_lrn"] is True and "sixth_conv" not in specs["baseline"]
    assert specs["no_lrn"]["use_lrn"] is False and specs["sixth_conv"]["sixth_conv"] is True
    results = [os.path.join(output, name, runs.RESULT_FILE) for name in specs]
    stamps = [os.stat(path).st_mtime_ns for path in results]

    rerun = _command(repo_root, *args)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert rerun.stderr.count("finished earlier") == 3
    assert [os.stat(path).st_mtime_ns for path in results] == stamps


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
        (["bogus", "--output_dir=o"], "expected one experiment, figure1 or ablations; got "
                                      "bogus"),
        (["figure1"], "--output_dir is required"),
        (["ablations", "--output_dir=o", "--rows=no_relu"], "--rows: unknown no_relu"),
        (["figure1", "--output_dir=o", "--data_dir=missing"], "--data_dir=missing does not "
                                                             "exist"),
])
def test_bad_input_is_one_line_with_status_2(args, message, repo_root, tmp_path):
    process = _command(repo_root, *[arg.replace("=o", f"={tmp_path}/o") for arg in args])
    assert process.returncode == errors.USAGE_EXIT_CODE, process.stderr[-2000:]
    last = process.stderr.strip().splitlines()[-1]
    assert "Traceback" not in process.stderr
    assert last.startswith("alexnet_tf.experiments: error: ") and message in last
