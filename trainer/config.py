"""Every flag of the trainer, the frozen Config built from them, and its validation.

Nothing here imports TensorFlow: a bad flag must be reported before TF starts (and
before anything is written), which takes seconds off every typo.
"""
import dataclasses
import json
import math
import os
import re
import time
from importlib import metadata

from absl import flags

from trainer import environment
from trainer.errors import ConfigError

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adamw")
LR_SCHEDULES = ("constant", "cosine", "exponential")
MODELS = ("mlp", "cnn", "resnet")
METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
BUILTIN_DATASET = "uci_digits"
MAX_SEED = 2**32 - 1
METRICS_FILE = "metrics.json"  # in the model dir: a contract the tuner and the scripts read
EXPORTS = ("best", "last")
PATH_FLAGS = ("job_dir", "model_dir", "checkpoint_dir", "tensorboard_dir", "data_dir")
_AIP_DIRS = {"model_dir": "AIP_MODEL_DIR", "checkpoint_dir": "AIP_CHECKPOINT_DIR",
             "tensorboard_dir": "AIP_TENSORBOARD_LOG_DIR"}  # what Vertex sets when the flag is not given
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class _LenientIntegerParser(flags.IntegerParser):
    """Accepts "256.0": Vertex formats DISCRETE (and sometimes INTEGER) values as floats."""

    def convert(self, argument):
        if isinstance(argument, str):
            try:
                value = float(argument)
            except ValueError:
                raise ValueError(f"{argument!r} is not an integer") from None
            if not value.is_integer():
                raise ValueError(f"{argument!r} is not a whole number")
            return int(value)
        return super().convert(argument)


def _define_int(name, default, help_text):
    flags.DEFINE(_LenientIntegerParser(), name, default, help_text, serializer=flags.ArgumentSerializer())


# Hyperparameters: one flag each, so a tuning job can pass `--<parameterId>=<value>`.
flags.DEFINE_float("learning_rate", 3e-3, "Peak learning rate of the optimizer (> 0).")
_define_int("batch_size", 64, "Batch size per replica; the global batch is this times the replica count.")
_define_int("epochs", 30, "Maximum number of epochs (early stopping may end sooner).")
flags.DEFINE_enum("optimizer", "adam", OPTIMIZERS, "Optimizer.")
flags.DEFINE_float("momentum", 0.9, "Momentum for sgd and rmsprop, in [0, 1).")
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay (>= 0; 0 turns it off).")
flags.DEFINE_enum("lr_schedule", "constant", LR_SCHEDULES, "Learning-rate schedule after warm-up.")
_define_int("warmup_epochs", 0, "Epochs of linear warm-up from 0 to --learning_rate.")
flags.DEFINE_enum("model", "mlp", MODELS, "Architecture: a dense net, a small CNN or a small ResNet.")
_define_int("units", 128, "Width of each hidden dense layer (mlp) or of the dense head (cnn, resnet).")
_define_int("num_layers", 2, "Hidden layers (mlp), conv blocks (cnn) or residual blocks (resnet).")
_define_int("filters", 32, "Filters of the first conv block (cnn, resnet); cnn doubles them per block.")
flags.DEFINE_float("dropout", 0.1, "Dropout rate before each dense layer, in [0, 1).")
flags.DEFINE_float("label_smoothing", 0.0, "Label smoothing of the cross-entropy loss, in [0, 1).")
_define_int("patience", 5, "Early stopping: epochs without improvement of the objective; 0 turns it off.")
flags.DEFINE_float("min_delta", 0.0, "Early stopping: smallest change that counts as an improvement.")
_define_int("seed", 42, "Seed for weights, the data shuffle and dropout, in [0, 2**32 - 1].")

# Run flags.
flags.DEFINE_string(
    "job_dir", None,
    "Base output directory (local or gs://). Default: runs/<UTC time>, new each run: to resume a default "
    "run, pass the --job_dir its messages name. The model, checkpoints and logs go to its subfolders "
    "model/, checkpoints/, logs/ unless set otherwise.")
flags.DEFINE_string("model_dir", None,
                    "Where the SavedModel and metrics.json go. Default: $AIP_MODEL_DIR, else <job_dir>/model.")
flags.DEFINE_string(
    "checkpoint_dir", None,
    "Where checkpoints and config.json go; rerunning a killed run with the same dir resumes it. "
    "Default: $AIP_CHECKPOINT_DIR, else <job_dir>/checkpoints.")
flags.DEFINE_string("tensorboard_dir", None,
                    "TensorBoard logs. Default: $AIP_TENSORBOARD_LOG_DIR, else <job_dir>/logs.")
flags.DEFINE_string(
    "dataset", BUILTIN_DATASET,
    f"A tensorflow-datasets name (mnist, fashion_mnist, cifar10, ...). The default, {BUILTIN_DATASET}, "
    "ships in the package and needs no network.")
