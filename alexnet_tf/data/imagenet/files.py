"""Finding ILSVRC-2012 image files on disk and the labels that go with them.

Layouts understood (DIR is `--imagenet_dir`):

  DIR/train/<wnid>/<any file name>            training images, one folder per synset
  DIR/val/<wnid>/<any file name>              validation, sorted into folders, or
  DIR/val/ILSVRC2012_val_00000001.JPEG ...    validation, flat, labelled by a ground-truth file

Ground-truth files for the flat layout (format recognised by content):

  * one synset per line in file-name order: tensorflow-datasets' `validation_labels.txt`
    (the default, shipped inside the installed package, so nothing is downloaded);
  * the devkit's `ILSVRC2012_validation_ground_truth.txt`: one ILSVRC2012_ID (1..1000)
    per line, plus a map from those ids to synsets: the devkit's `data/meta.mat` (read
    with scipy when it is installed) or a text file with a synset and an integer id on
    each line, e.g. `map_clsloc.txt` from the ILSVRC2014+ devkits ("n02119789 1 kit_fox");
  * Kaggle's `LOC_val_solution.csv` (ImageId,PredictionString).

Line n of a per-line file labels the file whose name ends in the number n
(`..._00000001.JPEG` is line 1); when names carry no number, sorted file order is used.

Human-readable names come from `LOC_synset_mapping.txt` or the devkit/Caffe
`synset_words.txt` ("n01440764 tench, Tinca tinca").

Symbolic links are followed. An entry that cannot be an image file (a symbolic link
loop, a dangling link, a FIFO, a socket, a device) is rejected with its reason, never
opened: a FIFO would block the reader forever.
"""

import csv
import errno
import os
import re
import stat
from typing import Dict, List, NamedTuple, Optional, Tuple

from alexnet_tf import errors

_SYNSET_RE = re.compile(r"^n\d{8}$")
_TRAILING_NUMBER_RE = re.compile(r"(\d+)$")
NAMES_FILES = ("LOC_synset_mapping.txt", "synset_words.txt")
LOCAL_VAL_LABEL_FILES = ("validation_labels.txt", "LOC_val_solution.csv")


class ImageFile(NamedTuple):
    path: str  # absolute or as given
    relpath: str  # relative to the ImageNet directory (what the manifest lists)
    synset: str


class Rejected(NamedTuple):
    relpath: str
    reason: str


class UnusableFileError(Exception):
    """A path that is not a readable regular file; `reason` says why (for the manifest)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


_SPECIAL_FILES = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                  (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
DIRECTORY, REGULAR_FILE = "directory", "regular file"


def _not_regular_reason(mode: int) -> str:
    kind = next((name for test, name in _SPECIAL_FILES if test(mode)), "of an unknown type")
    return f"not a regular file: {kind}"


def _stat_error_reason(path: str, error: OSError) -> str:
    if error.errno == errno.ELOOP:
        return "symbolic link loop (too many levels of symbolic links)"
    if error.errno == errno.ENOENT and os.path.islink(path):
        try:
            target = os.readlink(path)
        except OSError:
            target = "?"
        return f"dangling symbolic link: its target {target!r} does not exist"
    return f"unreadable: {error.strerror or error}"


def entry_kind(path: str) -> Tuple[Optional[str], Optional[str]]:
    """What `path` is once symbolic links are followed, without opening it.

    Returns:
      (DIRECTORY, None), (REGULAR_FILE, None), or (None, reason) for anything else: a
      symbolic link loop, a dangling link, a FIFO, a socket, a device, an unreadable path.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as error:
        return None, _stat_error_reason(path, error)
    if stat.S_ISDIR(mode):
        return DIRECTORY, None
    if stat.S_ISREG(mode):
        return REGULAR_FILE, None
    return None, _not_regular_reason(mode)


def read_regular_file(path: str) -> bytes:
    """The bytes of the regular file at `path` (symbolic links followed).

    Never blocks and never reads a device: the path is checked before it is opened, and
    opened without blocking and checked again (it may have been replaced meanwhile).

    Raises:
      UnusableFileError: not a regular file, a link loop, a dangling link, unreadable.
    """
    kind, reason = entry_kind(path)
    if kind != REGULAR_FILE:
        raise UnusableFileError(reason or "not a regular file: a directory")
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        raise UnusableFileError(_stat_error_reason(path, error)) from None
    with os.fdopen(descriptor, "rb") as f:
        mode = os.fstat(descriptor).st_mode
        if not stat.S_ISREG(mode):
            raise UnusableFileError(_not_regular_reason(mode))
        try:
            return f.read()
        except OSError as error:
            raise UnusableFileError(f"unreadable: {error.strerror or error}") from None


