"""ILSVRC-2012 image folders, or any folder per class -> sharded TFRecords, in parallel,
resumable, losing nothing.

`convert(options)` finds the files (`files.py`; without a val/ folder,
`validation_fraction` holds some out, `folder_layout.py`), assigns them to shards with a
seeded shuffle (every shard holds a mix of classes), and writes each shard in a worker
process: read, `recode.recode_image`, `schema.make_example`. Output in
`options.output_dir`:

  train-00000-of-01024 ...         TFRecords (names and features from alexnet_tf/data/schema.py;
  validation-00000-of-00128 ...    counts `default_num_shards` unless given)
  labels.json                      [{"index", "synset", "name"}, ...]: the class folders'
                                   names in sorted order (`class_name`)
  manifest.json                    counts per split and class, shards, label map,
                                   settings, every rejected and every re-coloured file
  shard_info/<shard>.json          per-shard results, so a rerun can skip complete shards

Resumable and deterministic: a shard is written as `<shard>.incomplete` and renamed when
complete, after its shard_info. A rerun skips a shard whose file exists and whose
shard_info was made from the same files and settings, and redoes the others. Nothing in a
shard depends on time or on the worker that wrote it, so a killed-and-rerun conversion
gives byte-identical shards to an uninterrupted one.
"""

import collections
import dataclasses
import hashlib
import json
import multiprocessing
import os
import random
import time
from typing import List, Optional, Sequence, Tuple

import PIL
import tensorflow as tf

from alexnet_tf import atomic
from alexnet_tf import errors
from alexnet_tf.data import image_header
from alexnet_tf.data import schema
from alexnet_tf.data.imagenet import files as imagenet_files
from alexnet_tf.data.imagenet import folder_layout
from alexnet_tf.data.imagenet import manifest as imagenet_manifest
from alexnet_tf.data.imagenet import recode

SPLIT_DIRS = {schema.TRAIN: folder_layout.TRAIN_DIR,
              schema.VALIDATION: folder_layout.VALIDATION_DIR}
# Default shard counts (default_num_shards): ImageNet's 1024 and 128, fewer for less data.
MAX_SHARDS = {schema.TRAIN: 1024, schema.VALIDATION: 128}
IMAGES_PER_SHARD = {schema.TRAIN: 1250, schema.VALIDATION: 390}
SHARD_INFO_DIR = "shard_info"
INCOMPLETE_SUFFIX = ".incomplete"
PROGRESS_EVERY = 8  # images between progress-counter updates in a worker