flags.DEFINE_string("data_dir", None,
                    "TFDS data directory (local or gs://). Default: TFDS's own (~/tensorflow_datasets).")
flags.DEFINE_float("validation_split", 0.2, "Fraction of the training split held out for validation, in (0, 1).")
flags.DEFINE_enum("hypertune_metric", "val_accuracy", METRICS,
                  "The objective: reported to hyperparameter tuning each epoch, monitored by early stopping.")
flags.DEFINE_bool("mixed_precision", False, "Compute in float16 (mixed_float16 policy); useful on GPUs.")
flags.DEFINE_bool("jit_compile", False, "Compile the training step with XLA.")
_define_int("steps_per_execution", 1, "Training steps run per call into TensorFlow (> 1 cuts Python overhead).")
_define_int("cpu_replicas", 0, "Testing aid: split the CPU into N logical devices so MirroredStrategy runs N replicas.")
_define_int("startup_timeout", 600,
            "Multi-worker: seconds to wait for every worker to join before failing. Vertex starts replicas "
            "minutes apart, hence the 10-minute default.")
flags.DEFINE_enum("export", "best", EXPORTS,
                  "Which weights the SavedModel holds: the best epoch's by the objective (its checkpoint), "
                  "or the last epoch's.")
flags.DEFINE_bool("overwrite", False, "Allow a run into a model dir that already holds a finished run's metrics.json.")

HYPERPARAMETERS = (
    "learning_rate", "batch_size", "epochs", "optimizer", "momentum", "weight_decay", "lr_schedule",
    "warmup_epochs", "model", "units", "num_layers", "filters", "dropout", "label_smoothing",
    "patience", "min_delta", "seed",
)


@dataclasses.dataclass(frozen=True)
class Config:
    """One training run, fully described: what config.json records beside the checkpoints."""

    learning_rate: float
    batch_size: int
    epochs: int
    optimizer: str
    momentum: float
    weight_decay: float
    lr_schedule: str
    warmup_epochs: int
    model: str
    units: int
    num_layers: int
    filters: int
    dropout: float
    label_smoothing: float
    patience: int
    min_delta: float
    seed: int
    job_dir: str
    model_dir: str
    checkpoint_dir: str
    tensorboard_dir: str
    dataset: str
    data_dir: str | None
    validation_split: float
    hypertune_metric: str
    mixed_precision: bool
    jit_compile: bool
    steps_per_execution: int
    cpu_replicas: int
    startup_timeout: int
    export: str
    overwrite: bool
    rerun: str  # how to resume this run: "rerun the same command", with the --job_dir to add if defaulted
    cluster: environment.Cluster
    trial_id: str | None

    @property
    def hyperparameters(self) -> dict:
        return {name: getattr(self, name) for name in HYPERPARAMETERS}

    @property
    def metric_goal(self) -> str:
        """'max' for accuracies, 'min' for losses: what 'best' means for the objective."""
        return "max" if self.hypertune_metric.endswith("accuracy") else "min"

    def to_json(self) -> str:
        record = dataclasses.asdict(self)
        record["versions"] = package_versions()
        return json.dumps(record, indent=2, sort_keys=True) + "\n"


