"""The serving tests' run and its export, made once for tests/serving.

One tiny paper-variant AlexNet (6 classes, 64x64 input, 1/16 width, two towers pinned to
/CPU:0 and /CPU:1 while "training", the per-pixel mean image of a statistics file) is
checkpointed into a model_dir as the trainer does, with four images (three JPEGs, one
PNG) of other sizes beside it.
"""

import numpy as np
import pytest

from alexnet_tf import model_source
from alexnet_tf.data import preprocessing
from alexnet_tf.data import stats as stats_lib
from alexnet_tf.serving import saved_model as serving

CLASS_NAMES = tuple(f"class {index}" for index in range(6))
INPUT_SIZE = 64


@pytest.fixture(scope="session")
def serving_run(tmp_path_factory, make_run, make_stats, random_image, encode_image):
    """{"root", "model_dir", "model", "labels", "manager", "config", "stats", "stats_path",
    "settings" (the eval preprocessing), "images" (encoded), "image_paths"}."""
    root = tmp_path_factory.mktemp("serving")
    stats = make_stats(mean_image=np.random.default_rng(1).uniform(90, 140, (32, 32, 3)))
    stats_path = str(root / stats_lib.STATS_FILE)
    stats_lib.save_stats(stats, stats_path)
    run = make_run(root / "run", CLASS_NAMES, input_size=INPUT_SIZE, resize_size=256,
                   mean_mode="image", stats_path=stats_path,
                   tower_devices=("/CPU:0", "/CPU:1"))
    images = [encode_image(random_image(300, 400, 1)), encode_image(random_image(200, 150, 2)),
              encode_image(random_image(256, 256, 3), "PNG"),
              encode_image(random_image(90, 500, 4))]
    image_paths = []
    for index, image in enumerate(images):
        path = root / f"image{index}.{'png' if index == 2 else 'jpg'}"
        path.write_bytes(image)
        image_paths.append(str(path))
    settings = preprocessing.EvalSettings(stats=stats, mean_mode="image", crop_size=INPUT_SIZE,
                                          resize_size=preprocessing.RESIZE_SIZE)
    return dict(run, root=root, stats=stats, stats_path=stats_path, settings=settings,
                images=images, image_paths=image_paths)


@pytest.fixture(scope="session")
def exported(serving_run):
    """The run exported once to export_dir/1 (warm-up replayed before the rename)."""
    loaded = model_source.load(model_dir=serving_run["model_dir"])
    module = serving.ServingModule(loaded.keras_model, loaded.settings, labels=loaded.labels)
    export_dir = str(serving_run["root"] / "export")
    version_dir = serving.export(module, export_dir, verify=True)
    return dict(module=module, export_dir=export_dir, version_dir=version_dir)


@pytest.fixture(scope="session")
def ensemble_runs(serving_run, make_run):
    """Runs to combine with serving_run's: "second" (the same classes and preprocessing,
    other weights) and "five_classes" (the same preprocessing, one class fewer)."""
    common = dict(input_size=INPUT_SIZE, resize_size=256, mean_mode="image",
                  stats_path=serving_run["stats_path"])
    second = make_run(serving_run["root"] / "run2", CLASS_NAMES, seed=3, **common)
    five_classes = make_run(serving_run["root"] / "run5", CLASS_NAMES[:5], seed=4, **common)
    return dict(second=dict(second, stats=serving_run["stats"]), five_classes=five_classes)
