"""The study spec: Vertex AI and legacy AI Platform tuning YAML, parsed into one validated model.

Both dialects end in the same `TuningJob`, so the rest of the tuner never asks which file it
came from. Parsing is as strict as `gcloud ai hp-tuning-jobs create` (unknown keys, lower-case
enum values and wrong types are errors) and as lenient (a null is an unset field, one value
stands for a list of one, output-only fields are ignored with a note), and then applies
Vertex's own rules; the first problem
found raises `SpecError`, whose text names the field path, e.g.
`studySpec.parameters[1].doubleValueSpec.minValue: ...`. Legacy files (`trainingInput`) are
checked with the same rules but their errors name legacy paths, and their enum values are
matched case-insensitively because published samples use `type: integer`.
"""
from __future__ import annotations

import datetime
import difflib
import math
import re
import sys
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field, replace
from typing import Any

import yaml

DOUBLE, INTEGER, CATEGORICAL, DISCRETE = "DOUBLE", "INTEGER", "CATEGORICAL", "DISCRETE"
LINEAR, LOG, REVERSE_LOG = "UNIT_LINEAR_SCALE", "UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE"
GRID, RANDOM, BAYESIAN = "GRID_SEARCH", "RANDOM_SEARCH", "ALGORITHM_UNSPECIFIED"
MAXIMIZE, MINIMIZE = "MAXIMIZE", "MINIMIZE"
LAST, BEST = "LAST_MEASUREMENT", "BEST_MEASUREMENT"
LEGACY_DEFAULT_METRIC = "training/hptuning/metric"
# The image ENTRYPOINT this project's trainer images use; a containerSpec without `command`
# runs it, so locally its trial command is this module under the tuner's own interpreter.
DEFAULT_ENTRYPOINT = ("python", "-m", "trainer.task")
# Placeholders `convert` writes where a legacy file has nothing to map; the user edits them.
PLACEHOLDER_IMAGE = "us-docker.pkg.dev/YOUR_PROJECT/YOUR_REPOSITORY/trainer:latest"
PREBUILT_TF_IMAGE = "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest"
PLACEHOLDER_MACHINE = "n1-standard-4"
DISCRETE_TOLERANCE = 1e-10
MAX_DISCRETE_VALUES = 1000
VALUE_SPECS = {"doubleValueSpec": DOUBLE, "integerValueSpec": INTEGER,
               "categoricalValueSpec": CATEGORICAL, "discreteValueSpec": DISCRETE}
PARENT_CONDITIONS = {"parentDiscreteValues": DISCRETE, "parentIntValues": INTEGER,
                     "parentCategoricalValues": CATEGORICAL}
STOPPING_SPECS = {"medianAutomatedStoppingSpec": "median", "decayCurveStoppingSpec": "decay_curve",
                  "convexAutomatedStoppingSpec": "convex"}
# The machine series (the machine type's first word) each GPU runs on; the service refuses any
# other pairing when the job starts. From Compute Engine's "About GPUs" and "GPU machine types"
# (https://cloud.google.com/compute/docs/gpus/about-gpus, https://cloud.google.com/compute/docs/gpus):
# accelerator-optimized series come with their own GPU model, every other GPU attaches to N1 only.
# Counts: an accelerator-optimized machine named -<N>g has N GPUs and takes an acceleratorCount
# of 1 to N (MachineSpec, https://cloud.google.com/vertex-ai/docs/reference/rest/v1/MachineSpec).
# Vertex's own table (https://cloud.google.com/vertex-ai/docs/training/configure-compute) could
# not be read here, so other counts (N1, G2) are not checked. An accelerator not listed (TPUs)
# is accepted as it is, unchecked.
GPU_MACHINE_SERIES = {
    "NVIDIA_L4": "g2", "NVIDIA_TESLA_A100": "a2", "NVIDIA_A100_80GB": "a2",
    "NVIDIA_H100_80GB": "a3", "NVIDIA_H100_MEGA_80GB": "a3", "NVIDIA_H200_141GB": "a3",
    "NVIDIA_B200": "a4", "NVIDIA_GB200": "a4x", "NVIDIA_RTX_PRO_6000": "g4",
    "NVIDIA_TESLA_T4": "n1", "NVIDIA_TESLA_V100": "n1", "NVIDIA_TESLA_P100": "n1",
    "NVIDIA_TESLA_P4": "n1", "NVIDIA_TESLA_K80": "n1",
}


def machine_pairing_problem(machine_type: str, accelerator: str, count: int = 1) -> str | None:
    """Why Vertex would refuse `count` of this GPU on this machine, with the fix; None if it would not."""
    series = GPU_MACHINE_SERIES.get(accelerator)
    if series is None:
        return None
    if machine_type.split("-", 1)[0] != series:
        return f"{accelerator} needs machine type {series}-*; got {machine_type}"
    gpus = re.fullmatch(r"[a-z0-9]+-[a-z]+-(\d+)g", machine_type)
    if gpus and series != "n1" and not 1 <= count <= int(gpus.group(1)):
        return (f"{machine_type} has {gpus.group(1)} {accelerator}: acceleratorCount must be 1 to "
                f"{gpus.group(1)}; got {count}")
    return None


class SpecError(Exception):
    """A config problem: `path` is the field path, `message` says what is wrong and what to do."""

    def __init__(self, path: str, message: str):
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Parameter:
    """One `parameterId`, its domain, and the children that are active for some of its values."""

    id: str
    type: str
    min: float | None = None
    max: float | None = None
    values: tuple = ()
    scale: str | None = None  # None: unset / SCALE_TYPE_UNSPECIFIED (linear)
    children: tuple[Child, ...] = ()

    def format(self, value) -> str:
        """The command-line text of a value, as Vertex passes it: floats for DOUBLE/DISCRETE."""
        if self.type == INTEGER:
            return str(int(value))
        if self.type == CATEGORICAL:
            return str(value)
        return repr(float(value))

    def active_children(self, value) -> list[Parameter]:
        return [child.parameter for child in self.children if child.matches(self.type, value)]


@dataclass(frozen=True)
class Child:
    parent_values: tuple
    parameter: Parameter

    def matches(self, parent_type: str, value) -> bool:
        if parent_type == DISCRETE:
            return any(abs(float(value) - v) <= DISCRETE_TOLERANCE for v in self.parent_values)
        return value in self.parent_values


@dataclass(frozen=True)
class Stopping:
    rule: str  # "median" | "decay_curve" | "convex"
    use_elapsed: bool
    field: str  # the YAML field, for messages
    settings: tuple = ()  # the spec's (field, value) pairs as written, for `convert`


@dataclass(frozen=True)
class TrialJob:
    """What every trial runs: pool 0's command line and environment."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    origin: str = ""  # how argv was derived, shown by --dry-run
    extra_pools: int = 0  # worker pools after the primary one; not emulated locally


@dataclass(frozen=True)
class Metric:
    id: str
    goal: str
    safety: bool = False  # has a safetyConfig: a constraint of Vertex's safe search


@dataclass(frozen=True)
class TuningJob:
    display_name: str | None
    metrics: tuple[Metric, ...]
    parameters: tuple[Parameter, ...]
    algorithm: str
    measurement: str
    stopping: Stopping | None
    max_trial_count: int
    parallel_trial_count: int
    max_failed_trial_count: int
    trial_job: TrialJob
    dialect: str  # "vertex" | "legacy"
    document: dict  # the Vertex form of the config (converted for a legacy file)
    notes: tuple[str, ...] = field(default=())

    @property
    def metric(self) -> str:
        """The metric a single-objective study optimises; with several, the first (its values
        are the trial's curve and Optuna's intermediate values)."""
        return self.metrics[0].id

    @property
    def goal(self) -> str:
        return self.metrics[0].goal

    def walk(self) -> list[Parameter]:
        """Every parameter of the tree, parents before their children."""
        return list(walk_parameters(self.parameters))

    def parameter_ids(self) -> list[str]:
        """Distinct parameter ids in tree order: the columns of the results table."""
        return list(dict.fromkeys(p.id for p in self.walk()))

    def search_space(self) -> dict:
        """What identifies a study's search: a resumed or shared study must match it exactly
        (`metrics` only with several, so a single-metric study's stays as it always was)."""
        space = {"metric": self.metric, "goal": self.goal, "algorithm": self.algorithm,
                 "parameters": [parameter_to_dict(p) for p in self.parameters]}
        if len(self.metrics) > 1:
            space["metrics"] = [[m.id, m.goal] for m in self.metrics]
        return space


# --------------------------------------------------------------------------------------------
# Structural checking: a small schema of the fields gcloud knows
# --------------------------------------------------------------------------------------------

Check = Callable[[Any, str], Any]


def _show(value) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "an empty value"
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:57]}..."


