"""Every command, run as a user runs it, answers a mistake in its input with one line.

Each case is a real process given one bad input: a required flag left out, a folder or
file that does not exist, a file where a folder is expected, a folder of the wrong kind,
a shard changed since the converter wrote it. Each must exit with status 2 and print one
line, `<program>: error: ...`, that names the input, and no traceback.
"""

import os
import shutil
import subprocess
import sys

import pytest

TIMEOUT = 300
MISSING = "/nonexistent/alexnet_tf_input"

# (command, arguments, text the line must hold). {tmp} is a fresh folder, {file} a file
# in it, {empty} an empty folder in it, {data} converted records, {changed} the same
# records with one training shard emptied; {missing} does not exist.
CASES = [
    ("alexnet_tf.train", ["--model_dir={tmp}/run"], "--data_dir is required"),
    ("alexnet_tf.train", ["--data_dir={data}"], "--model_dir is required"),
    ("alexnet_tf.train", ["--data_dir={missing}", "--model_dir={tmp}/run"],
     "--data_dir={missing} does not exist"),
    ("alexnet_tf.train", ["--data_dir={file}", "--model_dir={tmp}/run"],
     "--data_dir={file} is a file, not a folder"),
    ("alexnet_tf.train", ["--data_dir={data}", "--model_dir={file}"],
     "--model_dir={file} is a file"),
    ("alexnet_tf.train", ["--data_dir={data}", "--model_dir={tmp}/run", "--batch_size=0"],
     "batch_size must be >= 1"),
    ("alexnet_tf.train", ["--data_dir={data}", "--model_dir={tmp}/run",
                          "--init_checkpoint={missing}"], "--init_checkpoint='{missing}'"),
    ("alexnet_tf.train", ["--data_dir={changed}", "--model_dir={tmp}/run"],
     "{changed}/train-00001-of-00002: 0 bytes"),
    ("alexnet_tf.train", ["--data_dir={data}", "--model_dir={tmp}/run", "--strategy=many"],
     "--strategy"),
    ("alexnet_tf.evaluate", ["--model_dir={empty}"], "--data_dir is required"),
    ("alexnet_tf.evaluate", ["--model_dir={empty}", "--data_dir={missing}"],
     "--data_dir={missing} does not exist"),
    ("alexnet_tf.evaluate", ["--model_dir={missing}", "--data_dir={data}"],
     "--model_dir={missing} does not exist"),
    ("alexnet_tf.evaluate", ["--model_dir={file}", "--data_dir={data}"],
     "--model_dir={file} is a file"),
    ("alexnet_tf.evaluate", ["--model_dir={empty}", "--data_dir={data}"],
     "{empty}/config.json' not found"),
    ("alexnet_tf.evaluate", ["--saved_model={missing}", "--data_dir={data}"],
     "--saved_model='{missing}'"),
    ("alexnet_tf.evaluate", ["--data_dir={data}"], "needs a model"),
    ("alexnet_tf.export", ["--model_dir={empty}"], "--export_dir is required"),
    ("alexnet_tf.export", ["--model_dir={missing}", "--export_dir={tmp}/export"],
     "--model_dir={missing} does not exist"),
    ("alexnet_tf.export", ["--model_dir={empty}", "--export_dir={file}"],
     "--export_dir={file} is a file"),
    ("alexnet_tf.export", ["--saved_model={empty}", "--export_dir={tmp}/export"],
     "give --model_dir, not --saved_model"),
    ("alexnet_tf.predict", ["{file}"], "--saved_model is required"),
    ("alexnet_tf.predict", ["--saved_model={missing}", "{file}"], "--saved_model='{missing}'"),
    ("alexnet_tf.predict", ["--saved_model={empty}", "{file}"],
     "--saved_model='{empty}' is neither a SavedModel"),
    ("alexnet_tf.visualize", [], "the first argument must be a tool"),
    ("alexnet_tf.visualize", ["kernels", "--model_dir={missing}", "--output={tmp}/k.png"],
     "--model_dir={missing} does not exist"),
    ("alexnet_tf.visualize", ["kernels", "--model_dir={empty}", "--output={tmp}/k.txt"],
     "--output must name the .png"),
    ("alexnet_tf.import_weights", ["--weights={file}", "--model_dir={tmp}/run"],
     "--format is required"),
    ("alexnet_tf.import_weights", ["--format=caffe", "--weights={missing}",
                                   "--model_dir={tmp}/run"], "--weights={missing}"),
    ("alexnet_tf.import_weights", ["--format=caffe", "--weights={file}",
                                   "--model_dir={tmp}/run"], "{file}"),
    ("alexnet_tf.benchmark", [], "usage: python -m alexnet_tf.benchmark"),
    ("alexnet_tf.benchmark", ["input", "--data_dir={missing}"],
     "--data_dir={missing} does not exist"),
    ("alexnet_tf.data_service", [], "--role is required"),
    ("alexnet_tf.data_service", ["--role=worker"], "--dispatcher_address"),
    ("tools/convert_imagenet.py", ["--output_dir={tmp}/out"], "--imagenet_dir is required"),
    ("tools/convert_imagenet.py", ["--imagenet_dir={missing}", "--output_dir={tmp}/out"],
     "--imagenet_dir={missing} does not exist"),
    ("tools/convert_imagenet.py", ["--imagenet_dir={file}", "--output_dir={tmp}/out"],
     "--imagenet_dir={file} is a file"),
    ("tools/convert_imagenet.py", ["--imagenet_dir={empty}", "--output_dir={file}"],
     "--output_dir={file} is a file"),
    ("tools/convert_imagenet.py", ["--imagenet_dir={empty}", "--output_dir={tmp}/out",
                                   "--splits=train"], "no train directory"),
    ("tools/convert_imagenet.py", ["--imagenet_dir={empty}", "--output_dir={tmp}/out",
                                   "--validation_fraction=1.5"], "--validation_fraction must be"),
    ("alexnet_tf.experiments", ["--output_dir={tmp}/out"], "expected one experiment"),
    ("alexnet_tf.experiments", ["figure1"], "--output_dir is required"),
    ("alexnet_tf.experiments", ["ablations", "--data_dir={missing}", "--output_dir={tmp}/out"],
     "--data_dir={missing} does not exist"),
    ("alexnet_tf.experiments", ["figure1", "--data_dir={empty}", "--output_dir={tmp}/out"],
     "holds no manifest.json"),
    ("alexnet_tf.train", ["--data_dir={data}", "--model_dir={tmp}/run",
                          "--lr_multipliers=fc6=abc"], "lr_multipliers must be"),
    ("tools/make_demo_data.py", [], "--output_dir is required"),
    ("tools/make_demo_data.py", ["--output_dir={file}"], "--output_dir={file} is a file"),
    ("tools/make_demo_data.py", ["--output_dir={data}"], "'{data}' exists and is not empty"),
    ("tools/compute_stats.py", [], "--data_dir is required"),
    ("tools/compute_stats.py", ["--data_dir={missing}"], "--data_dir={missing} does not exist"),
    ("tools/compute_stats.py", ["--data_dir={empty}"], "no 'train' shards in '{empty}'"),
    ("tools/benchmark_convert.py", ["--work_dir={file}"], "--work_dir={file} is a file"),
    ("tools/compare_pytorch.py", ["--torch_python={missing}"], "--torch_python={missing}"),
]


