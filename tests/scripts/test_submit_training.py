"""scripts/submit_training.sh, run for real against recording stand-ins of gcloud."""
import subprocess
import sys
import tarfile

import pytest
import yaml

from tests.scripts import vertex_spec
from tests.scripts.support import (
    BUCKET,
    PROJECT,
    REGION,
    default_image,
    one_line_error,
    package_version,
    printed_commands,
)

# No prebuilt image runs a Python the pins install on yet; the route is tested on one as named.
EXECUTOR = "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-21.py311:latest"


@pytest.fixture
def submit(run_script, tmp_path):
    """Runs submit_training.sh with project, region, bucket and a fixed display name."""

    def run(*args, env=None):
        settings = {"PROJECT_ID": PROJECT, "REGION": REGION, "BUCKET": BUCKET, "DISPLAY_NAME": "job-1"}
        settings.update(env or {})
        return run_script("submit_training.sh", f"--out-dir={tmp_path / 'out'}", *args, env=settings)

    return run


def submitted(standins):
    """The recorded `gcloud ai custom-jobs create` call and the CustomJobSpec it amounts to."""
    call = standins.only("gcloud", "ai", "custom-jobs", "create")
    return call["argv"], vertex_spec.custom_job_spec(call["argv"], call["files"])


def check_with_vertex_types(spec):
    pytest.importorskip("google.cloud.aiplatform_v1", reason="google-cloud-aiplatform is not installed")
    vertex_spec.parse("CustomJobSpec", spec)


def test_one_cpu_replica(submit, standins, tmp_path):
    result = submit()
    assert result.returncode == 0, result.stderr
    argv, spec = submitted(standins)
    assert argv[:6] == ["ai", "custom-jobs", "create", f"--project={PROJECT}", f"--region={REGION}",
                        "--display-name=job-1"]
    assert f"--config={tmp_path / 'out' / 'custom_job_spec.yaml'}" in argv
    assert vertex_spec.flag_values(argv, "worker-pool-spec") == [
        f"machine-type=n1-standard-4,replica-count=1,container-image-uri={default_image('cpu')}"]
    assert not vertex_spec.flag_values(argv, "args")
    assert spec == {
        "baseOutputDirectory": {"outputUriPrefix": f"{BUCKET}/job-1/"},
        "workerPoolSpecs": [{"machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": 1,
                             "containerSpec": {"imageUri": default_image("cpu")}}],
    }
    check_with_vertex_types(spec)


