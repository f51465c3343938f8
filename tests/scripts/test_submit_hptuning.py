"""scripts/submit_hptuning.sh, run for real against a recording stand-in of gcloud.

Every rendered file must pass `python -m tuner validate` (the script runs it; these tests run it
again themselves) and parse as Vertex AI's own HyperparameterTuningJob message.
"""
import pathlib
import subprocess
import sys

import pytest
import yaml

from tests.scripts import vertex_spec
from tests.scripts.support import BUCKET, PROJECT, REGION, ROOT, default_image, one_line_error, printed_commands

STUDY = pathlib.Path(__file__).with_name("data") / "study.yaml"


@pytest.fixture
def job_file(tmp_path):
    return tmp_path / "out" / "hptuning_job.yaml"


@pytest.fixture
def submit(run_script, tmp_path):
    def run(*args, env=None, config=STUDY):
        settings = {"PROJECT_ID": PROJECT, "REGION": REGION, "BUCKET": BUCKET, "DISPLAY_NAME": "hpt-1"}
        settings.update(env or {})
        if config is not None:
            args = (f"--config={config}", *args)
        return run_script("submit_hptuning.sh", f"--out-dir={tmp_path / 'out'}", *args, env=settings)

    return run


def tuner_validate(path):
    result = subprocess.run([sys.executable, "-m", "tuner", "validate", str(path)], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def submitted(standins, job_file):
    """The recorded gcloud call and the file it submitted, checked as Vertex would check it."""
    call = standins.only("gcloud", "ai", "hp-tuning-jobs", "create")
    assert call["argv"] == ["ai", "hp-tuning-jobs", "create", f"--project={PROJECT}", f"--region={REGION}",
                            "--display-name=hpt-1", f"--config={job_file}"]
    text = call["files"][str(job_file)]
    tuner_validate(job_file)
    doc = yaml.safe_load(text)
    if vertex_spec_available():
        vertex_spec.parse("HyperparameterTuningJob", doc)
    return doc


def vertex_spec_available():
    try:
        import google.cloud.aiplatform_v1  # noqa: F401
    except ImportError:
        return False
    return True


def test_the_projects_own_tuning_config(run_script, standins, tmp_path):
    """hptuning_config.yaml at the top level, as it is, with only the settings filled in."""
    config = ROOT / "hptuning_config.yaml"
    assert config.is_file(), "hptuning_config.yaml is missing at the top level"
    result = run_script("submit_hptuning.sh", f"--out-dir={tmp_path / 'out'}", "--display-name=hpt-1",
                        env={"PROJECT_ID": PROJECT, "REGION": REGION, "BUCKET": BUCKET})
    assert result.returncode == 0, result.stderr
    doc = submitted(standins, tmp_path / "out" / "hptuning_job.yaml")
    original = yaml.safe_load(config.read_text())
    assert doc["studySpec"] == original["studySpec"]
    assert doc["displayName"] == "hpt-1"
    for pool in doc["trialJobSpec"]["workerPoolSpecs"]:
        if pool:
            assert pool["containerSpec"]["imageUri"] in (default_image("cpu"), default_image("gpu"))
    assert doc["trialJobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": f"{BUCKET}/hpt-1/"}


def test_fills_in_image_output_and_name_and_keeps_the_study(submit, standins, job_file):
    result = submit()
    assert result.returncode == 0, result.stderr
    doc = submitted(standins, job_file)
    original = yaml.safe_load(STUDY.read_text())
    assert doc["studySpec"] == original["studySpec"]
    assert (doc["maxTrialCount"], doc["parallelTrialCount"], doc["maxFailedTrialCount"]) == (12, 3, 2)
    assert doc["displayName"] == "hpt-1"
    (pool,) = doc["trialJobSpec"]["workerPoolSpecs"]
    assert pool == {"machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": 1,
                    "containerSpec": {"imageUri": default_image("cpu"), "args": ["--epochs=10", "--model=mlp"]}}
    # Vertex gives each trial <base>/<trial id>/ and sets the AIP_* variables under it.
    assert doc["trialJobSpec"]["baseOutputDirectory"] == {"outputUriPrefix": f"{BUCKET}/hpt-1/"}
    assert "scheduling" not in doc["trialJobSpec"]
    # The source file is left as it was.
    assert yaml.safe_load(STUDY.read_text()) == original


def test_counts_from_flags_and_environment(submit, standins, job_file):
    result = submit("--max-trial-count=40", "--parallel-trial-count=8", env={"MAX_FAILED_TRIAL_COUNT": "5"})
    assert result.returncode == 0, result.stderr
    doc = submitted(standins, job_file)
    assert (doc["maxTrialCount"], doc["parallelTrialCount"], doc["maxFailedTrialCount"]) == (40, 8, 5)


def test_counts_spelt_as_gcloud_spells_them_or_the_old_way(submit, standins, job_file):
    """gcloud and `python -m tuner run` say --max-trial-count; the older spelling still works."""
    result = submit("--max-trials", "30", "--parallel-trials=6", "--max-failed-trial-count=4")
    assert result.returncode == 0, result.stderr
    doc = submitted(standins, job_file)
    assert (doc["maxTrialCount"], doc["parallelTrialCount"], doc["maxFailedTrialCount"]) == (30, 6, 4)
    standins.log.unlink()
    result = submit("--max-trial-count", "20", "--max-failed-trials=3", "--algorithm=random-search")
    assert result.returncode == 0, result.stderr
    doc = submitted(standins, job_file)
    assert (doc["maxTrialCount"], doc["maxFailedTrialCount"]) == (20, 3)
    assert doc["studySpec"]["algorithm"] == "RANDOM_SEARCH"


def test_gpu_trials_on_several_machines_on_spot(submit, standins, job_file):
    result = submit("--accelerator-type=NVIDIA_TESLA_T4", "--accelerator-count=2", "--workers=2", "--spot")
    assert result.returncode == 0, result.stderr
    doc = submitted(standins, job_file)
    chief, workers = doc["trialJobSpec"]["workerPoolSpecs"]
    assert (chief["replicaCount"], workers["replicaCount"]) == (1, 2)
    for pool in (chief, workers):
        assert pool["machineSpec"] == {"machineType": "n1-standard-8", "acceleratorType": "NVIDIA_TESLA_T4",
                                       "acceleratorCount": 2}
        assert pool["containerSpec"]["imageUri"] == default_image("gpu")
    assert doc["trialJobSpec"]["scheduling"] == {"strategy": "SPOT", "restartJobOnWorkerRestart": True}


def test_machine_type_and_image(submit, standins, job_file):
    image = "us-docker.pkg.dev/p-123456/r/trainer@sha256:" + "b" * 64
    result = submit("--machine-type=e2-highmem-8", env={"IMAGE_URI": image})
    assert result.returncode == 0, result.stderr
    (pool,) = submitted(standins, job_file)["trialJobSpec"]["workerPoolSpecs"]
    assert pool["machineSpec"] == {"machineType": "e2-highmem-8"}
    assert pool["containerSpec"]["imageUri"] == image


def test_trainer_arguments_join_the_files_and_win(submit, standins, job_file):
    result = submit("--", "--epochs=3", "--units_note=a,b")
    assert result.returncode == 0, result.stderr
    (pool,) = submitted(standins, job_file)["trialJobSpec"]["workerPoolSpecs"]
    assert pool["containerSpec"]["args"] == ["--model=mlp", "--epochs=3", "--units_note=a,b"]


@pytest.mark.parametrize("arg", ["--learning_rate=0.1", "--momentum=0.5", "--units", "--nooptimizer"])
def test_a_tuned_parameter_cannot_be_fixed(submit, standins, arg):
    line = one_line_error(submit("--", arg))
    assert "is a tuned parameter of this study" in line
    assert standins.costly() == []


def test_a_config_the_tuner_refuses_is_not_submitted(submit, standins, tmp_path):
    bad = yaml.safe_load(STUDY.read_text())
    bad["studySpec"]["metrics"][0]["goal"] = "maximize"  # gcloud rejects lower-case enum values
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    line = one_line_error(submit(config=path))
    assert "refused by python -m tuner validate" in line and "goal" in line
    assert standins.costly() == []


def test_a_legacy_config_is_refused(submit, standins, tmp_path):
    path = tmp_path / "legacy.yaml"
    path.write_text("trainingInput:\n  hyperparameters:\n    goal: MAXIMIZE\n")
    line = one_line_error(submit(config=path))
    assert "python -m tuner convert" in line
    assert standins.costly() == []


def test_more_parallel_than_total_trials_is_refused(submit, standins):
    line = one_line_error(submit("--parallel-trial-count=13"))
    assert "parallelTrialCount=13 is more than maxTrialCount=12" in line
    assert standins.costly() == []


def test_dry_run_renders_validates_and_runs_nothing(submit, standins, job_file):
    dry = submit("--dry-run", "--workers=1", "--spot")
    assert dry.returncode == 0, dry.stderr
    assert standins.costly() == []
    assert f"# rendered {job_file}, accepted by python -m tuner validate:" in dry.stdout
    tuner_validate(job_file)
    real = submit("--workers=1", "--spot")
    assert real.returncode == 0, real.stderr
    assert printed_commands(dry.stdout) == standins.costly()


def test_help(run_script):
    result = run_script("submit_hptuning.sh", "--help")
    assert result.returncode == 0
    for word in ("--config", "hptuning_config.yaml", "PROJECT_ID", "REGION", "BUCKET", "IMAGE_URI",
                 "--max-trial-count", "MAX_TRIAL_COUNT", "--parallel-trial-count", "PARALLEL_TRIAL_COUNT",
                 "--max-failed-trial-count", "--algorithm", "ALGORITHM", "MACHINE_TYPE", "ACCELERATOR_TYPE",
                 "ACCELERATOR_COUNT",
                 "WORKER_COUNT", "SPOT", "--dry-run", "python -m tuner validate", "gcloud's configured project"):
        assert word in result.stdout, word


BAD_INPUT = [
    ("missing project", [], {"PROJECT_ID": ""}, ["project is missing"]),
    ("missing region", [], {"REGION": ""}, ["region is missing"]),
    ("missing bucket", [], {"BUCKET": ""}, ["bucket is missing"]),
    ("bucket not gs://", ["--bucket=/tmp/out"], {}, ["--bucket/BUCKET=/tmp/out"]),
    ("image not a registry path", [], {"IMAGE_URI": "localhost:5000/trainer"}, ["registry path"]),
    ("accelerator count without type", ["--accelerator-count=1"], {}, ["without --accelerator-type"]),
    ("TPU", ["--accelerator-type=TPU_V2"], {}, ["NVIDIA"]),
    ("zero trials", ["--max-trial-count=0"], {}, ["--max-trial-count/MAX_TRIAL_COUNT=0", "at least 1"]),
    ("zero trials, old spelling", ["--max-trials=0"], {}, ["--max-trial-count/MAX_TRIAL_COUNT=0"]),
    ("zero parallel trials", [], {"PARALLEL_TRIAL_COUNT": "0"}, ["--parallel-trial-count/PARALLEL_TRIAL_COUNT=0"]),
    ("negative failed trials", ["--max-failed-trial-count=-2"], {}, ["--max-failed-trial-count"]),
    ("unknown algorithm", ["--algorithm=bayesian"], {}, ["--algorithm/ALGORITHM=bayesian", "grid-search"]),
    ("grid over a continuous parameter", ["--algorithm=grid-search"], {}, ["refused by python -m tuner validate"]),
    ("zero workers", ["--workers=0"], {}, ["--workers/WORKER_COUNT=0"]),
    ("no such config", ["--config=/nonexistent/study.yaml"], {}, ["no such file"]),
    ("metachar in config path", ["--config=study.yaml;id"], {}, ["';' is not allowed"]),
    ("metachar in display name", ["--display-name=a$b"], {}, ["'$' is not allowed"]),
    ("metachar in trainer argument", ["--", "--epochs=`id`"], {}, ["'`' is not allowed"]),
]


@pytest.mark.parametrize("what,args,env,words", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_refused_before_anything_runs(submit, standins, what, args, env, words):
    config = None if any(a.startswith("--config=") for a in args) else STUDY
    line = one_line_error(submit(*args, env=env, config=config))
    for word in words:
        assert word in line, line
    assert standins.costly() == []
