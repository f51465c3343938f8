"""The command a local study ends with ("run this study on Vertex AI") submits that study.

A real short study runs; its printed command is then run as a user would paste it into bash,
against the recording stand-in of gcloud, and the file gcloud received must be a complete job.
"""
import subprocess

import yaml

from tests.scripts.support import BUCKET, PROJECT, REGION, ROOT, default_image
from tests.scripts.test_submit_hptuning import tuner_validate
from tests.tuner.support import config, run_tuner, write_yaml


def test_the_printed_command_submits_the_study_with_its_overrides(standins, script_env, tmp_path):
    path = write_yaml(tmp_path / "study.yaml", config(maxTrialCount=6))
    study = run_tuner("run", path, "--output-dir", tmp_path / "study", "--max-trial-count=2",
                      "--parallel-trial-count=1", "--algorithm=random-search", "--seed=1")
    assert study.returncode == 0, study.stderr
    lines = study.stdout.splitlines()
    heading = next(i for i, line in enumerate(lines) if line.startswith("run this study on Vertex AI"))
    command = lines[heading + 1].strip()

    out = tmp_path / "vertex"
    env = {**script_env, "PROJECT_ID": PROJECT, "REGION": REGION, "BUCKET": BUCKET, "DISPLAY_NAME": "hpt-1"}
    result = subprocess.run(["bash", "-c", f"{command} --out-dir={out}"], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr
    call = standins.only("gcloud", "ai", "hp-tuning-jobs", "create")
    job_file = out / "hptuning_job.yaml"
    assert f"--config={job_file}" in call["argv"]
    tuner_validate(job_file)
    doc = yaml.safe_load(call["files"][str(job_file)])
    assert (doc["maxTrialCount"], doc["parallelTrialCount"]) == (2, 1)
    assert doc["studySpec"]["algorithm"] == "RANDOM_SEARCH"
    assert doc["trialJobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": f"{BUCKET}/hpt-1/"}
    (pool,) = doc["trialJobSpec"]["workerPoolSpecs"]
    assert pool["containerSpec"]["imageUri"] == default_image("cpu")