def _string(value, path):
    if isinstance(value, str):
        return value
    hint = ("; quote it in the YAML"
            if isinstance(value, (bool, int, float, datetime.date)) else "")
    raise SpecError(path, f"must be a string, got {_show(value)}{hint}")


def _integer(bits: int) -> Check:
    low, high = -2 ** (bits - 1), 2 ** (bits - 1) - 1

    def check(value, path):
        number = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, float) and value.is_integer():
            number = int(value)
        elif isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            number = int(value)  # int64 fields come back from the API as strings; gcloud takes both
        if number is None:
            raise SpecError(path, f"must be an integer, got {_show(value)}")
        if not low <= number <= high:
            raise SpecError(path, f"must fit in int{bits} ({low} to {high}), got {number}")
        return number
    return check


_int32, _int64 = _integer(32), _integer(64)


def _double(value, path):
    number = None
    # proto3 JSON takes numbers as strings too; PyYAML reads 1e-4 as one
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)
        except ValueError:
            pass
        except OverflowError:  # an integer beyond any double
            number = math.inf
    if number is None:
        raise SpecError(path, f"must be a number, got {_show(value)}")
    if not math.isfinite(number):
        raise SpecError(path, f"must be a finite number, got {_show(value)}")
    return number


def _boolean(value, path):
    if isinstance(value, bool):
        return value
    raise SpecError(path, f"must be true or false, got {_show(value)}")


def _duration(value, path):
    if isinstance(value, str) and re.fullmatch(r"\d+(\.\d{1,9})?s", value):
        return value
    raise SpecError(path, f"must be a duration in seconds such as \"3600s\", got {_show(value)}")


def _timestamp(value, path):
    if isinstance(value, datetime.datetime):  # PyYAML reads an unquoted RFC 3339 time as one
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, str) and re.fullmatch(
            r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)", value):
        return value
    raise SpecError(path, f"must be an RFC 3339 time such as \"2026-12-01T00:00:00Z\", "
                          f"got {_show(value)}")


class _Enum:
    """A proto enum: its value names, matched case-sensitively as gcloud does."""

    def __init__(self, *names: str, lenient: bool = False):
        self.names = names
        self.lenient = lenient

    def __call__(self, value, path):
        if isinstance(value, str):
            if value in self.names:
                return value
            if value.upper() in self.names:
                if self.lenient:
                    return value.upper()
                raise SpecError(path, f"enum values are upper-case: write {value.upper()} "
                                      f"(gcloud rejects {value!r})")
        raise SpecError(path, f"must be one of {', '.join(self.names)}; got {_show(value)}")


class _List:
    """A repeated field. One value where a list is expected is a list of one, as in gcloud."""

    def __init__(self, item: Check):
        self.item = item

    def __call__(self, value, path):
        if not isinstance(value, list):
            value = [value]
        return [self.item(v, f"{path}[{i}]") for i, v in enumerate(value)]