def test_one_replica_with_gpus_uses_the_gpu_image(submit, standins):
    result = submit("--accelerator-type=NVIDIA_TESLA_T4", "--accelerator-count=4")
    assert result.returncode == 0, result.stderr
    argv, spec = submitted(standins)
    assert vertex_spec.flag_values(argv, "worker-pool-spec") == [
        "machine-type=n1-standard-8,accelerator-type=NVIDIA_TESLA_T4,accelerator-count=4,replica-count=1,"
        f"container-image-uri={default_image('gpu')}"]
    assert spec["workerPoolSpecs"][0]["machineSpec"] == {
        "machineType": "n1-standard-8", "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 4}
    check_with_vertex_types(spec)


def test_accelerator_count_defaults_to_one(submit, standins):
    assert submit("--accelerator-type=NVIDIA_L4", "--machine-type=g2-standard-8").returncode == 0
    argv, _ = submitted(standins)
    assert vertex_spec.flag_values(argv, "worker-pool-spec") == [
        "machine-type=g2-standard-8,accelerator-type=NVIDIA_L4,accelerator-count=1,replica-count=1,"
        f"container-image-uri={default_image('gpu')}"]


def test_multi_worker_chief_in_pool_0_workers_in_pool_1(submit, standins):
    result = submit("--workers=3", "--accelerator-type=NVIDIA_TESLA_V100", "--accelerator-count=2")
    assert result.returncode == 0, result.stderr
    _, spec = submitted(standins)
    chief, workers = spec["workerPoolSpecs"]
    assert chief["replicaCount"] == 1
    assert workers["replicaCount"] == 3
    for pool in (chief, workers):
        assert pool["machineSpec"] == {"machineType": "n1-standard-8", "acceleratorType": "NVIDIA_TESLA_V100",
                                       "acceleratorCount": 2}
        assert pool["containerSpec"]["imageUri"] == default_image("gpu")
    # Without it Vertex sets no AIP_* variables and the chief's model stays on its own disk.
    assert spec["baseOutputDirectory"] == {"outputUriPrefix": f"{BUCKET}/job-1/"}
    check_with_vertex_types(spec)


def test_spot_restarts_the_job_when_a_vm_is_preempted(submit, standins):
    assert submit("--spot", "--workers=1").returncode == 0
    _, spec = submitted(standins)
    assert spec["scheduling"] == {"strategy": "SPOT", "restartJobOnWorkerRestart": True}
    check_with_vertex_types(spec)


def test_spot_from_the_environment(submit, standins):
    assert submit(env={"SPOT": "true"}).returncode == 0
    assert submitted(standins)[1]["scheduling"]["strategy"] == "SPOT"


def test_hyperparameters_pass_through_unchanged(submit, standins):
    result = submit("--", "--learning_rate=0.01", "--batch_size", "128", "--optimizer=adamw")
    assert result.returncode == 0, result.stderr
    argv, spec = submitted(standins)
    assert vertex_spec.flag_values(argv, "args") == ["--learning_rate=0.01,--batch_size,128,--optimizer=adamw"]
    assert spec["workerPoolSpecs"][0]["containerSpec"]["args"] == [
        "--learning_rate=0.01", "--batch_size", "128", "--optimizer=adamw"]


def test_an_argument_with_commas_is_kept_whole(submit, standins):
    result = submit("--workers=2", "--", "--learning_rate=0.01", "--note=a,b,c")
    assert result.returncode == 0, result.stderr
    argv, spec = submitted(standins)
    # gcloud splits --args on commas unless a ^DELIM^ prefix names another delimiter.
    assert vertex_spec.flag_values(argv, "args") == ["^;^--learning_rate=0.01;--note=a,b,c"]
    for pool in spec["workerPoolSpecs"]:
        assert pool["containerSpec"]["args"] == ["--learning_rate=0.01", "--note=a,b,c"]
    check_with_vertex_types(spec)


def test_python_package_route(submit, standins, tmp_path):
    result = submit("--python-package", f"--executor-image-uri={EXECUTOR}", "--workers=1", "--",
                    "--epochs=3")
    assert result.returncode == 0, result.stderr
    copy = standins.only("gcloud", "storage", "cp")["argv"]
    local, remote = copy[2], copy[3]
    assert remote == f"{BUCKET}/job-1/package/{local.rsplit('/', 1)[1]}"
    with tarfile.open(local) as sdist:
        names = sdist.getnames()
    top = names[0].split("/")[0]
    assert top.endswith(f"-{package_version()}")
    # setup.py reads these at install time on the executor image.
    for needed in ("setup.py", "requirements.txt", "requirements-dev.txt", "trainer/task.py",
                   "trainer/datasets/uci_digits.npz"):
        assert f"{top}/{needed}" in names
    # pip on the executor image can build it (setup.py reads requirements.txt at build time).
    wheel = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                            "--wheel-dir", str(tmp_path / "wheel"), local], capture_output=True, text=True, timeout=300)
    assert wheel.returncode == 0, wheel.stderr
    assert list((tmp_path / "wheel").glob(f"vertex_tf_trainer-{package_version()}-*.whl"))
    argv, spec = submitted(standins)
    assert vertex_spec.flag_values(argv, "python-package-uris") == [remote]
    for pool in spec["workerPoolSpecs"]:
        assert pool["pythonPackageSpec"] == {"executorImageUri": EXECUTOR, "pythonModule": "trainer.task",
                                             "packageUris": [remote], "args": ["--epochs=3"]}
        assert "containerSpec" not in pool
    check_with_vertex_types(spec)
    # The upload happens before the job that needs it.
    assert [a[1:3] for a in standins.costly()] == [["storage", "cp"], ["ai", "custom-jobs"]]


def test_project_from_gclouds_configuration(submit, standins):
    result = submit(env={"PROJECT_ID": "", "STANDIN_GCLOUD_PROJECT": "configured-proj"})
    assert result.returncode == 0, result.stderr
    argv, spec = submitted(standins)
    assert "--project=configured-proj" in argv
    assert spec["workerPoolSpecs"][0]["containerSpec"]["imageUri"] == default_image("cpu", project="configured-proj")


