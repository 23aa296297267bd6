"""Tests for alexnet_tf.data.imagenet.demo and tools/make_demo_data.py."""

import hashlib
import io
import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from alexnet_tf.data import schema
from alexnet_tf.data.imagenet import convert as imagenet_convert
from alexnet_tf.data.imagenet import demo as demo_data
from alexnet_tf.data.imagenet import files as imagenet_files

SMALL = dict(num_classes=4, num_train_per_class=5, num_val_per_class=3)


def tree_digest(root: str) -> dict:
    digest = {}
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                digest[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return digest


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("demo") / "raw")
    demo_data.make_demo_data(path, **SMALL)
    return path


def test_layout_matches_imagenet(demo_dir):
    synsets = [demo_data.synset_id(c) for c in range(4)]
    assert synsets == sorted(synsets) and all(map(imagenet_files.is_synset, synsets))
    assert sorted(os.listdir(os.path.join(demo_dir, "train"))) == synsets
    assert all(len(os.listdir(os.path.join(demo_dir, "train", s))) == 5 for s in synsets)
    val = sorted(os.listdir(os.path.join(demo_dir, "val")))
    assert val == [f"ILSVRC2012_val_{n:08d}.JPEG" for n in range(1, 13)]
    with open(os.path.join(demo_dir, demo_data.LABELS_FILE)) as f:
        truth = f.read().split()
    assert len(truth) == 12 and sorted(truth) == sorted(synsets * 3)
    names = imagenet_files.read_synset_names(os.path.join(demo_dir, demo_data.NAMES_FILE))
    assert names == {s: demo_data.CLASSES[c][0] for c, s in enumerate(synsets)}


def test_sizes_vary_and_the_odd_files_are_what_imagenet_has(demo_dir):
    sizes, kinds = set(), {}
    for directory, _, files in os.walk(os.path.join(demo_dir, "train")):
        for name in files:
            with open(os.path.join(directory, name), "rb") as f:
                data = f.read()
            try:
                image = Image.open(io.BytesIO(data))
                image.load()
            except OSError:
                kinds[name] = "broken"
                continue
            sizes.add(image.size)
            kinds[name] = f"{image.mode} {image.format}"
    assert len(sizes) > 10 and len({w / h for w, h in sizes}) > 10
    odd = {name: kind for name, kind in kinds.items() if kind != "RGB JPEG"}
    assert sorted(odd.values()) == ["CMYK JPEG", "L JPEG", "RGB PNG", "broken"]
    assert all(name.endswith(".JPEG") for name in odd)


def test_classes_differ_in_colour(demo_dir):
    # The pattern colours must stay apart: mean of the most saturated pixels per class.
    means = []
    for c in range(4):
        folder = os.path.join(demo_dir, "train", demo_data.synset_id(c))
        image = np.asarray(Image.open(os.path.join(folder, sorted(os.listdir(folder))[-1]))
                           .convert("RGB"), np.float32)
        saturation = image.max(-1) - image.min(-1)
        means.append(image[saturation >= np.percentile(saturation, 95)].mean(0))
    distances = [np.abs(a - b).max() for i, a in enumerate(means) for b in means[i + 1:]]
    assert min(distances) > 60


def test_deterministic_and_idempotent(demo_dir, tmp_path):
    again = str(tmp_path / "again")
    demo_data.make_demo_data(again, **SMALL)
    assert tree_digest(again) == tree_digest(demo_dir)
    assert demo_data.make_demo_data(again, **SMALL) == (again, False)  # Already there.
    other = str(tmp_path / "other")
    demo_data.make_demo_data(other, **dict(SMALL, seed=1))
    assert tree_digest(other) != tree_digest(demo_dir)


def test_refuses_to_replace_other_folders(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="not empty"):
        demo_data.make_demo_data(str(tmp_path / "mine"), overwrite=True, **SMALL)
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"
    with pytest.raises(ValueError, match="num_classes"):
        demo_data.make_demo_data(str(tmp_path / "x"), num_classes=11)


def test_converts_like_imagenet(demo_dir, tmp_path):
    result = imagenet_convert.convert(imagenet_convert.ConvertOptions(
            imagenet_dir=demo_dir, output_dir=str(tmp_path / "records"), train_shards=2,
            validation_shards=1, resize=32, show_progress=False))
    manifest = result.manifest
    assert manifest["splits"][schema.TRAIN]["num_images"] == 4 * 5 - 1
    assert manifest["splits"][schema.VALIDATION]["num_images"] == 12
    assert [entry["reason"].split(" (")[0] for entry in manifest["rejected"]] == [
            "truncated or corrupt image"]
    assert sorted(entry["source"] for entry in manifest["recoloured"]) == [
            "CMYK JPEG", "L JPEG", "RGB PNG"]
    assert manifest["splits"][schema.VALIDATION]["source"].endswith(demo_data.LABELS_FILE)
    assert manifest["labels"][0] == {"index": 0, "synset": "n00000001", "name": "red disc"}


@pytest.mark.slow
def test_command_line(tmp_path, repo_root):
    output = str(tmp_path / "cli")
    command = [sys.executable, os.path.join(repo_root, "tools", "make_demo_data.py"),
               f"--output_dir={output}", "--num_classes=2", "--num_train_per_class=5",
               "--num_val_per_class=1"]
    first = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "wrote" in first.stdout and os.path.isdir(os.path.join(output, "val"))
    assert not os.path.exists(output + ".incomplete")
    second = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert "already there" in second.stdout
