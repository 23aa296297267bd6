"""Tests for a user's own folders of images: any class names, both layouts, the held-out
validation split (alexnet_tf/data/imagenet/folder_layout.py), default shard counts, and
the one-line errors of tools/convert_imagenet.py."""

import json
import os
import subprocess
import sys

from PIL import Image
import pytest
import tensorflow as tf

from alexnet_tf import errors
from alexnet_tf.data import schema
from alexnet_tf.data.imagenet import convert as imagenet_convert
from alexnet_tf.data.imagenet import files as imagenet_files
from alexnet_tf.data.imagenet import folder_layout

# Spaces, accents, a non-Latin script, and a plain non-synset name.
CLASSES = ("golden retriever", "chat noir é", "猫", "cats")
COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30))


@pytest.fixture(scope="session")
def write_images(encode_image, write_file):
    """write_images(class_dir, count, colour, start=0): solid-colour images named
    img_<start>.jpg ...; every third one a PNG."""
    def write(class_dir: str, count: int, colour, start: int = 0) -> None:
        for index in range(start, start + count):
            kind, extension = ("PNG", "png") if index % 3 == 2 else ("JPEG", "jpg")
            write_file(f"{class_dir}/img_{index}.{extension}",
                       encode_image(Image.new("RGB", (24, 20), colour), kind))
    return write


def convert(imagenet_dir, output_dir, **kwargs):
    values = dict(imagenet_dir=str(imagenet_dir), output_dir=str(output_dir), resize=16,
                  num_workers=1, show_progress=False)
    values.update(kwargs)
    return imagenet_convert.convert(imagenet_convert.ConvertOptions(**values))


def records(output_dir, split: str) -> list:
    """(file name, label, class id, class name) of every record of `split`, sorted."""
    files = tf.io.gfile.glob(os.path.join(str(output_dir), schema.shard_glob(split)))
    result = []
    for serialized in tf.data.TFRecordDataset(sorted(files)):
        features = schema.parse_example(serialized)
        result.append((features[schema.IMAGE_FILENAME].numpy().decode(),
                       int(features[schema.LABEL]), features[schema.SYNSET].numpy().decode(),
                       features[schema.CLASS_NAME].numpy().decode()))
    return sorted(result)


def test_class_folders_with_any_names_are_the_classes(tmp_path, write_images):
    for name, colour in zip(CLASSES, COLOURS):
        write_images(f"{tmp_path}/photos/{name}", 10, colour)
    result = convert(tmp_path / "photos", tmp_path / "records", validation_fraction=0.3)
    ordered = sorted(CLASSES)
    with open(tmp_path / "records" / schema.LABELS_FILE, encoding="utf-8") as f:
        assert json.load(f) == [{"index": index, "synset": name, "name": name}
                                for index, name in enumerate(ordered)]
    train, validation = (records(tmp_path / "records", split) for split in schema.SPLITS)
    assert len(train) + len(validation) == 40 and validation
    for file_name, label, class_id, class_name in train + validation:
        assert class_id == class_name == ordered[label]
    held_out = {(class_id, file_name) for file_name, _, class_id, _ in validation}
    file_names = [f"img_{index}.{'png' if index % 3 == 2 else 'jpg'}" for index in range(10)]
    assert held_out == {(name, file_name) for name in CLASSES for file_name in file_names
                        if folder_layout.is_held_out(file_name, 0.3)}
    manifest = result.manifest
    assert manifest["num_classes"] == 4 and not manifest["rejected"]
    assert manifest["splits"]["train"]["per_class"].keys() == set(CLASSES)
    assert manifest["splits"]["train"]["num_shards"] == 1  # The default for 40 images.


