"""A small synthetic dataset in ImageNet's on-disk layout, made on the spot.

`make_demo_data(output_dir)` writes

  output_dir/train/n00000001/n00000001_0.JPEG ...   class folders, sizes and aspect ratios vary
  output_dir/val/ILSVRC2012_val_00000001.JPEG ...   flat, as ImageNet ships validation
  output_dir/validation_labels.txt                  one synset per line, in file-name order
                                                    (the format of tfds' validation_labels.txt)
  output_dir/LOC_synset_mapping.txt                 "n00000001 red disc" names
  output_dir/demo_data.json                         the settings it was made with

Each class is one shape/pattern in one colour (a red disc, green square, blue
triangle, yellow horizontal stripes ...) at a random position and scale inside the image's
central square (so the paper's centre crop keeps it) on a noisy, low-saturation
background: distinct enough that a small AlexNet learns it in minutes on a CPU.

Like ImageNet, the training set holds one CMYK JPEG, one PNG named .JPEG, one grayscale
JPEG and one truncated JPEG, so the converter's bad-file handling is exercised.
Deterministic: the same arguments give byte-identical files.
"""

import io
import json
import os
import shutil
from typing import Tuple

import numpy as np
from PIL import Image
from PIL import ImageDraw

from alexnet_tf import errors

# (name, RGB colour); the shape is drawn by _draw_pattern for the same index.
CLASSES = (
        ("red disc", (220, 30, 30)),
        ("green square", (30, 170, 40)),
        ("blue triangle", (30, 60, 220)),
        ("yellow horizontal stripes", (235, 220, 40)),
        ("magenta vertical stripes", (210, 40, 200)),
        ("cyan checkerboard", (40, 210, 210)),
        ("orange ring", (245, 140, 20)),
        ("white cross", (250, 250, 250)),
        ("purple diagonal stripes", (110, 30, 150)),
        ("black dots", (10, 10, 10)),
)
SETTINGS_FILE = "demo_data.json"
LABELS_FILE = "validation_labels.txt"
NAMES_FILE = "LOC_synset_mapping.txt"
# ImageNet's kinds of odd files; the k-th replaces training image k // num_classes of
# class k % num_classes (with 10 classes: image 0 of classes 0..3).
ODD_KINDS = ("grayscale", "cmyk", "png", "truncated")


def synset_id(class_index: int) -> str:
    """Synthetic WordNet-style ids that sort in class order: n00000001, n00000002 ..."""
    return f"n{class_index + 1:08d}"


