"""Tests for alexnet_tf.serving.signatures and the export entry point.

One tiny paper-variant AlexNet (6 classes, 64x64 input, 1/16 width, two towers pinned to
/CPU:0 and /CPU:1 while "training") is checkpointed into a model_dir exactly as the
trainer does, exported once, and checked from a fresh process that never imports
alexnet_tf, as TF Serving would load it.
"""

import base64
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from alexnet_tf import run_dir as model_dir_lib
from alexnet_tf.data import preprocessing
from alexnet_tf.data import schema
from alexnet_tf import model_source
from alexnet_tf.serving import layout
from alexnet_tf.serving import saved_model as serving
from alexnet_tf.serving import warmup
from alexnet_tf.data import stats as stats_lib

NUM_CLASSES = 6
INPUT_SIZE = 64
SPEC = {"name": "alexnet", "num_classes": NUM_CLASSES, "variant": "paper",
        "input_size": INPUT_SIZE, "width_multiplier": 0.0625,
        "tower_devices": ["/CPU:0", "/CPU:1"]}
PYTHON = sys.executable
SUBPROCESS_TIMEOUT = 120


def randomize_weights(model, seed=0):
    """Weights that make different images give clearly different outputs.

    The paper's N(0, 0.01) initialisation with unit biases gives nearly the same output
    for every image, which would make a parity test too easy to pass.
    """
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        shape = tuple(weight.shape)
        if len(shape) > 1:
            scale = np.sqrt(1.0 / np.prod(shape[:-1])) / (16.0 if "conv1" in weight.path else 1.0)
        else:
            scale = 0.1
        weight.assign(rng.normal(0.0, scale, shape).astype(np.float32))


def encode(height, width, seed, image_format="JPEG"):
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, image_format)
    return buffer.getvalue()


def make_stats():
    rng = np.random.default_rng(1)
    return stats_lib.ImageStats(mean_rgb=np.array([124.0, 116.0, 104.0], np.float32),
                                eigval=np.ones(3, np.float32), eigvec=np.eye(3, dtype=np.float32),
                                mean_image=rng.uniform(90, 140, (32, 32, 3)).astype(np.float32))


def make_run(root):
    """A model_dir per alexnet_tf.run_dir's contract, plus the model and images behind it.

    Also used by test_evaluation.py and test_predict.py.
    """
    run_dir = root / "run"
    run_dir.mkdir()
    model = model_dir_lib.build_model(SPEC)
    randomize_weights(model)
    stats = make_stats()
    stats_path = str(root / stats_lib.STATS_FILE)
    stats_lib.save_stats(stats, stats_path)
    # As config.py writes it: the spec without device placement, and the data settings.
    spec = {key: value for key, value in SPEC.items() if key != "tower_devices"}
    (run_dir / model_dir_lib.CONFIG_FILE).write_text(json.dumps(
            {"model": spec, "stats_path": stats_path, "mean_mode": "image", "resize_size": 256}))
    labels = [{"index": i, "synset": f"n0000000{i}", "name": f"class {i}"}
              for i in range(NUM_CLASSES)]
    (run_dir / schema.LABELS_FILE).write_text(json.dumps(labels))
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model),
                                         model_dir_lib.checkpoint_dir(str(run_dir)), max_to_keep=3)
    manager.save()
    images = [encode(300, 400, 1), encode(200, 150, 2), encode(256, 256, 3, "PNG"),
              encode(90, 500, 4)]
    image_paths = []
    for index, image in enumerate(images):
        path = root / f"image{index}.{'png' if index == 2 else 'jpg'}"
        path.write_bytes(image)
        image_paths.append(str(path))
    settings = preprocessing.EvalSettings(stats=stats, mean_mode="image", crop_size=INPUT_SIZE,
                                          resize_size=preprocessing.RESIZE_SIZE)
    return dict(root=root, run_dir=str(run_dir), model=model, stats=stats, settings=settings,
                stats_path=stats_path, images=images, image_paths=image_paths, labels=labels,
                manager=manager)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return make_run(tmp_path_factory.mktemp("serving"))


@pytest.fixture(scope="module")
def exported(run):
    """The run exported once to export_dir/1 (warm-up replayed before the rename)."""
    loaded = model_source.load(model_dir=run["run_dir"])
    module = serving.ServingModule(loaded.keras_model, loaded.settings, labels=loaded.labels)
    export_dir = str(run["root"] / "export")
    version_dir = serving.export(module, export_dir, verify=True)
    return dict(module=module, export_dir=export_dir, version_dir=version_dir)


