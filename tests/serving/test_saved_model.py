"""Tests for alexnet_tf.serving.saved_model: ServingModule and export.

The run of tests/serving/conftest.py is exported once and checked from a fresh process that
never imports alexnet_tf, as TF Serving would load it.
"""

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf import model_source
from alexnet_tf.data import preprocessing
from alexnet_tf.serving import layout
from alexnet_tf.serving import saved_model as serving
from alexnet_tf.serving import warmup

PYTHON = sys.executable
SUBPROCESS_TIMEOUT = 120


def reference_probabilities(serving_run, images):
    """The model on the eval pipeline's preprocessing: what serving must reproduce."""
    size = serving_run["config"].input_size
    batch = tf.stack([preprocessing.preprocess_for_eval(image, stats=serving_run["stats"],
                                                        crop_size=size)
                      for image in images])
    return batch.numpy(), tf.nn.softmax(serving_run["model"](batch, training=False)).numpy()


# Runs in a fresh interpreter that cannot import alexnet_tf: only TF and the SavedModel.
_FRESH_PROCESS_SCRIPT = textwrap.dedent("""
    import base64, json, sys
    sys.modules["alexnet_tf"] = None  # Any import of alexnet_tf now raises ImportError.
    import numpy as np
    import tensorflow as tf

    saved_model, image_list, rest_body, images_npy, output = sys.argv[1:6]
    loaded = tf.saved_model.load(saved_model)
    serve = loaded.signatures["serving_default"]
    image_bytes = [open(path, "rb").read() for path in json.load(open(image_list))]
    def to_numpy(outputs, prefix):
        for key, value in outputs.items():  # Strings as fixed-width bytes, not objects.
            value = value.numpy()
            results[prefix + key] = value.astype(bytes) if value.dtype == object else value

    results = {}
    to_numpy(serve(image_bytes=tf.constant(image_bytes)), "direct_")

    # TF Serving's REST "row" format: for a one-input signature each instance is the
    # value itself, or {input_name: value}; a value {"b64": ...} is base64-decoded bytes.
    (input_name, spec), = serve.structured_input_signature[1].items()
    def decode(value):
        if isinstance(value, dict) and set(value) == {"b64"}:
            return base64.b64decode(value["b64"])
        return value
    instances = json.load(open(rest_body))["instances"]
    values = [decode(inst[input_name] if isinstance(inst, dict) and input_name in inst
                     else inst) for inst in instances]
    to_numpy(serve(**{input_name: tf.constant(values, spec.dtype)}), "rest_")

    preprocessed = loaded.signatures["preprocessed"]
    results["preprocessed_probabilities"] = preprocessed(
            images=tf.constant(np.load(images_npy)))["probabilities"].numpy()
    results["alexnet_tf_imported"] = np.array(
            any(name.startswith("alexnet_tf.") for name in sys.modules))
    np.savez(output, **results)
""")