def test_flags_win_over_the_environment(submit, standins):
    result = submit("--region=europe-west4", "--bucket=gs://other/prefix", "--display-name=job-2",
                    env={"MACHINE_TYPE": "n1-highmem-8"})
    assert result.returncode == 0, result.stderr
    argv, spec = submitted(standins)
    assert "--region=europe-west4" in argv and "--display-name=job-2" in argv
    assert spec["baseOutputDirectory"]["outputUriPrefix"] == "gs://other/prefix/job-2/"
    assert spec["workerPoolSpecs"][0]["machineSpec"]["machineType"] == "n1-highmem-8"
    assert spec["workerPoolSpecs"][0]["containerSpec"]["imageUri"] == default_image("cpu", region="europe-west4")


def test_an_explicit_image_uri(submit, standins):
    image = "europe-west4-docker.pkg.dev/p-123456/repo/custom@sha256:" + "a" * 64
    assert submit(f"--image-uri={image}").returncode == 0
    assert submitted(standins)[1]["workerPoolSpecs"][0]["containerSpec"]["imageUri"] == image


def test_dry_run_prints_what_a_real_run_runs_and_runs_nothing(submit, standins, tmp_path):
    args = ("--workers=2", "--spot", "--accelerator-type=NVIDIA_TESLA_T4", "--", "--units=64,32", "--epochs=2")
    dry = submit("--dry-run", *args)
    assert dry.returncode == 0, dry.stderr
    assert standins.costly() == []
    rendered = tmp_path / "out" / "custom_job_spec.yaml"
    assert yaml.safe_load(rendered.read_text())["scheduling"]["strategy"] == "SPOT"
    assert f"# rendered {rendered}" in dry.stdout
    real = submit(*args)
    assert real.returncode == 0, real.stderr
    assert printed_commands(dry.stdout) == standins.costly()


def test_dry_run_of_the_python_package_route_builds_the_sdist_only(submit, standins, tmp_path):
    dry = submit("--dry-run", "--python-package", f"--executor-image-uri={EXECUTOR}")
    assert dry.returncode == 0, dry.stderr
    assert standins.costly() == []
    commands = printed_commands(dry.stdout)
    assert [c[:3] for c in commands] == [["gcloud", "storage", "cp"], ["gcloud", "ai", "custom-jobs"]]
    assert (tmp_path / "out" / "sdist").is_dir() and list((tmp_path / "out" / "sdist").glob("*.tar.gz"))


def test_a_failed_step_fails_the_script(submit, standins):
    result = submit(env={"STANDIN_FAIL": "gcloud ai"})
    assert result.returncode == 1
    assert "step failed" in result.stderr.strip().splitlines()[-1]


def test_default_output_folder_is_under_build(run_script, standins):
    result = run_script("submit_training.sh", "--dry-run", "--display-name=test-default-out",
                        env={"PROJECT_ID": PROJECT, "REGION": REGION, "BUCKET": BUCKET})
    assert result.returncode == 0, result.stderr
    from tests.scripts.support import ROOT
    rendered = ROOT / "build" / "vertex" / "test-default-out" / "custom_job_spec.yaml"
    try:
        assert f"--config={rendered}" in printed_commands(result.stdout)[0]
    finally:
        rendered.unlink(missing_ok=True)
        for folder in (rendered.parent, rendered.parent.parent, rendered.parent.parent.parent):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()  # only what this test made, and only if empty


def test_help_documents_every_flag_and_variable(run_script):
    result = run_script("submit_training.sh", "--help")
    assert result.returncode == 0
    for word in ("--project", "PROJECT_ID", "--region", "REGION", "--bucket", "BUCKET", "--image-uri",
                 "IMAGE_URI", "--machine-type", "MACHINE_TYPE", "--accelerator-type", "ACCELERATOR_TYPE",
                 "--accelerator-count", "ACCELERATOR_COUNT", "--workers", "WORKER_COUNT", "--spot", "SPOT",
                 "--python-package", "--executor-image-uri", "EXECUTOR_IMAGE_URI", "--dry-run",
                 "--display-name", "DISPLAY_NAME", "gcloud's configured project"):
        assert word in result.stdout, word


