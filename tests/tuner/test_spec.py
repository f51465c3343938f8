"""The config rules: each rejected with its field path, and the shapes of real configs accepted.

The matrix runs the parser in-process (it is pure Python); a few tests run `python -m tuner`
to check what the user sees: one line on stderr, exit 2, nothing written.
"""
import copy

import pytest
import yaml

from tests.tuner.support import BASE, ROOT, config, last_line, run_tuner
from tuner import spec as S


def _with(mutate, base=BASE):
    doc = copy.deepcopy(base)
    mutate(doc)
    return doc


def _param(doc, i=0):
    return doc["studySpec"]["parameters"][i]


def _add(doc, *parameters):
    doc["studySpec"]["parameters"].extend(copy.deepcopy(list(parameters)))


OPT = {"parameterId": "optimizer", "categoricalValueSpec": {"values": ["adam", "sgd"]}}
UNITS = {"parameterId": "units", "integerValueSpec": {"minValue": 8, "maxValue": 64}}
BATCH = {"parameterId": "batch", "discreteValueSpec": {"values": [16, 32, 64]}}
MOMENTUM = {"parameterId": "momentum", "doubleValueSpec": {"minValue": 0.0, "maxValue": 0.9}}
POOL0 = "trialJobSpec.workerPoolSpecs[0]"


def _child(parent, key, values, child=MOMENTUM):
    parent.setdefault("conditionalParameterSpecs", []).append(
        {key: {"values": values}, "parameterSpec": copy.deepcopy(child)})


def _pool(doc):
    return doc["trialJobSpec"]["workerPoolSpecs"][0]


