"""Tests for alexnet_tf.data.imagenet.files: folder layouts, ground-truth formats, names."""

import os

import pytest

from alexnet_tf.data.imagenet import files as imagenet_files


def test_class_folders_list_files_and_reject_what_does_not_belong(tmp_path, write_file):
    root = str(tmp_path)
    write_file(f"{root}/train/n00000002/b.JPEG")
    write_file(f"{root}/train/n00000001/a.JPEG")
    write_file(f"{root}/train/n00000001/notes.txt")  # Kept: rejected later by content.
    write_file(f"{root}/train/n00000001/sub/c.JPEG")
    write_file(f"{root}/train/README")
    write_file(f"{root}/train/cats/d.JPEG")
    files, rejected = imagenet_files.find_class_dir_files(f"{root}/train", root)
    assert [(f.relpath, f.synset) for f in files] == [
            ("train/n00000001/a.JPEG", "n00000001"), ("train/n00000001/notes.txt", "n00000001"),
            ("train/n00000002/b.JPEG", "n00000002")]
    reasons = dict(rejected)
    assert set(reasons) == {"train/README", "train/cats", "train/n00000001/sub"}
    assert "synset" in reasons["train/cats"]


def test_entries_that_are_not_image_files_are_rejected_with_reasons(tmp_path, write_file,
                                                                    hostile_entries, time_limit):
    root = str(tmp_path)
    write_file(f"{root}/train/n00000001/a.JPEG")
    expected = hostile_entries(f"{root}/train/n00000001")
    os.symlink(f"{root}/train/n00000001", f"{root}/train/n00000002")  # Links are followed.
    os.symlink(f"{root}/train/n00000003", f"{root}/train/n00000003")  # A class folder loop.
    with time_limit(30):
        files, rejected = imagenet_files.find_class_dir_files(f"{root}/train", root)
    assert [f.relpath for f in files] == ["train/n00000001/a.JPEG", "train/n00000002/a.JPEG"]
    reasons = dict(rejected)
    assert len(reasons) == 2 * len(expected) + 1
    assert reasons["train/n00000003"].startswith("symbolic link loop")
    for synset in ("n00000001", "n00000002"):
        for name, reason in expected.items():
            assert reasons[f"train/{synset}/{name}"].startswith(reason)
    assert "'" + f"{root}/train/n00000001/nowhere.JPEG" + "' does not exist" in reasons[
            "train/n00000001/dangling.JPEG"]


def test_flat_validation_rejects_entries_that_are_not_image_files(tmp_path, write_file,
                                                                   hostile_entries, time_limit):
    val_dir = f"{tmp_path}/val"
    write_file(f"{val_dir}/ILSVRC2012_val_00000001.JPEG")
    expected = hostile_entries(val_dir, prefix="ILSVRC2012_val_0000000")
    with time_limit(30):
        assert imagenet_files.detect_val_layout(val_dir) == "flat"
        files, rejected = imagenet_files.label_flat_files(
                val_dir, str(tmp_path), [f"n0000000{i}" for i in range(1, 8)], None)
    assert [(f.relpath, f.synset) for f in files] == [("val/ILSVRC2012_val_00000001.JPEG",
                                                      "n00000001")]
    reasons = dict(rejected)
    assert {os.path.basename(path) for path in reasons} == set(expected)
    for name, reason in expected.items():
        assert reasons[f"val/{name}"].startswith(reason)