BAD_INPUT = [
    # (what, args, env, words of the message)
    ("missing project", [], {"PROJECT_ID": ""}, ["project is missing", "PROJECT_ID"]),
    ("missing region", [], {"REGION": ""}, ["region is missing", "--region", "REGION"]),
    ("image not a registry path", ["--image-uri=trainer:latest"], {}, ["--image-uri", "registry path"]),
    ("Docker Hub image", ["--image-uri=docker.io/library/python:3.11"], {}, ["--image-uri", "registry path"]),
    ("executor not a registry path", ["--python-package", "--executor-image-uri=tf-cpu"], {},
     ["--executor-image-uri", "registry path"]),
    ("python package without an executor", ["--python-package"], {},
     ["executor-image-uri is missing", "EXECUTOR_IMAGE_URI"]),
    ("executor on Python 3.10", ["--python-package",
                                 "--executor-image-uri=us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-17.py310:latest"],
     {}, ["runs Python 3.10", "Python 3.11 to 3.13", "drop --python-package", "scripts/build.sh"]),
    ("executor on Python 3.14", ["--python-package",
                                 "--executor-image-uri=us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-22.py314:latest"],
     {}, ["runs Python 3.14", "Python 3.11 to 3.13"]),
    ("executor naming no Python", ["--python-package",
                                   "--executor-image-uri=us-docker.pkg.dev/my-project/repo/custom:latest"],
     {}, ["does not name its Python", "drop --python-package"]),
    ("accelerator count without type", ["--accelerator-count=2"], {},
     ["--accelerator-count/ACCELERATOR_COUNT=2 without --accelerator-type"]),
    ("accelerator count from env without type", [], {"ACCELERATOR_COUNT": "1"}, ["without --accelerator-type"]),
    ("TPU", ["--accelerator-type=TPU_V3"], {}, ["--accelerator-type", "NVIDIA"]),
    ("zero accelerators", ["--accelerator-type=NVIDIA_L4", "--accelerator-count=0"], {}, ["at least 1"]),
    ("bucket not gs://", ["--bucket=my-bucket"], {}, ["--bucket/BUCKET=my-bucket", "gs://"]),
    ("bucket on s3", [], {"BUCKET": "s3://my-bucket"}, ["--bucket/BUCKET=s3://my-bucket"]),
    ("missing bucket", [], {"BUCKET": ""}, ["bucket is missing", "BUCKET"]),
    ("zero workers", ["--workers=0"], {}, ["--workers/WORKER_COUNT=0", "at least 1"]),
    ("negative workers", ["--workers=-1"], {}, ["--workers/WORKER_COUNT=-1"]),
    ("zero workers from env", [], {"WORKER_COUNT": "0"}, ["--workers/WORKER_COUNT=0"]),
    ("not a number", ["--workers=two"], {}, ["--workers/WORKER_COUNT=two", "whole number"]),
    ("metachar in region", ["--region=us-central1;id"], {},
     ["--region/REGION='us-central1;id'", "';' is not allowed"]),
    ("command substitution in project", ["--project=$(id)"], {},
     ["--project/PROJECT_ID='$(id)'", "'$' is not allowed"]),
    ("backtick in bucket", ["--bucket=gs://b/`id`"], {}, ["--bucket", "not allowed"]),
    ("space in display name", ["--display-name=my job"], {},
     ["--display-name/DISPLAY_NAME='my job'", "a space is not allowed"]),
    ("newline in machine type", ["--machine-type=n1-standard-4\nid"], {}, ["a newline is not allowed"]),
    ("metachar in trainer argument", ["--", "--learning_rate=0.1;id"], {},
     ["trainer argument '--learning_rate=0.1;id'", "not allowed"]),
    ("variable in trainer argument", ["--", "--job_dir=$(HOME)"], {}, ["trainer argument", "not allowed"]),
    ("quote in image", ["--image-uri=us-docker.pkg.dev/p/r/i:t'"], {}, ["--image-uri", "not allowed"]),
    ("bad spot value", [], {"SPOT": "maybe"}, ["SPOT=maybe"]),
    ("unknown flag", ["--gpus=2"], {}, ["unknown argument", "--gpus"]),
    ("flag without value", ["--region"], {}, ["--region needs a value"]),
]


@pytest.mark.parametrize("what,args,env,words", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_refused_before_anything_runs(submit, standins, what, args, env, words):
    line = one_line_error(submit(*args, env=env))
    for word in words:
        assert word in line, line
    assert standins.costly() == []