def _run(repo_root, command, arguments):
    if command.endswith(".py"):
        argv = [sys.executable, os.path.join(repo_root, command)]
    else:
        argv = [sys.executable, "-m", command]
    return subprocess.run(argv + arguments, capture_output=True, text=True, cwd=repo_root,
                          timeout=TIMEOUT, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def inputs(repo_root, tmp_path_factory):
    """Converted records (by the real tools), and the same with a training shard emptied."""
    root = tmp_path_factory.mktemp("entry_points")
    images, data = root / "images", root / "data"
    for command, arguments in (
            ("tools/make_demo_data.py", [f"--output_dir={images}", "--num_classes=2",
                                         "--num_train_per_class=5", "--num_val_per_class=2"]),
            ("tools/convert_imagenet.py", [f"--imagenet_dir={images}", f"--output_dir={data}",
                                           "--train_shards=2", "--validation_shards=1",
                                           "--resize=64", "--num_workers=1", "--noprogress"])):
        done = _run(repo_root, command, arguments)
        assert done.returncode == 0, done.stderr[-3000:]
    changed = root / "changed"
    shutil.copytree(data, changed)
    (changed / "train-00001-of-00002").write_bytes(b"")
    return dict(data=str(data), changed=str(changed))


@pytest.mark.slow
@pytest.mark.parametrize("command, arguments, named", CASES,
                         ids=[f"{case[0]}:{' '.join(case[1])}" for case in CASES])
def test_a_mistake_is_one_line_naming_the_input_and_exit_status_2(repo_root, inputs, tmp_path,
                                                                  command, arguments, named):
    (tmp_path / "a_file").write_bytes(b"not what any command expects")
    (tmp_path / "empty").mkdir()
    values = dict(inputs, tmp=str(tmp_path), file=str(tmp_path / "a_file"),
                  empty=str(tmp_path / "empty"), missing=MISSING)
    done = _run(repo_root, command, [argument.format(**values) for argument in arguments])
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert len(lines) == 1, done.stderr[-3000:]
    program = command if not command.endswith(".py") else os.path.join(repo_root, command)
    assert lines[0].startswith(f"{program}: error: "), lines[0]
    assert named.format(**values) in lines[0], lines[0]