def _serve_in_fresh_process(version_dir, serving_run, preprocessed, tmp_path):
    """The SavedModel's outputs for serving_run's images, computed in the fresh process
    (directly and through a REST body) and for `preprocessed` through `preprocessed`."""
    image_list = tmp_path / "images.json"
    image_list.write_text(json.dumps(serving_run["image_paths"]))
    rest_body = tmp_path / "request.json"
    rest_body.write_text(json.dumps(
            {"instances": [{"b64": base64.b64encode(image).decode("ascii")}
                           for image in serving_run["images"]]}))
    images_npy = tmp_path / "preprocessed.npy"
    np.save(images_npy, preprocessed)
    output = tmp_path / "outputs.npz"
    subprocess.run([PYTHON, "-c", _FRESH_PROCESS_SCRIPT, version_dir,
                    str(image_list), str(rest_body), str(images_npy), str(output)],
                   check=True, timeout=SUBPROCESS_TIMEOUT, cwd=tmp_path,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    results = np.load(output)
    assert not results["alexnet_tf_imported"]
    return results


def _check_outputs(results, reference):
    """Every output of both signatures, against reference probabilities (N, C)."""
    for prefix in ("direct_", "rest_"):
        np.testing.assert_allclose(results[prefix + "probabilities"], reference, atol=1e-5)
        expected_classes = np.argsort(-reference, axis=1, kind="stable")[:, :5]
        np.testing.assert_array_equal(results[prefix + "classes"], expected_classes)
        np.testing.assert_allclose(results[prefix + "scores"],
                                   np.take_along_axis(reference, expected_classes, 1), atol=1e-5)
        names = [[f"class {i}".encode() for i in row] for row in expected_classes]
        np.testing.assert_array_equal(results[prefix + "names"], names)
        synsets = [[f"n0000000{i}".encode() for i in row] for row in expected_classes]
        np.testing.assert_array_equal(results[prefix + "synsets"], synsets)
    np.testing.assert_allclose(results["preprocessed_probabilities"], reference, atol=1e-5)


def test_fresh_process_matches_model_on_eval_preprocessing(serving_run, exported, tmp_path):
    reference_images, reference = reference_probabilities(serving_run, serving_run["images"])
    # Different images must give different answers, or parity would prove little.
    assert np.abs(reference - reference[0]).max() > 1e-3
    _check_outputs(_serve_in_fresh_process(exported["version_dir"], serving_run,
                                           reference_images, tmp_path), reference)


def test_saved_model_cli_lists_both_signatures(serving_run, exported):
    cli = os.path.join(os.path.dirname(PYTHON), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--all", "--dir", exported["version_dir"]],
                           check=True, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")).stdout
    assert "signature_def['serving_default']" in shown
    assert "signature_def['preprocessed']" in shown
    assert "inputs['image_bytes']" in shown and "inputs['images']" in shown
    size = serving_run["config"].input_size
    assert f"shape: (-1, {size}, {size}, 3)" in shown
    for output in ("probabilities", "classes", "scores", "synsets", "names"):
        assert f"outputs['{output}']" in shown


def test_export_pins_no_device(exported):
    # The run was trained with its towers on /CPU:0 and /CPU:1; the export must not pin them.
    graph = open(os.path.join(exported["version_dir"], "saved_model.pb"), "rb").read()
    assert b"CPU:1" not in graph and b"GPU:" not in graph


def test_export_holds_no_xla_kernel(exported):
    # Training's LRN runs as XLA kernels; TF Serving's model server does not run those.
    from tensorflow.core.protobuf import saved_model_pb2
    saved = saved_model_pb2.SavedModel()
    with open(os.path.join(exported["version_dir"], "saved_model.pb"), "rb") as f:
        saved.ParseFromString(f.read())
    functions = saved.meta_graphs[0].graph_def.library.function
    assert len(functions) > 0
    assert not [f.signature.name for f in functions if f.attr["_XlaMustCompile"].b]


def test_corrupt_image_is_an_error_not_a_crash(serving_run, exported):
    loaded = tf.saved_model.load(exported["version_dir"])
    serve = loaded.signatures[layout.SERVING_SIGNATURE]
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
            f"image_bytes[1]: not a {preprocessing.IMAGE_FORMATS} image (unrecognised header)")):
        serve(image_bytes=tf.constant([serving_run["images"][0], b"this is not an image"]))
    truncated = serving_run["images"][0][:len(serving_run["images"][0]) // 3]
    with pytest.raises(tf.errors.InvalidArgumentError, match="JPEG"):
        serve(image_bytes=tf.constant([serving_run["images"][1], truncated]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch"):
        serve(image_bytes=tf.constant([], tf.string))
    # The process (and the loaded model) still serve good requests.
    good = serve(image_bytes=tf.constant(serving_run["images"][:1]))["probabilities"]
    assert good.shape == (1, len(serving_run["labels"]))


# Runs in a fresh interpreter, as TF Serving would: the bomb in a batch of good images is
# refused with its index, its pixels never decoded, and the same process then still serves.
_BOMB_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    sys.modules["alexnet_tf"] = None
    import tensorflow as tf

    saved_model, good_path, bomb_path, output = sys.argv[1:5]
    serve = tf.saved_model.load(saved_model).signatures["serving_default"]
    good, bomb = open(good_path, "rb").read(), open(bomb_path, "rb").read()
    serve(image_bytes=tf.constant([good]))  # Warm: what serving one image costs is paid.
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB
    before = peak()
    try:
        serve(image_bytes=tf.constant([good, bomb, good]))
        error = None
    except tf.errors.InvalidArgumentError as raised:
        error = raised.message
    growth = peak() - before
    answered = serve(image_bytes=tf.constant([good, good]))["classes"].shape.as_list()
    json.dump(dict(error=error, growth=growth, answered=answered), open(output, "w"))
""")


@pytest.mark.slow
def test_exported_model_refuses_a_png_bomb_by_index_without_decoding_it(
        serving_run, exported, png_bomb, tmp_path):
    bomb_path = tmp_path / "bomb.png"
    bomb_path.write_bytes(png_bomb)
    output = tmp_path / "result.json"
    subprocess.run([PYTHON, "-c", _BOMB_SCRIPT, exported["version_dir"],
                    serving_run["image_paths"][0], str(bomb_path), str(output)],
                   check=True, timeout=SUBPROCESS_TIMEOUT, cwd=tmp_path,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    result = json.loads(output.read_text())
    assert result["error"] is not None and (
            "image_bytes[1]: 20000x20000 = 400000000 pixels, over the limit of 100000000 "
            "(--max_pixels); not decoded") in result["error"]
    assert result["growth"] < 200  # MiB; decoding the bomb takes 1.2 GB.
    assert result["answered"] == [2, 5]


def test_pixel_limit_counts_width_times_height_of_every_format(serving_run, encode_image,
                                                                random_image):
    images = serving_run["images"]  # 400x300 JPEG, 150x200 JPEG, 256x256 PNG, 500x90 JPEG
    module = serving.ServingModule(serving_run["model"], serving_run["settings"],
                                   max_pixels=400 * 300 - 1)
    assert module.max_pixels == 119_999
    serve = module.serve_image_bytes
    assert serve(tf.constant(images[1:])).get("classes").shape == (3, 5)
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
            "image_bytes[2]: 400x300 = 120000 pixels, over the limit of 119999 (--max_pixels); "
            "not decoded (and 1 more refused)")):
        serve(tf.constant([images[1], images[2], images[0], images[0]]))
    for image_format in ("GIF", "BMP"):
        small, large = (encode_image(random_image(300, side), image_format)
                        for side in (399, 400))
        assert serve(tf.constant([small])).get("classes").shape == (1, 5)
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
                "image_bytes[1]: 400x300 = 120000 pixels")):
            serve(tf.constant([small, large]))
    webp = encode_image(random_image(30, 40), "WEBP")  # tf.io.decode_image reads it
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(
            f"image_bytes[0]: not a {preprocessing.IMAGE_FORMATS} image")):
        serve(tf.constant([webp]))
    with pytest.raises(ValueError, match="--max_pixels must be a number of pixels"):
        serving.ServingModule(serving_run["model"], serving_run["settings"], max_pixels=0)


def test_versions_next_integer_and_no_overwrite(exported):
    export_dir = exported["export_dir"]
    assert layout.existing_versions(export_dir) == [1]
    before = os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb"))
    with pytest.raises(FileExistsError, match="already exists"):
        serving.export(exported["module"], export_dir, version=1)
    assert os.path.getmtime(os.path.join(export_dir, "1", "saved_model.pb")) == before
    for bad in (0, -3, "2", 1.5):
        with pytest.raises(ValueError, match="positive integer"):
            serving.export(exported["module"], export_dir, version=bad)
    second = serving.export(exported["module"], export_dir, verify=False)
    assert second == os.path.join(export_dir, "2")
    assert layout.existing_versions(export_dir) == [1, 2]
    assert sorted(os.listdir(export_dir)) == ["1", "2"]  # No temporaries left behind.


_CRASH_SCRIPT = textwrap.dedent("""
    import os, sys
    from alexnet_tf.data import preprocessing
    from alexnet_tf.data import stats
    from alexnet_tf.nn import models
    from alexnet_tf.serving import saved_model as serving
    from alexnet_tf.serving import warmup
    model = models.alexnet(num_classes=3, input_size=64, width_multiplier=0.0625)
    settings = preprocessing.EvalSettings(stats=stats.load_stats(None), mean_mode="rgb",
                                          crop_size=64, resize_size=256)
    module = serving.ServingModule(model, settings)
    # Die (no clean-up, like a kill) after the SavedModel is written, before the rename.
    warmup.warmup_records = lambda *args, **kwargs: os._exit(17)
    serving.export(module, sys.argv[1], version=7)
""")


@pytest.mark.slow
def test_crashed_export_leaves_no_version(tmp_path):
    export_dir = tmp_path / "export"
    (export_dir / "1").mkdir(parents=True)
    process = subprocess.run([PYTHON, "-c", _CRASH_SCRIPT, str(export_dir)],
                             timeout=SUBPROCESS_TIMEOUT, capture_output=True,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert process.returncode == 17, process.stderr.decode()[-2000:]
    leftovers = [name for name in os.listdir(export_dir) if name != "1"]
    # The half-written model exists, but under a name TF Serving never loads (not an integer).
    assert len(leftovers) == 1 and not leftovers[0].isdigit()
    assert os.path.exists(export_dir / leftovers[0] / "saved_model.pb")
    assert layout.existing_versions(str(export_dir)) == [1]
    assert layout.next_version(str(export_dir)) == 2


def test_failed_export_cleans_up(exported, monkeypatch, tmp_path):
    def fail(*args, **kwargs):
        raise RuntimeError("disk full")
    monkeypatch.setattr(warmup, "warmup_records", fail)
    export_dir = tmp_path / "export"
    with pytest.raises(RuntimeError, match="disk full"):
        serving.export(exported["module"], str(export_dir))
    assert os.listdir(export_dir) == []


def test_label_strings():
    assert serving.label_strings(None, 3) == (["0", "1", "2"], ["", "", ""])
    labels = [{"index": 1, "synset": "n2", "name": "b"}, {"index": 0, "synset": "n1", "name": "a"}]
    assert serving.label_strings(labels, 2) == (["n1", "n2"], ["a", "b"])
    with pytest.raises(ValueError, match="indices 0..2"):
        serving.label_strings(labels, 3)


def test_module_without_labels_returns_indices(serving_run):
    module = serving.ServingModule(serving_run["model"], serving_run["settings"])
    outputs = module.serve_image_bytes(tf.constant(serving_run["images"][:2]))
    classes = outputs["classes"].numpy()
    np.testing.assert_array_equal(outputs["synsets"].numpy(), classes.astype(str).astype(bytes))
    assert set(outputs["names"].numpy().ravel()) == {b""}


@pytest.mark.slow
def test_export_skips_a_damaged_latest_checkpoint(serving_run, tmp_path, corrupt_checkpoint):
    """With the newest checkpoint's .index cut short and the state file garbage, export
    warns naming it and exports the newest checkpoint that reads."""
    model_dir = str(tmp_path / "run")
    shutil.copytree(serving_run["model_dir"], model_dir)
    directory = os.path.join(model_dir, "checkpoints")
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=serving_run["model"]),
                                         directory, max_to_keep=3)
    manager.save(checkpoint_number=2)
    corrupt_checkpoint(os.path.join(directory, "ckpt-2"), "truncate-index")
    corrupt_checkpoint(os.path.join(directory, "ckpt-2"), "garbage-state")
    export_dir = tmp_path / "export"
    process = subprocess.run([PYTHON, "-m", "alexnet_tf.export", f"--model_dir={model_dir}",
                              f"--export_dir={export_dir}", "--noverify"],
                             capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                             env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert process.returncode == 0, process.stderr[-3000:]
    assert (f"Skipping damaged checkpoint {os.path.join(directory, 'ckpt-2')}: its .index "
            "file does not read") in process.stderr
    assert f"The checkpoint state file {os.path.join(directory, 'checkpoint')} does not read" \
        in process.stderr
    assert process.stdout.strip().endswith("ckpt-1)")
    assert layout.existing_versions(str(export_dir)) == [1]


# --------------------------------------------------------------------------- ensembles

_EXPORT_COMMAND_SCRIPT = textwrap.dedent("""
    import sys
    from absl import flags
    from alexnet_tf import errors
    from alexnet_tf import export
    first, second, five_classes, export_dir = sys.argv[1:5]
    flags.FLAGS(["export", f"--model_dir={first},{five_classes}", f"--export_dir={export_dir}"])
    try:
        export.main(["export"])
        raise AssertionError("members with different classes were exported")
    except errors.InvalidInputError as error:  # as run_command reports it, exit status 2
        errors.report(error, "alexnet_tf.export")
    flags.FLAGS.model_dir = f"{first},{second}"
    assert export.main(["export"]) == 0
""")


@pytest.fixture(scope="module")
def ensemble_export(serving_run, ensemble_runs, tmp_path_factory):
    """The export command run twice in one process: members with different classes (refused),
    then serving_run's and ensemble_runs' "second" (exported to export_dir/1)."""
    export_dir = tmp_path_factory.mktemp("ensemble") / "export"
    process = subprocess.run(
            [PYTHON, "-c", _EXPORT_COMMAND_SCRIPT, serving_run["model_dir"],
             ensemble_runs["second"]["model_dir"], ensemble_runs["five_classes"]["model_dir"],
             str(export_dir)],
            capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert process.returncode == 0, process.stderr[-3000:]
    return dict(process=process, export_dir=str(export_dir),
                version_dir=os.path.join(str(export_dir), "1"))


@pytest.mark.slow
def test_export_refuses_members_with_other_classes(ensemble_runs, ensemble_export):
    lines = [line for line in ensemble_export["process"].stderr.splitlines()
             if line.startswith("alexnet_tf.export: error:")]
    assert len(lines) == 1, ensemble_export["process"].stderr
    assert f"member 2 ({ensemble_runs['five_classes']['model_dir']}" in lines[0]
    assert "it scores 5 classes, member 1 6" in lines[0]
    # The refused ensemble wrote nothing: the accepted one is version 1.
    assert layout.existing_versions(ensemble_export["export_dir"]) == [1]
    assert "ensemble of 2" in ensemble_export["process"].stdout


@pytest.mark.slow
def test_ensemble_export_serves_the_mean_of_its_members(serving_run, ensemble_runs,
                                                        ensemble_export, tmp_path):
    images = serving_run["images"]
    reference_images, first = reference_probabilities(serving_run, images)
    _, second = reference_probabilities(ensemble_runs["second"], images)
    assert np.abs(first - second).max() > 1e-2  # Members that differ, or the mean proves little.
    results = _serve_in_fresh_process(ensemble_export["version_dir"], serving_run,
                                      reference_images, tmp_path)
    _check_outputs(results, (first + second) / 2)
    members = layout.load_members(ensemble_export["version_dir"])
    assert [os.path.dirname(os.path.dirname(member["source"])) for member in members] == [
            os.path.abspath(serving_run["model_dir"]),
            os.path.abspath(ensemble_runs["second"]["model_dir"])]
    assert all(member["source"].endswith("ckpt-1") for member in members)


@pytest.mark.slow
def test_ensemble_saved_model_loads_alone_not_into_one_run(serving_run, ensemble_runs,
                                                           ensemble_export):
    loaded = model_source.load(saved_model=ensemble_export["export_dir"])
    assert loaded.description.endswith("(ensemble of 2)")
    assert loaded.num_classes == len(serving_run["labels"])
    reference_images, first = reference_probabilities(serving_run, serving_run["images"])
    _, second = reference_probabilities(ensemble_runs["second"], serving_run["images"])
    np.testing.assert_allclose(loaded.probabilities(reference_images), (first + second) / 2,
                               atol=1e-5)
    with pytest.raises(errors.InvalidInputError, match="ensemble of 2 models"):
        model_source.load(saved_model=ensemble_export["export_dir"],
                          model_dir=serving_run["model_dir"])


def test_module_of_several_models_averages_their_softmax(serving_run, ensemble_runs):
    module = serving.ServingModule([serving_run["model"], ensemble_runs["second"]["model"]],
                                   serving_run["settings"], labels=serving_run["labels"])
    reference_images, first = reference_probabilities(serving_run, serving_run["images"])
    _, second = reference_probabilities(ensemble_runs["second"], serving_run["images"])
    outputs = module.serve_images(tf.constant(reference_images))
    np.testing.assert_allclose(outputs["probabilities"].numpy(), (first + second) / 2,
                               atol=1e-6)
    with pytest.raises(ValueError, match="model 2 scores 5 classes, model 1 6"):
        serving.ServingModule([serving_run["model"], ensemble_runs["five_classes"]["model"]],
                              serving_run["settings"])
