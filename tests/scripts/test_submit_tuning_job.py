"""scripts/submit_tuning_job.sh: a whole study inside one Vertex AI custom job.

The request is checked as Vertex would receive it (the real gcloud against the fake APIs on
loopback, parsed with aiplatform_v1's types); the container's command is then run here for
real, killed with SIGKILL mid-study as a job restart would kill it, and run again: the study
goes on with no trial lost or run twice.
"""
import contextlib
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.scripts import vertex_spec
from tests.scripts.support import BUCKET, PROJECT, REGION, one_line_error, package_version, printed_commands
from tests.scripts.test_real_gcloud import GCLOUD, apis, gcloud_env, run  # noqa: F401 (fixtures)
from tests.tuner.support import config, read_csv, trial_runs, tuner_env, write_yaml

SCRIPT = "submit_tuning_job.sh"
STUDY = os.path.join(os.path.dirname(__file__), "data", "study.yaml")
TUNER_IMAGE = f"{REGION}-docker.pkg.dev/{PROJECT}/vertex-tf-trainer/trainer-tuner-gpu:{package_version()}"


@pytest.fixture
def submit(run_script, tmp_path):
    """Runs the script against the recording stand-ins, with project, region, bucket, name."""

    def submit_with(*args, env=None):
        settings = {"PROJECT_ID": PROJECT, "REGION": REGION, "BUCKET": BUCKET, "DISPLAY_NAME": "study-1",
                    "HPTUNING_CONFIG": STUDY}
        settings.update(env or {})
        return run_script(SCRIPT, f"--out-dir={tmp_path / 'out'}", *args, env=settings)

    return submit_with


def container_command(create_argv):
    """The pool-0 container's argv of a recorded or printed `gcloud ai custom-jobs create`."""
    (command,) = vertex_spec.flag_values(create_argv, "command")
    (args,) = vertex_spec.flag_values(create_argv, "args")
    return vertex_spec.gcloud_list(command) + vertex_spec.gcloud_list(args)


