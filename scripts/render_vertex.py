"""Renders the YAML files that scripts/submit_*.sh hand to gcloud. Called by those scripts only.

    render_vertex.py custom-job-spec OUT --base-output-dir URI [--spot]
                     [--machine-type T --accelerator-type T --accelerator-count N]
    render_vertex.py hptuning IN OUT --display-name NAME --image-uri-cpu URI --image-uri-gpu URI
                     --base-output-dir URI [--machine-type T] [--accelerator-type T]
                     [--accelerator-count N] [--workers N] [--max-trials N] [--parallel-trials N]
                     [--max-failed-trials N] [--algorithm A] [--spot] [--arg ARG]...

The shell scripts have already checked every value's syntax; this file checks what needs the
YAML (counts against each other, arguments against the tuned parameters) and writes the result.
Exit 2 with one line on stderr for a problem in the input, as the scripts do.
"""
import argparse
import copy
import os
import sys

import yaml

from tuner.spec import machine_pairing_problem

DEFAULT_MACHINE_TYPE = "n1-standard-4"
DEFAULT_GPU_MACHINE_TYPE = "n1-standard-8"


class InputError(Exception):
    """A problem the user must fix; the message is one line."""


def _scheduling(spot):
    # Spot VMs can be preempted at any time. A preempted worker cannot rejoin a running
    # MultiWorkerMirroredStrategy job, so the whole job restarts and resumes from the
    # trainer's BackupAndRestore checkpoint.
    return {"strategy": "SPOT", "restartJobOnWorkerRestart": True} if spot else {}


def _output_dir(uri):
    return uri.rstrip("/") + "/"


def custom_job_spec(args):
    """The parts of a CustomJobSpec that gcloud has no flags for."""
    if args.accelerator_type:
        problem = machine_pairing_problem(args.machine_type, args.accelerator_type, args.accelerator_count)
        if problem:
            raise InputError(f"--machine-type/--accelerator-type/--accelerator-count: {problem}")
    spec = {"baseOutputDirectory": {"outputUriPrefix": _output_dir(args.base_output_dir)}}
    scheduling = _scheduling(args.spot)
    if scheduling:
        spec["scheduling"] = scheduling
    return spec


def _parameter_ids(parameters):
    for parameter in parameters or []:
        if not isinstance(parameter, dict):
            continue
        yield parameter.get("parameterId")
        for child in parameter.get("conditionalParameterSpecs") or []:
            if isinstance(child, dict):
                yield from _parameter_ids([child.get("parameterSpec")])


def _flag_name(arg):
    if not arg.startswith("--"):
        return None
    return arg[2:].split("=", 1)[0]


def _merge_args(existing, extra, tuned):
    names = set()
    for arg in extra:
        name = _flag_name(arg)
        if name is None:
            continue
        plain = name[2:] if name.startswith("no") and name[2:] in tuned else name
        if plain in tuned:
            raise InputError(
                f"trainer argument {arg}: --{plain} is a tuned parameter of this study, so Vertex "
                "passes its own value; drop the argument or the parameter")
        names.add(name)
    kept = [a for a in existing if _flag_name(a) not in names]
    return kept + list(extra)


def _count(doc, key, value, minimum):
    if value is not None:
        doc[key] = value
    current = doc.get(key)
    if current is not None and (not isinstance(current, int) or current < minimum):
        raise InputError(f"{key}={current!r}: must be a whole number >= {minimum}")


