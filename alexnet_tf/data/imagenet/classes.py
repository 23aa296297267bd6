"""The 1000 ILSVRC-2012 classes in label order, with their names, from tensorflow-datasets.

tensorflow-datasets ships, inside the installed package (nothing is downloaded):

  datasets/imagenet2012/labels.txt   the 1000 synsets, sorted: the label order of
                                     imagenet2012, of Caffe's and torchvision's models
                                     and of this project's records (schema.py)
  datasets/siscore/labels.py         IMAGENET_LABELS_LIST, the 1000 class names
                                     ("tench, Tinca tinca", ...) in that same order

The names are read from the module's source as a literal (`ast.literal_eval`), not by
importing it.
"""

import ast
import os
from typing import List

from alexnet_tf.data.imagenet import files

NUM_CLASSES = 1000
_NAMES_LIST = "IMAGENET_LABELS_LIST"


def _tfds_path(*parts: str) -> str:
    import tensorflow_datasets  # Local import: only needed here.
    return os.path.join(os.path.dirname(tensorflow_datasets.__file__), "datasets", *parts)


def _read_names(path: str) -> List[str]:
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and getattr(node.targets[0], "id", None) == _NAMES_LIST):
            return list(ast.literal_eval(node.value))
    raise ValueError(f"{path} defines no {_NAMES_LIST}")


def imagenet_labels() -> List[dict]:
    """The labels.json entries [{"index", "synset", "name"}, ...] of the 1000 classes.

    Raises:
      FileNotFoundError: tensorflow-datasets lacks one of the files.
      ValueError: the files do not list 1000 sorted synsets and 1000 names.
    """
    synsets = files.read_synset_list(_tfds_path("imagenet2012", "labels.txt"))
    names = _read_names(_tfds_path("siscore", "labels.py"))
    if len(synsets) != NUM_CLASSES or synsets != sorted(synsets) or len(names) != NUM_CLASSES:
        raise ValueError(f"tensorflow-datasets lists {len(synsets)} synsets (sorted: "
                         f"{synsets == sorted(synsets)}) and {len(names)} names; expected "
                         f"{NUM_CLASSES} of each")
    return [{"index": index, "synset": synset, "name": name}
            for index, (synset, name) in enumerate(zip(synsets, names))]