def is_synset(name: str) -> bool:
    """True for WordNet ids like `n01440764`."""
    return bool(_SYNSET_RE.match(name))


def tfds_validation_labels_path() -> str:
    """The 50,000-line validation_labels.txt inside the installed tensorflow-datasets."""
    import tensorflow_datasets  # Local import: only needed for this default.
    return os.path.join(os.path.dirname(tensorflow_datasets.__file__), "datasets",
                        "imagenet2012", "validation_labels.txt")


def _listdir(path: str) -> List[os.DirEntry]:
    with os.scandir(path) as entries:
        return sorted(entries, key=lambda entry: entry.name)


def find_class_dir_files(split_dir: str, root: str) -> Tuple[List[ImageFile], List[Rejected]]:
    """Lists `split_dir/<wnid>/*`: every regular file is an image candidate.

    Non-images are not filtered here: the converter rejects them by content, with a
    reason. Folders that are not synset ids, unreadable folders and entries that are not
    regular files (see `entry_kind`) are rejected.

    Raises:
      ValueError: `split_dir` holds no synset folders.
    """
    files, rejected = [], []
    for entry in _listdir(split_dir):
        relpath = os.path.relpath(entry.path, root)
        kind, reason = entry_kind(entry.path)
        if kind is None:
            rejected.append(Rejected(relpath, reason))
            continue
        if kind != DIRECTORY:
            rejected.append(Rejected(relpath, "file outside any class folder"))
            continue
        if not is_synset(entry.name):
            rejected.append(Rejected(relpath, "folder name is not a synset id like n01440764"))
            continue
        try:
            children = _listdir(entry.path)
        except OSError as error:
            rejected.append(Rejected(relpath, f"unreadable folder: {error.strerror or error}"))
            continue
        for child in children:
            child_rel = os.path.relpath(child.path, root)
            kind, reason = entry_kind(child.path)
            if kind is None:
                rejected.append(Rejected(child_rel, reason))
            elif kind == DIRECTORY:
                rejected.append(Rejected(child_rel, "unexpected folder inside a class folder"))
            else:
                files.append(ImageFile(child.path, child_rel, entry.name))
    entries = _listdir(split_dir)
    if not files and not any(is_synset(entry.name) for entry in entries):
        hint = (" (extract the per-class .tar files first)"
                if any(entry.name.endswith(".tar") for entry in entries) else "")
        raise errors.InvalidInputError(f"{split_dir!r} holds no class folders: expected "
                                       f"{split_dir}/<wnid>/*.JPEG with wnid like n01440764{hint}")
    return files, rejected


def detect_val_layout(val_dir: str) -> str:
    """Returns "by_class" when val_dir has synset folders, "flat" when it has files.

    Raises:
      ValueError: val_dir is empty.
    """
    kinds = {entry.name: entry_kind(entry.path)[0] for entry in _listdir(val_dir)}
    if any(kind == DIRECTORY and is_synset(name) for name, kind in kinds.items()):
        return "by_class"
    if any(kind != DIRECTORY for kind in kinds.values()):
        return "flat"
    raise errors.InvalidInputError(
            f"validation directory {val_dir!r} is empty: expected "
            f"{val_dir}/<wnid>/*.JPEG or {val_dir}/ILSVRC2012_val_00000001.JPEG ...")


def read_devkit_map(path: str) -> Dict[int, str]:
    """Maps devkit ILSVRC2012_IDs to synsets, from meta.mat or a text file.

    Raises:
      ValueError: the file holds no id/synset pairs, or meta.mat without scipy.
    """
    if path.endswith(".mat"):
        try:
            import scipy.io  # Optional: only for the devkit's MATLAB file.
        except ImportError:
            raise errors.InvalidInputError(
                f"reading {path!r} needs scipy, which is not installed; pass a text map instead "
                "(one 'n01440764 <id>' pair per line, e.g. the ILSVRC2014 devkit's "
                "map_clsloc.txt)") from None
        synsets = scipy.io.loadmat(path)["synsets"]
        mapping = {int(row[0][0][0][0]): str(row[0][1][0]) for row in synsets}
        return {index: wnid for index, wnid in mapping.items() if 1 <= index <= 1000}
    mapping = {}
    with open(path) as f:
        for line in f:
            tokens = line.split()
            wnids = [token for token in tokens if is_synset(token)]
            numbers = [token for token in tokens if token.isdigit()]
            if wnids and numbers:
                mapping[int(numbers[0])] = wnids[0]
    if not mapping:
        raise errors.InvalidInputError(
                f"{path!r} holds no '<wnid> <id>' pairs (expected lines like "
                "'n02119789 1 kit_fox')")
    return mapping