@pytest.mark.skipif(GCLOUD is None, reason="the Google Cloud CLI (gcloud) is not installed here")
def test_one_job_as_vertex_receives_it(apis, gcloud_env, tmp_path):  # noqa: F811 (fixtures)
    pytest.importorskip("google.cloud.aiplatform_v1", reason="google-cloud-aiplatform is not installed")
    from google.protobuf import json_format

    result = run(gcloud_env, SCRIPT, f"--config={STUDY}", f"--out-dir={tmp_path / 'out'}", "--spot",
                 "--accelerator-type=NVIDIA_TESLA_T4", "--accelerator-count=2", "--gpus=0,1",
                 "--trials-per-gpu=2", "--max-trial-count=12")
    assert result.returncode == 0, result.stderr
    study = f"{BUCKET}/real-gcloud"
    with open(STUDY, "rb") as f:
        assert apis.uploads() == {f"{study}/hptuning_config.yaml": f.read()}
    (body,) = apis.created("customJobs")
    job = vertex_spec.parse("CustomJob", body)
    assert job.display_name == "real-gcloud"
    (pool,) = job.job_spec.worker_pool_specs
    assert pool.replica_count == 1
    assert json_format.MessageToDict(pool.machine_spec) == {
        "machineType": "n1-standard-8", "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 2}
    assert pool.container_spec.image_uri == TUNER_IMAGE
    assert list(pool.container_spec.command) == ["python", "-m", "tuner"]
    mount = "/gcs/" + study[len("gs://"):]
    assert list(pool.container_spec.args) == [
        "run", f"{mount}/hptuning_config.yaml", f"--output-dir={mount}", "--gpus=0,1", "--heartbeat-timeout=15",
        "--trials-per-gpu=2", "--max-trial-count=12"]
    # A preempted Spot VM restarts the job, which runs the same command: the study resumes.
    assert json_format.MessageToDict(job.job_spec.scheduling) == {"strategy": "SPOT",
                                                                  "restartJobOnWorkerRestart": True}
    assert job.job_spec.base_output_directory.output_uri_prefix == f"{study}/"
    # The config is in the bucket before the job that reads it exists.
    kinds = ["upload" if "upload" in r else r["path"].split("?")[0].rsplit("/", 1)[1]
             for r in apis.requests if r["method"] == "POST"]
    assert kinds == ["upload", "customJobs"]


def test_dry_run_prints_what_a_real_run_runs_and_runs_nothing(submit, standins):
    args = ("--accelerator-type=NVIDIA_L4", "--machine-type=g2-standard-24", "--accelerator-count=2")
    dry = submit("--dry-run", *args)
    assert dry.returncode == 0, dry.stderr
    assert standins.costly() == []
    assert "accepted by python -m tuner validate" in dry.stdout
    assert f"python -m tuner results {BUCKET}/study-1 --config {STUDY}" in dry.stdout
    real = submit(*args)
    assert real.returncode == 0, real.stderr
    assert printed_commands(dry.stdout) == standins.costly()
    create = standins.only("gcloud", "ai", "custom-jobs", "create")
    assert container_command(create["argv"]) == [
        "python", "-m", "tuner", "run", "/gcs/my-bucket/study-1/hptuning_config.yaml",
        "--output-dir=/gcs/my-bucket/study-1", "--gpus=all", "--heartbeat-timeout=15"]


def test_without_gpus_trials_run_on_the_cpu(submit, standins):
    result = submit()
    assert result.returncode == 0, result.stderr
    create = standins.only("gcloud", "ai", "custom-jobs", "create")["argv"]
    assert "--gpus=none" in container_command(create)
    image = f"{REGION}-docker.pkg.dev/{PROJECT}/vertex-tf-trainer/trainer-tuner-cpu:{package_version()}"
    assert vertex_spec.flag_values(create, "worker-pool-spec") == [
        f"machine-type=n1-standard-4,replica-count=1,container-image-uri={image}"]


@pytest.mark.parametrize("args, env, expected", [
    (("--bucket=my-bucket",), {}, "--bucket/BUCKET=my-bucket: expected a Cloud Storage URI"),
    (("--accelerator-type=NVIDIA_L4",), {}, "NVIDIA_L4"),  # an L4 needs a g2 machine
    (("--accelerator-type=NVIDIA_TESLA_T4", "--accelerator-count=2", "--gpus=0,2"), {},
     "--gpus=0,2: GPU 2 does not exist on a machine with --accelerator-count=2"),
    (("--accelerator-type=NVIDIA_TESLA_T4", "--gpus=0,0"), {}, "GPU 0 is listed twice"),
    (("--gpus=all",), {}, "--gpus=all: the machine has no GPU"),
    ((), {"TUNER_GPUS": "some"}, "--gpus/TUNER_GPUS=some: expected all, none, or GPU ids"),
    (("--trials-per-gpu=2",), {}, "--trials-per-gpu=2 with --gpus=none"),
    (("--max-trial-count=0",), {}, "--max-trial-count/MAX_TRIAL_COUNT=0: must be at least 1"),
    (("--config=missing.yaml",), {}, "--config=missing.yaml: no such file"),
])
def test_bad_input_exits_2_with_nothing_sent(submit, standins, args, env, expected):
    line = one_line_error(submit(*args, env=env))
    assert expected in line
    assert standins.costly() == []


def _study(**changes):
    """tests/scripts/data/study.yaml with top-level keys replaced, `study=` its studySpec's."""
    with open(STUDY) as f:
        doc = yaml.safe_load(f)
    doc["studySpec"].update(changes.pop("study", {}))
    doc["studySpec"] = {k: v for k, v in doc["studySpec"].items() if v is not None}
    return {**doc, **changes}


@pytest.mark.parametrize("doc, expected", [
    (_study(maxTrialCount="many"), "refused by python -m tuner validate"),
    (_study(study={"medianAutomatedStoppingSpec": None, "convexAutomatedStoppingSpec": {"maxStepCount": 10}}),
     "python -m tuner run refuses it: studySpec.convexAutomatedStoppingSpec"),
])
def test_a_config_the_tuner_refuses_is_not_uploaded(submit, standins, tmp_path, doc, expected):
    path = write_yaml(tmp_path / "bad.yaml", doc)
    line = one_line_error(submit(f"--config={path}"))
    assert line.startswith(f"{SCRIPT}: {path}: {expected}")
    assert standins.costly() == []


def _finished(study_dir):
    path = study_dir / "trials.csv"
    return [r["trial_id"] for r in read_csv(path) if r["state"] == "SUCCEEDED"] if path.exists() else []


def test_the_jobs_command_resumes_after_the_job_is_killed(submit, standins, tmp_path):
    """The container's command, run here with /gcs/ at a folder of this test; SIGKILL to its
    whole process group (a restarted job loses every process and its local disk) once a trial
    has finished and others run; the same command again on "another machine" (a folder of its
    own, another host name) before the dead tuner's heartbeat is stale: it waits for that, then
    runs the killed trials again. Every trial once, the finished ones not run again."""
    if subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot give a process another host name here (unshare --uts needs root)")
    doc = config(maxTrialCount=4, parallelTrialCount=2, args=["--steps=3", "--sleep=0.2"],
                 study={"algorithm": "RANDOM_SEARCH"})
    path = write_yaml(tmp_path / "study.yaml", doc)
    assert submit(f"--config={path}").returncode == 0
    argv = container_command(standins.only("gcloud", "ai", "custom-jobs", "create")["argv"])
    mount = tmp_path / "gcs"
    argv = [sys.executable] + [re.sub(r"(^|=)/gcs/", rf"\g<1>{mount}/", a) for a in argv[1:]]
    study_dir = mount / "my-bucket" / "study-1"
    study_dir.mkdir(parents=True)
    (study_dir / "hptuning_config.yaml").write_bytes(path.read_bytes())  # what gcloud storage cp put there

    first_vm, second_vm = tmp_path / "vm-1", tmp_path / "vm-2"  # each run's own local disk
    first_vm.mkdir()
    second_vm.mkdir()
    job = subprocess.Popen(argv, cwd=first_vm, env=tuner_env(), stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (_finished(study_dir) and (study_dir / "3").is_dir()):
            assert job.poll() is None and time.monotonic() < deadline, "no trial finished while others ran"
            time.sleep(0.05)
    finally:
        with contextlib.suppress(ProcessLookupError):  # gone already when the assertion failed
            os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=60)
    finished = _finished(study_dir)

    on_another_host = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', "vm-2", *argv]
    again = subprocess.run(on_another_host, cwd=second_vm, env=tuner_env(), capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stderr
    resumed = re.search(r"^resuming: (\d+) trial\(s\) finished", again.stdout, re.M)
    assert resumed and int(resumed.group(1)) >= len(finished), again.stdout  # trials.csv may lag
    rows = read_csv(study_dir / "trials.csv")
    assert [r["trial_id"] for r in rows] == ["1", "2", "3", "4"]
    assert [(r["state"], r["steps"]) for r in rows] == [("SUCCEEDED", "3")] * 4, (rows, again.stdout)
    for trial_id in finished:  # a finished trial is not run again
        assert len(trial_runs(study_dir, trial_id)) == 1
    for row in rows:  # gs://my-bucket/study-1/<trial id>/model/, where `tuner results gs://` reads
        for trial_run in trial_runs(study_dir, row["trial_id"]):
            assert trial_run["env"]["AIP_MODEL_DIR"] == f"{study_dir}/{row['trial_id']}/model/"