def test_read_regular_file_never_blocks_nor_reads_a_device(tmp_path, write_file,
                                                          hostile_entries, time_limit,
                                                          monkeypatch):
    write_file(f"{tmp_path}/a.JPEG", b"bytes")
    assert imagenet_files.read_regular_file(f"{tmp_path}/a.JPEG") == b"bytes"
    expected = hostile_entries(tmp_path)
    for name, reason in expected.items():
        with time_limit(10), pytest.raises(imagenet_files.UnusableFileError) as raised:
            imagenet_files.read_regular_file(f"{tmp_path}/{name}")
        assert raised.value.reason.startswith(reason)
    # A file replaced by a FIFO or a device after it was listed: the check after opening
    # (without blocking) still refuses it.
    monkeypatch.setattr(imagenet_files, "entry_kind",
                        lambda path: (imagenet_files.REGULAR_FILE, None))
    for name in ("fifo.JPEG", "device.JPEG"):
        with time_limit(10), pytest.raises(imagenet_files.UnusableFileError,
                                           match="not a regular file"):
            imagenet_files.read_regular_file(f"{tmp_path}/{name}")


def test_class_folders_missing_is_a_clear_error(tmp_path, write_file):
    write_file(f"{tmp_path}/train/n01440764.tar")
    with pytest.raises(ValueError, match=r"no class folders.*extract the per-class \.tar"):
        imagenet_files.find_class_dir_files(f"{tmp_path}/train", str(tmp_path))


def test_detect_val_layout(tmp_path, write_file):
    write_file(f"{tmp_path}/a/n00000001/x.JPEG")
    write_file(f"{tmp_path}/b/ILSVRC2012_val_00000001.JPEG")
    os.makedirs(f"{tmp_path}/c")
    assert imagenet_files.detect_val_layout(f"{tmp_path}/a") == "by_class"
    assert imagenet_files.detect_val_layout(f"{tmp_path}/b") == "flat"
    with pytest.raises(ValueError, match="is empty"):
        imagenet_files.detect_val_layout(f"{tmp_path}/c")


def test_synset_per_line_labels_follow_the_number_in_the_name(tmp_path, write_file):
    root = str(tmp_path)
    for number in (1, 3, 4):  # File 2 is missing: the others must keep their own lines.
        write_file(f"{root}/val/ILSVRC2012_val_{number:08d}.JPEG")
    write_file(f"{root}/gt.txt", b"n00000001\nn00000002\nn00000003\nn00000004\n")
    by_line, by_name = imagenet_files.read_ground_truth(f"{root}/gt.txt")
    files, rejected = imagenet_files.label_flat_files(f"{root}/val", root, by_line, by_name)
    assert [(os.path.basename(f.path), f.synset) for f in files] == [
            ("ILSVRC2012_val_00000001.JPEG", "n00000001"),
            ("ILSVRC2012_val_00000003.JPEG", "n00000003"),
            ("ILSVRC2012_val_00000004.JPEG", "n00000004")]
    assert not rejected


def test_flat_files_without_numbers_use_sorted_order_and_must_match_in_count(tmp_path, write_file):
    root = str(tmp_path)
    for name in ("b.JPEG", "a.JPEG"):
        write_file(f"{root}/val/{name}")
    files, _ = imagenet_files.label_flat_files(f"{root}/val", root, ["n00000005", "n00000006"],
                                               None)
    assert [(os.path.basename(f.path), f.synset) for f in files] == [
            ("a.JPEG", "n00000005"), ("b.JPEG", "n00000006")]
    with pytest.raises(ValueError, match="2 files.*3 lines"):
        imagenet_files.label_flat_files(f"{root}/val", root, ["n00000005"] * 3, None)


def test_file_beyond_the_ground_truth_is_rejected(tmp_path, write_file):
    root = str(tmp_path)
    write_file(f"{root}/val/ILSVRC2012_val_00000009.JPEG")
    files, rejected = imagenet_files.label_flat_files(f"{root}/val", root, ["n00000001"], None)
    assert not files and rejected == [("val/ILSVRC2012_val_00000009.JPEG",
                                       "no label in the ground-truth file")]