def read_ground_truth(path: str, devkit_map_path: Optional[str] = None):
    """Reads a flat-validation ground-truth file.

    Returns:
      (by_line, by_name): by_line is a list of synsets (line n -> by_line[n - 1]) or None;
      by_name maps a file-name stem (no extension) to a synset, or None.

    Raises:
      FileNotFoundError: no file at `path`.
      ValueError: a format the converter does not know, or devkit ids without a map.
    """
    if not os.path.isfile(path):
        raise errors.MissingInputError(f"validation ground-truth file {path!r} not found")
    with open(path) as f:
        text = f.read()
    if path.endswith(".csv") or text.startswith("ImageId"):
        by_name = {row["ImageId"]: row["PredictionString"].split()[0]
                   for row in csv.DictReader(text.splitlines())}
        return None, by_name
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if lines and all(is_synset(line) for line in lines):
        return lines, None
    if lines and all(line.isdigit() for line in lines):
        if not devkit_map_path:
            raise errors.InvalidInputError(
                    f"{path!r} holds devkit class ids (1..1000); also pass "
                    "--devkit_map (the devkit's data/meta.mat or a text map)")
        mapping = read_devkit_map(devkit_map_path)
        missing = sorted({int(line) for line in lines} - set(mapping))
        if missing:
            raise errors.InvalidInputError(
                    f"{devkit_map_path!r} does not map devkit ids {missing[:10]}")
        return [mapping[int(line)] for line in lines], None
    raise errors.InvalidInputError(
            f"{path!r} is not a ground-truth file this converter knows: expected one "
            "synset per line, one devkit id per line, or LOC_val_solution.csv")


def label_flat_files(val_dir: str, root: str, by_line, by_name):
    """Pairs each file in the flat `val_dir` with its synset.

    Returns:
      (files, rejected): files without a label, and entries that are not regular files,
      are rejected with a reason.
    """
    listed = _listdir(val_dir)
    kinds = {entry.path: entry_kind(entry.path) for entry in listed}
    entries = [entry for entry in listed if kinds[entry.path][0] != DIRECTORY]
    stems = [os.path.splitext(entry.name)[0] for entry in entries]
    numbers = [_TRAILING_NUMBER_RE.search(stem) for stem in stems]
    use_numbers = all(numbers) and len({int(m[1]) for m in numbers}) == len(numbers)
    if by_line is not None and not use_numbers and len(entries) != len(by_line):
        raise errors.InvalidInputError(
                f"{val_dir!r} holds {len(entries)} files whose names carry no line "
                f"number, but the ground truth has {len(by_line)} lines")
    files, rejected = [], []
    for position, (entry, stem) in enumerate(zip(entries, stems)):
        relpath = os.path.relpath(entry.path, root)
        if kinds[entry.path][0] is None:
            rejected.append(Rejected(relpath, kinds[entry.path][1]))
            continue
        if by_name is not None:
            synset = by_name.get(stem)
        else:
            line = int(numbers[position][1]) if use_numbers else position + 1
            synset = by_line[line - 1] if 1 <= line <= len(by_line) else None
        if synset is None:
            rejected.append(Rejected(relpath, "no label in the ground-truth file"))
        else:
            files.append(ImageFile(entry.path, relpath, synset))
    return files, rejected


def find_names_file(imagenet_dir: str) -> Optional[str]:
    """Returns LOC_synset_mapping.txt or synset_words.txt in (or above) imagenet_dir."""
    for directory in (imagenet_dir, os.path.dirname(os.path.abspath(imagenet_dir))):
        for name in NAMES_FILES:
            path = os.path.join(directory, name)
            if os.path.isfile(path):
                return path
    return None


def read_synset_names(path: str) -> Dict[str, str]:
    """Reads "n01440764 tench, Tinca tinca" lines into {synset: name}.

    Raises:
      ValueError: no such line in the file.
    """
    names = {}
    with open(path) as f:
        for line in f:
            synset, _, name = line.strip().partition(" ")
            if is_synset(synset):
                names[synset] = name.strip()
    if not names:
        raise errors.InvalidInputError(f"{path!r} holds no 'n01440764 name' lines")
    return names


def read_synset_list(path: str) -> List[str]:
    """Reads a class list (one synset per line, first token), e.g. tfds' labels.txt.

    Raises:
      ValueError: a line does not start with a synset id, or a synset repeats.
    """
    with open(path) as f:
        synsets = [line.split()[0] for line in f if line.strip()]
    bad = [synset for synset in synsets if not is_synset(synset)]
    if bad or len(set(synsets)) != len(synsets):
        raise errors.InvalidInputError(
                f"{path!r} must list distinct synset ids, one per line; got {bad[:5]}")
    return synsets