def test_train_and_val_folders_with_any_names(tmp_path, write_images):
    for name, colour in zip(CLASSES[:3], COLOURS):
        write_images(f"{tmp_path}/data/train/{name}", 4, colour)
        write_images(f"{tmp_path}/data/val/{name}", 2, colour, start=100)
    result = convert(tmp_path / "data", tmp_path / "records")
    ordered = sorted(CLASSES[:3])
    train, validation = (records(tmp_path / "records", split) for split in schema.SPLITS)
    assert sorted(row[2] for row in train) == sorted(ordered * 4)
    assert sorted((row[0], row[2]) for row in validation) == sorted(
            (f"img_{index}.{'png' if index % 3 == 2 else 'jpg'}", name)
            for name in ordered for index in (100, 101))
    assert all(ordered[label] == class_id for _, label, class_id, _ in train + validation)
    assert result.manifest["splits"]["validation"]["source"] == "class folders"


def test_train_folder_without_val_is_split_by_the_fraction(tmp_path, write_images):
    for name, colour in zip(CLASSES[:2], COLOURS):
        write_images(f"{tmp_path}/data/train/{name}", 12, colour)
    convert(tmp_path / "data", tmp_path / "records", validation_fraction=0.25)
    train, validation = (records(tmp_path / "records", split) for split in schema.SPLITS)
    assert len(train) + len(validation) == 24
    for file_name, *_ in validation:
        assert folder_layout.is_held_out(file_name, 0.25)
    for file_name, *_ in train:
        assert not folder_layout.is_held_out(file_name, 0.25)


def test_imagenet_naming_still_rejects_other_folders_and_any_names_are_classes(
        tmp_path, write_file):
    write_file(f"{tmp_path}/a/n00000001/x.JPEG")
    write_file(f"{tmp_path}/a/cats/y.JPEG")
    files, rejected = imagenet_files.find_class_dir_files(f"{tmp_path}/a", str(tmp_path))
    assert [f.synset for f in files] == ["n00000001"]
    assert dict(rejected)["a/cats"].startswith("folder name is not a synset id")
    write_file(f"{tmp_path}/b/cats/y.JPEG")
    write_file(f"{tmp_path}/b/my dogs/z.JPEG")
    files, rejected = imagenet_files.find_class_dir_files(f"{tmp_path}/b", str(tmp_path))
    assert [f.synset for f in files] == ["cats", "my dogs"] and not rejected


# ------------------------------------------------------------------------------ the split

def test_the_split_is_stable_when_files_are_added():
    names = [f"photo_{index:04d}.jpg" for index in range(2000)]
    before = {name: folder_layout.is_held_out(name, 0.1) for name in names}
    grown = names + [f"new_{index}.png" for index in range(3000)]
    after = {name: folder_layout.is_held_out(name, 0.1) for name in reversed(grown)}
    assert {name: after[name] for name in names} == before
    share = sum(before.values()) / len(names)
    assert 0.08 < share < 0.12  # About the fraction (binomial sd 0.007).
    # A larger fraction only moves files from train into validation.
    assert all(folder_layout.is_held_out(name, 0.2) for name in names if before[name])
    # The path relative to the class folder decides, not where the folder is.
    assert folder_layout.is_held_out("/a/cats/x.jpg", 0.5) == folder_layout.is_held_out(
            "/b/train/dogs/x.jpg", 0.5)


def test_each_class_gives_about_the_fraction(tmp_path, write_file):
    for name in CLASSES:
        for index in range(400):
            write_file(f"{tmp_path}/{name}/{name}_{index}.jpg")
    files, _ = imagenet_files.find_class_dir_files(str(tmp_path), str(tmp_path))
    train, validation = folder_layout.hold_out(files, 0.2)
    for name in CLASSES:
        held = sum(f.synset == name for f in validation)
        assert 0.14 * 400 < held < 0.26 * 400, (name, held)  # sd 0.02
    assert len(train) + len(validation) == len(files)