def hptuning(args):
    with open(args.input) as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict):
        raise InputError(f"{args.input}: expected a HyperparameterTuningJob mapping at the top level")
    if "trainingInput" in doc:
        raise InputError(f"{args.input}: a legacy AI Platform file (trainingInput); convert it first "
                         "with `python -m tuner convert`")
    doc = copy.deepcopy(doc)
    doc["displayName"] = args.display_name
    _count(doc, "maxTrialCount", args.max_trials, 1)
    _count(doc, "parallelTrialCount", args.parallel_trials, 1)
    _count(doc, "maxFailedTrialCount", args.max_failed_trials, 0)
    max_trials = doc.get("maxTrialCount", 1)
    if doc.get("parallelTrialCount", 1) > max_trials:
        raise InputError(f"parallelTrialCount={doc['parallelTrialCount']} is more than maxTrialCount={max_trials}")
    if doc.get("maxFailedTrialCount", 0) > max_trials:
        raise InputError(f"maxFailedTrialCount={doc['maxFailedTrialCount']} is more than maxTrialCount={max_trials}")

    study = doc.get("studySpec") if isinstance(doc.get("studySpec"), dict) else {}
    if args.algorithm:  # gcloud's spelling, e.g. grid-search -> GRID_SEARCH
        study["algorithm"] = args.algorithm.upper().replace("-", "_")
    tuned = {p for p in _parameter_ids(study.get("parameters")) if isinstance(p, str)}

    job = doc.setdefault("trialJobSpec", {})
    if not isinstance(job, dict):
        raise InputError("trialJobSpec: expected a mapping")
    pools = job.get("workerPoolSpecs")
    if isinstance(pools, dict):  # gcloud accepts one mapping where a list is expected
        pools = [pools]
    if not pools:
        pools = [{"containerSpec": {}}]
    pools = [p if isinstance(p, dict) else {} for p in pools]
    primary = pools[0]
    primary["replicaCount"] = 1  # pool 0 is the chief: exactly one replica
    if args.workers is not None:
        worker = copy.deepcopy(primary)
        worker["replicaCount"] = args.workers
        pools[1:2] = [worker]

    for pool in pools:
        if not pool:  # an empty placeholder keeps later pools at their index
            continue
        machine = pool.setdefault("machineSpec", {})
        if args.accelerator_type:
            machine["acceleratorType"] = args.accelerator_type
            machine["acceleratorCount"] = args.accelerator_count or 1
        if args.machine_type:
            machine["machineType"] = args.machine_type
        elif args.accelerator_type:  # the file's machine was chosen for its own accelerators
            machine["machineType"] = DEFAULT_GPU_MACHINE_TYPE
        elif not machine.get("machineType"):
            machine["machineType"] = (DEFAULT_GPU_MACHINE_TYPE if machine.get("acceleratorType")
                                      else DEFAULT_MACHINE_TYPE)

    gpu = bool(primary.get("machineSpec", {}).get("acceleratorType"))
    image = args.image_uri_gpu if gpu else args.image_uri_cpu
    for pool in pools:
        container = pool.get("containerSpec")
        if container is None:
            continue
        if not isinstance(container, dict):
            raise InputError("trialJobSpec.workerPoolSpecs[].containerSpec: expected a mapping")
        container["imageUri"] = image
        merged = _merge_args([str(a) for a in container.get("args") or []], args.arg, tuned)
        if merged:
            container["args"] = merged

    job["workerPoolSpecs"] = pools
    job["baseOutputDirectory"] = {"outputUriPrefix": _output_dir(args.base_output_dir)}
    scheduling = _scheduling(args.spot)
    if scheduling:
        job["scheduling"] = {**(job.get("scheduling") or {}), **scheduling}
    return doc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)

    p = sub.add_parser("custom-job-spec")
    p.add_argument("output")
    p.add_argument("--base-output-dir", required=True)
    p.add_argument("--spot", action="store_true")
    p.add_argument("--machine-type")
    p.add_argument("--accelerator-type")
    p.add_argument("--accelerator-count", type=int, default=1)

    p = sub.add_parser("hptuning")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--display-name", required=True)
    p.add_argument("--image-uri-cpu", required=True)
    p.add_argument("--image-uri-gpu", required=True)
    p.add_argument("--base-output-dir", required=True)
    p.add_argument("--machine-type")
    p.add_argument("--accelerator-type")
    p.add_argument("--accelerator-count", type=int)
    p.add_argument("--workers", type=int)
    p.add_argument("--max-trials", type=int)
    p.add_argument("--parallel-trials", type=int)
    p.add_argument("--max-failed-trials", type=int)
    p.add_argument("--algorithm")
    p.add_argument("--spot", action="store_true")
    p.add_argument("--arg", action="append", default=[])

    args = parser.parse_args(argv)
    try:
        doc = custom_job_spec(args) if args.what == "custom-job-spec" else hptuning(args)
    except (InputError, OSError, yaml.YAMLError) as e:
        message = " ".join(str(e).split())
        print(f"{message}", file=sys.stderr)
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)  # only once it is valid
    with open(args.output, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False, default_flow_style=False, width=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
