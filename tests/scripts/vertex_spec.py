"""What Vertex AI would receive from a recorded gcloud command, and a check with Vertex's own types.

`custom_job_spec(argv, files)` rebuilds the CustomJobSpec that `gcloud ai custom-jobs create`
sends for the recorded argv, the way gcloud builds it (the --config YAML, then each
--worker-pool-spec replacing the YAML's pools, then --args and --python-package-uris applied to
every pool); tests/scripts/test_real_gcloud.py checks this mirror against gcloud itself.
`parse(message, document)` parses a document with google-cloud-aiplatform's aiplatform_v1
message types and no unknown field allowed, so a misspelt key or a bad enum value fails here as
it fails in the service.
"""
import yaml

POOL_KEYS = {
    "machine-type": ("machineSpec", "machineType"),
    "accelerator-type": ("machineSpec", "acceleratorType"),
    "accelerator-count": ("machineSpec", "acceleratorCount"),
    "replica-count": (None, "replicaCount"),
    "container-image-uri": ("containerSpec", "imageUri"),
    "executor-image-uri": ("pythonPackageSpec", "executorImageUri"),
    "python-module": ("pythonPackageSpec", "pythonModule"),
}


def gcloud_list(value):
    """gcloud's list syntax: comma-separated, or ^D^-prefixed to split on D instead."""
    if value.startswith("^") and value.count("^") >= 2:
        delimiter, rest = value[1:].split("^", 1)
        return rest.split(delimiter)
    return value.split(",")


def flag_values(argv, name):
    prefix = f"--{name}="
    return [a[len(prefix):] for a in argv if a.startswith(prefix)]


def worker_pool(value):
    pool = {}
    for item in gcloud_list(value):
        key, _, text = item.partition("=")
        parent, field = POOL_KEYS[key]  # an unknown key fails, as in gcloud
        target = pool.setdefault(parent, {}) if parent else pool
        target[field] = int(text) if field in ("acceleratorCount", "replicaCount") else text
    return pool


def custom_job_spec(argv, files):
    configs = flag_values(argv, "config")
    spec = yaml.safe_load(files[configs[0]]) if configs else {}
    pools = [worker_pool(v) for v in flag_values(argv, "worker-pool-spec")]
    if pools:
        spec["workerPoolSpecs"] = pools
    for values, field in ((flag_values(argv, "args"), "args"),
                          (flag_values(argv, "python-package-uris"), "packageUris")):
        if not values:
            continue
        items = gcloud_list(values[-1])
        for pool in spec["workerPoolSpecs"]:
            code = pool.get("containerSpec") or pool.get("pythonPackageSpec")
            if field == "args" or "pythonPackageSpec" in pool:
                code[field] = items
    return spec


def parse(message_name, document):
    """Parses `document` into aiplatform_v1's `message_name`; raises on any unknown field."""
    from google.cloud.aiplatform_v1 import types
    from google.protobuf import json_format

    message = getattr(types, message_name).pb()()
    json_format.ParseDict(document, message, ignore_unknown_fields=False)
    return message