# (id, mutation of BASE, field path, words the message must contain)
VERTEX_CASES = [
    ("unknown key", lambda d: d.update(maxTrialCounts=3), "maxTrialCounts",
     "did you mean maxTrialCount"),
    ("snake_case key", lambda d: d["studySpec"]["metrics"][0].update(metric_id="m"),
     "studySpec.metrics[0].metric_id", "camelCase: write metricId"),
    ("lower-case goal", lambda d: d["studySpec"]["metrics"][0].update(goal="minimize"),
     "studySpec.metrics[0].goal", "upper-case: write MINIMIZE"),
    ("lower-case scale", lambda d: _param(d).update(scaleType="unit_log_scale"),
     "studySpec.parameters[0].scaleType", "upper-case"),
    ("unknown enum value", lambda d: d["studySpec"].update(algorithm="BAYESIAN"),
     "studySpec.algorithm", "must be one of"),
    ("count not a number", lambda d: d.update(maxTrialCount="six"), "maxTrialCount",
     "must be an integer"),
    ("category not a string",
     lambda d: _add(d, {"parameterId": "n", "categoricalValueSpec": {"values": [1, 2]}}),
     "studySpec.parameters[1].categoricalValueSpec.values[0]", "quote it"),
    ("yes is not a string",
     lambda d: _add(d, {"parameterId": "b", "categoricalValueSpec": {"values": [True]}}),
     "studySpec.parameters[1].categoricalValueSpec.values[0]", "quote it"),
    ("null is unset", lambda d: _param(d)["doubleValueSpec"].update(minValue=None),
     "studySpec.parameters[0].doubleValueSpec.minValue", "required for a DOUBLE"),
    ("infinite bound", lambda d: _param(d)["doubleValueSpec"].update(maxValue=float("inf")),
     "studySpec.parameters[0].doubleValueSpec.maxValue", "finite"),
    ("bound beyond any double", lambda d: _param(d)["doubleValueSpec"].update(maxValue=10 ** 400),
     "studySpec.parameters[0].doubleValueSpec.maxValue", "finite"),
    ("min above max", lambda d: _param(d)["doubleValueSpec"].update(minValue=2.0),
     "studySpec.parameters[0].doubleValueSpec.maxValue", "below minValue (2.0)"),
    ("missing max", lambda d: _param(d)["doubleValueSpec"].pop("maxValue"),
     "studySpec.parameters[0].doubleValueSpec.maxValue", "required"),
    ("log scale from 0", lambda d: _param(d).update(scaleType="UNIT_LOG_SCALE"),
     "studySpec.parameters[0].doubleValueSpec.minValue", "> 0 with scaleType UNIT_LOG_SCALE"),
    ("reverse log from 0",
     lambda d: _add(d, {"parameterId": "k", "integerValueSpec": {"minValue": 0, "maxValue": 9},
                        "scaleType": "UNIT_REVERSE_LOG_SCALE"}),
     "studySpec.parameters[1].integerValueSpec.minValue", "> 0"),
    ("log discrete from 0",
     lambda d: _add(d, {"parameterId": "k", "discreteValueSpec": {"values": [0, 1, 2]},
                        "scaleType": "UNIT_LOG_SCALE"}),
     "studySpec.parameters[1].discreteValueSpec.values[0]", "> 0"),
    ("fractional integer",
     lambda d: _add(d, {"parameterId": "k", "integerValueSpec": {"minValue": 1.5,
                                                                 "maxValue": 4}}),
     "studySpec.parameters[1].integerValueSpec.minValue", "must be an integer"),
    ("two value specs", lambda d: _param(d).update(integerValueSpec={"minValue": 1,
                                                                     "maxValue": 2}),
     "studySpec.parameters[0].integerValueSpec", "exactly one value spec"),
    ("no value spec", lambda d: _param(d).pop("doubleValueSpec"), "studySpec.parameters[0]",
     "needs exactly one of doubleValueSpec"),
    ("no parameterId", lambda d: _param(d).pop("parameterId"),
     "studySpec.parameters[0].parameterId", "required"),
    ("space in parameterId", lambda d: _param(d).update(parameterId="learning rate"),
     "studySpec.parameters[0].parameterId", "whitespace"),
    ("duplicate parameterId", lambda d: _add(d, dict(BASE["studySpec"]["parameters"][0])),
     "studySpec.parameters[1].parameterId", "duplicate parameterId 'x'"),
    ("discrete not increasing",
     lambda d: _add(d, {"parameterId": "b", "discreteValueSpec": {"values": [64, 32]}}),
     "studySpec.parameters[1].discreteValueSpec.values[1]", "increasing order"),
    ("discrete too close",
     lambda d: _add(d, {"parameterId": "b", "discreteValueSpec": {"values": [1, 1 + 1e-12]}}),
     "studySpec.parameters[1].discreteValueSpec.values[1]", "repeats the value 1.0"),
    ("discrete repeated",
     lambda d: _add(d, {"parameterId": "b", "discreteValueSpec": {"values": [16, 32, 32]}}),
     "studySpec.parameters[1].discreteValueSpec.values[2]", "repeats the value 32.0"),
    ("too many discrete values",
     lambda d: _add(d, {"parameterId": "b", "discreteValueSpec": {"values": list(range(1001))}}),
     "studySpec.parameters[1].discreteValueSpec.values", "at most 1000"),
    ("no categories",
     lambda d: _add(d, {"parameterId": "c", "categoricalValueSpec": {"values": []}}),
     "studySpec.parameters[1].categoricalValueSpec.values", "at least one value"),
    ("repeated category",
     lambda d: _add(d, {"parameterId": "c", "categoricalValueSpec": {"values": ["a", "a"]}}),
     "studySpec.parameters[1].categoricalValueSpec.values[1]", "repeats"),
    ("scale on a category", lambda d: _add(d, {**OPT, "scaleType": "UNIT_LINEAR_SCALE"}),
     "studySpec.parameters[1].scaleType", "unset for a CATEGORICAL"),
    ("grid with a DOUBLE", lambda d: d["studySpec"].update(algorithm="GRID_SEARCH"),
     "studySpec.parameters[0].doubleValueSpec", "GRID_SEARCH (from studySpec.algorithm)"),
    ("grid with a nested DOUBLE",
     lambda d: (d["studySpec"].update(algorithm="GRID_SEARCH",
                                      parameters=[copy.deepcopy(OPT)]),
                _child(_param(d), "parentCategoricalValues", ["sgd"])),
     "studySpec.parameters[0].conditionalParameterSpecs[0].parameterSpec.doubleValueSpec",
     "'momentum' is DOUBLE"),
    ("condition outside the categories",
     lambda d: (_add(d, OPT), _child(_param(d, 1), "parentCategoricalValues", ["nadam"])),
     "studySpec.parameters[1].conditionalParameterSpecs[0].parentCategoricalValues.values[0]",
     "'nadam' is not among the values of 'optimizer'"),
    ("condition outside the integer range",
     lambda d: (_add(d, UNITS), _child(_param(d, 1), "parentIntValues", [8, 128])),
     "studySpec.parameters[1].conditionalParameterSpecs[0].parentIntValues.values[1]",
     "outside the range"),
    ("condition outside the discrete values",
     lambda d: (_add(d, BATCH), _child(_param(d, 1), "parentDiscreteValues", [48])),
     "studySpec.parameters[1].conditionalParameterSpecs[0].parentDiscreteValues.values[0]",
     "not among the values"),
    ("condition of the wrong kind",
     lambda d: (_add(d, OPT), _child(_param(d, 1), "parentIntValues", [1])),
     "studySpec.parameters[1].conditionalParameterSpecs[0].parentIntValues",
     "use parentCategoricalValues"),
    ("two conditions",
     lambda d: (_add(d, OPT), _child(_param(d, 1), "parentCategoricalValues", ["sgd"]),
                _param(d, 1)["conditionalParameterSpecs"][0].update(
                    parentIntValues={"values": [1]})),
     "studySpec.parameters[1].conditionalParameterSpecs[0].parentIntValues",
     "give one parent condition"),
    ("no condition",
     lambda d: (_add(d, OPT), _param(d, 1).update(
         conditionalParameterSpecs=[{"parameterSpec": copy.deepcopy(MOMENTUM)}])),
     "studySpec.parameters[1].conditionalParameterSpecs[0]", "needs exactly one of parent"),
    ("child of a DOUBLE", lambda d: _child(_param(d), "parentDiscreteValues", [0.5]),
     "studySpec.parameters[0].conditionalParameterSpecs[0]", "DOUBLE parameter ('x')"),
    ("same child id, overlapping conditions",
     lambda d: (_add(d, OPT), _child(_param(d, 1), "parentCategoricalValues", ["sgd"]),
                _child(_param(d, 1), "parentCategoricalValues", ["adam", "sgd"])),
     "studySpec.parameters[1].conditionalParameterSpecs[1]", "disjoint"),
    ("child id repeats a top-level id",
     lambda d: (_add(d, OPT), _child(_param(d, 1), "parentCategoricalValues", ["sgd"],
                                     child={**MOMENTUM, "parameterId": "x"})),
     "studySpec.parameters[1].conditionalParameterSpecs[0].parameterSpec.parameterId",
     "duplicate parameterId 'x'"),
    ("no metrics", lambda d: d["studySpec"].update(metrics=[]), "studySpec.metrics",
     "needs at least one metric"),
    ("space in metricId", lambda d: d["studySpec"]["metrics"][0].update(metricId="val acc"),
     "studySpec.metrics[0].metricId", "whitespace"),
    ("duplicate metricId",
     lambda d: d["studySpec"]["metrics"].append({"metricId": "score", "goal": "MINIMIZE"}),
     "studySpec.metrics[1].metricId", "duplicate metricId"),
    ("no parameters", lambda d: d["studySpec"].update(parameters=[]), "studySpec.parameters",
     "at least one parameter"),
    ("two stopping specs",
     lambda d: d["studySpec"].update(medianAutomatedStoppingSpec={},
                                     decayCurveStoppingSpec={}),
     "studySpec.decayCurveStoppingSpec", "only one of"),
    ("v1beta1 field", lambda d: d["studySpec"].update(transferLearningConfig={}),
     "studySpec.transferLearningConfig", "v1beta1"),
    ("failures above trials", lambda d: d.update(maxFailedTrialCount=5),
     "maxFailedTrialCount", "(5) must not exceed maxTrialCount (4)"),
    ("negative failures", lambda d: d.update(maxFailedTrialCount=-1), "maxFailedTrialCount",
     "0 (unset) or more"),
    ("negative trials", lambda d: d.update(maxTrialCount=-1), "maxTrialCount",
     "0 (unset) or more"),
    ("count beyond int32", lambda d: d.update(parallelTrialCount=2 ** 31), "parallelTrialCount",
     "int32"),
    ("label with upper case", lambda d: d.update(labels={"team": "ML"}), "labels.team",
     "lower-case letters"),
    ("label key with a space", lambda d: d.update(labels={"my team": "ml"}), "labels.my team",
     "lower-case letters"),
    ("label value too long", lambda d: d.update(labels={"team": "m" * 64}), "labels.team",
     "at most 63"),
    ("label key from a digit", lambda d: d.update(labels={"1team": "ml"}), "labels.1team",
     "start with a lower-case letter"),
    ("typo in an nfs mount", lambda d: _pool(d).update(
        nfsMounts=[{"server": "10.0.0.2", "pth": "/share", "mountPoint": "data"}]),
     f"{POOL0}.nfsMounts[0].pth", "did you mean path"),
    ("bad reservation affinity", lambda d: _pool(d)["machineSpec"].update(
        reservationAffinity={"reservationAffinityType": "ANY"}),
     f"{POOL0}.machineSpec.reservationAffinity.reservationAffinityType", "must be one of"),
    ("unknown accelerator", lambda d: _pool(d)["machineSpec"].update(
        acceleratorType="NVIDIA_TESLA_A10", acceleratorCount=1),
     f"{POOL0}.machineSpec.acceleratorType", "must be one of"),
    ("long display name", lambda d: d.update(displayName="x" * 129), "displayName",
     "1 to 128"),
    ("legacy key beside studySpec", lambda d: d.update(trainingInput={}), "trainingInput",
     "legacy"),
    ("no trial job", lambda d: d.pop("trialJobSpec"), "trialJobSpec", "required"),
    ("no pools", lambda d: d["trialJobSpec"].update(workerPoolSpecs=[]),
     "trialJobSpec.workerPoolSpecs", "primary pool"),
    ("container and package", lambda d: _pool(d).update(
        pythonPackageSpec={"executorImageUri": "i", "pythonModule": "m"}),
     POOL0, "exactly one of containerSpec, pythonPackageSpec"),
    ("no machine type", lambda d: _pool(d).pop("machineSpec"),
     f"{POOL0}.machineSpec.machineType", "required"),
    ("no image", lambda d: _pool(d)["containerSpec"].pop("imageUri"),
     f"{POOL0}.containerSpec.imageUri", "required"),
    ("package without module", lambda d: (_pool(d).pop("containerSpec"), _pool(d).update(
        pythonPackageSpec={"executorImageUri": "i"})),
     f"{POOL0}.pythonPackageSpec.pythonModule", "required"),
    ("TPU", lambda d: _pool(d)["machineSpec"].update(acceleratorType="TPU_V3"),
     f"{POOL0}.machineSpec.acceleratorType", "do not support TPUs"),
    ("accelerator count alone", lambda d: _pool(d)["machineSpec"].update(acceleratorCount=1),
     f"{POOL0}.machineSpec.acceleratorCount", "needs an acceleratorType"),
    ("two chiefs", lambda d: _pool(d).update(replicaCount=2), f"{POOL0}.replicaCount",
     "must be 1 for the primary pool"),
    ("bad timeout", lambda d: d["trialJobSpec"].update(scheduling={"timeout": "1h"}),
     "trialJobSpec.scheduling.timeout", "duration in seconds"),
    ("args not strings", lambda d: _pool(d)["containerSpec"].update(args={"epochs": 3}),
     f"{POOL0}.containerSpec.args[0]", "must be a string"),
]


