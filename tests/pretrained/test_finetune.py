"""Fine-tuning imported weights on a user's folders through the real commands, each in a
fresh process: import_weights -> convert_imagenet -> train with flags/finetune.cfg ->
export -> predict (and visualize) answer with the folders' names. And the guard against an
--init_checkpoint whose layers the new net cannot take."""

import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from alexnet_tf import model_source
from alexnet_tf import run_dir
from alexnet_tf import train_flags
from alexnet_tf.pretrained import importer
from alexnet_tf.training import checkpoints
from alexnet_tf.training import config as config_lib
from alexnet_tf.viz import inputs as viz_inputs
from alexnet_tf.viz import tools as viz_tools

SUBPROCESS_TIMEOUT = 300
# Spaces, unicode, a plain name: what labels.json, the export and predict must show.
CLASSES = ("golden retriever", "chat noir é", "cats")
COLOURS = ((220, 40, 40), (40, 220, 40), (40, 40, 220))
FROZEN = ("conv1", "conv2", "conv3", "conv4", "conv5")


def run(repo_root, *args):
    """Runs a command of the checkout (`-m module` or a tools/ script) in a fresh process."""
    env = dict(os.environ, PYTHONPATH=repo_root, CUDA_VISIBLE_DEVICES="")
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True,
                          cwd=repo_root, env=env, timeout=SUBPROCESS_TIMEOUT)
    assert done.returncode == 0, f"{args[:2]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def photos(tmp_path_factory, encode_image):
    """A user's folder: 8 images per class, each class its own colour."""
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    for name, colour in zip(CLASSES, COLOURS):
        os.makedirs(root / name)
        for index in range(8):
            pixels = np.clip(rng.normal(colour, 20, (40, 48, 3)), 0, 255).astype(np.uint8)
            with open(root / name / f"IMG {index}.jpg", "wb") as f:
                f.write(encode_image(Image.fromarray(pixels), "JPEG", quality=95))
    return root


@pytest.mark.slow
def test_finetune_from_an_import_to_a_served_model_with_the_users_names(
        tmp_path, photos, torchvision_fixture, repo_root):
    imported = str(tmp_path / "imagenet")
    data = str(tmp_path / "data")
    model_dir = str(tmp_path / "run")
    export_dir = str(tmp_path / "export")
    run(repo_root, "-m", "alexnet_tf.import_weights", "--format=torchvision",
        f"--weights={torchvision_fixture['pth']}", f"--model_dir={imported}")
    run(repo_root, "tools/convert_imagenet.py", f"--imagenet_dir={photos}",
        f"--output_dir={data}", "--validation_fraction=0.25", "--noprogress",
        "--num_workers=1")
    run(repo_root, "-m", "alexnet_tf.train",
        f"--flagfile={os.path.join(imported, run_dir.MODEL_FLAGS_FILE)}",
        "--flagfile=flags/finetune.cfg", f"--init_checkpoint={imported}",
        f"--data_dir={data}", f"--model_dir={model_dir}",
        "--batch_size=4", "--max_steps=2", "--noprogress_bar", "--nosummary_images")
    run(repo_root, "-m", "alexnet_tf.export", f"--model_dir={model_dir}",
        f"--export_dir={export_dir}", "--noverify")
    image = os.path.join(photos, CLASSES[1], "IMG 0.jpg")
    predicted = run(repo_root, "-m", "alexnet_tf.predict", f"--saved_model={export_dir}",
                    image)

    # predict names the user's classes, each once, ranked.
    lines = predicted.splitlines()
    assert lines[0] == image and len(lines) == 1 + len(CLASSES)
    shown = sorted(line.split("] ", 1)[1] for line in lines[1:])
    assert shown == sorted(CLASSES)
    labels = run_dir.read_labels(model_dir)
    assert [entry["name"] for entry in labels] == sorted(CLASSES)
    # visualize names them too, and takes a true class by its name.
    loaded = model_source.load(saved_model=export_dir)
    assert viz_inputs.class_names(loaded.labels, len(CLASSES)) == sorted(CLASSES)
    shown = viz_tools.run_predictions(loaded, viz_inputs.read_images([image]),
                                      str(tmp_path / "predictions.png"),
                                      true_labels=[CLASSES[1]])
    assert shown["true"] == [sorted(CLASSES).index(CLASSES[1])]

    # The run: the imported net with a new fc8, the recipe saved with it.
    config = run_dir.read_config(model_dir)
    assert config["model"]["variant"] == "one_tower"
    assert config["model"]["widths"] == list(torchvision_fixture["widths"])
    assert config["new_layers"] == ["fc8"]
    assert config["trainable_layers"] == ["fc6", "fc7", "fc8"]
    assert config["lr_multipliers"] == ["fc6=0.1", "fc7=0.1"]
    assert config["optimizer"] == "paper_sgd"
    source, _, _ = run_dir.restore_model(imported)
    tuned, _, path = run_dir.restore_model(model_dir)
    assert path.endswith("ckpt-2")
    for layer in FROZEN:  # Copied, then frozen: unchanged to the bit.
        for before, after in zip(source.get_layer(layer).get_weights(),
                                 tuned.get_layer(layer).get_weights()):
            np.testing.assert_array_equal(before, after, err_msg=layer)
    for layer in ("fc6", "fc7"):  # Copied, then trained.
        before, after = (model.get_layer(layer).get_weights()[0] for model in (source, tuned))
        assert before.shape == after.shape and not np.array_equal(before, after), layer
    assert tuned.get_layer("fc8").get_weights()[0].shape[-1] == len(CLASSES)


def test_init_checkpoint_of_another_net_names_the_flags_to_pass(torchvision_fixture,
                                                                 tmp_path, repo_root):
    imported = str(tmp_path / "imagenet")
    importer.import_weights("torchvision", torchvision_fixture["pth"], imported)
    _, source_spec = checkpoints.resolve_init_checkpoint(imported)
    # Without the import's model_flags.cfg: the paper's two-tower net, full width.
    plain = config_lib.TrainConfig(data_dir="/d", num_classes=3)
    widths = ",".join(str(width) for width in torchvision_fixture["widths"])
    with pytest.raises(ValueError, match=f"Pass --variant=one_tower --widths={widths} "
                                         r"\(for an imported model: --flagfile="):
        checkpoints.check_same_layers(source_spec, plain.model_spec(), imported)
    with_flags = train_flags.parse_flagfile(
            os.path.join(imported, run_dir.MODEL_FLAGS_FILE), "--data_dir=/d",
            "--num_classes=3", f"--flagfile={repo_root}/flags/finetune.cfg",
            f"--init_checkpoint={imported}")
    checkpoints.check_same_layers(source_spec, with_flags.model_spec(), imported)
    assert with_flags.trainable_layers == ("fc6", "fc7", "fc8")
    assert with_flags.new_layers == ("fc8",) and with_flags.optimizer == "paper_sgd"
    assert with_flags.learning_rate_multipliers() == {"fc6": 0.1, "fc7": 0.1}
