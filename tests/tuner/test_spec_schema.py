"""The hand-written schemas in tuner/spec.py are the APIs', field by field.

Vertex v1's message descriptors ship in google-cloud-aiplatform, AI Platform Training v1's
discovery document in google-api-python-client (test dependencies; the tuner imports neither).
Each walk starts at the job message and follows every message field: a field the API lacks or
has, a type, a repeated or map field, an enum value (the accelerator lists too) that differs
fails with the field's path.
"""
import json

import pytest
from google.cloud.aiplatform_v1.types import HyperparameterTuningJob
from google.protobuf.descriptor import FieldDescriptor
from googleapiclient.discovery_cache import get_static_doc

from tuner import spec as S

SCALARS = {
    FieldDescriptor.TYPE_STRING: S._string, FieldDescriptor.TYPE_BOOL: S._boolean,
    FieldDescriptor.TYPE_DOUBLE: S._double, FieldDescriptor.TYPE_FLOAT: S._double,
    FieldDescriptor.TYPE_INT32: S._int32, FieldDescriptor.TYPE_INT64: S._int64,
}
# Well-known types, as their proto JSON form is written in YAML.
WELL_KNOWN = {
    "google.protobuf.Duration": S._duration, "google.protobuf.Timestamp": S._timestamp,
    "google.protobuf.BoolValue": S._boolean, "google.protobuf.Int32Value": S._int32,
    "google.protobuf.Int64Value": S._int64, "google.protobuf.DoubleValue": S._double,
    "google.protobuf.StringValue": S._string,
}


def differences(message, descriptor, path="", seen=None) -> list[str]:
    """Where a hand-written `_Message` and a message descriptor disagree."""
    seen = set() if seen is None else seen
    if (id(message), descriptor.full_name) in seen:
        return []  # a recursive message (ParameterSpec), already compared
    seen.add((id(message), descriptor.full_name))
    fields = {f.json_name: f for f in descriptor.fields}
    out = [f"{path}{name}: not in {descriptor.full_name}"
           for name in [*message.fields, *message.output_only] if name not in fields]
    out += [f"{path}{name}: in {descriptor.full_name}, missing from the schema"
            for name in fields if name not in message.fields and name not in message.output_only]
    for name, check in message.fields.items():
        if name in fields:
            out += _field_differences(check, fields[name], f"{path}{name}", seen)
    return out


def _field_differences(check, field, path, seen) -> list[str]:
    kind = field.message_type
    if kind is not None and kind.GetOptions().map_entry:
        if not isinstance(check, S._Map):
            return [f"{path}: is a map in the API"]
        return _value_differences(check.item, kind.fields_by_name["value"], f"{path}{{}}", seen)
    if field.is_repeated:
        if not isinstance(check, S._List):
            return [f"{path}: is repeated in the API"]
        return _value_differences(check.item, field, f"{path}[]", seen)
    if isinstance(check, (S._List, S._Map)):
        return [f"{path}: is a single value in the API"]
    return _value_differences(check, field, path, seen)


def _value_differences(check, field, path, seen) -> list[str]:
    if field.enum_type is not None:
        if not isinstance(check, S._Enum):
            return [f"{path}: is the enum {field.enum_type.full_name} in the API"]
        api = [value.name for value in field.enum_type.values]
        return ([f"{path}: enum values {sorted(set(check.names) ^ set(api))} differ from "
                 f"{field.enum_type.full_name}"] if sorted(check.names) != sorted(api) else [])
    kind = field.message_type
    if kind is not None and kind.full_name not in WELL_KNOWN:
        if not isinstance(check, S._Message):
            return [f"{path}: is the message {kind.full_name} in the API"]
        return differences(check, kind, f"{path}.", seen)
    expected = WELL_KNOWN[kind.full_name] if kind is not None else SCALARS[field.type]
    names = {id(v): k for k, v in vars(S).items()}
    return [] if check is expected else [f"{path}: the API's type needs {names[id(expected)]}"]


def test_the_vertex_schema_is_the_v1_api():
    assert differences(S.VERTEX_SCHEMA, HyperparameterTuningJob.pb().DESCRIPTOR) == []


# Drift the walk must catch: each edit makes the schema differ from the API in one way.
DRIFT = {
    "a field the API lacks": (lambda m: m.fields.update(retries=S._int32), "retries: not in"),
    "a field missing": (lambda m: m.fields.pop("labels"), "labels: in google"),
    "a wrong type": (lambda m: m.fields.update(maxTrialCount=S._int64),
                     "maxTrialCount: the API's type needs _int32"),
    "a list for a single value": (lambda m: m.fields.update(displayName=S._List(S._string)),
                                  "displayName: is a single value"),
    "an accelerator the API lacks": (
        lambda m: m.fields["trialJobSpec"].fields["workerPoolSpecs"].item.fields[
            "machineSpec"].fields.update(acceleratorType=S._Enum(*S._ACCELERATORS, "NVIDIA_X")),
        "acceleratorType: enum values ['NVIDIA_X']"),
    "a nested field missing": (
        lambda m: m.fields["trialJobSpec"].fields["workerPoolSpecs"].item.fields[
            "nfsMounts"].item.fields.pop("path"),
        "trialJobSpec.workerPoolSpecs[].nfsMounts[].path: in google"),
}