@pytest.mark.parametrize("mutate,path,words", [c[1:] for c in VERTEX_CASES],
                         ids=[c[0] for c in VERTEX_CASES])
def test_vertex_rule(mutate, path, words):
    with pytest.raises(S.SpecError) as error:
        S.parse(_with(mutate))
    assert error.value.path == path
    assert words in error.value.message
    assert "\n" not in str(error.value)


LEGACY = {"trainingInput": {"scaleTier": "BASIC", "hyperparameters": {
    "goal": "MAXIMIZE", "maxTrials": 4, "maxParallelTrials": 2,
    "hyperparameterMetricTag": "accuracy",
    "params": [{"parameterName": "lr", "type": "DOUBLE", "minValue": 0.001, "maxValue": 0.1,
                "scaleType": "UNIT_LOG_SCALE"}]}}}
HP = "trainingInput.hyperparameters"


def _hp(doc):
    return doc["trainingInput"]["hyperparameters"]


LEGACY_CASES = [
    ("population based training", lambda d: _hp(d).update(algorithm="POPULATION_BASED_TRAINING"),
     f"{HP}.algorithm", "must be one of ALGORITHM_UNSPECIFIED, GRID_SEARCH, RANDOM_SEARCH"),
    ("no type", lambda d: _hp(d)["params"][0].pop("type"), f"{HP}.params[0].type", "required"),
    ("unspecified type", lambda d: _hp(d)["params"][0].update(type="PARAMETER_TYPE_UNSPECIFIED"),
     f"{HP}.params[0].type", "required"),
    ("fractional INTEGER bound",
     lambda d: _hp(d)["params"].append({"parameterName": "n", "type": "INTEGER",
                                        "minValue": 1.5, "maxValue": 4}),
     f"{HP}.params[1].minValue", "whole number"),
    ("typo in a param", lambda d: _hp(d)["params"][0].update(parameterNmae="lr"),
     f"{HP}.params[0].parameterNmae", "did you mean parameterName"),
    ("failures above trials", lambda d: _hp(d).update(maxFailedTrials=9),
     f"{HP}.maxFailedTrials", "must not exceed maxTrials (4)"),
    ("number as a category",
     lambda d: _hp(d)["params"].append({"parameterName": "units", "type": "CATEGORICAL",
                                        "categoricalValues": ["64", 128]}),
     f"{HP}.params[1].categoricalValues[1]", "quote it"),
    ("typo in legacy scheduling",
     lambda d: d["trainingInput"].update(scheduling={"maxRuningTime": "3600s"}),
     "trainingInput.scheduling.maxRuningTime", "did you mean maxRunningTime"),
    ("GPU count without a type",
     lambda d: d["trainingInput"].update(masterConfig={"acceleratorConfig": {"count": 2}}),
     "trainingInput.masterConfig.acceleratorConfig.count", "needs a type"),
    ("TPU", lambda d: d["trainingInput"].update(
        masterConfig={"acceleratorConfig": {"count": 8, "type": "TPU_V3"}}),
     "trainingInput.masterConfig.acceleratorConfig.type", "do not support TPUs"),
    ("grid with a DOUBLE", lambda d: _hp(d).update(algorithm="grid_search"),
     f"{HP}.params[0].type", "GRID_SEARCH"),
    ("discrete not increasing",
     lambda d: _hp(d)["params"].append({"parameterName": "b", "type": "DISCRETE",
                                        "discreteValues": [8, 4]}),
     f"{HP}.params[1].discreteValues[1]", "increasing order"),
    ("log from 0", lambda d: _hp(d)["params"][0].update(minValue=0),
     f"{HP}.params[0].minValue", "> 0"),
    ("duplicate name", lambda d: _hp(d)["params"].append(dict(_hp(d)["params"][0])),
     f"{HP}.params[1].parameterName", "duplicate parameterName 'lr'"),
    ("no hyperparameters", lambda d: d["trainingInput"].pop("hyperparameters"), HP,
     "required"),
    ("unknown trainingInput key", lambda d: d["trainingInput"].update(masterTyp="x"),
     "trainingInput.masterTyp", "did you mean masterType"),
]


