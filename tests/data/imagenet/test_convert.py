"""Tests for alexnet_tf.data.imagenet.convert (with its manifest and tools/convert_imagenet.py).

A tiny ImageNet is made in tmp_path: 3 classes of solid-colour JPEGs, ImageNet's odd files
(CMYK, PNG named .JPEG, grayscale, truncated) plus an empty file, a text file and a broken
symlink, and a flat val/ with a ground-truth file.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from alexnet_tf.bench import pixel_limit
from alexnet_tf.data import image_header
from alexnet_tf.data import schema
from alexnet_tf.data.imagenet import convert as imagenet_convert

SYNSETS = ("n00000001", "n00000002", "n00000003")
COLOURS = ((200, 30, 30), (30, 200, 30), (30, 30, 200))
NUM_PER_CLASS = 6
SIZE = 16  # --resize for tests: tiny records, same code path as 256


@pytest.fixture(scope="session")
def jpeg(encode_image):
    """jpeg(colour, width=40, height=30, mode="RGB", kind="JPEG"): a solid-colour image."""
    def make(colour, width=40, height=30, mode="RGB", kind="JPEG") -> bytes:
        return encode_image(Image.new("RGB", (width, height), colour).convert(mode), kind,
                            quality=95)
    return make


@pytest.fixture(scope="session")
def make_imagenet(jpeg, write_file):
    """make_imagenet(root, flat_val=True): the tiny ImageNet of the module docstring."""
    def make(root: str, flat_val: bool = True) -> str:
        for label, (synset, colour) in enumerate(zip(SYNSETS, COLOURS)):
            for index in range(NUM_PER_CLASS):
                write_file(f"{root}/train/{synset}/{synset}_{index}.JPEG",
                           jpeg(colour, width=30 + 7 * index, height=50 - 3 * index))
        odd = f"{root}/train/{SYNSETS[0]}"
        write_file(f"{odd}/cmyk.JPEG", jpeg(COLOURS[0], mode="CMYK"))
        write_file(f"{odd}/png.JPEG", jpeg(COLOURS[0], kind="PNG"))
        write_file(f"{odd}/gray.JPEG", jpeg(COLOURS[0], mode="L"))
        write_file(f"{odd}/truncated.JPEG", jpeg(COLOURS[0], width=300, height=200)[:900])
        write_file(f"{odd}/empty.JPEG", b"")
        write_file(f"{odd}/notes.JPEG", b"not an image at all\n")
        os.symlink(f"{root}/nowhere.JPEG", f"{odd}/dangling.JPEG")
        val_synsets = [SYNSETS[i % 3] for i in range(7)]
        for number, synset in enumerate(val_synsets, start=1):
            name = f"ILSVRC2012_val_{number:08d}.JPEG"
            colour = COLOURS[SYNSETS.index(synset)]
            if flat_val:
                write_file(f"{root}/val/{name}", jpeg(colour, width=33, height=44))
            else:
                write_file(f"{root}/val/{synset}/{name}", jpeg(colour, width=33, height=44))
        if flat_val:
            write_file(f"{root}/validation_labels.txt",
                       "".join(s + "\n" for s in val_synsets).encode())
        write_file(f"{root}/LOC_synset_mapping.txt",
                   b"n00000001 red thing\nn00000002 green thing\nn00000003 blue thing\n")
        return root
    return make


@pytest.fixture(scope="module")
def imagenet_dir(tmp_path_factory, make_imagenet):
    return make_imagenet(str(tmp_path_factory.mktemp("imagenet")))


def options(imagenet_dir, output_dir, **kwargs):
    values = dict(imagenet_dir=imagenet_dir, output_dir=output_dir, train_shards=3,
                  validation_shards=2, resize=SIZE, num_workers=1, show_progress=False)
    values.update(kwargs)
    return imagenet_convert.ConvertOptions(**values)


def read_records(output_dir: str, split: str) -> list:
    files = sorted(tf.io.gfile.glob(os.path.join(output_dir, schema.shard_glob(split))))
    records = []
    for serialized in tf.data.TFRecordDataset(files):
        features = schema.parse_example(serialized)
        records.append({key: value.numpy() for key, value in features.items()})
    return records


def shard_bytes(output_dir: str) -> dict:
    result = {}
    for name in sorted(os.listdir(output_dir)):
        if schema.parse_shard_name(name):
            with open(os.path.join(output_dir, name), "rb") as f:
                result[name] = f.read()
    return result


@pytest.fixture(scope="module")
def converted(imagenet_dir, tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("records"))
    result = imagenet_convert.convert(options(imagenet_dir, output_dir))
    return output_dir, result


def test_round_trip_gives_the_right_labels_and_pixels(converted):
    output_dir, result = converted
    records = read_records(output_dir, schema.TRAIN)
    assert len(records) == 3 * NUM_PER_CLASS + 3  # + CMYK, PNG and grayscale, fixed
    for record in records:
        synset = record[schema.SYNSET].decode()
        label = SYNSETS.index(synset) + schema.LABEL_BASE
        assert record[schema.LABEL] == label
        assert record[schema.CLASS_NAME].decode().endswith("thing")
        assert (record[schema.IMAGE_HEIGHT], record[schema.IMAGE_WIDTH]) == (SIZE, SIZE)
        assert record[schema.IMAGE_FORMAT] == b"JPEG"
        pixels = tf.io.decode_jpeg(record[schema.IMAGE_ENCODED]).numpy()
        assert pixels.shape == (SIZE, SIZE, 3)
        if record[schema.IMAGE_FILENAME] != b"gray.JPEG":
            np.testing.assert_allclose(pixels.reshape(-1, 3).mean(0),
                                       COLOURS[label - schema.LABEL_BASE], atol=12)
    names = sorted(record[schema.IMAGE_FILENAME].decode() for record in records)
    assert "cmyk.JPEG" in names and "png.JPEG" in names and "truncated.JPEG" not in names
    with open(os.path.join(output_dir, schema.LABELS_FILE)) as f:
        assert json.load(f) == [{"index": i, "synset": s, "name": n} for i, (s, n) in
                                enumerate(zip(SYNSETS, ("red thing", "green thing",
                                                        "blue thing")))]


def test_bad_files_are_listed_with_reasons_and_odd_ones_fixed(converted):
    manifest = converted[1].manifest
    reasons = {entry["path"]: entry["reason"] for entry in manifest["rejected"]}
    odd = f"train/{SYNSETS[0]}"
    assert set(reasons) == {f"{odd}/{name}.JPEG" for name in
                            ("truncated", "empty", "notes", "dangling")}
    assert reasons[f"{odd}/truncated.JPEG"].startswith("truncated or corrupt")
    assert reasons[f"{odd}/empty.JPEG"] == "empty file"
    assert reasons[f"{odd}/notes.JPEG"].startswith("not an image")
    assert reasons[f"{odd}/dangling.JPEG"].startswith("dangling symbolic link")
    recoloured = {entry["path"]: entry["source"] for entry in manifest["recoloured"]}
    assert recoloured == {f"{odd}/cmyk.JPEG": "CMYK JPEG", f"{odd}/png.JPEG": "RGB PNG",
                          f"{odd}/gray.JPEG": "L JPEG"}
    with open(os.path.join(converted[0], schema.MANIFEST_FILE)) as f:
        assert json.load(f) == manifest


def test_hostile_files_are_rejected_with_reasons_and_the_rest_converted(
        tmp_path, jpeg, write_file, png_bomb, hostile_entries, time_limit):
    root = str(tmp_path / "imagenet")
    for synset, colour in zip(SYNSETS[:2], COLOURS):
        for index in range(3):
            write_file(f"{root}/train/{synset}/good_{index}.JPEG", jpeg(colour))
    hostile = f"{root}/train/{SYNSETS[0]}"
    expected = {f"train/{SYNSETS[0]}/{name}": reason
                for name, reason in hostile_entries(hostile).items()}
    write_file(f"{hostile}/bomb.JPEG", png_bomb)  # 48 KB, 20000x20000
    write_file(f"{hostile}/giant.JPEG", pixel_limit.png_bomb(45000, 45000, data_rows=8))
    expected[f"train/{SYNSETS[0]}/bomb.JPEG"] = (
            "too large: 20000x20000 = 400000000 pixels, over the limit of 100000000")
    expected[f"train/{SYNSETS[0]}/giant.JPEG"] = "too large: Image size (2025000000 pixels)"
    os.symlink(f"{root}/train/{SYNSETS[2]}", f"{root}/train/{SYNSETS[2]}")  # A folder loop.
    expected[f"train/{SYNSETS[2]}"] = "symbolic link loop"
    output_dir = str(tmp_path / "records")
    with time_limit(120):  # A FIFO opened for reading would block here forever.
        result = imagenet_convert.convert(options(root, output_dir, splits=(schema.TRAIN,),
                                                  train_shards=2))
    reasons = {entry["path"]: entry["reason"] for entry in result.manifest["rejected"]}
    assert set(reasons) == set(expected)
    for path, reason in expected.items():
        assert reasons[path].startswith(reason), (path, reasons[path])
    assert result.manifest["options"]["max_pixels"] == image_header.DEFAULT_MAX_PIXELS
    records = read_records(output_dir, schema.TRAIN)
    assert sorted(record[schema.IMAGE_FILENAME].decode() for record in records) == sorted(
            f"good_{index}.JPEG" for index in range(3) for _ in SYNSETS[:2])
    assert not [name for name in os.listdir(output_dir)
                if name.endswith(imagenet_convert.INCOMPLETE_SUFFIX)]
    with open(os.path.join(output_dir, schema.MANIFEST_FILE)) as f:
        assert json.load(f)["rejected"] == result.manifest["rejected"]


def test_max_pixels_rejects_larger_images_and_is_part_of_the_settings(
        converted, imagenet_dir, tmp_path):
    # Training image i of each class is (30 + 7i) x (50 - 3i): 1500 pixels for i = 0, more
    # for the others; the truncated file declares 300x200; the other odd files and the
    # validation images are smaller.
    output_dir = str(tmp_path / "records")
    result = imagenet_convert.convert(options(imagenet_dir, output_dir, max_pixels=1500))
    reasons = {entry["path"]: entry["reason"] for entry in result.manifest["rejected"]
               if entry["reason"].startswith("too large")}
    assert sorted(reasons) == sorted([f"train/{synset}/{synset}_{index}.JPEG"
                                     for synset in SYNSETS for index in range(1, NUM_PER_CLASS)]
                                    + [f"train/{SYNSETS[0]}/truncated.JPEG"])
    assert reasons[f"train/{SYNSETS[1]}/{SYNSETS[1]}_1.JPEG"] == (
            "too large: 37x47 = 1739 pixels, over the limit of 1500 (--max_pixels); not decoded")
    assert result.manifest["splits"][schema.TRAIN]["num_images"] == 3 + 3  # i = 0, odd files
    assert result.manifest["recode_settings"]["max_pixels"] == 1500
    with pytest.raises(ValueError, match="--max_pixels must be a number of pixels"):
        options(imagenet_dir, output_dir, max_pixels=0)


def test_manifest_counts_and_shards(converted):
    output_dir, result = converted
    train = result.manifest["splits"][schema.TRAIN]
    assert train["num_images"] == 3 * NUM_PER_CLASS + 3 and train["num_rejected"] == 4
    assert train["per_class"] == {SYNSETS[0]: NUM_PER_CLASS + 3, SYNSETS[1]: NUM_PER_CLASS,
                                  SYNSETS[2]: NUM_PER_CLASS}
    assert [shard["name"] for shard in train["shards"]] == [
            "train-00000-of-00003", "train-00001-of-00003", "train-00002-of-00003"]
    assert sum(shard["num_images"] for shard in train["shards"]) == train["num_images"]
    validation = result.manifest["splits"][schema.VALIDATION]
    assert validation["num_images"] == 7 and validation["per_class"][SYNSETS[0]] == 3
    assert result.manifest["num_classes"] == 3
    assert sorted(os.listdir(output_dir)) == sorted(
            [shard["name"] for split in result.manifest["splits"].values()
             for shard in split["shards"]] + ["labels.json", "manifest.json", "shard_info"])


def test_every_shard_mixes_classes(converted):
    by_shard = {}
    for name in shard_bytes(converted[0]):
        if name.startswith(schema.TRAIN):
            path = os.path.join(converted[0], name)
            by_shard[name] = {schema.parse_example(r)[schema.LABEL].numpy()
                              for r in tf.data.TFRecordDataset(path)}
    assert len(by_shard) == 3 and all(len(labels) >= 2 for labels in by_shard.values())


def test_validation_layouts_give_the_same_labels(converted, tmp_path, make_imagenet):
    by_class_dir = make_imagenet(str(tmp_path / "imagenet"), flat_val=False)
    output_dir = str(tmp_path / "records")
    imagenet_convert.convert(options(by_class_dir, output_dir, splits=(schema.VALIDATION,),
                                     synsets_file=None))
    labels = lambda d: sorted((r[schema.IMAGE_FILENAME], r[schema.LABEL])  # noqa: E731
                              for r in read_records(d, schema.VALIDATION))
    assert labels(output_dir) == labels(converted[0])
    assert len(labels(output_dir)) == 7


def test_devkit_ground_truth_with_a_text_map(converted, imagenet_dir, tmp_path):
    # Devkit ids are not in sorted-synset order: id 1 -> n00000003, 2 -> n00000001 ...
    devkit_id = {SYNSETS[2]: 1, SYNSETS[0]: 2, SYNSETS[1]: 3}
    with open(os.path.join(imagenet_dir, "validation_labels.txt")) as f:
        truth = [devkit_id[line.strip()] for line in f]
    (tmp_path / "gt.txt").write_text("".join(f"{i}\n" for i in truth))
    (tmp_path / "map.txt").write_text("".join(f"{s} {i} x\n" for s, i in devkit_id.items()))
    output_dir = str(tmp_path / "records")
    imagenet_convert.convert(options(imagenet_dir, output_dir, val_labels=str(tmp_path / "gt.txt"),
                                     devkit_map=str(tmp_path / "map.txt")))
    assert read_records(output_dir, schema.VALIDATION) == read_records(converted[0],
                                                                       schema.VALIDATION)


def test_rerun_skips_complete_shards_and_redoes_changed_settings(converted, tmp_path):
    output_dir = str(tmp_path / "copy")
    shutil.copytree(converted[0], output_dir)
    again = imagenet_convert.convert(options(converted[1].manifest["options"]["imagenet_dir"],
                                             output_dir))
    assert again.num_converted_now == 0
    assert shard_bytes(output_dir) == shard_bytes(converted[0])
    redone = imagenet_convert.convert(options(converted[1].manifest["options"]["imagenet_dir"],
                                              output_dir, quality=50))
    assert redone.num_converted_now > 0
    assert shard_bytes(output_dir) != shard_bytes(converted[0])


def test_resume_after_an_interrupted_run_is_byte_identical(converted, imagenet_dir, tmp_path):
    # The states a kill can leave: a shard half-written under its temporary name, and a
    # shard whose info was saved but which was not yet renamed.
    output_dir = str(tmp_path / "resumed")
    shutil.copytree(converted[0], output_dir)
    first, second = "train-00000-of-00003", "validation-00001-of-00002"
    os.replace(os.path.join(output_dir, first), os.path.join(output_dir, first + ".incomplete"))
    with open(os.path.join(output_dir, first + ".incomplete"), "r+b") as f:
        f.truncate(100)
    os.remove(os.path.join(output_dir, second))
    os.remove(os.path.join(output_dir, schema.MANIFEST_FILE))
    result = imagenet_convert.convert(options(imagenet_dir, output_dir))
    assert 0 < result.num_converted_now < 30
    assert shard_bytes(output_dir) == shard_bytes(converted[0])
    assert result.manifest == {**converted[1].manifest, "options": result.manifest["options"]}
    assert not [name for name in os.listdir(output_dir) if name.endswith(".incomplete")]


def test_splits_converted_in_two_runs_share_labels_and_manifest(converted, imagenet_dir, tmp_path):
    output_dir = str(tmp_path / "two_runs")
    for split in (schema.TRAIN, schema.VALIDATION):
        result = imagenet_convert.convert(options(imagenet_dir, output_dir, splits=(split,)))
    assert shard_bytes(output_dir) == shard_bytes(converted[0])
    reference = converted[1].manifest
    assert result.manifest["splits"] == reference["splits"]
    assert result.manifest["rejected"] == reference["rejected"]
    assert result.manifest["recoloured"] == reference["recoloured"]


def test_seed_decides_the_assignment_to_shards(converted, imagenet_dir, tmp_path):
    other = imagenet_convert.convert(options(imagenet_dir, str(tmp_path / "seed1"), seed=1,
                                             splits=(schema.TRAIN,)))
    assert other.manifest["splits"]["train"]["num_images"] == 3 * NUM_PER_CLASS + 3
    ours = {n: b for n, b in shard_bytes(converted[0]).items() if n.startswith("train")}
    assert shard_bytes(str(tmp_path / "seed1")) != ours


def test_input_errors_name_what_was_expected(imagenet_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="--imagenet_dir=.*missing does not exist"):
        imagenet_convert.convert(options(str(tmp_path / "missing"), str(tmp_path / "out")))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match=r"no train directory .*train/"):
        imagenet_convert.convert(options(str(tmp_path / "empty"), str(tmp_path / "out")))
    os.makedirs(tmp_path / "empty" / "train")
    with pytest.raises(ValueError, match="no class folders"):
        imagenet_convert.convert(options(str(tmp_path / "empty"), str(tmp_path / "out"),
                                         splits=(schema.TRAIN,)))
    with pytest.raises(ValueError, match="splits"):
        options(imagenet_dir, str(tmp_path / "out"), splits=("test",))


def test_refuses_to_mix_shard_counts(converted, imagenet_dir, tmp_path):
    output_dir = str(tmp_path / "mixed")
    shutil.copytree(converted[0], output_dir)
    with pytest.raises(ValueError, match="another shard count"):
        imagenet_convert.convert(options(imagenet_dir, output_dir, train_shards=4))


@pytest.mark.slow
def test_killed_multiprocess_run_resumes_to_the_same_bytes(tmp_path, make_imagenet, repo_root):
    # The real thing: the command line tool with 2 worker processes, SIGKILLed as soon as
    # its first shard is complete, then rerun in one process (with --strict: rejected files
    # -> exit status 1).
    # Larger noisy images give the workers enough to do that the kill lands mid-run.
    imagenet_dir = make_imagenet(str(tmp_path / "imagenet"))
    rng = np.random.default_rng(0)
    for synset in SYNSETS:
        for index in range(30):
            image = Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8))
            image.save(f"{imagenet_dir}/train/{synset}/big_{index}.JPEG", quality=90)
    reference = str(tmp_path / "reference")
    imagenet_convert.convert(options(imagenet_dir, reference, train_shards=12))
    output_dir = str(tmp_path / "killed")
    command = [sys.executable, os.path.join(repo_root, "tools", "convert_imagenet.py"),
               f"--imagenet_dir={imagenet_dir}", f"--output_dir={output_dir}",
               "--train_shards=12", "--validation_shards=2", f"--resize={SIZE}",
               "--num_workers=2", "--noprogress"]
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240  # TensorFlow's import alone is slow on a busy machine
        while not (os.path.isdir(output_dir) and shard_bytes(output_dir)):
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # The tool and its workers: one group.
        process.wait(timeout=30)
    assert len(shard_bytes(output_dir)) < 14  # Killed before the end.
    rerun = subprocess.run(command + ["--strict", "--num_workers=1"], capture_output=True,
                           text=True, timeout=120)
    assert rerun.returncode == 1, rerun.stderr[-2000:]
    assert "--strict: 4 files were rejected" in rerun.stderr
    assert "truncated.JPEG: truncated or corrupt" in rerun.stdout
    assert shard_bytes(output_dir) == shard_bytes(reference)