def package_versions() -> dict:
    versions = {}
    for name in ("tensorflow", "tf-keras", "tensorflow-datasets", "vertex-tf-trainer"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def _default_job_dir() -> str:
    return os.path.join("runs", time.strftime("%Y%m%d-%H%M%S", time.gmtime()))


def from_flags(values=flags.FLAGS, env=os.environ) -> Config:
    """Builds and validates the Config; raises ConfigError naming the flag and the fix."""
    cluster = environment.cluster_from_env(env)
    given = {}  # each path as given: by its flag, else by Vertex's variable
    for name in PATH_FLAGS:
        source, path, variable = f"--{name}", values[name].value, _AIP_DIRS.get(name)
        if not path and variable and env.get(variable):
            source, path = f"${variable}", env[variable]
        _check_url(source, path)
        given[name] = path
    job_dir = _absolute(given["job_dir"] or _default_job_dir())
    join = _path_join(job_dir)
    uses_default_job_dir = not given["job_dir"] and not all(given[name] for name in _AIP_DIRS)
    config = Config(
        **{name: values[name].value for name in HYPERPARAMETERS},
        job_dir=job_dir,
        model_dir=_absolute(given["model_dir"] or join("model")),
        checkpoint_dir=_absolute(given["checkpoint_dir"] or join("checkpoints")),
        tensorboard_dir=_absolute(given["tensorboard_dir"] or join("logs")),
        dataset=values.dataset,
        data_dir=values.data_dir,
        validation_split=values.validation_split,
        hypertune_metric=values.hypertune_metric,
        mixed_precision=values.mixed_precision,
        jit_compile=values.jit_compile,
        steps_per_execution=values.steps_per_execution,
        cpu_replicas=values.cpu_replicas,
        startup_timeout=values.startup_timeout,
        export=values.export,
        overwrite=values.overwrite,
        # The default job dir is new each run: the same command alone would start over.
        rerun=f"rerun the same command with --job_dir={job_dir}" if uses_default_job_dir else "rerun the same command",
        cluster=cluster,
        trial_id=env.get("CLOUD_ML_TRIAL_ID"),
    )
    validate(config)
    return config


def _check_url(source: str, path: str | None) -> None:
    """Only gs:// reaches a bucket; any other URL would become a local folder such as ./s3:/x."""
    if path and _URL_SCHEME.match(path) and not path.startswith("gs://"):
        raise ConfigError(f"{source}: {path!r}: only gs:// URLs and local paths (/gcs/... included) are "
                          "supported; use a gs:// bucket or a local dir")


def _absolute(path: str) -> str:
    """Local paths are made absolute (the summary and config.json then say where things are)."""
    return path if path.startswith("gs://") else os.path.abspath(path)


def _path_join(base):
    if base.startswith("gs://"):
        return lambda name: base.rstrip("/") + "/" + name
    return lambda name: os.path.join(base, name)


def _check(condition, flag, problem):
    if not condition:
        raise ConfigError(f"--{flag}: {problem}")


def validate(c: Config) -> None:
    """Ranges, choices and combinations; the first problem found is raised."""
    finite = math.isfinite
    _check(finite(c.learning_rate) and c.learning_rate > 0, "learning_rate",
           f"must be a positive number, got {c.learning_rate}; try --learning_rate=0.001")
    _check(c.batch_size >= 1, "batch_size", f"must be at least 1, got {c.batch_size}")
    _check(c.epochs >= 1, "epochs", f"must be at least 1, got {c.epochs}")
    _check(finite(c.momentum) and 0 <= c.momentum < 1, "momentum", f"must be in [0, 1), got {c.momentum}")
    _check(finite(c.weight_decay) and c.weight_decay >= 0, "weight_decay",
           f"must be >= 0, got {c.weight_decay}")
    _check(c.warmup_epochs >= 0, "warmup_epochs", f"must be >= 0, got {c.warmup_epochs}")
    _check(c.warmup_epochs < c.epochs, "warmup_epochs",
           f"({c.warmup_epochs}) must be smaller than --epochs ({c.epochs}), or training never leaves warm-up")
    _check(c.units >= 1, "units", f"must be at least 1, got {c.units}")
    _check(c.num_layers >= 1, "num_layers", f"must be at least 1, got {c.num_layers}")
    _check(c.filters >= 1, "filters", f"must be at least 1, got {c.filters}")
    _check(finite(c.dropout) and 0 <= c.dropout < 1, "dropout", f"must be in [0, 1), got {c.dropout}")
    _check(finite(c.label_smoothing) and 0 <= c.label_smoothing < 1, "label_smoothing",
           f"must be in [0, 1), got {c.label_smoothing}")
    _check(c.patience >= 0, "patience", f"must be >= 0 (0 turns early stopping off), got {c.patience}")
    _check(finite(c.min_delta) and c.min_delta >= 0, "min_delta", f"must be >= 0, got {c.min_delta}")
    _check(0 <= c.seed <= MAX_SEED, "seed", f"must be in [0, {MAX_SEED}] (what NumPy's seeding takes), got {c.seed}")
    _check(finite(c.validation_split) and 0 < c.validation_split < 1, "validation_split",
           f"must be in (0, 1), got {c.validation_split}; try --validation_split=0.2")
    _check(c.steps_per_execution >= 1, "steps_per_execution", f"must be at least 1, got {c.steps_per_execution}")
    _check(c.cpu_replicas >= 0, "cpu_replicas", f"must be >= 0 (0 = off), got {c.cpu_replicas}")
    _check(c.startup_timeout >= 1, "startup_timeout", f"must be at least 1 second, got {c.startup_timeout}")
    _check(not (c.cpu_replicas > 1 and c.cluster.num_workers > 1), "cpu_replicas",
           "cannot be combined with a multi-worker TF_CONFIG; drop --cpu_replicas")
    if c.dataset != BUILTIN_DATASET:
        _check_tfds_name(c.dataset)


def _check_tfds_name(name: str) -> None:
    """Asks TFDS's registry (cheap, no TensorFlow graph work) whether the dataset exists."""
    import tensorflow_datasets as tfds  # noqa: PLC0415  (only when a non-built-in dataset is asked for)

    base = name.split(":")[0].split("/")[0]
    if base not in tfds.list_builders(with_community_datasets=False):
        raise ConfigError(
            f"--dataset: unknown dataset {name!r}; see `tfds.list_builders()` for the names "
            f"(e.g. mnist, fashion_mnist, cifar10), or use the built-in --dataset={BUILTIN_DATASET}")
