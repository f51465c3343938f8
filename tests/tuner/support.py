"""Helpers of the tuner's tests: configs for the tiny trial script, and `python -m tuner` runs.

Studies run for real: the tuner is a subprocess, each trial a process of
tests/tuner/trial_script.py reporting through cloudml-hypertune.
"""
import contextlib
import copy
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tuner import spec as S
from tuner import study as study_mod
from tuner.trial import Exit, Measurement

ROOT = Path(__file__).resolve().parents[2]
TRIAL_SCRIPT = Path(__file__).with_name("trial_script.py")
TIMEOUT_S = 120

BASE = {
    "displayName": "tuner-test",
    "studySpec": {
        "metrics": [{"metricId": "score", "goal": "MAXIMIZE"}],
        "parameters": [{"parameterId": "x", "doubleValueSpec": {"minValue": 0.0,
                                                                "maxValue": 1.0}}],
    },
    "maxTrialCount": 4,
    "parallelTrialCount": 2,
    "trialJobSpec": {"workerPoolSpecs": [{
        "machineSpec": {"machineType": "n1-standard-4"},
        "replicaCount": 1,
        "containerSpec": {"imageUri": "us-docker.pkg.dev/p/r/trainer:latest",
                          "command": ["python", str(TRIAL_SCRIPT)],
                          "args": ["--steps=2", "--sleep=0.1"]},
    }]},
}


def config(**changes):
    """BASE with top-level keys replaced; `study=` updates studySpec, `args=` the trial args."""
    doc = copy.deepcopy(BASE)
    doc["studySpec"].update(changes.pop("study", {}))
    if "args" in changes:
        doc["trialJobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"] = changes.pop("args")
    doc.update(changes)
    return doc


def write_yaml(path, doc):
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def tuner_env(**extra):
    """The test's environment without Vertex variables, with the repository importable."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIP_", "CLOUD_ML_")) and k not in ("TF_CONFIG", "CLUSTER_SPEC")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_tuner(*args, cwd=None, timeout=TIMEOUT_S, env=None):
    return subprocess.run([sys.executable, "-m", "tuner", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=timeout,
                          env=env or tuner_env())


def start_tuner(*args, env=None, **popen):
    return subprocess.Popen([sys.executable, "-m", "tuner", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or tuner_env(), **popen)


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def trial_runs(output_dir, trial_id):
    """What each run of a trial saw (the trial script's runs.jsonl), oldest first."""
    path = Path(output_dir) / str(trial_id) / "model" / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@contextlib.contextmanager
def mounted_tmpfs(path, size, *options):
    """A real small disk at `path` (a tmpfs of `size`, e.g. "3m"; mounting needs root): the
    test is skipped, with the reason, where it cannot be mounted."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        mount = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]),
                                "tmpfs", str(path)], capture_output=True, text=True)
    except FileNotFoundError:
        pytest.skip("no mount command here to make a small disk")
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.strip() or 'mount failed'}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def wait_for(predicate, timeout=30, what="a condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def reported_steps(out, trial_id):
    path = out / str(trial_id) / "hypertune" / "output.metrics"
    return len(path.read_text().splitlines()) if path.exists() else 0


def assert_png(path):
    with Image.open(path) as image:
        image.verify()  # a whole, valid PNG
        assert image.format == "PNG" and min(image.size) > 100


def local_study(tmp_path, scores):
    """A real study in a journal file: one trial per entry of `scores` (its measurements, or
    None for a trial that fails), run through the oracle without processes."""
    job = S.parse(config(study={
        "algorithm": "RANDOM_SEARCH",
        "parameters": [{"parameterId": "x", "doubleValueSpec": {"minValue": 0.0,
                                                                "maxValue": 1.0}},
                       {"parameterId": "batch_size",
                        "discreteValueSpec": {"values": [16, 64, 256]}}]}),
        {"maxTrialCount": len(scores)})
    storage, _ = study_mod.storage_for(str(tmp_path), None)
    study = study_mod.Study(storage, "s", job, seed=1)
    for measured in scores:
        record = study.new_trial()
        study.started(record, ["python", "train.py"], None)
        if measured is None:
            study.complete(record, Exit(1, 1.0, tail=("boom",)))
            continue
        study.report(record, [Measurement(i + 1, float(i), v, float(i))
                              for i, v in enumerate(measured)], 1.0)
        study.complete(record, Exit(0, 1.0))
    return job, study