@pytest.mark.parametrize("mutate,path,words", [c[1:] for c in LEGACY_CASES],
                         ids=[c[0] for c in LEGACY_CASES])
def test_legacy_rule(mutate, path, words):
    with pytest.raises(S.SpecError) as error:
        S.parse(_with(mutate, LEGACY))
    assert error.value.path == path
    assert words in error.value.message


def test_duplicate_yaml_keys_are_refused(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("maxTrialCount: 2\nparallelTrialCount: 1\nmaxTrialCount: 3\n")
    with pytest.raises(S.SpecError, match="line 3: duplicate key 'maxTrialCount'"):
        S.read_document(str(path))


def test_utf8_with_a_bom_is_read(tmp_path):
    """What PowerShell's `Set-Content -Encoding utf8` writes, the fix our UTF-16 error names."""
    path = tmp_path / "bom.yaml"
    path.write_bytes(yaml.safe_dump(BASE).encode("utf-8-sig"))
    assert S.read_document(str(path)) == BASE


def test_broken_yaml_names_the_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("studySpec:\n  metrics: [\n")
    with pytest.raises(S.SpecError, match=r"not valid YAML: line \d+, column \d+"):
        S.read_document(str(path))


# -- configs that must pass -------------------------------------------------------------------

# The shape of the Vertex AI docs' example: a Python package on a prebuilt image, int64 values
# as strings (as the API returns them), nested conditionals on INTEGER and DISCRETE parents.
DOCS_SHAPE = """
studySpec:
  metrics:
  - metricId: accuracy
    goal: MAXIMIZE
  parameters:
  - parameterId: num_layers
    integerValueSpec: {minValue: "1", maxValue: "3"}
    scaleType: UNIT_LINEAR_SCALE
    conditionalParameterSpecs:
    - parentIntValues: {values: ["2", 3]}
      parameterSpec:
        parameterId: units
        discreteValueSpec: {values: [32, 64, 128]}
        scaleType: UNIT_LOG_SCALE
        conditionalParameterSpecs:
        - parentDiscreteValues: {values: [128]}
          parameterSpec:
            parameterId: dropout
            doubleValueSpec: {minValue: 0.1, maxValue: 0.5}
  - parameterId: learning_rate
    doubleValueSpec: {minValue: 1e-4, maxValue: 1e-1}
    scaleType: UNIT_LOG_SCALE
  - parameterId: decay
    doubleValueSpec: {minValue: 0.5, maxValue: 0.999}
    scaleType: UNIT_REVERSE_LOG_SCALE
  - parameterId: optimizer
    categoricalValueSpec: {values: [adam, sgd]}
  algorithm: ALGORITHM_UNSPECIFIED
  measurementSelectionType: BEST_MEASUREMENT
  decayCurveStoppingSpec: {useElapsedDuration: true}
maxTrialCount: 20
parallelTrialCount: 5
maxFailedTrialCount: 3
trialJobSpec:
  workerPoolSpecs:
  - machineSpec:
      machineType: n1-standard-8
      acceleratorType: NVIDIA_TESLA_T4
      acceleratorCount: 1
    replicaCount: "1"
    pythonPackageSpec:
      executorImageUri: us-docker.pkg.dev/vertex-ai/training/tf-gpu.2-17.py310:latest
      packageUris: [gs://bucket/trainer-0.1.tar.gz]
      pythonModule: trainer.task
      args: [--epochs=5]
      env: [{name: DATA, value: gs://b/d}, {name: OUT, value: "$(DATA)/out"}]
"""

# What the project's submit script renders: a worker pool, an empty placeholder, scheduling,
# output directory, labels; the single-metric shorthand (a mapping, not a list).
RENDERED_SHAPE = """
displayName: hpt-1
labels: {team: ml}
encryptionSpec: {kmsKeyName: projects/p/locations/l/keyRings/r/cryptoKeys/k}
studySpec:
  metrics: {metricId: val_accuracy, goal: MAXIMIZE}
  parameters:
  - parameterId: lr
    doubleValueSpec: {minValue: 0.001, maxValue: 0.1}
    scaleType: SCALE_TYPE_UNSPECIFIED
  medianAutomatedStoppingSpec: {}
  observationNoise: HIGH
maxTrialCount: 4
parallelTrialCount: 2
trialJobSpec:
  baseOutputDirectory: {outputUriPrefix: gs://b/hpt-1/}
  scheduling: {timeout: 7200s, strategy: SPOT, restartJobOnWorkerRestart: false}
  serviceAccount: sa@p.iam.gserviceaccount.com
  workerPoolSpecs:
  - machineSpec: {machineType: n1-standard-4}
    replicaCount: 1
    diskSpec: {bootDiskType: pd-ssd, bootDiskSizeGb: 100}
    containerSpec: {imageUri: us-docker.pkg.dev/p/r/trainer:cpu, args: [--epochs=3]}
  - machineSpec: {machineType: n1-standard-4}
    replicaCount: 2
    containerSpec: {imageUri: us-docker.pkg.dev/p/r/trainer:cpu, args: [--epochs=3]}
  - {}
"""


def test_docs_shape():
    job = S.parse(yaml.safe_load(DOCS_SHAPE))
    layers, lr, decay, optimizer = job.parameters
    assert (layers.type, layers.min, layers.max) == (S.INTEGER, 1, 3)
    (units_child,) = layers.children
    assert units_child.parent_values == (2, 3)
    units = units_child.parameter
    assert units.values == (32.0, 64.0, 128.0) and units.scale == S.LOG
    assert units.children[0].parent_values == (128.0,)
    assert lr.min == pytest.approx(1e-4)  # PyYAML reads 1e-4 as a string; proto JSON allows it
    assert decay.scale == S.REVERSE_LOG
    assert job.measurement == S.BEST and job.stopping.rule == "decay_curve"
    assert job.stopping.use_elapsed is True
    assert (job.max_trial_count, job.parallel_trial_count, job.max_failed_trial_count) == (
        20, 5, 3)
    assert job.trial_job.argv[1:] == ("-m", "trainer.task", "--epochs=5")
    assert dict(job.trial_job.env) == {"DATA": "gs://b/d", "OUT": "gs://b/d/out"}
    assert job.parameter_ids() == ["num_layers", "units", "dropout", "learning_rate", "decay",
                                   "optimizer"]


def test_rendered_shape():
    job = S.parse(yaml.safe_load(RENDERED_SHAPE))
    assert job.metric == "val_accuracy" and job.parameters[0].scale is None
    assert job.stopping.rule == "median" and job.stopping.use_elapsed is False
    assert job.trial_job.extra_pools == 1
    assert job.trial_job.argv[1:] == ("-m", "trainer.task", "--epochs=3")
    assert any("observationNoise" in note for note in job.notes)
    assert any("only the primary pool runs locally" in note for note in job.notes)


def test_defaults_as_gcloud_applies_them():
    doc = copy.deepcopy(BASE)
    del doc["maxTrialCount"], doc["parallelTrialCount"]
    doc["studySpec"]["metrics"][0]["goal"] = "GOAL_TYPE_UNSPECIFIED"
    job = S.parse(doc)
    assert (job.max_trial_count, job.parallel_trial_count, job.max_failed_trial_count) == (1, 1, 0)
    assert job.goal == S.MAXIMIZE and job.measurement == S.LAST
    assert job.algorithm == S.BAYESIAN
    assert sum("gcloud uses 1" in note for note in job.notes) == 2


def test_default_value_is_noted_and_ignored():
    doc = _with(lambda d: _param(d)["doubleValueSpec"].update(defaultValue=0.5))
    job = S.parse(doc)
    assert any("defaultValue" in n and "ignore" in n for n in job.notes)


def test_same_child_id_with_disjoint_conditions():
    doc = _with(lambda d: (_add(d, {**OPT, "categoricalValueSpec": {
        "values": ["adam", "sgd", "rmsprop"]}}),
        _child(_param(d, 1), "parentCategoricalValues", ["sgd"]),
        _child(_param(d, 1), "parentCategoricalValues", ["rmsprop"],
               child={**MOMENTUM, "doubleValueSpec": {"minValue": 0.5, "maxValue": 0.99}})))
    job = S.parse(doc)
    optimizer = job.parameters[1]
    assert [c.parameter.id for c in optimizer.children] == ["momentum", "momentum"]
    (active,) = optimizer.active_children("rmsprop")
    assert (active.id, active.min) == ("momentum", 0.5)
    assert optimizer.active_children("adam") == []
    assert job.parameter_ids() == ["x", "optimizer", "momentum"]


def test_overrides_apply_before_the_rules():
    job = S.parse(config(maxFailedTrialCount=2), {"maxTrialCount": 3, "parallelTrialCount": 3,
                                                  "algorithm": S.RANDOM})
    assert (job.max_trial_count, job.parallel_trial_count, job.algorithm) == (3, 3, S.RANDOM)
    with pytest.raises(S.SpecError) as error:
        S.parse(config(maxFailedTrialCount=2), {"maxTrialCount": 1})
    assert error.value.path == "maxFailedTrialCount"
    with pytest.raises(S.SpecError, match=r"GRID_SEARCH \(from --algorithm\)"):
        S.parse(config(), {"algorithm": S.GRID})


def test_container_command_replaces_the_entrypoint():
    job = S.parse(config())
    assert job.trial_job.argv[1:] == (BASE["trialJobSpec"]["workerPoolSpecs"][0]
                                      ["containerSpec"]["command"][1], "--steps=2", "--sleep=0.1")
    assert job.trial_job.argv[0].endswith("python") or "python" in job.trial_job.argv[0]


def test_parameter_values_as_vertex_passes_them():
    job = S.parse(yaml.safe_load(DOCS_SHAPE))
    layers, lr, _, optimizer = job.parameters
    assert layers.format(2) == "2"
    assert layers.children[0].parameter.format(64.0) == "64.0"  # DISCRETE as a float
    assert lr.format(0.001) == "0.001"
    assert optimizer.format("sgd") == "sgd"


# -- legacy configs ---------------------------------------------------------------------------

# cloudml-samples census/estimator shape: lower-case type, nothing but the study.
CENSUS_SHAPE = """
trainingInput:
    hyperparameters:
        goal: MAXIMIZE
        maxTrials: 10
        maxParallelTrials: 2
        params:
          - parameterName: embedding-size
            type: integer
            minValue: 4
            maxValue: 128
            scaleType: UNIT_LINEAR_SCALE
"""
# cloudml-samples pytorch hp_tuning shape: a metric tag, TRUE for early stopping.
PYTORCH_SHAPE = """
trainingInput:
  hyperparameters:
    goal: MAXIMIZE
    maxTrials: 10
    maxParallelTrials: 5
    hyperparameterMetricTag: my_metric_tag
    enableTrialEarlyStopping: TRUE
    params:
    - parameterName: lr
      type: DOUBLE
      minValue: 0.0001
      maxValue: 0.1
      scaleType: UNIT_LINEAR_SCALE
    - parameterName: momentum
      type: DOUBLE
      minValue: 0.0
      maxValue: 1.0
      scaleType: UNIT_LINEAR_SCALE
"""
# A legacy job with a Python package, cluster keys and every parameter type.
PACKAGE_SHAPE = """
jobId: census_hpt_1
trainingInput:
  scaleTier: CUSTOM
  masterType: complex_model_m
  runtimeVersion: "2.11"
  pythonVersion: "3.7"
  region: us-central1
  pythonModule: trainer.task
  packageUris: [gs://b/trainer.tar.gz]
  args: [--train-steps, "1000"]
  hyperparameters:
    goal: minimize
    maxTrials: 6
    maxFailedTrials: 2
    algorithm: RANDOM_SEARCH
    resumePreviousJobId: census_hpt_0
    params:
    - {parameterName: layers, type: INTEGER, minValue: 1.0, maxValue: 4.0, scaleType: NONE}
    - {parameterName: batch, type: DISCRETE, discreteValues: [16, 32, 64]}
    - {parameterName: activation, type: CATEGORICAL, categoricalValues: [relu, "5"]}
"""


def test_census_shape():
    job = S.parse(yaml.safe_load(CENSUS_SHAPE))
    assert job.dialect == "legacy" and job.metric == S.LEGACY_DEFAULT_METRIC
    (p,) = job.parameters
    assert (p.id, p.type, p.min, p.max) == ("embedding-size", S.INTEGER, 4, 128)
    assert (job.max_trial_count, job.parallel_trial_count) == (10, 2)
    assert job.trial_job.argv[1:] == ("-m", "trainer.task")


def test_pytorch_shape():
    job = S.parse(yaml.safe_load(PYTORCH_SHAPE))
    assert job.metric == "my_metric_tag"
    assert job.stopping.rule == "decay_curve"  # our mapping of enableTrialEarlyStopping


def test_package_shape():
    job = S.parse(yaml.safe_load(PACKAGE_SHAPE))
    layers, batch, activation = job.parameters
    assert (layers.min, layers.max, layers.scale) == (1, 4, None)
    assert activation.values == ("relu", "5")
    assert job.goal == S.MINIMIZE and job.algorithm == S.RANDOM
    assert job.display_name == "census_hpt_1"
    assert job.trial_job.argv[1:] == ("-m", "trainer.task", "--train-steps", "1000")
    assert any("resumePreviousJobId" in n for n in job.notes)
    assert any("complex_model_m" in n for n in job.notes)
    vertex = S.parse(job.document)  # the converted form passes the Vertex rules
    assert vertex.search_space() == job.search_space()
    pool = job.document["trialJobSpec"]["workerPoolSpecs"][0]
    assert pool["pythonPackageSpec"]["pythonModule"] == "trainer.task"
    assert pool["pythonPackageSpec"]["packageUris"] == ["gs://b/trainer.tar.gz"]


@pytest.mark.parametrize("path", ["hptuning_config.yaml", "tests/scripts/data/study.yaml"])
def test_the_projects_own_configs(path):
    job = S.load(str(ROOT / path))
    assert job.dialect == "vertex" and job.metric == "val_accuracy"
    assert S.local_problem(job) is None


def test_convex_stopping_is_valid_but_not_run_locally():
    job = S.parse(config(study={"convexAutomatedStoppingSpec": {"maxStepCount": 10}}))
    problem = S.local_problem(job)
    assert problem.path == "studySpec.convexAutomatedStoppingSpec"
    assert "not implemented by the local tuner" in problem.message


# -- what the user sees -----------------------------------------------------------------------

def test_validate_prints_one_line_and_exits_2(write_config):
    path = write_config(_with(lambda d: d["studySpec"]["metrics"][0].update(goal="maximize")))
    result = run_tuner("validate", path)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip() == (f"error: {path}: studySpec.metrics[0].goal: enum values "
                                     "are upper-case: write MAXIMIZE (gcloud rejects "
                                     "'maximize')")


def test_run_refuses_a_bad_config_before_writing_anything(write_config, tmp_path):
    path = write_config(_with(lambda d: _param(d).update(scaleType="UNIT_LOG_SCALE")))
    out = tmp_path / "study"
    result = run_tuner("run", path, "--output-dir", out)
    assert result.returncode == 2
    assert "studySpec.parameters[0].doubleValueSpec.minValue" in last_line(result.stderr)
    assert not out.exists()


def test_convert_writes_a_valid_vertex_file(tmp_path):
    legacy = tmp_path / "legacy.yaml"
    legacy.write_text(PACKAGE_SHAPE)
    out = tmp_path / "vertex.yaml"
    result = run_tuner("convert", legacy, "-o", out)
    assert result.returncode == 0, result.stderr
    assert "resumePreviousJobId" in result.stderr  # notes go to stderr
    doc = yaml.safe_load(out.read_text())
    assert doc["maxTrialCount"] == 6 and doc["maxFailedTrialCount"] == 2
    assert doc["studySpec"]["metrics"] == [{"metricId": S.LEGACY_DEFAULT_METRIC,
                                            "goal": "MINIMIZE"}]
    assert doc["studySpec"]["parameters"][0] == {
        "parameterId": "layers", "integerValueSpec": {"minValue": 1, "maxValue": 4}}
    validated = run_tuner("validate", out)
    assert validated.returncode == 0, validated.stderr
    again = run_tuner("convert", out)
    assert again.returncode == 2 and "already a Vertex config" in again.stderr


# A legacy job with GPUs, workers, a job dir, a time limit and fields Vertex has no place for.
GPU_CLUSTER_SHAPE = """
jobId: hpt_gpu
labels: {team: vision}
trainingInput:
  scaleTier: CUSTOM
  masterType: n1-standard-8
  masterConfig:
    imageUri: gcr.io/p/trainer:gpu
    acceleratorConfig: {count: 2, type: NVIDIA_TESLA_V100}
    diskConfig: {bootDiskType: pd-ssd, bootDiskSizeGb: 200}
    tpuTfVersion: "2.11"
  workerType: n1-standard-4
  workerCount: 3
  workerConfig:
    acceleratorConfig: {count: 1, type: NVIDIA_TESLA_T4}
  evaluatorType: complex_model_m
  evaluatorCount: 1
  args: [--epochs=10]
  jobDir: gs://b/hpt_gpu
  serviceAccount: sa@p.iam.gserviceaccount.com
  network: projects/1/global/networks/default
  enableWebAccess: true
  encryptionConfig: {kmsKeyName: projects/p/locations/l/keyRings/r/cryptoKeys/k}
  scheduling: {maxRunningTime: 7200s, maxWaitTime: 600s}
  runtimeVersion: "2.11"
  region: us-central1
  hyperparameters:
    goal: MAXIMIZE
    hyperparameterMetricTag: val_accuracy
    maxTrials: 4
    params:
    - {parameterName: lr, type: DOUBLE, minValue: 0.001, maxValue: 0.1}
"""


def test_convert_carries_every_legacy_field_with_a_vertex_equivalent():
    job = S.parse(yaml.safe_load(GPU_CLUSTER_SHAPE))
    doc = job.document
    chief, workers, servers, evaluators = doc["trialJobSpec"]["workerPoolSpecs"]
    assert chief == {"machineSpec": {"machineType": "n1-standard-8",
                                     "acceleratorType": "NVIDIA_TESLA_V100",
                                     "acceleratorCount": 2},
                     "replicaCount": 1,
                     "containerSpec": {"imageUri": "gcr.io/p/trainer:gpu",
                                       "args": ["--epochs=10"]},
                     "diskSpec": {"bootDiskType": "pd-ssd", "bootDiskSizeGb": 200}}
    assert workers["machineSpec"] == {"machineType": "n1-standard-4",
                                      "acceleratorType": "NVIDIA_TESLA_T4",
                                      "acceleratorCount": 1}
    assert workers["replicaCount"] == 3
    assert workers["containerSpec"]["imageUri"] == "gcr.io/p/trainer:gpu"  # the master's
    assert servers == {}  # pool 2 stays an empty placeholder: evaluators are pool 3
    assert (evaluators["machineSpec"]["machineType"], evaluators["replicaCount"]) == (
        S.PLACEHOLDER_MACHINE, 1)
    spec = doc["trialJobSpec"]
    assert spec["baseOutputDirectory"] == {"outputUriPrefix": "gs://b/hpt_gpu"}
    assert spec["scheduling"] == {"timeout": "7200s"}
    assert (spec["serviceAccount"], spec["network"], spec["enableWebAccess"]) == (
        "sa@p.iam.gserviceaccount.com", "projects/1/global/networks/default", True)
    assert doc["labels"] == {"team": "vision"}
    assert doc["encryptionSpec"] == {
        "kmsKeyName": "projects/p/locations/l/keyRings/r/cryptoKeys/k"}
    dropped = " ".join(job.notes)
    for name in ("tpuTfVersion", "scheduling.maxWaitTime", "runtimeVersion", "region",
                 "evaluatorType 'complex_model_m'", "jobDir"):
        assert name in dropped
    assert "scaleTier" not in dropped  # CUSTOM is what Vertex pools are
    vertex = S.parse(doc)  # the converted form passes the Vertex rules as it is
    assert vertex.trial_job.extra_pools == 2 and vertex.search_space() == job.search_space()


def test_several_metrics_run_here_but_not_with_what_vertex_leaves_undocumented():
    two = [{"metricId": "score", "goal": "MAXIMIZE"}, {"metricId": "cost", "goal": "MINIMIZE"}]
    job = S.parse(config(study={"metrics": two}))
    assert job.metrics == (S.Metric("score", S.MAXIMIZE), S.Metric("cost", S.MINIMIZE))
    assert S.local_problem(job) is None  # LAST_MEASUREMENT, no stopping rule: it runs
    assert job.search_space()["metrics"] == [["score", S.MAXIMIZE], ["cost", S.MINIMIZE]]
    assert "metrics" not in S.parse(config()).search_space()  # one metric: as it always was
    for change, path in [({"measurementSelectionType": "BEST_MEASUREMENT"},
                          "studySpec.measurementSelectionType"),
                         ({"medianAutomatedStoppingSpec": {}},
                          "studySpec.medianAutomatedStoppingSpec"),
                         ({"decayCurveStoppingSpec": {}}, "studySpec.decayCurveStoppingSpec"),
                         ({"metrics": [two[0], {**two[1], "safetyConfig": {}}]},
                          "studySpec.metrics[1].safetyConfig")]:
        problem = S.local_problem(S.parse(config(study={"metrics": two, **change})))
        assert problem.path == path
    one_best = S.parse(config(study={"measurementSelectionType": "BEST_MEASUREMENT"}))
    assert S.local_problem(one_best) is None


def test_output_only_fields_are_one_note():
    described = config(name="projects/1/locations/l/hyperparameterTuningJobs/2",
                       state="JOB_STATE_FAILED", createTime="2026-11-30T09:12:44Z",
                       error={"code": 3, "message": "bad"}, trials=[{"id": "1"}])
    job = S.parse(described)
    (note,) = [n for n in job.notes if "output-only" in n]
    assert note.startswith("name, state, createTime, error, trials: output-only")
    assert "state" not in job.document and "trials" not in job.document


def test_null_and_zero_mean_unset():
    job = S.parse(config(maxTrialCount=0, parallelTrialCount=None, maxFailedTrialCount=None,
                         displayName=None))
    assert (job.max_trial_count, job.parallel_trial_count, job.max_failed_trial_count) == (1, 1, 0)
    assert job.display_name is None
    assert sum("gcloud uses 1" in n for n in job.notes) == 2


def test_one_value_where_the_api_has_a_list():
    doc = config(args="--epochs=3")
    doc["studySpec"]["parameters"] = {"parameterId": "opt",
                                      "categoricalValueSpec": {"values": "adam"}}
    job = S.parse(doc)
    assert job.trial_job.argv[-1] == "--epochs=3"
    assert job.parameters[0].values == ("adam",)
