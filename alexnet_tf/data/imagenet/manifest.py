"""The converter's manifest.json and its end-of-run summary.

The manifest records what a conversion produced and what it could not use:

  {"format_version": 1,
   "options": {...}, "recode_settings": {...}, "names_file": str | null,
   "num_classes": N, "labels": [{"index", "synset", "name"}, ...],
   "splits": {"train": {"source", "num_images", "num_rejected", "num_recoloured",
                        "num_shards", "per_class": {synset: count}, "shards": [{"name",
                        "num_images"}], "excluded_synsets": [...]}, ...},
   "rejected": [{"split", "path", "reason"}, ...],    every file not converted, and why
   "recoloured": [{"split", "path", "source"}, ...]}  CMYK / grayscale / PNG ... made RGB JPEG

Everything is sorted and free of timestamps, so two conversions of the same files with
the same settings write the same manifest. Splits converted by an earlier run into the
same directory (e.g. --splits=train, then --splits=validation) are kept.
"""

import collections
from typing import Dict, List, Optional

MANIFEST_VERSION = 1
SUMMARY_MAX_FILES = 30  # rejected files listed in the summary; the manifest lists all


def build_manifest(*, options: dict, settings: dict, labels: List[dict], tasks: list,
                   infos: Dict[str, dict], discovery_rejected: Dict[str, list],
                   sources: Dict[str, str], excluded: Dict[str, List[str]],
                   names_file: Optional[str]) -> dict:
    """Assembles the manifest from the shard infos of a finished conversion.

    Args:
      options: the conversion options (JSON-able).
      settings: the settings that affect shard bytes.
      labels: the label list written to labels.json.
      tasks: every ShardTask of the conversion (complete ones).
      infos: shard name -> the info `write_shard` saved for it.
      discovery_rejected: split -> [(relpath, reason)] found while listing folders.
      sources: split -> how its files and labels were found.
      excluded: split -> synsets present on disk but not in the class list.
      names_file: where the human-readable names came from, if anywhere.

    Raises:
      RuntimeError: a shard has no info (the conversion did not finish).
    """
    splits, rejected, recoloured = {}, [], []
    for split in sources:
        per_class = collections.Counter()
        shards = []
        split_tasks = [task for task in tasks if task.split == split]
        for task in split_tasks:
            info = infos.get(task.name)
            if info is None:
                raise RuntimeError(f"shard {task.name} is not complete; rerun the converter")
            per_class.update(info["per_class"])
            shards.append({"name": task.name, "num_images": info["num_images"],
                           "num_bytes": info.get("num_bytes")})
            rejected += [{"split": split, "path": path, "reason": reason}
                         for path, reason in info["rejected"]]
            recoloured += [{"split": split, "path": path, "source": source}
                           for path, source in info["recoloured"]]
        rejected += [{"split": split, "path": path, "reason": reason}
                     for path, reason in discovery_rejected[split]]
        splits[split] = {
                "source": sources[split],
                "num_images": sum(per_class.values()),
                "num_rejected": sum(1 for entry in rejected if entry["split"] == split),
                "num_recoloured": sum(1 for entry in recoloured if entry["split"] == split),
                "num_shards": len(split_tasks),
                "per_class": {label["synset"]: per_class.get(label["synset"], 0)
                              for label in labels},
                "shards": shards,
                "excluded_synsets": excluded.get(split, []),
        }
    order = lambda entry: (entry["split"], entry["path"])  # noqa: E731
    return {"format_version": MANIFEST_VERSION, "options": options,
            "recode_settings": settings, "names_file": names_file,
            "num_classes": len(labels), "labels": labels, "splits": splits,
            "rejected": sorted(rejected, key=order), "recoloured": sorted(recoloured, key=order)}


def merge_previous(manifest: dict, previous: Optional[dict]) -> dict:
    """Keeps the splits an earlier run wrote to the same directory and this run did not.

    Converting train and validation in two runs (--splits) then still leaves one manifest
    that describes every split in the directory. Both runs share labels.json (the
    converter refuses a different class list), so their counts line up.
    """
    if not previous or previous.get("labels") != manifest["labels"]:
        return manifest
    kept = [split for split in previous.get("splits", {}) if split not in manifest["splits"]]
    if not kept:
        return manifest
    merged = dict(manifest, splits={**{split: previous["splits"][split] for split in kept},
                                    **manifest["splits"]})
    order = lambda entry: (entry["split"], entry["path"])  # noqa: E731
    for key in ("rejected", "recoloured"):
        carried = [entry for entry in previous.get(key, []) if entry["split"] in kept]
        merged[key] = sorted(manifest[key] + carried, key=order)
    return merged


def format_summary(manifest: dict) -> str:
    """A few lines for the terminal: counts, and the rejected files with reasons."""
    lines = [f"{manifest['num_classes']} classes"]
    for split, entry in manifest["splits"].items():
        lines.append(f"{split}: {entry['num_images']} images in {entry['num_shards']} shards, "
                     f"{entry['num_rejected']} rejected, {entry['num_recoloured']} converted "
                     "to RGB JPEG from another mode/format")
        empty = [synset for synset, count in entry["per_class"].items() if count == 0]
        if empty:
            lines.append(f"  WARNING: {len(empty)} classes have no {split} images: {empty[:10]}")
        if entry["excluded_synsets"]:
            lines.append(f"  skipped files of {len(entry['excluded_synsets'])} synsets that are "
                         f"not in the class list: {entry['excluded_synsets'][:10]}")
    sources = collections.Counter(entry["source"] for entry in manifest["recoloured"])
    for source, count in sorted(sources.items()):
        lines.append(f"  converted {count} x {source} -> RGB JPEG")
    rejected = manifest["rejected"]
    if rejected:
        lines.append(f"rejected files ({len(rejected)}; all are listed in manifest.json):")
        for entry in rejected[:SUMMARY_MAX_FILES]:
            lines.append(f"  {entry['path']}: {entry['reason']}")
        if len(rejected) > SUMMARY_MAX_FILES:
            lines.append(f"  ... and {len(rejected) - SUMMARY_MAX_FILES} more")
    return "\n".join(lines)