class _Map:
    """A proto map with string keys."""

    def __init__(self, item: Check):
        self.item = item

    def __call__(self, value, path):
        if not isinstance(value, dict):
            raise SpecError(path, f"must be a mapping, got {_show(value)}")
        return {_string(k, f"{path}.{k}"): self.item(v, f"{path}.{k}") for k, v in value.items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _field_name(path: str) -> str:
    """The last field of a path, in the file's own dialect: `maxTrials`, `parameterName`."""
    return path.rsplit(".", 1)[-1]


class _Message:
    """A proto message: known fields only, each checked by its own rule.

    A null value is an unset field, as gcloud and the API's JSON parser read it; output-only
    fields (what `describe` prints) are dropped unchecked, since the service ignores them.
    """

    def __init__(self, fields: dict[str, Check] | None = None, *, output_only: tuple = (),
                 hint: str = ""):
        self.fields = fields or {}
        self.output_only = output_only
        self.hint = hint

    def __call__(self, value, path):
        if not isinstance(value, dict):
            raise SpecError(path, f"must be a mapping, got {_show(value)}")
        out = {}
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if key in self.output_only:
                continue
            if key not in self.fields:
                raise SpecError(where, self._unknown(str(key)))
            if item is not None:
                out[key] = self.fields[key](item, where)
        return out

    def _unknown(self, key: str) -> str:
        camel = _camel(key)
        if camel != key and camel in self.fields:
            return f"unknown field; keys are camelCase: write {camel}"
        close = difflib.get_close_matches(key, list(self.fields), n=1, cutoff=0.75)
        if close:
            return f"unknown field; did you mean {close[0]}?"
        return f"unknown field{self.hint}; known fields: {', '.join(sorted(self.fields))}"


# The Vertex v1 schema of a HyperparameterTuningJob; tests/tuner/test_spec_schema.py checks it
# against the API's own message descriptors, field by field.
_ENV_VAR = _Message({"name": _string, "value": _string})
_ACCELERATORS = (
    "ACCELERATOR_TYPE_UNSPECIFIED", "NVIDIA_TESLA_K80", "NVIDIA_TESLA_P100", "NVIDIA_TESLA_V100",
    "NVIDIA_TESLA_P4", "NVIDIA_TESLA_T4", "NVIDIA_TESLA_A100", "NVIDIA_A100_80GB", "NVIDIA_L4",
    "NVIDIA_H100_80GB", "NVIDIA_H100_MEGA_80GB", "NVIDIA_H200_141GB", "NVIDIA_B200",
    "NVIDIA_GB200", "NVIDIA_RTX_PRO_6000", "TPU_V2", "TPU_V3", "TPU_V4_POD", "TPU_V5_LITEPOD")
_WORKER_POOL = _Message({
    "containerSpec": _Message({"imageUri": _string, "command": _List(_string),
                               "args": _List(_string), "env": _List(_ENV_VAR)}),
    "pythonPackageSpec": _Message({"executorImageUri": _string, "packageUris": _List(_string),
                                   "pythonModule": _string, "args": _List(_string),
                                   "env": _List(_ENV_VAR)}),
    "machineSpec": _Message({
        "machineType": _string, "acceleratorType": _Enum(*_ACCELERATORS),
        "acceleratorCount": _int32, "gpuPartitionSize": _string, "tpuTopology": _string,
        "reservationAffinity": _Message({
            "reservationAffinityType": _Enum("TYPE_UNSPECIFIED", "NO_RESERVATION",
                                             "ANY_RESERVATION", "SPECIFIC_RESERVATION"),
            "key": _string, "values": _List(_string)})}),
    "replicaCount": _int64,
    "diskSpec": _Message({"bootDiskType": _string, "bootDiskSizeGb": _int32}),
    "nfsMounts": _List(_Message({"server": _string, "path": _string, "mountPoint": _string})),
    "lustreMounts": _List(_Message({"instanceIp": _string, "volumeHandle": _string,
                                    "filesystem": _string, "mountPoint": _string})),
})
_TIME_CONSTRAINT = _Message({"maxDuration": _duration, "endTime": _timestamp})
_CUSTOM_JOB_SPEC = _Message({
    "workerPoolSpecs": _List(_WORKER_POOL),
    "scheduling": _Message({"timeout": _duration, "restartJobOnWorkerRestart": _boolean,
                            "strategy": _Enum("STRATEGY_UNSPECIFIED", "ON_DEMAND", "LOW_COST",
                                              "STANDARD", "SPOT", "FLEX_START"),
                            "disableRetries": _boolean, "maxWaitDuration": _duration}),
    "serviceAccount": _string, "network": _string, "reservedIpRanges": _List(_string),
    "pscInterfaceConfig": _Message({
        "networkAttachment": _string,
        "dnsPeeringConfigs": _List(_Message({"domain": _string, "targetProject": _string,
                                             "targetNetwork": _string}))}),
    "baseOutputDirectory": _Message({"outputUriPrefix": _string}),
    "protectedArtifactLocationId": _string, "tensorboard": _string,
    "enableWebAccess": _boolean, "enableDashboardAccess": _boolean,
    "experiment": _string, "experimentRun": _string, "models": _List(_string),
    "persistentResourceId": _string,
})
_PARAMETER = _Message()  # recursive through conditionalParameterSpecs; filled in below
_CONDITIONAL = _Message({
    "parameterSpec": _PARAMETER,
    "parentDiscreteValues": _Message({"values": _List(_double)}),
    "parentIntValues": _Message({"values": _List(_int64)}),
    "parentCategoricalValues": _Message({"values": _List(_string)}),
})
_PARAMETER.fields.update({
    "parameterId": _string,
    "doubleValueSpec": _Message({"minValue": _double, "maxValue": _double,
                                 "defaultValue": _double}),
    "integerValueSpec": _Message({"minValue": _int64, "maxValue": _int64,
                                  "defaultValue": _int64}),
    "categoricalValueSpec": _Message({"values": _List(_string), "defaultValue": _string}),
    "discreteValueSpec": _Message({"values": _List(_double), "defaultValue": _double}),
    "scaleType": _Enum("SCALE_TYPE_UNSPECIFIED", LINEAR, LOG, REVERSE_LOG),
    "conditionalParameterSpecs": _List(_CONDITIONAL),
})
_STUDY_SPEC = _Message({
    "metrics": _List(_Message({
        "metricId": _string,
        "goal": _Enum("GOAL_TYPE_UNSPECIFIED", MAXIMIZE, MINIMIZE),
        "safetyConfig": _Message({"safetyThreshold": _double,
                                  "desiredMinSafeTrialsFraction": _double}),
    })),
    "parameters": _List(_PARAMETER),
    "algorithm": _Enum(BAYESIAN, GRID, RANDOM),
    "observationNoise": _Enum("OBSERVATION_NOISE_UNSPECIFIED", "LOW", "HIGH"),
    "measurementSelectionType": _Enum("MEASUREMENT_SELECTION_TYPE_UNSPECIFIED", LAST, BEST),
    "decayCurveStoppingSpec": _Message({"useElapsedDuration": _boolean}),
    "medianAutomatedStoppingSpec": _Message({"useElapsedDuration": _boolean}),
    "convexAutomatedStoppingSpec": _Message({
        "maxStepCount": _int64, "minStepCount": _int64, "minMeasurementCount": _int64,
        "learningRateParameterName": _string, "useElapsedDuration": _boolean,
        "updateAllStoppedTrials": _boolean}),
    "studyStoppingConfig": _Message({
        "shouldStopAsap": _boolean, "minimumRuntimeConstraint": _TIME_CONSTRAINT,
        "maximumRuntimeConstraint": _TIME_CONSTRAINT, "minNumTrials": _int32,
        "maxNumTrials": _int32, "maxNumTrialsNoProgress": _int32,
        "maxDurationNoProgress": _duration}),
}, hint=" (transferLearningConfig and convexStopConfig exist only in v1beta1)")
VERTEX_SCHEMA = _Message({
    "displayName": _string, "studySpec": _STUDY_SPEC, "maxTrialCount": _int32,
    "parallelTrialCount": _int32, "maxFailedTrialCount": _int32,
    "trialJobSpec": _CUSTOM_JOB_SPEC, "labels": _Map(_string),
    "encryptionSpec": _Message({"kmsKeyName": _string}),
}, output_only=("name", "trials", "state", "createTime", "startTime", "endTime", "updateTime",
                "error", "satisfiesPzs", "satisfiesPzi"),
   hint=" of a HyperparameterTuningJob")

# The legacy AI Platform Training v1 schema (projects.jobs); tests/tuner/test_spec_schema.py
# checks it against the API's discovery document.
_LEGACY_PARAM = _Message({
    "parameterName": _string,
    "type": _Enum(DOUBLE, INTEGER, CATEGORICAL, DISCRETE, "PARAMETER_TYPE_UNSPECIFIED",
                  lenient=True),
    "minValue": _double, "maxValue": _double,
    "categoricalValues": _List(_string), "discreteValues": _List(_double),
    "scaleType": _Enum("NONE", LINEAR, LOG, REVERSE_LOG, lenient=True),
})
_LEGACY_HYPERPARAMETERS = _Message({
    "goal": _Enum(MAXIMIZE, MINIMIZE, "GOAL_TYPE_UNSPECIFIED", lenient=True),
    "hyperparameterMetricTag": _string, "maxTrials": _int32, "maxParallelTrials": _int32,
    "maxFailedTrials": _int32, "enableTrialEarlyStopping": _boolean,
    "algorithm": _Enum(BAYESIAN, GRID, RANDOM, lenient=True),
    "resumePreviousJobId": _string, "params": _List(_LEGACY_PARAM),
})
_LEGACY_REPLICA_CONFIG = _Message({
    "imageUri": _string,
    "acceleratorConfig": _Message({
        "count": _int64,
        "type": _Enum("ACCELERATOR_TYPE_UNSPECIFIED", "NVIDIA_TESLA_K80", "NVIDIA_TESLA_P100",
                      "NVIDIA_TESLA_V100", "NVIDIA_TESLA_P4", "NVIDIA_TESLA_T4",
                      "NVIDIA_TESLA_A100", "TPU_V2", "TPU_V3", "TPU_V2_POD", "TPU_V3_POD",
                      "TPU_V4_POD", lenient=True)}),
    "containerCommand": _List(_string), "containerArgs": _List(_string),
    "tpuTfVersion": _string,
    "diskConfig": _Message({"bootDiskType": _string, "bootDiskSizeGb": _int32})})
_TRAINING_INPUT = _Message({
    "hyperparameters": _LEGACY_HYPERPARAMETERS,
    "scaleTier": _Enum("BASIC", "STANDARD_1", "PREMIUM_1", "BASIC_GPU", "BASIC_TPU", "CUSTOM",
                       lenient=True),
    "masterType": _string, "workerType": _string,
    "parameterServerType": _string, "evaluatorType": _string, "workerCount": _int64,
    "parameterServerCount": _int64, "evaluatorCount": _int64,
    "masterConfig": _LEGACY_REPLICA_CONFIG, "workerConfig": _LEGACY_REPLICA_CONFIG,
    "parameterServerConfig": _LEGACY_REPLICA_CONFIG, "evaluatorConfig": _LEGACY_REPLICA_CONFIG,
    "runtimeVersion": _string, "pythonVersion": _string, "region": _string, "jobDir": _string,
    "packageUris": _List(_string), "pythonModule": _string, "args": _List(_string),
    "scheduling": _Message({"maxRunningTime": _duration, "maxWaitTime": _duration,
                            "priority": _int32}),
    "network": _string, "serviceAccount": _string, "useChiefInTfConfig": _boolean,
    "encryptionConfig": _Message({"kmsKeyName": _string}), "enableWebAccess": _boolean,
})
LEGACY_SCHEMA = _Message({"trainingInput": _TRAINING_INPUT, "jobId": _string,
                          "labels": _Map(_string)},
                         output_only=("createTime", "startTime", "endTime", "state",
                                      "errorMessage", "trainingOutput", "predictionOutput",
                                      "etag", "jobPosition"))


def _output_only_notes(schema: _Message, document: dict) -> list[str]:
    given = [key for key in document if key in schema.output_only]
    if not given:
        return []
    return [f"{', '.join(given)}: output-only (set by the service, as `describe` prints them); "
            "ignored"]


LABEL_CHARS = "lower-case letters, digits, _ and -"


def _check_labels(labels: dict, path: str):
    """Google Cloud's label format: the API refuses the job otherwise."""
    if len(labels) > 64:
        raise SpecError(path, f"has {len(labels)} labels; at most 64 are allowed")
    for key, value in labels.items():
        for text, what in ((key, "key"), (value, "value")):
            if len(text) > 63:
                raise SpecError(f"{path}.{key}", f"label {what} is {len(text)} characters; at "
                                                 "most 63 are allowed")
            if any(c.isupper() or not (c.isalnum() or c in "_-") for c in text):
                raise SpecError(f"{path}.{key}", f"label {what} {text!r} may hold only "
                                                 f"{LABEL_CHARS}")
        if not key or not key[0].isalpha():
            raise SpecError(f"{path}.{key}", f"label key {key!r} must start with a lower-case "
                                             "letter")


# --------------------------------------------------------------------------------------------
# Vertex's rules, shared by both dialects
# --------------------------------------------------------------------------------------------

@dataclass
class _Raw:
    """One parameter as read from either dialect, before Vertex's rules are applied."""

    id: str | None
    type: str | None
    min: Any = None
    max: Any = None
    values: list | None = None
    scale: str | None = None
    children: list = field(default_factory=list)  # (condition key, values, _Raw, condition path)
    path: str = ""
    where: Callable[[str], str] = str  # logical field ("min", "values", ...) -> its YAML path
    default_given: bool = False
    missing_type: str = ""  # what to say when no type is given, in the dialect's words


def _build_parameter(raw: _Raw, notes: list[str]) -> Parameter:
    if not raw.id:
        raise SpecError(raw.where("id"), "is required")
    if re.search(r"\s", raw.id):
        raise SpecError(raw.where("id"), f"must not contain whitespace: {raw.id!r}")
    if raw.default_given:
        notes.append(f"{raw.where('default')}: defaultValue is for Vertex Vizier studies only; "
                     "tuning jobs and this tuner ignore it")
    scale = None if raw.scale in (None, "SCALE_TYPE_UNSPECIFIED", "NONE") else raw.scale
    if raw.type in (DOUBLE, INTEGER):
        for name in ("min", "max"):
            if getattr(raw, name) is None:
                raise SpecError(raw.where(name), f"is required for a {raw.type} parameter")
        low, high = raw.min, raw.max
        if raw.type == INTEGER:
            for name, value in (("min", low), ("max", high)):
                if float(value) != int(value):
                    raise SpecError(raw.where(name), f"must be a whole number for an INTEGER "
                                                     f"parameter, got {value!r}")
            low, high = int(low), int(high)
        if low > high:
            raise SpecError(raw.where("max"), f"({high}) is below minValue ({low})")
        if scale in (LOG, REVERSE_LOG) and low <= 0:
            raise SpecError(raw.where("min"), f"must be > 0 with scaleType {scale}, got {low}; "
                                              "use a positive range or UNIT_LINEAR_SCALE")
        parameter = Parameter(raw.id, raw.type, min=low, max=high, scale=scale)
    elif raw.type == CATEGORICAL:
        values = raw.values or []
        if not values:
            raise SpecError(raw.where("values"), "needs at least one value")
        for i, value in enumerate(values):
            if value in values[:i]:
                raise SpecError(f"{raw.where('values')}[{i}]", f"repeats the value {value!r}")
        if scale is not None:
            raise SpecError(raw.where("scale"), "must be unset for a CATEGORICAL parameter")
        parameter = Parameter(raw.id, CATEGORICAL, values=tuple(values))
    elif raw.type == DISCRETE:
        values = raw.values or []
        if not values:
            raise SpecError(raw.where("values"), "needs at least one value")
        if len(values) > MAX_DISCRETE_VALUES:
            raise SpecError(raw.where("values"), f"has {len(values)} values; at most "
                                                 f"{MAX_DISCRETE_VALUES} are allowed")
        for i in range(1, len(values)):
            if abs(values[i] - values[i - 1]) < DISCRETE_TOLERANCE:
                raise SpecError(f"{raw.where('values')}[{i}]",
                                f"repeats the value {values[i - 1]} (values closer than "
                                f"{DISCRETE_TOLERANCE} are the same point); remove one")
            if values[i] < values[i - 1]:
                raise SpecError(f"{raw.where('values')}[{i}]",
                                f"({values[i]}) must be greater than the value before it "
                                f"({values[i - 1]}): list discrete values in increasing order")
        if scale in (LOG, REVERSE_LOG) and values[0] <= 0:
            raise SpecError(f"{raw.where('values')}[0]",
                            f"must be > 0 with scaleType {scale}, got {values[0]}")
        parameter = Parameter(raw.id, DISCRETE, values=tuple(values), scale=scale)
    else:
        raise SpecError(raw.where("type"), raw.missing_type)
    children = tuple(_build_child(parameter, raw, child, notes) for child in raw.children)
    _check_sibling_ids(parameter, children, raw)
    return replace(parameter, children=children)


def _build_child(parent: Parameter, raw: _Raw, child: tuple, notes: list[str]) -> Child:
    key, values, raw_child, path = child
    if parent.type == DOUBLE:
        raise SpecError(path, f"a DOUBLE parameter ({parent.id!r}) cannot have conditional "
                              "children; make it DISCRETE or INTEGER to condition on it")
    if key is None:
        raise SpecError(path, "needs exactly one of " + ", ".join(PARENT_CONDITIONS))
    if PARENT_CONDITIONS[key] != parent.type:
        wanted = next(k for k, t in PARENT_CONDITIONS.items() if t == parent.type)
        raise SpecError(f"{path}.{key}", f"does not fit the parent {parent.id!r}, which is "
                                         f"{parent.type}: use {wanted}")
    if not values:
        raise SpecError(f"{path}.{key}.values", "needs at least one parent value")
    matched = []
    for i, value in enumerate(values):
        where = f"{path}.{key}.values[{i}]"
        if parent.type == CATEGORICAL and value not in parent.values:
            raise SpecError(where, f"{value!r} is not among the values of {parent.id!r}: "
                                   f"{list(parent.values)}")
        if parent.type == INTEGER and not parent.min <= value <= parent.max:
            raise SpecError(where, f"{value} is outside the range of {parent.id!r}: "
                                   f"[{parent.min}, {parent.max}]")
        if parent.type == DISCRETE:
            near = [v for v in parent.values if abs(v - value) <= DISCRETE_TOLERANCE]
            if not near:
                raise SpecError(where, f"{value} is not among the values of {parent.id!r}: "
                                       f"{list(parent.values)}")
            value = near[0]
        matched.append(value)
    if raw_child is None:
        raise SpecError(f"{path}.parameterSpec", "is required")
    return Child(tuple(matched), _build_parameter(raw_child, notes))


def _check_sibling_ids(parent: Parameter, children: tuple[Child, ...], raw: _Raw):
    """Two children may share a parameterId only if they are never active together."""
    for j, child in enumerate(children):
        for i in range(j):
            other = children[i]
            if other.parameter.id != child.parameter.id:
                continue
            both = [v for v in child.parent_values if other.matches(parent.type, v)]
            if both:
                raise SpecError(raw.children[j][3], f"parameterId {child.parameter.id!r} is "
                                                    f"also a child at index {i} and both are "
                                                    f"active for {parent.id}={both[0]!r}; make "
                                                    "their parent values disjoint")


def _check_unique_ids(parameters: list[Parameter], raws: list[_Raw]):
    """Ids are unique across the tree, except disjoint siblings (checked above)."""
    seen: dict[str, str] = {}

    def visit(parameter: Parameter, raw: _Raw, sibling_ids: set):
        here = raw.where("id")
        if parameter.id in seen and parameter.id not in sibling_ids:
            raise SpecError(here, f"duplicate {_field_name(here)} {parameter.id!r} (also at "
                                  f"{seen[parameter.id]}); ids must be unique")
        seen.setdefault(parameter.id, here)
        ids_here: set = set()
        for child, (_, _, raw_child, _) in zip(parameter.children, raw.children):
            visit(child.parameter, raw_child, ids_here)
            ids_here.add(child.parameter.id)

    for parameter, raw in zip(parameters, raws):
        visit(parameter, raw, set())


@dataclass
class _Study:
    """Study-level fields of either dialect, with the YAML path of each."""

    display_name: str | None
    metrics: list  # (Metric, path of its id)
    params: list[_Raw]
    params_path: str
    algorithm: str
    algorithm_path: str
    measurement: str
    stopping: list  # (field, rule, settings dict, path)
    counts: dict  # name -> (value or None, path)
    trial_job: TrialJob
    document: dict
    notes: list[str]


def _finish(study: _Study, overrides: dict) -> TuningJob:
    """Applies command-line overrides, then Vertex's study-level rules."""
    notes = study.notes
    if overrides.get("algorithm"):
        study.algorithm, study.algorithm_path = overrides["algorithm"], "--algorithm"
    for name, flag in (("maxTrialCount", "--max-trial-count"),
                       ("parallelTrialCount", "--parallel-trial-count")):
        if overrides.get(name) is not None:
            study.counts[name] = (overrides[name], flag)
    if not study.metrics:
        raise SpecError("studySpec.metrics", "needs at least one metric: the metricId your "
                                             "trainer reports through hypertune")
    for i, (metric, path) in enumerate(study.metrics):
        if not metric.id:
            raise SpecError(path, "is required")
        if re.search(r"\s", metric.id):
            raise SpecError(path, f"must not contain whitespace: {metric.id!r}")
        if metric.id in [m.id for m, _ in study.metrics[:i]]:
            raise SpecError(path, f"duplicate metricId {metric.id!r}")
    if not study.params:
        raise SpecError(study.params_path, "needs at least one parameter")
    parameters = [_build_parameter(raw, notes) for raw in study.params]
    _check_unique_ids(parameters, study.params)
    if study.algorithm == GRID:
        _check_grid(parameters, study.params, study.algorithm_path)
    if len(study.stopping) > 1:
        raise SpecError(study.stopping[1][3], "only one of " + ", ".join(STOPPING_SPECS)
                                              + " may be set")
    stopping = None
    if study.stopping:
        name, rule, settings, path = study.stopping[0]
        if rule == "convex":
            _check_convex(settings, path, {p.id for p in walk_parameters(parameters)})
        stopping = Stopping(rule, bool(settings.get("useElapsedDuration", False)), name,
                            tuple(sorted(settings.items())))
    counts = {}
    for name, (value, path) in study.counts.items():
        if value is not None and value < 0:
            raise SpecError(path, f"must be 0 (unset) or more, got {value}")
        if not value and name != "maxFailedTrialCount":
            notes.append(f"{_field_name(path)} is not set (or 0): gcloud uses 1")
            value = 1
        counts[name] = value or 0
    if counts["maxFailedTrialCount"] > counts["maxTrialCount"]:
        raise SpecError(study.counts["maxFailedTrialCount"][1],
                        f"({counts['maxFailedTrialCount']}) must not exceed "
                        f"{_field_name(study.counts['maxTrialCount'][1])} "
                        f"({counts['maxTrialCount']})")
    return TuningJob(
        display_name=study.display_name, metrics=tuple(m for m, _ in study.metrics),
        parameters=tuple(parameters), algorithm=study.algorithm, measurement=study.measurement,
        stopping=stopping, max_trial_count=counts["maxTrialCount"],
        parallel_trial_count=counts["parallelTrialCount"],
        max_failed_trial_count=counts["maxFailedTrialCount"], trial_job=study.trial_job,
        dialect="", document=study.document, notes=tuple(notes))


def walk_parameters(parameters):
    """Every parameter of a tree, parents before their children (children in order)."""
    for parameter in parameters:
        yield parameter
        yield from walk_parameters([child.parameter for child in parameter.children])


def _check_grid(parameters: list[Parameter], raws: list[_Raw], algorithm_path: str):
    def visit(parameter: Parameter, raw: _Raw):
        if parameter.type == DOUBLE:
            raise SpecError(raw.where("type"), f"GRID_SEARCH (from {algorithm_path}) needs "
                                               "INTEGER, CATEGORICAL or DISCRETE parameters; "
                                               f"{parameter.id!r} is DOUBLE: list the values to "
                                               "try as a DISCRETE parameter, or use another "
                                               "algorithm")
        for child, (_, _, raw_child, _) in zip(parameter.children, raw.children):
            visit(child.parameter, raw_child)

    for parameter, raw in zip(parameters, raws):
        visit(parameter, raw)


def _check_convex(settings: dict, path: str, ids: set):
    high = settings.get("maxStepCount")
    if high is None or high <= 0:
        raise SpecError(f"{path}.maxStepCount", "is required and must be positive")
    low = settings.get("minStepCount")
    if low is not None and not 0 <= low <= high:
        raise SpecError(f"{path}.minStepCount", f"must be between 0 and maxStepCount ({high})")
    count = settings.get("minMeasurementCount")
    if count is not None and count < 1:
        raise SpecError(f"{path}.minMeasurementCount", "must be at least 1")
    name = settings.get("learningRateParameterName")
    if name is not None and name not in ids:
        raise SpecError(f"{path}.learningRateParameterName", f"{name!r} is not a parameterId")


# --------------------------------------------------------------------------------------------
# Vertex dialect
# --------------------------------------------------------------------------------------------

def _vertex_raw(spec: dict, path: str) -> _Raw:
    kinds = [k for k in spec if k in VALUE_SPECS]  # in the order written
    if len(kinds) > 1:
        raise SpecError(f"{path}.{kinds[1]}", f"a parameter has exactly one value spec; "
                                              f"remove {kinds[1]} or {kinds[0]}")
    kind = kinds[0] if kinds else None
    body = spec.get(kind, {}) if kind else {}

    def where(name: str) -> str:
        return {"id": f"{path}.parameterId", "type": f"{path}.{kind}" if kind else path,
                "min": f"{path}.{kind}.minValue", "max": f"{path}.{kind}.maxValue",
                "values": f"{path}.{kind}.values", "scale": f"{path}.scaleType",
                "default": f"{path}.{kind}.defaultValue"}[name]

    children = []
    for i, conditional in enumerate(spec.get("conditionalParameterSpecs", [])):
        here = f"{path}.conditionalParameterSpecs[{i}]"
        keys = [k for k in conditional if k in PARENT_CONDITIONS]
        if len(keys) > 1:
            raise SpecError(f"{here}.{keys[1]}", f"give one parent condition; remove {keys[1]} "
                                                 f"or {keys[0]}")
        key = keys[0] if keys else None
        values = conditional[key].get("values", []) if key else []
        child = conditional.get("parameterSpec")
        children.append((key, values, _vertex_raw(child, f"{here}.parameterSpec")
                         if child is not None else None, here))
    return _Raw(id=spec.get("parameterId"), type=VALUE_SPECS.get(kind), min=body.get("minValue"),
                max=body.get("maxValue"), values=body.get("values"), scale=spec.get("scaleType"),
                children=children, path=path, where=where,
                default_given="defaultValue" in body,
                missing_type="needs exactly one of " + ", ".join(VALUE_SPECS))


def _expand_env(items: list[dict]) -> tuple[tuple[str, str], ...]:
    """Vertex's `$(NAME)` references to earlier entries; `$$(NAME)` stays literal."""
    out: dict[str, str] = {}
    for item in items:
        def sub(match):
            if match.group(0).startswith("$$"):
                return match.group(0)[1:]
            return out.get(match.group(1), match.group(0))
        out[item["name"]] = re.sub(r"\$?\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, item.get("value", ""))
    return tuple(out.items())


def _local_python(argv: list[str]) -> list[str]:
    """`python`/`python3` in an image means the tuner's own interpreter here."""
    if argv and argv[0] in ("python", "python3"):
        return [sys.executable, *argv[1:]]
    return argv


def _vertex_trial_job(spec: dict, path: str, notes: list[str]) -> TrialJob:
    pools = spec.get("workerPoolSpecs") or []
    if not pools:
        raise SpecError(f"{path}.workerPoolSpecs", "needs at least the primary pool (index 0)")
    for i, pool in enumerate(pools):
        here = f"{path}.workerPoolSpecs[{i}]"
        if not pool:
            if i == 0:
                raise SpecError(here, "the primary pool (index 0) must not be empty")
            continue
        kinds = [k for k in ("containerSpec", "pythonPackageSpec") if k in pool]
        if len(kinds) != 1:
            raise SpecError(here, "needs exactly one of containerSpec, pythonPackageSpec")
        if not pool.get("machineSpec", {}).get("machineType"):
            raise SpecError(f"{here}.machineSpec.machineType", "is required")
        machine = pool["machineSpec"]
        accelerator = machine.get("acceleratorType", "ACCELERATOR_TYPE_UNSPECIFIED")
        if accelerator.startswith("TPU_"):
            raise SpecError(f"{here}.machineSpec.acceleratorType",
                            "hyperparameter tuning jobs do not support TPUs")
        if "acceleratorCount" in machine and accelerator == "ACCELERATOR_TYPE_UNSPECIFIED":
            raise SpecError(f"{here}.machineSpec.acceleratorCount", "needs an acceleratorType")
        problem = machine_pairing_problem(machine["machineType"], accelerator,
                                          machine.get("acceleratorCount", 1))
        if problem:
            raise SpecError(f"{here}.machineSpec.machineType", problem)
        if "containerSpec" in pool and not pool["containerSpec"].get("imageUri"):
            raise SpecError(f"{here}.containerSpec.imageUri", "is required")
        if "pythonPackageSpec" in pool:
            package = pool["pythonPackageSpec"]
            for key in ("executorImageUri", "pythonModule"):
                if not package.get(key):
                    raise SpecError(f"{here}.pythonPackageSpec.{key}", "is required")
        if pool.get("replicaCount", 1) < 1 or (i == 0 and pool.get("replicaCount", 1) != 1):
            raise SpecError(f"{here}.replicaCount", "must be 1 for the primary pool"
                            if i == 0 else "must be at least 1")
    primary = pools[0]
    if "containerSpec" in primary:
        container = primary["containerSpec"]
        args = container.get("args", [])
        if container.get("command"):
            argv, origin = container["command"] + args, "containerSpec command + args"
        else:
            argv = list(DEFAULT_ENTRYPOINT) + args
            origin = ("containerSpec args after the image ENTRYPOINT, taken to be "
                      f"`{' '.join(DEFAULT_ENTRYPOINT)}`")
        env = container.get("env", [])
    else:
        package = primary["pythonPackageSpec"]
        argv = ["python", "-m", package["pythonModule"]] + package.get("args", [])
        origin = "pythonPackageSpec pythonModule + args"
        env = package.get("env", [])
    extra = sum(1 for pool in pools[1:] if pool)
    if extra:
        notes.append(f"{path}.workerPoolSpecs: only the primary pool runs locally; each trial "
                     f"is one process ({extra} more pool(s) on Vertex)")
    return TrialJob(tuple(_local_python(argv)), _expand_env(env), origin, extra)


def _parse_vertex(document: dict, overrides: dict) -> TuningJob:
    doc = VERTEX_SCHEMA(document, "")
    notes = _output_only_notes(VERTEX_SCHEMA, document)
    if "studySpec" not in doc:
        raise SpecError("studySpec", "is required")
    study = doc["studySpec"]
    if "trialJobSpec" not in doc:
        raise SpecError("trialJobSpec", "is required: the job every trial runs")
    name = doc.get("displayName")
    if name is not None and not 0 < len(name) <= 128:
        raise SpecError("displayName", "must be 1 to 128 characters")
    if "observationNoise" in study:
        notes.append("studySpec.observationNoise is for Vertex Vizier studies only; tuning jobs "
                     "and this tuner ignore it")
    if "studyStoppingConfig" in study:
        notes.append("studySpec.studyStoppingConfig is not applied by the local tuner")
    _check_labels(doc.get("labels", {}), "labels")
    metrics = [(Metric(m.get("metricId"), MINIMIZE if m.get("goal") == MINIMIZE else MAXIMIZE,
                       "safetyConfig" in m), f"studySpec.metrics[{i}].metricId")
               for i, m in enumerate(study.get("metrics", []))]
    parsed = _Study(
        display_name=name, metrics=metrics,
        params=[_vertex_raw(p, f"studySpec.parameters[{i}]")
                for i, p in enumerate(study.get("parameters", []))],
        params_path="studySpec.parameters",
        algorithm=study.get("algorithm", BAYESIAN), algorithm_path="studySpec.algorithm",
        measurement=BEST if study.get("measurementSelectionType") == BEST else LAST,
        stopping=[(k, rule, study[k], f"studySpec.{k}")
                  for k, rule in STOPPING_SPECS.items() if k in study],
        counts={k: (doc.get(k), k) for k in
                ("maxTrialCount", "parallelTrialCount", "maxFailedTrialCount")},
        trial_job=_vertex_trial_job(doc["trialJobSpec"], "trialJobSpec", notes),
        document=doc, notes=notes)
    return replace(_finish(parsed, overrides), dialect="vertex")


# --------------------------------------------------------------------------------------------
# Legacy dialect (AI Platform Training `trainingInput.hyperparameters`)
# --------------------------------------------------------------------------------------------

def _legacy_raw(param: dict, path: str) -> _Raw:
    kind = param.get("type")
    if kind == "PARAMETER_TYPE_UNSPECIFIED":
        kind = None

    def where(name: str) -> str:
        return {"id": f"{path}.parameterName", "type": f"{path}.type",
                "min": f"{path}.minValue", "max": f"{path}.maxValue",
                "values": f"{path}.categoricalValues" if kind == CATEGORICAL
                else f"{path}.discreteValues",
                "scale": f"{path}.scaleType", "default": path}[name]

    values = param.get("categoricalValues") if kind == CATEGORICAL else param.get("discreteValues")
    return _Raw(id=param.get("parameterName"), type=kind, min=param.get("minValue"),
                max=param.get("maxValue"), values=values, scale=param.get("scaleType"),
                path=path, where=where,
                missing_type="is required: DOUBLE, INTEGER, CATEGORICAL or DISCRETE")


# Legacy trainingInput fields that Vertex has no field for, and what takes their place.
LEGACY_WITHOUT_EQUIVALENT = {
    "scaleTier": "each pool names its machine", "runtimeVersion": "the image fixes it",
    "pythonVersion": "the image fixes it", "region": "give gcloud --region",
    "useChiefInTfConfig": "Vertex always names pool 0 chief",
    "scheduling.maxWaitTime": "only FLEX_START jobs wait", "scheduling.priority": "none",
}
# Legacy replica roles in Vertex's pool order: chief, workers, parameter servers, evaluators.
LEGACY_ROLES = ("master", "worker", "parameterServer", "evaluator")


def _legacy_machine_spec(training: dict, role: str, notes: list[str]) -> dict:
    machine = training.get(f"{role}Type") or ""
    if not re.fullmatch(r"[a-z][a-z0-9]*-[a-z0-9-]+", machine):
        what = (f"trainingInput.{role}Type {machine!r} is a legacy machine name" if machine
                else f"trainingInput.{role}Type is not set")
        notes.append(f"{what}: edit its pool's machineSpec.machineType (written as "
                     f"{PLACEHOLDER_MACHINE})")
        machine = PLACEHOLDER_MACHINE
    spec: dict[str, Any] = {"machineType": machine}
    base = f"trainingInput.{role}Config.acceleratorConfig"
    accelerator = training.get(f"{role}Config", {}).get("acceleratorConfig", {})
    kind = accelerator.get("type", "ACCELERATOR_TYPE_UNSPECIFIED")
    if kind.startswith("TPU_"):
        raise SpecError(f"{base}.type", "Vertex hyperparameter tuning jobs do not support TPUs")
    if kind != "ACCELERATOR_TYPE_UNSPECIFIED":
        spec.update(acceleratorType=kind, acceleratorCount=accelerator.get("count", 1))
    elif "count" in accelerator:
        raise SpecError(f"{base}.count", "needs a type")
    return spec


def _legacy_pool(training: dict, role: str, notes: list[str]) -> dict:
    """One Vertex worker pool from a legacy replica role; other roles default to the master's
    image, as on AI Platform."""
    config = training.get(f"{role}Config", {})
    master = training.get("masterConfig", {})
    pool: dict[str, Any] = {"machineSpec": _legacy_machine_spec(training, role, notes),
                            "replicaCount": 1 if role == "master" else training[f"{role}Count"]}
    image = config.get("imageUri") or master.get("imageUri")
    args = list(config.get("containerArgs", training.get("args", [])))  # one list per pool
    if image or not training.get("pythonModule"):
        command = config.get("containerCommand")
        pool["containerSpec"] = {"imageUri": image or PLACEHOLDER_IMAGE,
                                 **({"command": list(command)} if command else {}),
                                 **({"args": args} if args else {})}
    else:
        pool["pythonPackageSpec"] = {"executorImageUri": PREBUILT_TF_IMAGE,
                                     "packageUris": list(training.get("packageUris", [])),
                                     "pythonModule": training["pythonModule"],
                                     **({"args": args} if args else {})}
    if "diskConfig" in config:
        pool["diskSpec"] = dict(config["diskConfig"])
    if "tpuTfVersion" in config:
        notes.append(f"trainingInput.{role}Config.tpuTfVersion has no Vertex equivalent; dropped")
    return pool


def _legacy_job_spec(training: dict, notes: list[str]) -> tuple[dict, dict]:
    """The Vertex trialJobSpec that `convert` writes, and the job fields the legacy
    trainingInput carries (encryption); each legacy field without an equivalent gets a note."""
    for role in LEGACY_ROLES[1:]:
        count = training.get(f"{role}Count", 0)
        if count < 0:
            raise SpecError(f"trainingInput.{role}Count", f"must be 0 or more, got {count}")
    pools = [_legacy_pool(training, role, notes) if role == "master" or
             training.get(f"{role}Count") else {} for role in LEGACY_ROLES]
    while not pools[-1]:
        pools.pop()
    if "pythonPackageSpec" in pools[0]:
        notes.append("trainingInput.pythonModule: edit pythonPackageSpec.executorImageUri "
                     f"(written as {PREBUILT_TF_IMAGE}) and packageUris")
    elif pools[0]["containerSpec"]["imageUri"] == PLACEHOLDER_IMAGE:
        notes.append(f"trainingInput has no trainer: edit containerSpec.imageUri (written as "
                     f"{PLACEHOLDER_IMAGE}); locally trials run "
                     f"`{' '.join(DEFAULT_ENTRYPOINT)}`")
    spec: dict[str, Any] = {"workerPoolSpecs": pools}
    spec.update({k: training[k] for k in ("serviceAccount", "network", "enableWebAccess")
                 if k in training})  # the same fields in a CustomJobSpec
    if "jobDir" in training:
        spec["baseOutputDirectory"] = {"outputUriPrefix": training["jobDir"]}
        notes.append("trainingInput.jobDir is written as trialJobSpec.baseOutputDirectory: "
                     "Vertex gives each trial AIP_MODEL_DIR under it, not a --job-dir flag")
    scheduling = training.get("scheduling", {})
    if "maxRunningTime" in scheduling:
        spec["scheduling"] = {"timeout": scheduling["maxRunningTime"]}
    job = {}
    if "encryptionConfig" in training:
        job["encryptionSpec"] = dict(training["encryptionConfig"])
    dropped = [f"{key} ({why})" for key, why in LEGACY_WITHOUT_EQUIVALENT.items()
               if _lookup(training, key) not in (None, "CUSTOM")]
    if dropped:
        notes.append(f"trainingInput {', '.join(dropped)}: no Vertex field; dropped")
    return spec, job


def _lookup(document: dict, dotted: str):
    head, _, rest = dotted.partition(".")
    value = document.get(head)
    return _lookup(value, rest) if rest and isinstance(value, dict) else value


def _parse_legacy(document: dict, overrides: dict) -> TuningJob:
    doc = LEGACY_SCHEMA(document, "")
    training = doc.get("trainingInput") or {}
    base = "trainingInput.hyperparameters"
    if "hyperparameters" not in training:
        raise SpecError(base, "is required: a legacy tuning config keeps its study here")
    hp = training["hyperparameters"]
    notes = _output_only_notes(LEGACY_SCHEMA, document)
    if "resumePreviousJobId" in hp:
        notes.append(f"{base}.resumePreviousJobId has no Vertex equivalent and is dropped; "
                     "locally, rerun with the same --output-dir to resume")
    stopping = []
    if hp.get("enableTrialEarlyStopping"):
        stopping.append(("decayCurveStoppingSpec", "decay_curve", {"useElapsedDuration": False},
                         f"{base}.enableTrialEarlyStopping"))
    _check_labels(doc.get("labels", {}), "labels")
    job_spec, job_fields = _legacy_job_spec(training, notes)
    trial_job = _vertex_trial_job(job_spec, "trialJobSpec", notes)
    parsed = _Study(
        display_name=doc.get("jobId"),
        metrics=[(Metric(hp.get("hyperparameterMetricTag", LEGACY_DEFAULT_METRIC),
                         MINIMIZE if hp.get("goal") == MINIMIZE else MAXIMIZE),
                  f"{base}.hyperparameterMetricTag")],
        params=[_legacy_raw(p, f"{base}.params[{i}]") for i, p in enumerate(hp.get("params", []))],
        params_path=f"{base}.params",
        algorithm=hp.get("algorithm", BAYESIAN), algorithm_path=f"{base}.algorithm",
        measurement=LAST, stopping=stopping,
        counts={"maxTrialCount": (hp.get("maxTrials"), f"{base}.maxTrials"),
                "parallelTrialCount": (hp.get("maxParallelTrials"), f"{base}.maxParallelTrials"),
                "maxFailedTrialCount": (hp.get("maxFailedTrials"), f"{base}.maxFailedTrials")},
        trial_job=trial_job, document={}, notes=notes)
    job = _finish(parsed, overrides)
    job_fields.update({"labels": doc["labels"]} if "labels" in doc else {})
    return replace(job, dialect="legacy",
                   document=to_vertex_document(job, job_spec, job_fields))


# --------------------------------------------------------------------------------------------
# Writing the Vertex form
# --------------------------------------------------------------------------------------------

def parameter_to_dict(parameter: Parameter) -> dict:
    out: dict[str, Any] = {"parameterId": parameter.id}
    if parameter.type == DOUBLE:
        out["doubleValueSpec"] = {"minValue": parameter.min, "maxValue": parameter.max}
    elif parameter.type == INTEGER:
        out["integerValueSpec"] = {"minValue": parameter.min, "maxValue": parameter.max}
    elif parameter.type == CATEGORICAL:
        out["categoricalValueSpec"] = {"values": list(parameter.values)}
    else:
        out["discreteValueSpec"] = {"values": list(parameter.values)}
    if parameter.scale:
        out["scaleType"] = parameter.scale
    if parameter.children:
        key = {DISCRETE: "parentDiscreteValues", INTEGER: "parentIntValues",
               CATEGORICAL: "parentCategoricalValues"}[parameter.type]
        out["conditionalParameterSpecs"] = [
            {key: {"values": list(child.parent_values)},
             "parameterSpec": parameter_to_dict(child.parameter)} for child in parameter.children]
    return out


def to_vertex_document(job: TuningJob, trial_job_spec: dict, job_fields: dict) -> dict:
    """The Vertex form of a job; `job_fields` are top-level fields besides the study."""
    study: dict[str, Any] = {"metrics": [{"metricId": m.id, "goal": m.goal} for m in job.metrics],
                             "parameters": [parameter_to_dict(p) for p in job.parameters]}
    if job.algorithm != BAYESIAN:
        study["algorithm"] = job.algorithm
    if job.measurement == BEST:
        study["measurementSelectionType"] = BEST
    if job.stopping:
        study[job.stopping.field] = dict(job.stopping.settings) or {
            "useElapsedDuration": job.stopping.use_elapsed}
    out: dict[str, Any] = {}
    if job.display_name:
        out["displayName"] = job.display_name
    out.update({"studySpec": study, "maxTrialCount": job.max_trial_count,
                "parallelTrialCount": job.parallel_trial_count})
    if job.max_failed_trial_count:
        out["maxFailedTrialCount"] = job.max_failed_trial_count
    out["trialJobSpec"] = trial_job_spec
    out.update(job_fields)
    return out


# --------------------------------------------------------------------------------------------
# Entry points
# --------------------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; we refuse them."""


def _mapping_without_duplicates(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, Hashable):
            continue  # construct_mapping refuses it with the YAML position
        if key in seen:
            mark = key_node.start_mark
            raise SpecError("", f"line {mark.line + 1}: duplicate key {key!r}")
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                              _mapping_without_duplicates)


# Protobuf parsers stop at 100 nested messages; no tuning job comes near it, and a deeper
# document would exhaust Python's recursion limit in the checks below. YAML aliases can make a
# small file hold billions of values (or a cycle): the checks stop at MAX_VALUES.
MAX_DEPTH = 100
MAX_VALUES = 1_000_000
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _text(path: str) -> str:
    """The file as UTF-8 text (what gcloud reads), or a SpecError saying how to make it so."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SpecError("", f"cannot read the config: {exc.strerror}") from None
    if data.startswith(UTF16_BOMS):
        raise SpecError("", "the config is UTF-16 text (as Windows PowerShell's > writes it); "
                            "save it as UTF-8, e.g. Get-Content IN | Set-Content -Encoding "
                            "utf8 OUT")
    nul = data.find(b"\0")
    if nul >= 0:
        raise SpecError("", f"the config is a binary file (a NUL byte at offset {nul}), not "
                            "YAML text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SpecError("", f"the config is not UTF-8 text (byte 0x{data[exc.start]:02x} on "
                            f"line {line}; Latin-1, perhaps): save it as UTF-8") from None
    if not text.strip():
        raise SpecError("", "the config file is empty; give a HyperparameterTuningJob (or a "
                            "legacy trainingInput)")
    return text


def _check_size(document):
    """Refuses documents nested too deeply or too large to check, without recursion."""
    stack, count = [(document, 1)], 0
    while stack:
        value, depth = stack.pop()
        count += 1
        if count > MAX_VALUES:
            raise SpecError("", f"the config holds over {MAX_VALUES} values (YAML aliases "
                                "expanding into each other?); no tuning job does")
        if isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise SpecError("", f"the config nests deeper than {MAX_DEPTH} levels; no "
                                    "tuning job does (is it generated by mistake?)")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)


def read_document(path: str) -> dict:
    text = _text(path)
    try:
        document = yaml.load(text, Loader=_StrictLoader)
    except RecursionError:
        raise SpecError("", f"the config nests deeper than {MAX_DEPTH} levels; no tuning job "
                            "does (is it generated by mistake?)") from None
    except (ValueError, OverflowError) as exc:  # a tagged or huge scalar PyYAML cannot build
        raise SpecError("", f"not valid YAML: a value cannot be read: "
                            f"{str(exc).split(';')[0]}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError("", f"not valid YAML: {where}{problem}") from None
    if document is None:
        raise SpecError("", "the config holds only comments; give a HyperparameterTuningJob "
                            "(or a legacy trainingInput)")
    if not isinstance(document, dict):
        raise SpecError("", "the config must be a YAML mapping (a HyperparameterTuningJob, or "
                            "a legacy file with trainingInput)")
    _check_size(document)
    return document


def parse(document: dict, overrides: dict | None = None) -> TuningJob:
    """Validates a loaded document of either dialect; `overrides` are gcloud-style flags.

    overrides keys: maxTrialCount, parallelTrialCount, algorithm (enum name).
    """
    overrides = overrides or {}
    if "trainingInput" in document and "studySpec" not in document:
        return _parse_legacy(document, overrides)
    if "trainingInput" in document:
        raise SpecError("trainingInput", "is a legacy AI Platform key; a Vertex config has "
                                         "studySpec instead (see `python -m tuner convert`)")
    return _parse_vertex(document, overrides)


def load(path: str, overrides: dict | None = None) -> TuningJob:
    return parse(read_document(path), overrides)


def local_problem(job: TuningJob) -> SpecError | None:
    """What a config valid for Vertex asks that the local tuner cannot do, if anything.

    With several metrics, Vertex documents BEST_MEASUREMENT ("the best measurement reported")
    and the stopping rules (the trial's "objective value") for one objective only: which
    measurement is best, or when a trial is behind, over several metrics is not documented."""
    for i, metric in enumerate(job.metrics):
        if metric.safety:
            return SpecError(f"studySpec.metrics[{i}].safetyConfig",
                             "safe search is not implemented by the local tuner; remove it to "
                             "run here")
    if job.stopping and job.stopping.rule == "convex":
        return SpecError(f"studySpec.{job.stopping.field}",
                         "is not implemented by the local tuner; use "
                         "medianAutomatedStoppingSpec or decayCurveStoppingSpec locally")
    several = f"with {len(job.metrics)} metrics"
    if len(job.metrics) > 1 and job.measurement == BEST:
        return SpecError("studySpec.measurementSelectionType",
                         f"BEST_MEASUREMENT {several} is not run locally: Vertex does not "
                         "document which measurement is best over several metrics; use "
                         "LAST_MEASUREMENT (or one metric) to run it here")
    if len(job.metrics) > 1 and job.stopping:
        return SpecError(f"studySpec.{job.stopping.field}",
                         f"{several} is not run locally: Vertex documents its rule for one "
                         "objective value only; remove it (or keep one metric) to run it here")
    return None