def reference_probabilities(run, images):
    """The model on the eval pipeline's preprocessing: what serving must reproduce."""
    batch = tf.stack([preprocessing.preprocess_for_eval(image, stats=run["stats"],
                                                        crop_size=INPUT_SIZE)
                      for image in images])
    return batch.numpy(), tf.nn.softmax(run["model"](batch, training=False)).numpy()


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


def test_fresh_process_matches_model_on_eval_preprocessing(run, exported, tmp_path):
    images = run["images"]
    reference_images, reference = reference_probabilities(run, images)
    # Different images must give different answers, or parity would prove little.
    assert np.abs(reference - reference[0]).max() > 1e-3
    image_list = tmp_path / "images.json"
    image_list.write_text(json.dumps(run["image_paths"]))
    rest_body = tmp_path / "request.json"
    rest_body.write_text(json.dumps(
            {"instances": [{"b64": base64.b64encode(image).decode("ascii")} for image in images]}))
    images_npy = tmp_path / "preprocessed.npy"
    np.save(images_npy, reference_images)
    output = tmp_path / "outputs.npz"
    subprocess.run([PYTHON, "-c", _FRESH_PROCESS_SCRIPT, exported["version_dir"],
                    str(image_list), str(rest_body), str(images_npy), str(output)],
                   check=True, timeout=SUBPROCESS_TIMEOUT, cwd=tmp_path,
                   env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    results = np.load(output)
    assert not results["alexnet_tf_imported"]
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


def test_saved_model_cli_lists_both_signatures(exported):
    cli = os.path.join(os.path.dirname(PYTHON), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--all", "--dir", exported["version_dir"]],
                           check=True, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                           env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")).stdout
    assert "signature_def['serving_default']" in shown
    assert "signature_def['preprocessed']" in shown
    assert "inputs['image_bytes']" in shown and "inputs['images']" in shown
    assert f"shape: (-1, {INPUT_SIZE}, {INPUT_SIZE}, 3)" in shown
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


def test_corrupt_image_is_an_error_not_a_crash(run, exported):
    loaded = tf.saved_model.load(exported["version_dir"])
    serve = loaded.signatures[layout.SERVING_SIGNATURE]
    with pytest.raises(tf.errors.InvalidArgumentError, match="Unknown image file format"):
        serve(image_bytes=tf.constant([b"this is not an image"]))
    truncated = run["images"][0][:len(run["images"][0]) // 3]
    with pytest.raises(tf.errors.InvalidArgumentError, match="JPEG"):
        serve(image_bytes=tf.constant([run["images"][1], truncated]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="empty batch"):
        serve(image_bytes=tf.constant([], tf.string))
    # The process (and the loaded model) still serve good requests.
    good = serve(image_bytes=tf.constant(run["images"][:1]))["probabilities"]
    assert good.shape == (1, NUM_CLASSES)


def test_versions_next_integer_and_no_overwrite(run, exported):
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


def test_module_without_labels_returns_indices(run):
    module = serving.ServingModule(run["model"], run["settings"])
    outputs = module.serve_image_bytes(tf.constant(run["images"][:2]))
    classes = outputs["classes"].numpy()
    np.testing.assert_array_equal(outputs["synsets"].numpy(), classes.astype(str).astype(bytes))
    assert set(outputs["names"].numpy().ravel()) == {b""}


def test_eval_settings_from_config(run, tmp_path):
    config = {"model": SPEC, "stats_path": run["stats_path"], "mean_mode": "rgb",
              "resize_size": 300}
    settings = model_dir_lib.eval_settings(config)
    assert (settings.crop_size, settings.resize_size, settings.mean_mode) == (INPUT_SIZE, 300, "rgb")
    np.testing.assert_allclose(settings.stats.mean_image, run["stats"].mean_image)
    # stats_path None (as config.py writes it when unset): data_dir/stats.npz is used.
    stats_lib.save_stats(run["stats"], str(tmp_path / stats_lib.STATS_FILE))
    settings = model_dir_lib.eval_settings({"model": SPEC, "stats_path": None,
                                         "data_dir": str(tmp_path)})
    assert settings.mean_mode == "image" and settings.stats.mean_image is not None
    with pytest.raises(ValueError, match="mean_mode"):
        model_dir_lib.eval_settings({"model": SPEC}, mean_mode="median")


def test_settings_saved_with_the_export(run, exported):
    settings = layout.load_settings(exported["version_dir"])
    assert (settings.crop_size, settings.resize_size, settings.mean_mode) == (
            INPUT_SIZE, preprocessing.RESIZE_SIZE, "image")
    np.testing.assert_allclose(settings.stats.mean_image, run["stats"].mean_image)
    assert layout.load_labels(exported["version_dir"]) == run["labels"]
    with pytest.raises(FileNotFoundError, match="alexnet_tf.export"):
        layout.load_settings(str(run["root"]))