def test_devkit_ids_need_a_map_and_use_it(tmp_path, write_file):
    write_file(f"{tmp_path}/gt.txt", b"2\n1\n2\n")
    with pytest.raises(ValueError, match="--devkit_map"):
        imagenet_files.read_ground_truth(f"{tmp_path}/gt.txt")
    # The ILSVRC2014 devkit's map_clsloc.txt format: wnid, id, name.
    write_file(f"{tmp_path}/map_clsloc.txt", b"n02119789 1 kit_fox\nn02100735 2 English_setter\n")
    by_line, by_name = imagenet_files.read_ground_truth(f"{tmp_path}/gt.txt",
                                                        f"{tmp_path}/map_clsloc.txt")
    assert by_line == ["n02100735", "n02119789", "n02100735"] and by_name is None
    write_file(f"{tmp_path}/short_map.txt", b"n02119789 1\n")
    with pytest.raises(ValueError, match=r"does not map devkit ids \[2\]"):
        imagenet_files.read_ground_truth(f"{tmp_path}/gt.txt", f"{tmp_path}/short_map.txt")


def test_devkit_meta_mat_without_scipy_asks_for_a_text_map(tmp_path, write_file):
    try:
        import scipy  # noqa: F401  (optional; not in requirements.txt)
    except ImportError:
        write_file(f"{tmp_path}/meta.mat", b"not really")
        with pytest.raises(ValueError, match="needs scipy.*map_clsloc.txt"):
            imagenet_files.read_devkit_map(f"{tmp_path}/meta.mat")
    else:
        pytest.skip("scipy is installed: meta.mat is read with scipy.io.loadmat")


def test_kaggle_solution_csv_labels_by_image_id(tmp_path, write_file):
    root = str(tmp_path)
    write_file(f"{root}/val/ILSVRC2012_val_00000002.JPEG")
    write_file(f"{root}/val/ILSVRC2012_val_00000001.JPEG")
    write_file(f"{root}/LOC_val_solution.csv",
          b"ImageId,PredictionString\nILSVRC2012_val_00000002,n00000007 1 2 3 4\n"
          b"ILSVRC2012_val_00000001,n00000003 5 6 7 8 n00000003 1 1 2 2\n")
    by_line, by_name = imagenet_files.read_ground_truth(f"{root}/LOC_val_solution.csv")
    files, _ = imagenet_files.label_flat_files(f"{root}/val", root, by_line, by_name)
    assert [f.synset for f in files] == ["n00000003", "n00000007"]


def test_unknown_ground_truth_format_is_an_error(tmp_path, write_file):
    write_file(f"{tmp_path}/gt.txt", b"cat\ndog\n")
    with pytest.raises(ValueError, match="not a ground-truth file"):
        imagenet_files.read_ground_truth(f"{tmp_path}/gt.txt")
    with pytest.raises(FileNotFoundError):
        imagenet_files.read_ground_truth(f"{tmp_path}/missing.txt")


def test_names_and_synset_lists(tmp_path, write_file):
    write_file(f"{tmp_path}/imagenet/LOC_synset_mapping.txt",
          b"n01440764 tench, Tinca tinca\nn01443537 goldfish, Carassius auratus\n")
    os.makedirs(f"{tmp_path}/imagenet/train")
    path = imagenet_files.find_names_file(f"{tmp_path}/imagenet/train")  # Found one level up.
    assert path == f"{tmp_path}/imagenet/LOC_synset_mapping.txt"
    assert imagenet_files.read_synset_names(path) == {
            "n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus"}
    write_file(f"{tmp_path}/bad_list.txt", b"n01440764\nn01440764\n")
    with pytest.raises(ValueError, match="distinct synset ids"):
        imagenet_files.read_synset_list(f"{tmp_path}/bad_list.txt")


def test_tfds_files_are_the_standard_order():
    # The converter's defaults rest on these facts about the installed tensorflow-datasets.
    path = imagenet_files.tfds_validation_labels_path()
    with open(path) as f:
        validation = f.read().split()
    synsets = imagenet_files.read_synset_list(os.path.join(os.path.dirname(path), "labels.txt"))
    assert len(validation) == 50_000 and len(synsets) == 1000
    assert synsets == sorted(synsets) == sorted(set(validation))
    assert synsets[0] == "n01440764"  # tench: label 0