def _draw_pattern(draw: ImageDraw.ImageDraw, class_index: int, box, color) -> None:
    x0, y0, x1, y1 = box
    size = x1 - x0
    period = max(4, int(size / 5))
    if class_index == 0:
        draw.ellipse(box, fill=color)
    elif class_index == 1:
        draw.rectangle(box, fill=color)
    elif class_index == 2:
        draw.polygon([(x0, y1), (x1, y1), ((x0 + x1) / 2, y0)], fill=color)
    elif class_index == 3:
        for y in range(int(y0), int(y1), period):
            draw.rectangle((x0, y, x1, y + period // 2), fill=color)
    elif class_index == 4:
        for x in range(int(x0), int(x1), period):
            draw.rectangle((x, y0, x + period // 2, y1), fill=color)
    elif class_index == 5:
        for row, y in enumerate(range(int(y0), int(y1), period)):
            for column, x in enumerate(range(int(x0), int(x1), period)):
                if (row + column) % 2 == 0:
                    draw.rectangle((x, y, x + period - 1, y + period - 1), fill=color)
    elif class_index == 6:
        draw.ellipse(box, outline=color, width=max(2, int(size / 6)))
    elif class_index == 7:
        third = size / 3
        draw.rectangle((x0 + third, y0, x1 - third, y1), fill=color)
        draw.rectangle((x0, y0 + third, x1, y1 - third), fill=color)
    elif class_index == 8:
        for offset in range(-int(size), int(size), period):
            draw.line((x0 + offset, y0, x0 + offset + size, y1), fill=color,
                      width=max(2, period // 2))
    else:
        radius = period / 3
        for y in np.arange(y0 + radius, y1, period):
            for x in np.arange(x0 + radius, x1, period):
                draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=color)


def make_image(class_index: int, rng: np.random.Generator) -> Image.Image:
    """One RGB image of class `class_index`: the pattern on a noisy background."""
    width = int(rng.integers(120, 360))
    aspect = float(np.exp(rng.uniform(np.log(0.67), np.log(1.5))))
    height = int(np.clip(width / aspect, 96, 400))
    # Background: a grey-ish gradient plus noise, (height, width, 3) float.
    base = rng.uniform(70, 180) + rng.uniform(-15, 15, size=3)
    ramp = np.linspace(-1, 1, width)[None, :, None] * rng.uniform(-30, 30, size=3)
    noise = rng.normal(0, 12, size=(height, width, 3))
    pixels = np.clip(base + ramp + noise, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    # The pattern lies inside the central square, which the converter's centre crop keeps.
    side = min(width, height)
    size = rng.uniform(0.4, 0.75) * side
    slack = (side - size) / 2
    center_x = width / 2 + rng.uniform(-slack, slack)
    center_y = height / 2 + rng.uniform(-slack, slack)
    box = (center_x - size / 2, center_y - size / 2, center_x + size / 2, center_y + size / 2)
    color = tuple(int(np.clip(c + rng.integers(-20, 21), 0, 255)) for c in CLASSES[class_index][1])
    _draw_pattern(ImageDraw.Draw(image), class_index, box, color)
    return image


def _encode(image: Image.Image, kind: str, quality: int) -> bytes:
    """Encodes as JPEG, or as one of ImageNet's odd kinds of file."""
    buffer = io.BytesIO()
    if kind == "png":
        image.save(buffer, format="PNG")  # Saved under a .JPEG name, as in ImageNet.
    elif kind == "cmyk":
        image.convert("CMYK").save(buffer, format="JPEG", quality=quality)
    elif kind == "grayscale":
        image.convert("L").save(buffer, format="JPEG", quality=quality)
    else:
        image.save(buffer, format="JPEG", quality=quality)
    data = buffer.getvalue()
    return data[:len(data) * 3 // 5] if kind == "truncated" else data


def _write_split(root: str, seed: int, num_classes: int, num_per_class: int,
                 train: bool) -> list:
    """Writes one split's images; returns the val synsets in file-name order."""
    entries = [(c, i) for c in range(num_classes) for i in range(num_per_class)]
    if not train:  # Flat validation in a shuffled class order, like ImageNet's.
        order = np.random.default_rng([seed, 2]).permutation(len(entries))
        entries = [entries[k] for k in order]
    odd = {(k % num_classes, k // num_classes): kind for k, kind in enumerate(ODD_KINDS)}
    val_synsets = []
    for position, (class_index, index) in enumerate(entries):
        rng = np.random.default_rng([seed, int(train), class_index, index])
        image = make_image(class_index, rng)
        kind = odd.get((class_index, index), "jpeg") if train else "jpeg"
        data = _encode(image, kind, quality=int(rng.integers(75, 96)))
        synset = synset_id(class_index)
        if train:
            path = os.path.join(root, "train", synset, f"{synset}_{index}.JPEG")
        else:
            path = os.path.join(root, "val", f"ILSVRC2012_val_{position + 1:08d}.JPEG")
            val_synsets.append(synset)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
    return val_synsets


def make_demo_data(output_dir: str, *, num_classes: int = 10, num_train_per_class: int = 300,
                   num_val_per_class: int = 50, seed: int = 0,
                   overwrite: bool = False) -> Tuple[str, bool]:
    """Writes the demo dataset to `output_dir` (via a temporary folder, then a rename).

    Returns:
      (output_dir, made): made is False when output_dir already held this exact dataset.

    Raises:
      ValueError: bad counts, or output_dir exists with other content and not `overwrite`
        (only a folder made by this function is ever deleted).
    """
    if not 1 <= num_classes <= len(CLASSES):
        raise errors.InvalidInputError(
                f"num_classes must be in 1..{len(CLASSES)}, got {num_classes}")
    if num_train_per_class < 5 or num_val_per_class < 1:
        raise errors.InvalidInputError(
                "need num_train_per_class >= 5 and num_val_per_class >= 1, got "
                f"{num_train_per_class}, {num_val_per_class}")
    settings = {"num_classes": num_classes, "num_train_per_class": num_train_per_class,
                "num_val_per_class": num_val_per_class, "seed": seed, "version": 1}
    settings_path = os.path.join(output_dir, SETTINGS_FILE)
    if os.path.exists(output_dir) and os.listdir(output_dir):
        made_here = os.path.isfile(settings_path)
        if made_here:
            with open(settings_path) as f:
                if json.load(f) == settings:
                    return output_dir, False
        if not (overwrite and made_here):
            raise errors.InvalidInputError(
                    f"{output_dir!r} exists and is not empty; choose another "
                    "--output_dir (--overwrite only replaces an earlier demo dataset)")
    tmp_dir = output_dir.rstrip("/") + ".incomplete"
    shutil.rmtree(tmp_dir, ignore_errors=True)
    os.makedirs(tmp_dir)
    _write_split(tmp_dir, seed, num_classes, num_train_per_class, train=True)
    val_synsets = _write_split(tmp_dir, seed, num_classes, num_val_per_class, train=False)
    with open(os.path.join(tmp_dir, LABELS_FILE), "w") as f:
        f.write("".join(synset + "\n" for synset in val_synsets))
    with open(os.path.join(tmp_dir, NAMES_FILE), "w") as f:
        f.write("".join(f"{synset_id(c)} {CLASSES[c][0]}\n" for c in range(num_classes)))
    with open(os.path.join(tmp_dir, SETTINGS_FILE), "w") as f:
        json.dump(settings, f, indent=1)
    if os.path.exists(output_dir):
        shutil.rmtree(output_dir)  # Empty, or an earlier demo dataset (checked above).
    os.replace(tmp_dir, output_dir)
    return output_dir, True


# The converted demo: 8 training and 2 validation shards.
DEMO_SHARDS = dict(train_shards=8, validation_shards=2)


def prepare_records(data_dir: str, images_dir: str, *, resize: int, seed: int = 0,
                    show_progress: bool = True) -> bool:
    """Makes the demo images in `images_dir` and converts them into `data_dir`, unless
    `data_dir` already holds converted records; returns whether it converted."""
    from alexnet_tf.data import schema
    from alexnet_tf.data.imagenet import convert  # Local: the converter pulls in TensorFlow.
    if os.path.exists(os.path.join(data_dir, schema.MANIFEST_FILE)):
        return False
    path, _ = make_demo_data(images_dir, seed=seed)
    convert.convert(convert.ConvertOptions(
            imagenet_dir=path, output_dir=data_dir, resize=resize,
            num_workers=os.cpu_count() or 1, seed=seed, show_progress=show_progress,
            **DEMO_SHARDS))
    return True
