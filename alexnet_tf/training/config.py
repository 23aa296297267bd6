"""The training run's configuration: one frozen dataclass, validated, saved in model_dir.

`TrainConfig` is the single definition of every training setting, its default and its
help text: `alexnet_tf/train.py` turns each field into an absl flag (so `--help` lists
them), builds the config once from the parsed flags, and `train_and_evaluate` saves it as
`model_dir/config.json` (see run_dir.py) with a "model" entry, the model spec that
evaluate/export/visualize rebuild the network from.

A rerun with an existing `config.json` resumes; settings that would change what is being
trained (model, batch, optimiser, data...) must match, see `check_compatible`.
"""

import dataclasses
import os
from typing import Optional, Tuple

from alexnet_tf import atomic
from alexnet_tf import errors
from alexnet_tf import run_dir
from alexnet_tf.data import preprocessing
from alexnet_tf.data import schema
from alexnet_tf.distributed import cluster
from alexnet_tf.distributed import service
from alexnet_tf.distributed import strategy as strategy_lib
from alexnet_tf.nn import init_presets
from alexnet_tf.nn import models
from alexnet_tf.nn import precision
from alexnet_tf.training import optimizer
from alexnet_tf.training import schedules

MODELS = tuple(models.MODEL_BUILDERS)
INIT_PRESETS = init_presets.NAMES
VARIANTS = models.ALEXNET_VARIANTS
SCHEDULES = schedules.SCHEDULES
STRATEGIES = strategy_lib.STRATEGY_NAMES
PRECISIONS = precision.PRECISIONS
MEAN_MODES = preprocessing.MEAN_MODES
OPTIMIZERS = optimizer.OPTIMIZERS
LR_SCALINGS = schedules.LR_SCALINGS
COMMUNICATIONS = cluster.COMMUNICATIONS
LRN_CONVENTIONS = models.LRN_CONVENTIONS
ACTIVATIONS = models.ACTIVATIONS
POOLINGS = models.POOLING_NAMES
# Settings of this module alone.
DATA_SOURCES = ("records", "tfds")
EVAL_SPLITS = (schema.VALIDATION, schema.TRAIN)
# The model options only some networks have: {option: the networks that have it}.
MODEL_OPTIONS = {"activation": ("alexnet", "cnn4"), "pooling": ("alexnet",),
                 "sixth_conv": ("alexnet",), "dropout_rate": ("alexnet", "zfnet"),
                 "use_lrn": ("alexnet", "zfnet")}
AUGMENT_ON = ("host", "device")

# Settings a resumed run may change: where things are and how the run is executed,
# not what is learned. Everything else must equal the saved config.json.
RESUMABLE_CHANGES = frozenset({
        "data_dir", "tfds_data_dir", "num_epochs", "checkpoint_every_steps", "keep_checkpoints",
        "log_every_steps", "train_images", "strategy", "devices", "tower_devices", "jit_compile",
        "progress_bar", "make_demo_data", "demo_dir", "max_steps", "summary_images",
        "data_service", "communication", "stall_steps", "diagnostics_every_steps",
        # The learning rate and the schedule's settings: the way out of a run that
        # diverged or stalls. Changes are recorded in model_dir/config_history.json.
        "learning_rate", "lr_factor", "lr_patience", "lr_max_reductions", "lr_min_delta",
        "lr_boundaries", "warmup_epochs", "accept_changed_data", "skip_bad_records",
})