def _copy(check):
    """A deep copy of a schema that keeps the shared primitive checks and recursion."""
    memo = {}

    def copy(c):
        if id(c) in memo:
            return memo[id(c)]
        if isinstance(c, S._Message):
            memo[id(c)] = out = S._Message(output_only=c.output_only, hint=c.hint)
            out.fields.update({k: copy(v) for k, v in c.fields.items()})
            return out
        if isinstance(c, (S._List, S._Map)):
            return type(c)(copy(c.item))
        return c
    return copy(check)


@pytest.mark.parametrize("edit,words", DRIFT.values(), ids=list(DRIFT))
def test_the_walk_catches_drift(edit, words):
    schema = _copy(S.VERTEX_SCHEMA)
    edit(schema)
    found = differences(schema, HyperparameterTuningJob.pb().DESCRIPTOR)
    assert len(found) == 1 and words in found[0], found


# -- the legacy schema, against AI Platform Training's own discovery document ---------------

# google-api-python-client ships the ml v1 discovery document; its schema names and JSON types:
DISCOVERY_FORMATS = {("string", None): S._string, ("string", "byte"): S._string,
                     ("string", "int64"): S._int64, ("string", "google-duration"): S._duration,
                     ("string", "google-datetime"): S._timestamp, ("integer", "int32"): S._int32,
                     ("number", "double"): S._double, ("boolean", None): S._boolean}
# A batch prediction job's input: a tuning config that has it is refused as an unknown field.
NOT_FOR_TRAINING = {"predictionInput"}


def discovery_differences(message, name, schemas, path="", seen=None) -> list[str]:
    """Where a hand-written `_Message` and a discovery-document schema disagree."""
    seen = set() if seen is None else seen
    if (id(message), name) in seen:
        return []
    seen.add((id(message), name))
    properties = {k: v for k, v in schemas[name]["properties"].items()
                  if k not in NOT_FOR_TRAINING}
    out = [f"{path}{key}: not in {name}"
           for key in [*message.fields, *message.output_only] if key not in properties]
    out += [f"{path}{key}: in {name}, missing from the schema"
            for key in properties if key not in message.fields and key not in message.output_only]
    for key, check in message.fields.items():
        if key in properties:
            out += _property_differences(check, properties[key], schemas, f"{path}{key}", seen)
    return out


def _property_differences(check, prop, schemas, path, seen) -> list[str]:
    if "$ref" in prop:
        if not isinstance(check, S._Message):
            return [f"{path}: is the message {prop['$ref']} in the API"]
        return discovery_differences(check, prop["$ref"], schemas, f"{path}.", seen)
    if prop["type"] == "array":
        if not isinstance(check, S._List):
            return [f"{path}: is repeated in the API"]
        return _property_differences(check.item, prop["items"], schemas, f"{path}[]", seen)
    if prop["type"] == "object":
        if not isinstance(check, S._Map):
            return [f"{path}: is a map in the API"]
        return _property_differences(check.item, prop["additionalProperties"], schemas,
                                     f"{path}{{}}", seen)
    if "enum" in prop:
        if not isinstance(check, S._Enum):
            return [f"{path}: is an enum in the API"]
        return ([f"{path}: enum values {sorted(set(check.names) ^ set(prop['enum']))} differ"]
                if sorted(check.names) != sorted(prop["enum"]) else [])
    expected = DISCOVERY_FORMATS[prop["type"], prop.get("format")]
    names = {id(v): k for k, v in vars(S).items()}
    return [] if check is expected else [f"{path}: the API's type needs {names[id(expected)]}"]


def test_the_legacy_schema_is_the_ai_platform_v1_api():
    document = json.loads(get_static_doc("ml", "v1"))
    assert discovery_differences(S.LEGACY_SCHEMA, "GoogleCloudMlV1__Job",
                                 document["schemas"]) == []


def test_the_legacy_walk_catches_drift():
    schema = _copy(S.LEGACY_SCHEMA)
    schema.fields["trainingInput"].fields["hyperparameters"].fields.update(
        algorithm=S._Enum(S.BAYESIAN, S.GRID, S.RANDOM, "POPULATION_BASED_TRAINING"))
    found = discovery_differences(schema, "GoogleCloudMlV1__Job",
                                  json.loads(get_static_doc("ml", "v1"))["schemas"])
    assert found == ["trainingInput.hyperparameters.algorithm: enum values "
                     "['POPULATION_BASED_TRAINING'] differ"]