@dataclasses.dataclass(frozen=True)
class ConvertOptions:
    """What to convert and how; see tools/convert_imagenet.py for each field's flag."""
    imagenet_dir: str
    output_dir: str
    splits: Tuple[str, ...] = schema.SPLITS
    train_shards: Optional[int] = None  # None: default_num_shards
    validation_shards: Optional[int] = None
    resize: int = 256
    quality: int = 90
    seed: int = 0
    num_workers: int = 1
    val_layout: str = "auto"  # "auto" | "by_class" | "flat"
    val_labels: Optional[str] = None
    devkit_map: Optional[str] = None
    synset_names: Optional[str] = None
    synsets_file: Optional[str] = None
    use_draft: bool = True
    max_pixels: int = image_header.DEFAULT_MAX_PIXELS
    show_progress: bool = True
    validation_fraction: float = 0.0  # without a val/ folder: see folder_layout.py

    def __post_init__(self):
        bad_splits = set(self.splits) - set(schema.SPLITS)
        if not self.splits or bad_splits:
            raise errors.InvalidInputError(
                    f"--splits must be a non-empty subset of "
                    f"{schema.SPLITS}, got {self.splits!r}")
        for name in ("train_shards", "validation_shards", "num_workers"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 99_999:
                raise errors.InvalidInputError(f"--{name} must be in 1..99999, got {value}")
        if self.val_layout not in ("auto", "by_class", "flat"):
            raise errors.InvalidInputError(
                    f"--val_layout must be auto, by_class or flat, got "
                    f"{self.val_layout!r}")
        if self.resize < 0 or not 1 <= self.quality <= 100:
            raise errors.InvalidInputError(
                    f"need --resize >= 0 and --quality in 1..100, got "
                    f"{self.resize}, {self.quality}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise errors.InvalidInputError(
                    f"--validation_fraction must be in [0, 1) (the share of each class held "
                    f"out for validation), got {self.validation_fraction:g}")
        image_header.check_max_pixels(self.max_pixels, recode.LARGEST_MAX_PIXELS)


class ShardItem(collections.namedtuple("ShardItem", "path relpath label synset name")):
    """One file to convert: where it is and the label it gets."""


@dataclasses.dataclass
class ShardTask:
    split: str
    name: str  # e.g. train-00000-of-01024
    items: List[ShardItem]
    fingerprint: str  # hash of the items and the settings that affect the bytes


@dataclasses.dataclass
class ConvertResult:
    manifest: dict
    num_converted_now: int  # files processed by this run (0 when every shard was complete)
    seconds: float  # wall time of the shard writing in this run
    cpu_seconds: float  # CPU time the shard writing took, summed over workers


def _recode_settings(options: ConvertOptions) -> dict:
    # Everything that changes a shard's bytes; a shard made with other values is redone.
    # max_pixels decides which files a shard holds.
    return {"resize": options.resize, "quality": options.quality,
            "use_draft": options.use_draft, "draft_margin": recode.DRAFT_MARGIN,
            "max_pixels": options.max_pixels, "pillow": PIL.__version__}


def _manifest_options(options: ConvertOptions) -> dict:
    # How many workers ran, or whether a bar was shown, does not change the output.
    values = dataclasses.asdict(options)
    for name in ("num_workers", "show_progress"):
        values.pop(name)
    values["splits"] = list(values["splits"])  # As JSON reads it back.
    return values


def _split_files(options: ConvertOptions, split: str):
    """Returns (files, rejected, source_description) for one split of the splits layout."""
    split_dir = os.path.join(options.imagenet_dir, SPLIT_DIRS[split])
    if not os.path.isdir(split_dir):
        hold_out = (", or hold out part of train/ with --validation_fraction"
                    if split == schema.VALIDATION else "")
        raise errors.MissingInputError(
            f"no {split} directory {split_dir!r}: expected --imagenet_dir to hold "
            f"{SPLIT_DIRS[split]}/ (or choose the splits to convert with --splits{hold_out})")
    layout = "by_class" if split == schema.TRAIN else options.val_layout
    if layout == "auto":
        layout = imagenet_files.detect_val_layout(split_dir)
    if layout == "by_class":
        files, rejected = imagenet_files.find_class_dir_files(split_dir, options.imagenet_dir)
        return files, rejected, "class folders"
    labels_path = options.val_labels
    if not labels_path:
        local = [os.path.join(options.imagenet_dir, name)
                 for name in imagenet_files.LOCAL_VAL_LABEL_FILES]
        labels_path = next((path for path in local if os.path.isfile(path)),
                           imagenet_files.tfds_validation_labels_path())
    by_line, by_name = imagenet_files.read_ground_truth(labels_path, options.devkit_map)
    files, rejected = imagenet_files.label_flat_files(split_dir, options.imagenet_dir,
                                                      by_line, by_name)
    if not files and not rejected:
        raise errors.InvalidInputError(f"validation directory {split_dir!r} holds no files")
    return files, rejected, f"flat, labels from {labels_path}"


def _held_out_files(options: ConvertOptions, class_root: str):
    """{split: files}, {split: rejected}, {split: source} of class folders in `class_root`
    split by --validation_fraction (folder_layout.py)."""
    where = os.path.relpath(class_root, options.imagenet_dir)
    where = "" if where == "." else where + "/"
    if not options.validation_fraction and schema.VALIDATION in options.splits:
        raise errors.InvalidInputError(
                f"--imagenet_dir={options.imagenet_dir} has no {folder_layout.VALIDATION_DIR}/ "
                f"folder: pass --validation_fraction (e.g. 0.1) to hold out part of each "
                f"class of {where}<class>/ for validation, or --splits={schema.TRAIN}")
    files, rejected = imagenet_files.find_class_dir_files(class_root, options.imagenet_dir)
    by_split = dict(zip(schema.SPLITS, folder_layout.hold_out(files, options.validation_fraction)))
    source = (f"class folders {where}<class>/, validation: files whose name hashes below "
              f"{options.validation_fraction:g}")
    return ({split: by_split[split] for split in options.splits},
            {split: rejected if split == options.splits[0] else [] for split in options.splits},
            {split: source for split in options.splits})


def _find_files(options: ConvertOptions):
    """Returns {split: files}, {split: rejected}, {split: source description}."""
    layout = folder_layout.detect_layout(options.imagenet_dir)
    if layout == folder_layout.CLASSES_LAYOUT:
        if not folder_layout.has_folders(options.imagenet_dir):
            train_dir = os.path.join(options.imagenet_dir, folder_layout.TRAIN_DIR)
            raise errors.MissingInputError(
                    f"no train directory {train_dir!r} and no class folders in "
                    f"{options.imagenet_dir!r}: expected --imagenet_dir to hold train/<class "
                    "name>/ (and val/) or one folder of images per class")
        return _held_out_files(options, options.imagenet_dir)
    val_dir = os.path.join(options.imagenet_dir, SPLIT_DIRS[schema.VALIDATION])
    if options.validation_fraction:
        if os.path.isdir(val_dir):
            raise errors.InvalidInputError(
                    f"--validation_fraction={options.validation_fraction:g} holds out part of "
                    f"the training folders, but {val_dir!r} exists: omit "
                    "--validation_fraction to use it")
        return _held_out_files(options, os.path.join(options.imagenet_dir,
                                                     SPLIT_DIRS[schema.TRAIN]))
    files, rejected, sources = {}, {}, {}
    for split in options.splits:
        files[split], rejected[split], sources[split] = _split_files(options, split)
    return files, rejected, sources


def default_num_shards(split: str, num_files: int) -> int:
    """About ImageNet's shard sizes (1,250 training and 390 validation images a shard,
    140 MB and 45 MB at 256x256), at most ImageNet's counts, at least one."""
    return max(1, min(MAX_SHARDS[split], -(-num_files // IMAGES_PER_SHARD[split])))


def class_name(class_id: str, names: dict) -> str:
    """The name labels.json and the records give a class: a synset's from the names file
    ("" without one, as ImageNet's records have it), any other folder's own name."""
    if imagenet_files.is_synset(class_id):
        return names.get(class_id, "")
    return names.get(class_id, class_id)


def _class_list(options: ConvertOptions, files_by_split: dict) -> List[str]:
    """The sorted synsets that define label indices (see schema.LABEL_BASE)."""
    existing_path = os.path.join(options.output_dir, schema.LABELS_FILE)
    existing = None
    if os.path.isfile(existing_path):
        with open(existing_path) as f:
            existing = [entry["synset"] for entry in json.load(f)]
    if options.synsets_file:
        synsets = imagenet_files.read_synset_list(options.synsets_file)
    elif schema.TRAIN in files_by_split:
        synsets = sorted({item.synset for item in files_by_split[schema.TRAIN]})
    elif existing:
        synsets = existing
    else:
        synsets = sorted({item.synset for item in files_by_split[schema.VALIDATION]})
    synsets = sorted(synsets)  # Labels are positions in sorted order (see schema.py).
    if existing is not None and existing != synsets:
        raise errors.InvalidInputError(
                f"{existing_path} holds a different class list ({len(existing)} "
                f"classes) than this conversion ({len(synsets)}): use another "
                "--output_dir or pass the same classes")
    if not synsets:
        raise errors.InvalidInputError(f"no images found under {options.imagenet_dir!r}")
    return synsets


def _make_tasks(split: str, items: List[ShardItem], num_shards: int, seed: int,
                settings: dict) -> List[ShardTask]:
    """Shuffles `items` with a seed and cuts them into `num_shards` contiguous runs."""
    items = sorted(items, key=lambda item: item.relpath)
    random.Random(f"{seed}/{split}").shuffle(items)
    tasks = []
    for index in range(num_shards):
        chunk = items[index * len(items) // num_shards:(index + 1) * len(items) // num_shards]
        key = json.dumps([settings, [item[1:] for item in chunk]])
        tasks.append(ShardTask(split, schema.shard_name(split, index, num_shards), chunk,
                               hashlib.sha256(key.encode()).hexdigest()))
    return tasks


def _check_output_dir(output_dir: str, tasks: List[ShardTask]) -> None:
    """Refuses to mix shards of two different shard counts in one directory."""
    expected = {task.name for task in tasks}
    splits = {task.split for task in tasks}
    for name in sorted(os.listdir(output_dir)):
        parsed = schema.parse_shard_name(name)
        if parsed and parsed[0] in splits and name not in expected:
            raise errors.InvalidInputError(
                f"{output_dir!r} already holds {name}, from a conversion with another shard "
                "count; the input pipeline would read both. Use an empty --output_dir or "
                "remove the old shards")


def _info_path(output_dir: str, shard: str) -> str:
    return os.path.join(output_dir, SHARD_INFO_DIR, shard + ".json")


def _read_complete_info(output_dir: str, task: ShardTask) -> Optional[dict]:
    """The shard's info when the shard is complete and made from the same inputs."""
    info_path = _info_path(output_dir, task.name)
    if not (os.path.isfile(os.path.join(output_dir, task.name)) and os.path.isfile(info_path)):
        return None
    with open(info_path) as f:
        info = json.load(f)
    return info if info.get("fingerprint") == task.fingerprint else None


def _write_json(path: str, value) -> None:
    atomic.write_json(path, value, indent=1)


_progress_counter = None  # A multiprocessing.Value in worker processes.


def _init_worker(counter) -> None:
    global _progress_counter
    _progress_counter = counter


def write_shard(task: ShardTask, output_dir: str, resize: int, quality: int,
                use_draft: bool, max_pixels: int, on_progress=None) -> dict:
    """Converts the files of one shard and writes it; returns the shard's info.

    Runs in a worker process. Bad files (not regular files, unreadable, not images,
    corrupt, over `max_pixels`) are recorded in the info with their reason, never raised.

    Returns:
      The info saved in shard_info/, plus "cpu_seconds" (not saved: it varies).
    """
    cpu_start = time.process_time()
    shard_path = os.path.join(output_dir, task.name)
    per_class, rejected, recoloured = collections.Counter(), [], []
    pending_progress = 0
    with tf.io.TFRecordWriter(shard_path + INCOMPLETE_SUFFIX) as writer:
        for item in task.items:
            try:
                data = imagenet_files.read_regular_file(item.path)
                image = recode.recode_image(data, resize=resize, quality=quality,
                                            use_draft=use_draft, max_pixels=max_pixels)
            except (imagenet_files.UnusableFileError, recode.BadImageError) as error:
                rejected.append([item.relpath, error.reason])
            else:
                writer.write(schema.make_example(
                    encoded=image.encoded, image_format=image.image_format,
                    height=image.height, width=image.width,
                    filename=os.path.basename(item.path), label=item.label,
                    synset=item.synset, class_name=item.name))
                per_class[item.synset] += 1
                if (image.original_format, image.original_mode) != ("JPEG", "RGB"):
                    recoloured.append([item.relpath,
                                       f"{image.original_mode} {image.original_format}"])
            pending_progress += 1
            if pending_progress == PROGRESS_EVERY or item is task.items[-1]:
                _report_progress(pending_progress, on_progress)
                pending_progress = 0
    info = {"shard": task.name, "fingerprint": task.fingerprint,
            "num_images": sum(per_class.values()),
            "num_bytes": os.path.getsize(shard_path + INCOMPLETE_SUFFIX),
            "per_class": dict(sorted(per_class.items())),
            "rejected": rejected, "recoloured": recoloured}
    os.makedirs(os.path.join(output_dir, SHARD_INFO_DIR), exist_ok=True)
    _write_json(_info_path(output_dir, task.name), info)
    os.replace(shard_path + INCOMPLETE_SUFFIX, shard_path)  # The shard is now complete.
    return {**info, "cpu_seconds": time.process_time() - cpu_start}


def _report_progress(num_images: int, on_progress) -> None:
    if on_progress is not None:
        on_progress(num_images)
    elif _progress_counter is not None:
        with _progress_counter.get_lock():
            _progress_counter.value += num_images


def _run_tasks(tasks: Sequence[ShardTask], options: ConvertOptions) -> float:
    """Writes `tasks` over `options.num_workers` processes with a progress bar.

    Returns:
      The CPU seconds the workers spent on the tasks.
    """
    from tqdm import tqdm  # Local import: only the converter shows a progress bar.
    total = sum(len(task.items) for task in tasks)
    if not tasks:
        return 0.0
    bar = tqdm(total=total, unit="img", desc="converting", smoothing=0.05,
               disable=not options.show_progress)
    args = (options.output_dir, options.resize, options.quality, options.use_draft,
            options.max_pixels)
    with bar:
        if options.num_workers == 1:
            # In this process: no start-up cost, easy to debug.
            return sum(write_shard(task, *args, on_progress=bar.update)["cpu_seconds"]
                       for task in tasks)
        # Workers must not be forked from this process, whose TensorFlow runtime may hold
        # threads and locks. A fork server imports this module (and TensorFlow) once, and
        # forks each worker from that clean process: one import instead of one per worker.
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["alexnet_tf.startup", __name__])  # startup: quietly
        counter = context.Value("q", 0)
        with context.Pool(min(options.num_workers, len(tasks)), initializer=_init_worker,
                          initargs=(counter,)) as pool:
            results = [pool.apply_async(write_shard, (task, *args)) for task in tasks]
            for result in results:
                while not result.ready():
                    result.wait(0.1)  # Returns as soon as the shard is done.
                    bar.update(counter.value - bar.n)
            # get() re-raises a worker's unexpected error (disk full...).
            cpu_seconds = sum(result.get()["cpu_seconds"] for result in results)
            bar.update(counter.value - bar.n)
    return cpu_seconds


def convert(options: ConvertOptions) -> ConvertResult:
    """Converts the ImageNet folders in `options.imagenet_dir` to TFRecords.

    With num_workers > 1 the workers come from a multiprocessing fork server, which
    re-imports the calling script as `__mp_main__`: a script that calls convert() must
    do so under `if __name__ == "__main__":`, as for any non-fork multiprocessing.

    Returns:
      A ConvertResult whose manifest is also written to output_dir/manifest.json.

    Raises:
      FileNotFoundError: a split folder or a ground-truth file is missing.
      ValueError: empty or mis-laid input, unknown formats, or an output directory that
        holds shards of another conversion.
    """
    errors.check_directory(options.imagenet_dir, "--imagenet_dir",
                           "<class name>/<images>, or train/<class name>/ and/or val/")
    errors.check_output_directory(options.output_dir, "--output_dir")
    files, rejected, sources = _find_files(options)
    synsets = _class_list(options, files)
    os.makedirs(options.output_dir, exist_ok=True)
    names = {}
    names_path = options.synset_names or imagenet_files.find_names_file(options.imagenet_dir)
    if names_path:
        names = imagenet_files.read_synset_names(names_path)
    index = {synset: position + schema.LABEL_BASE for position, synset in enumerate(synsets)}
    settings = _recode_settings(options)
    tasks, excluded = [], {}
    for split in options.splits:
        items = [ShardItem(f.path, f.relpath, index[f.synset], f.synset,
                           class_name(f.synset, names))
                 for f in files[split] if f.synset in index]
        excluded[split] = sorted({f.synset for f in files[split] if f.synset not in index})
        num_shards = (options.train_shards if split == schema.TRAIN
                      else options.validation_shards) or default_num_shards(split, len(items))
        tasks += _make_tasks(split, items, num_shards, options.seed, settings)
    _check_output_dir(options.output_dir, tasks)
    pending = [task for task in tasks if _read_complete_info(options.output_dir, task) is None]
    start = time.perf_counter()
    cpu_seconds = _run_tasks(pending, options)
    seconds = time.perf_counter() - start
    labels = [{"index": index[synset], "synset": synset, "name": class_name(synset, names)}
              for synset in synsets]
    _write_json(os.path.join(options.output_dir, schema.LABELS_FILE), labels)
    manifest = imagenet_manifest.build_manifest(
        options=_manifest_options(options), settings=settings, labels=labels, tasks=tasks,
        infos={task.name: _read_complete_info(options.output_dir, task) for task in tasks},
        discovery_rejected=rejected, sources=sources, excluded=excluded,
        names_file=names_path)
    manifest_path = os.path.join(options.output_dir, schema.MANIFEST_FILE)
    if os.path.isfile(manifest_path):
        with open(manifest_path) as f:
            manifest = imagenet_manifest.merge_previous(manifest, json.load(f))
    _write_json(manifest_path, manifest)
    return ConvertResult(manifest, sum(len(task.items) for task in pending), seconds,
                         cpu_seconds)