def _field(default, help_text, **metadata):
    """A dataclass field carrying its flag help (and choices) as metadata."""
    return dataclasses.field(default=default, metadata=dict(help=help_text, **metadata))


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run (see each field's help)."""
    # Data.
    data_dir: str = _field("", "Directory of TFRecords written by tools/convert_imagenet.py "
                           "(train-*, validation-*, labels.json, manifest.json).")
    data_source: str = _field("records", "'records': the TFRecords of tools/convert_imagenet.py "
                              "in --data_dir; 'tfds': a prepared tensorflow-datasets "
                              "imagenet2012 build in --tfds_data_dir, read through the same "
                              "pipeline and preprocessing.", choices=DATA_SOURCES)
    tfds_data_dir: str = _field("", "With --data_source=tfds: the TFDS data_dir holding "
                                "imagenet2012/<version>/ (or that version directory).")
    stats_path: str = _field("", "Colour statistics (.npz from tools/compute_stats.py); "
                             "'' = data_dir/stats.npz if present, else the shipped ImageNet "
                             "values.")
    mean_mode: str = _field("image", "Mean subtraction: 'image' = the per-pixel mean image "
                            "(the per-channel mean if the stats have none); 'rgb' = the "
                            "per-channel mean.", choices=MEAN_MODES)
    augment_on: str = _field("host", "Where training's float work (mirror, mean subtraction, "
                             "PCA lighting) runs: 'host' = in the tf.data pipeline; 'device' "
                             "= first thing in the training step, on the accelerator, for "
                             "hosts whose cores cannot keep up (the host then only decodes "
                             "and crops uint8). Same images either way.", choices=AUGMENT_ON)
    flip: bool = _field(True, "Mirror training images horizontally with probability 1/2, as "
                        "the paper does; --noflip for data whose mirror image is another "
                        "class (digits, text).")
    pca_std: float = _field(preprocessing.PCA_STD, "Standard deviation of the PCA lighting "
                            "coefficients added to training images (section 4.1: 0.1); 0 "
                            "turns the lighting off.")
    accept_changed_data: bool = _field(False, "Train on shards that differ from what the "
                                       "converter's manifest records (replaced, truncated "
                                       "or extra files); by default that is an error "
                                       "naming the file.")
    skip_bad_records: bool = _field(False, "Skip and count what cannot be read: records "
                                    "whose image cannot be decoded or whose label is out "
                                    "of range, and the rest of a shard that is truncated or "
                                    "corrupted. Logged with the shards' names, and written "
                                    "to TensorBoard (data/bad_records, data/damaged_shards); "
                                    "by default each is an error naming the shard.")
    synthetic_data: bool = _field(False, "Train on random tensors (smoke tests, benchmarks).")
    make_demo_data: bool = _field(False, "If data_dir holds no TFRecords, make the demo "
                                  "dataset (tools/make_demo_data.py) under demo_dir and "
                                  "convert it into data_dir first.")
    demo_dir: str = _field("demo/images", "Where --make_demo_data writes the raw demo images.")
    # Model.
    model: str = _field("alexnet", "Network.", choices=MODELS)
    variant: str = _field("paper", "AlexNet variant: paper (the two-tower net), "
                          "half_one_tower (the paper's one-GPU net: conv1..conv4 halved in "
                          "one tower, section 3.2) or one_tower (torchvision's net).",
                          choices=VARIANTS)
    activation: str = _field("relu", "AlexNet and cnn4: the non-linearity of every hidden "
                             "layer, relu (section 3.1) or tanh (Figure 1).",
                             choices=ACTIVATIONS)
    pooling: str = _field("overlapping", "AlexNet: max-pool windows, overlapping (3x3 "
                          "stride 2, section 3.4) or non_overlapping (2x2 stride 2).",
                          choices=POOLINGS)
    sixth_conv: bool = _field(False, "AlexNet: a sixth convolutional layer over pool5 "
                              "(3x3, pool5's width; section 6).")
    lrn_bfloat16: bool = _field(False, "With --precision=mixed_bfloat16, compute LRN in "
                                "bfloat16 (faster on CPUs with bf16) instead of float32.")
    zfnet_wide: bool = _field(False, "ZFNet with 512-1024-512 conv3..conv5.")
    num_classes: int = _field(0, "Number of classes; 0 = the length of data_dir/labels.json.")
    input_size: int = _field(224, "Input crop size S (224 as the paper; 227 also works).")
    resize_size: int = _field(256, "Shorter side the records are resized to before cropping.")
    width_multiplier: float = _field(1.0, "Scales every layer's width (1.0 = the paper).")
    widths: Tuple[int, ...] = _field((), "The 7 widths conv1..conv5, fc6, fc7 (e.g. those of "
                                     "imported weights) instead of the variant's scaled by "
                                     "width_multiplier; empty = the variant's.")
    dropout_rate: float = _field(0.5, "Dropout after fc6 and fc7.")
    init: str = _field("paper", "Initialisation preset, each layer's weight std and bias "
                       "(alexnet_tf/nn/init_presets.py): paper (section 5), cuda_convnet2 "
                       "and caffe (what the released code used), zfnet (ZF's: biases 0).",
                       choices=INIT_PRESETS)
    use_lrn: bool = _field(True, "Local response normalisation after conv1 and conv2.")
    lrn_convention: str = _field("paper", "LRN's alpha: 'paper' multiplies the window sum "
                                 "by alpha, 'caffe' by alpha / n (Caffe, PyTorch).",
                                 choices=LRN_CONVENTIONS)
    lrn_k: float = _field(models.LRN_K, "LRN's additive constant k (paper 2; Caffe's "
                          "bvlc_alexnet 1).")
    lrn_across_towers: bool = _field(False, "Paper variant: LRN's window spans all maps, as "
                                     "in Caffe's bvlc_alexnet, instead of staying within "
                                     "each tower's half (the paper's two GPUs).")
    # Optimisation (the paper's section 5).
    batch_size: int = _field(128, "Global batch size (split across replicas).")
    num_epochs: int = _field(90, "Epochs to train (unless --train_images).")
    train_images: int = _field(0, "Train on this many images in all (train_images / "
                               "batch_size steps), whatever the dataset's size; the step "
                               "schedule's --lr_boundaries then count images too. 0: "
                               "--num_epochs epochs.")
    learning_rate: float = _field(0.01, "Initial learning rate.")
    optimizer: str = _field("paper_sgd", "paper_sgd: the paper's update (momentum, weight "
                            "decay inside it); adam: Keras Adam, no weight decay (a "
                            "departure, used by the CPU demo only).", choices=OPTIMIZERS)
    momentum: float = _field(0.9, "Momentum of the paper's SGD.")
    weight_decay: float = _field(0.0005, "Weight decay, inside the momentum as in the paper.")
    lr_schedule: str = _field("plateau", "plateau: divide when validation error stops "
                              "improving; step: divide at lr_boundaries.", choices=SCHEDULES)
    lr_factor: float = _field(0.1, "Learning-rate multiplier at each reduction.")
    lr_patience: int = _field(5, "Plateau: epochs without improvement before a reduction.")
    lr_max_reductions: int = _field(3, "Plateau: at most this many reductions.")
    lr_min_delta: float = _field(0.001, "Plateau: smallest drop in top-1 error that counts.")
    lr_boundaries: Tuple[int, ...] = _field((), "Step schedule: epochs at which to reduce "
                                            "(images seen, with --train_images).")
    lr_scaling: str = _field("none", "Large batches: scale learning_rate, which suits "
                             "lr_base_batch_size, by k = batch_size / lr_base_batch_size "
                             "(linear, Goyal et al.) or sqrt(k); none keeps it.",
                             choices=LR_SCALINGS)
    lr_base_batch_size: int = _field(128, "The batch size learning_rate was tuned for "
                                     "(the paper's 128).")
    warmup_epochs: float = _field(0.0, "Gradual warm-up: raise the rate linearly over these "
                                  "epochs, from learning_rate to the scaled rate (from 0 "
                                  "when not scaled). Goyal et al. use 5.")
    seed: int = _field(0, "Seed of initialisation, dropout, shuffling and augmentation.")
    # Devices and numerics.
    strategy: str = _field("default", "default/one_device: one device; mirrored: "
                           "MirroredStrategy over local GPUs or --devices; multi_worker: "
                           "MultiWorkerMirroredStrategy over the cluster in TF_CONFIG "
                           "(every local GPU, or the CPU, of each worker).",
                           choices=STRATEGIES)
    communication: str = _field("auto", "multi_worker all-reduce: NCCL on GPUs, RING (gRPC) "
                                "otherwise (auto), or forced.", choices=COMMUNICATIONS)
    data_service: str = _field("", "grpc://host:port of a tf.data service dispatcher "
                               "(python -m alexnet_tf.data_service): training images are "
                               "decoded and augmented on its workers. '' = in this process.")
    devices: Tuple[str, ...] = _field((), "Devices for the strategy, e.g. /GPU:0,/GPU:1.")
    tower_devices: Tuple[str, ...] = _field((), "The paper's two towers' devices, e.g. "
                                            "/GPU:0,/GPU:1 (model parallelism).")
    precision: str = _field("fp32", "Compute precision (variables stay float32).",
                            choices=PRECISIONS)
    jit_compile: bool = _field(False, "XLA-compile the train step.")
    deterministic: bool = _field(False, "Deterministic TensorFlow ops (slower on GPU): a "
                                 "killed and resumed run then ends with bit-identical "
                                 "weights; the entry point enables it at start-up. It "
                                 "changes the input pipeline's graph, so a run cannot "
                                 "resume with another value.")
    # Checkpoints and logs.
    checkpoint_every_steps: int = _field(1000, "Save a checkpoint every N steps (and at each "
                                         "epoch end).")
    keep_checkpoints: int = _field(5, "Keep the last K checkpoints.")
    log_every_steps: int = _field(100, "Write training summaries every N steps.")
    progress_bar: bool = _field(True, "Show a progress bar.")
    stall_steps: int = _field(500, "Warn when the training loss stays within 1% of chance, "
                              "ln(num_classes), for this many steps in a row (0 = never).")
    diagnostics_every_steps: int = _field(0, "Every N steps write per-layer activation std, "
                                          "gradient norm and update/weight ratio to "
                                          "TensorBoard (logs/train, diagnostics/...); 0 = off "
                                          "(no cost).")
    summary_images: bool = _field(True, "Write the conv1 kernels as an image each epoch.")
    max_steps: int = _field(0, "Stop after this many steps in all (0 = num_epochs).")
    steps_per_epoch: int = _field(0, "0 = training images // batch_size.")
    eval_steps: int = _field(0, "Validation batches per evaluation; 0 = the whole set.")
    eval_split: str = _field("validation", "The split evaluated at each epoch's end (the "
                             "plateau schedule and train_history.json read it): validation, "
                             "or train for the training error of the paper's Figure 1 "
                             "(centre crops, no dropout).", choices=EVAL_SPLITS)
    # Transfer learning.
    init_checkpoint: str = _field("", "A model_dir or checkpoint prefix to initialise from "
                                  "(layers whose shapes match).")
    new_layers: Tuple[str, ...] = _field((), "With --init_checkpoint: layers initialised "
                                         "afresh instead of copied (e.g. fc8: a new "
                                         "classifier, even for as many classes as the "
                                         "source's).")
    trainable_layers: Tuple[str, ...] = _field((), "Train only these layers (e.g. fc8); "
                                               "empty = all.")
    lr_multipliers: Tuple[str, ...] = _field((), "Per-layer learning-rate multipliers, "
                                             "layer=factor, e.g. fc6=0.1,fc7=0.1 (Caffe's "
                                             "lr_mult): that layer learns (and decays) at "
                                             "learning_rate x factor; unlisted layers x 1. "
                                             "paper_sgd only.")

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raises errors.InvalidInputError (a ValueError) naming the first bad setting and
        what was expected: every setting comes from the user."""
        try:
            self._check_settings()
        except ValueError as error:
            raise errors.InvalidInputError(str(error)) from None

    def _check_settings(self) -> None:
        for name, choices in (("model", MODELS), ("optimizer", OPTIMIZERS),
                              ("variant", VARIANTS), ("data_source", DATA_SOURCES),
                              ("lr_schedule", SCHEDULES), ("strategy", STRATEGIES),
                              ("precision", PRECISIONS), ("mean_mode", MEAN_MODES),
                              ("augment_on", AUGMENT_ON), ("lr_scaling", LR_SCALINGS),
                              ("init", INIT_PRESETS), ("lrn_convention", LRN_CONVENTIONS),
                              ("communication", COMMUNICATIONS),
                              ("activation", ACTIVATIONS), ("pooling", POOLINGS),
                              ("eval_split", EVAL_SPLITS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {getattr(self, name)!r}")
        for name in ("batch_size", "num_epochs", "input_size", "checkpoint_every_steps",
                     "keep_checkpoints", "log_every_steps", "lr_patience"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("num_classes", "max_steps", "steps_per_epoch", "eval_steps",
                     "lr_max_reductions", "weight_decay", "lr_min_delta", "stall_steps",
                     "train_images",
                     "diagnostics_every_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.new_layers and not self.init_checkpoint:
            raise ValueError(f"new_layers={list(self.new_layers)!r} needs --init_checkpoint "
                             "(without it every layer is new)")
        multipliers = self.learning_rate_multipliers()
        if multipliers and self.optimizer != "paper_sgd":
            raise ValueError(f"lr_multipliers need --optimizer=paper_sgd, got "
                             f"{self.optimizer!r}")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0, got {self.learning_rate!r}")
        if not self.lrn_k > 0:
            raise ValueError(f"lrn_k must be > 0, got {self.lrn_k!r}")
        if self.widths and (len(self.widths) != models.NUM_WIDTHS or min(self.widths) < 1
                            or self.width_multiplier != 1.0):
            raise ValueError(f"widths must be {models.NUM_WIDTHS} integers >= 1 (conv1..conv5, "
                             "fc6, fc7) with width_multiplier 1, got "
                             f"{list(self.widths)!r} and {self.width_multiplier!r}")
        if self.lrn_across_towers and (self.model != "alexnet" or self.variant != "paper"):
            raise ValueError("lrn_across_towers needs --model=alexnet --variant=paper (the "
                             f"two-tower net), got model={self.model!r} "
                             f"variant={self.variant!r}")
        if not self.pca_std >= 0:
            raise ValueError(f"pca_std must be >= 0, got {self.pca_std!r}")
        self._check_model_options()
        if not 0 <= self.dropout_rate < 1:
            raise ValueError(f"dropout_rate must be in [0, 1), got {self.dropout_rate!r}")
        if self.lr_base_batch_size < 1 or self.warmup_epochs < 0:
            raise ValueError("lr_base_batch_size must be >= 1 and warmup_epochs >= 0, got "
                             f"{self.lr_base_batch_size!r}, {self.warmup_epochs!r}")
        if self.data_service:
            service.parse_service_address(self.data_service, "data_service")
            if self.synthetic_data:
                raise ValueError("data_service serves the records of data_dir; it does not "
                                 "apply to --synthetic_data")
        if self.strategy == "multi_worker" and self.make_demo_data:
            # Every worker would convert into the same directory, and the strategy must
            # start before any other TensorFlow work.
            raise ValueError("make_demo_data cannot be combined with --strategy=multi_worker: "
                             "make and convert the data first (tools/make_demo_data.py, "
                             "tools/convert_imagenet.py), then start the workers")
        if self.lr_schedule == "step" and not self.lr_boundaries:
            raise ValueError("lr_schedule='step' needs lr_boundaries, e.g. 30,60,80")
        if self.tower_devices and (len(self.tower_devices) != 2 or self.model != "alexnet"
                                   or self.variant != "paper"):
            raise ValueError("tower_devices must name 2 devices and needs --model=alexnet "
                             f"--variant=paper, got {self.tower_devices!r} with "
                             f"model={self.model!r} variant={self.variant!r}")
        if self.resize_size < self.input_size:
            raise ValueError(f"resize_size ({self.resize_size}) must be >= input_size "
                             f"({self.input_size})")
        if self.data_source == "tfds":
            if not self.tfds_data_dir:
                raise ValueError("data_source='tfds' needs --tfds_data_dir (the TFDS data_dir "
                                 "holding a prepared imagenet2012 build)")
            if self.make_demo_data:
                raise ValueError("make_demo_data writes converter records: it needs "
                                 "--data_source=records")
        elif not (self.data_dir or self.synthetic_data):
            raise ValueError("--data_dir is required (a directory of TFRecords from "
                             "tools/convert_imagenet.py) unless --synthetic_data")

    def _check_model_options(self) -> None:
        """Raises ValueError for a model option set away from its default on a network
        that does not have it."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for name, networks in MODEL_OPTIONS.items():
            if getattr(self, name) != defaults[name] and self.model not in networks:
                raise ValueError(f"{name} is an option of {' and '.join(networks)} only, got "
                                 f"{name}={getattr(self, name)!r} with model={self.model!r}")

    def learning_rate_multipliers(self) -> dict:
        """lr_multipliers as {layer name: factor}.

        Raises:
          ValueError: an entry that is not layer=factor with a factor >= 0, or a layer
            named twice.
        """
        multipliers = {}
        for entry in self.lr_multipliers:
            name, _, factor = entry.partition("=")
            try:
                value = float(factor)
            except ValueError:
                value = -1.0
            if not name.strip() or not 0 <= value < float("inf") or name.strip() in multipliers:
                raise ValueError(f"lr_multipliers must be distinct layer=factor entries with "
                                 f"factors >= 0, e.g. fc6=0.1,fc7=0.1; got {entry!r} in "
                                 f"{list(self.lr_multipliers)!r}")
            multipliers[name.strip()] = value
        return multipliers

    def model_spec(self) -> dict:
        """The model spec saved in config.json (see run_dir.py); no device placement.

        Raises:
          ValueError: num_classes not resolved yet (still 0).
        """
        if self.num_classes < 1:
            raise ValueError("num_classes is 0: resolve it from the data (labels.json) first")
        if self.model == "cnn4":
            spec = dict(name=self.model, num_classes=self.num_classes,
                        input_size=self.input_size, width_multiplier=self.width_multiplier)
            if self.activation != "relu":
                spec["activation"] = self.activation
            return spec
        spec = dict(name=self.model, num_classes=self.num_classes, input_size=self.input_size,
                    dropout_rate=self.dropout_rate, use_lrn=self.use_lrn,
                    width_multiplier=self.width_multiplier)
        # Settings added later are written only when set, so that earlier config.json
        # files stay equal to a new run's.
        if self.lrn_bfloat16:
            spec["lrn_bfloat16"] = True
        if self.widths:
            spec["widths"] = list(self.widths)
        if self.lrn_convention != "paper":
            spec["lrn_convention"] = self.lrn_convention
        if self.lrn_k != models.LRN_K:
            spec["lrn_k"] = self.lrn_k
        if self.lrn_across_towers:
            spec["lrn_across_towers"] = True
        if self.model == "alexnet":
            spec["variant"] = self.variant
            # The ablation switches, also only when set away from the paper's net.
            if self.activation != "relu":
                spec["activation"] = self.activation
            if self.pooling != "overlapping":
                spec["pooling"] = self.pooling
            if self.sixth_conv:
                spec["sixth_conv"] = True
        else:
            spec["wide"] = self.zfnet_wide
        return spec

    def to_dict(self) -> dict:
        """JSON-able dict of every field (tuples become lists); "model" holds the model spec.

        The spec (run_dir.py's contract) takes the place of the `model` name field,
        which it contains as "name".
        """
        values = {f.name: (list(v) if isinstance(v, tuple) else v)
                  for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}
        # None (not "") so readers of config.json fall back to data_dir or the defaults.
        values["stats_path"] = self.stats_path or None
        if self.num_classes >= 1:
            values["model"] = self.model_spec()
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "TrainConfig":
        """Inverse of `to_dict` (unknown keys, like "model", are ignored)."""
        values = dict(values)
        if isinstance(values.get("model"), dict):  # The spec replaced the name (to_dict).
            values["model"] = values["model"]["name"]
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in values:
                value = values[f.name]
                value = tuple(value) if isinstance(value, list) else value
                kwargs[f.name] = "" if value is None and f.type is str else value
        return cls(**kwargs)


def check_compatible(saved: dict, config: TrainConfig) -> None:
    """Raises ValueError when `config` cannot resume a run saved with `saved`.

    Args:
      saved: the dict read from model_dir/config.json.
      config: the new run's (resolved) configuration.

    Raises:
      errors.InvalidInputError: listing every setting that differs and may not change on
        resume.
    """
    new = config.to_dict()
    differences = []
    for key, value in new.items():
        if key in RESUMABLE_CHANGES or key not in saved:
            continue
        if saved[key] != value:
            differences.append(f"{key}: saved {saved[key]!r}, now {value!r}")
    if differences:
        raise errors.InvalidInputError(
                "--model_dir holds a run with incompatible settings; use another --model_dir "
                "or the saved values:\n  " + "\n  ".join(differences))


def changed_settings(saved: dict, config: TrainConfig) -> dict:
    """{setting: [saved value, new value]} for every setting a resumed run changes."""
    new = config.to_dict()
    return {key: [saved[key], value] for key, value in new.items()
            if key in saved and key != "model" and saved[key] != value}


def save(config: TrainConfig, model_dir: str) -> str:
    """Writes model_dir/config.json atomically; returns its path."""
    path = os.path.join(model_dir, run_dir.CONFIG_FILE)
    atomic.write_json(path, config.to_dict(), sort_keys=True)
    return path


def load_saved(model_dir: str) -> Optional[dict]:
    """The saved config.json as a dict, or None for a new model_dir."""
    try:
        return run_dir.read_config(model_dir)
    except FileNotFoundError:
        return None