def test_a_rerun_and_a_grown_dataset_keep_each_file_in_its_split(tmp_path, write_images):
    for name, colour in zip(CLASSES[:2], COLOURS):
        write_images(f"{tmp_path}/photos/{name}", 15, colour)
    convert(tmp_path / "photos", tmp_path / "first", validation_fraction=0.3)
    convert(tmp_path / "photos", tmp_path / "again", validation_fraction=0.3)
    for split in schema.SPLITS:
        assert records(tmp_path / "again", split) == records(tmp_path / "first", split)
    for name, colour in zip(CLASSES[:2], COLOURS):
        write_images(f"{tmp_path}/photos/{name}", 15, colour, start=15)
    convert(tmp_path / "photos", tmp_path / "grown", validation_fraction=0.3)
    old = {split: {(row[0], row[2]) for row in records(tmp_path / "first", split)}
           for split in schema.SPLITS}
    new = {split: {(row[0], row[2]) for row in records(tmp_path / "grown", split)}
           for split in schema.SPLITS}
    assert old["train"] < new["train"] and old["validation"] <= new["validation"]
    assert not old["train"] & new["validation"] and not old["validation"] & new["train"]


# ------------------------------------------------------------------------------ shards

def test_default_shard_counts_follow_the_size_and_flags_override(tmp_path, write_images):
    assert imagenet_convert.default_num_shards("train", 1620) == 2
    assert imagenet_convert.default_num_shards("validation", 180) == 1
    assert imagenet_convert.default_num_shards("train", 1_281_167) == 1024  # ImageNet's
    assert imagenet_convert.default_num_shards("validation", 50_000) == 128
    assert imagenet_convert.default_num_shards("validation", 0) == 1
    write_images(f"{tmp_path}/photos/a", 6, COLOURS[0])
    write_images(f"{tmp_path}/photos/b", 6, COLOURS[1])
    result = convert(tmp_path / "photos", tmp_path / "records", validation_fraction=0.2,
                     train_shards=3, validation_shards=2)
    assert [result.manifest["splits"][split]["num_shards"] for split in schema.SPLITS] == [3, 2]


# ------------------------------------------------------------------------------ bad input

def test_bad_input_is_named(tmp_path, write_images, write_file):
    def message(**kwargs):
        with pytest.raises(errors.UsageError) as caught:
            convert(**{"imagenet_dir": tmp_path / "photos", "output_dir": tmp_path / "out",
                       **kwargs})
        return errors.one_line(caught.value)

    assert "does not exist" in message(imagenet_dir=tmp_path / "missing")
    os.makedirs(tmp_path / "photos")
    write_file(f"{tmp_path}/photos/loose.jpg")
    assert "no class folders" in message(validation_fraction=0.1)
    write_images(f"{tmp_path}/photos/cats", 3, COLOURS[0])
    os.makedirs(tmp_path / "photos" / "dogs")
    assert "'" + f"{tmp_path}/photos/dogs' holds no image files" in message(
            validation_fraction=0.1)
    write_images(f"{tmp_path}/photos/dogs", 3, COLOURS[1])
    assert "pass --validation_fraction" in message()
    for fraction in (-0.1, 1.0, 1.5):
        assert "--validation_fraction must be in [0, 1)" in message(
                validation_fraction=fraction)
    write_images(f"{tmp_path}/split/train/cats", 3, COLOURS[0])
    write_images(f"{tmp_path}/split/val/cats", 3, COLOURS[0])
    assert "exists: omit --validation_fraction" in message(imagenet_dir=tmp_path / "split",
                                                           validation_fraction=0.1)
    assert not os.path.exists(tmp_path / "out")  # Nothing written for bad input.


@pytest.mark.parametrize("arguments, expected", [
        (["--imagenet_dir={tmp}/missing"], "does not exist"),
        (["--imagenet_dir={tmp}", "--validation_fraction=2"],
         "--validation_fraction must be in [0, 1)"),
])
def test_the_tool_reports_bad_input_in_one_line(tmp_path, repo_root, arguments, expected):
    command = [sys.executable, os.path.join(repo_root, "tools", "convert_imagenet.py"),
               f"--output_dir={tmp_path}/out", "--noprogress"]
    command += [argument.format(tmp=tmp_path) for argument in arguments]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "error: " in lines[0] and expected in lines[0], done.stderr
