"""The submit scripts with the real gcloud CLI, against a fake of the Google APIs on loopback.

gcloud turns the scripts' flags and YAML into the request bodies that Vertex AI would receive;
those bodies are parsed here with Vertex AI's own message types (google-cloud-aiplatform), so
a flag gcloud splits wrongly, a misspelt key or a bad enum value fails as it would in the
service. They also check the stand-in tests' model of gcloud (tests/scripts/vertex_spec.py).
Skipped, with the reason, where gcloud is not installed.
"""
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.scripts import vertex_spec
from tests.scripts.fake_vertex import FakeGoogleApis
from tests.scripts.support import BUCKET, PROJECT, REGION, SCRIPTS, SETTINGS, default_image, printed_commands

GCLOUD = shutil.which("gcloud")
pytestmark = [
    pytest.mark.skipif(GCLOUD is None, reason="the Google Cloud CLI (gcloud) is not installed here"),
]
STUDY = os.path.join(os.path.dirname(__file__), "data", "study.yaml")


@pytest.fixture
def apis():
    with FakeGoogleApis() as fake:
        yield fake


@pytest.fixture
def gcloud_env(apis, tmp_path):
    """gcloud with a fresh configuration, a dummy token, and every API call sent to the fake."""
    config = tmp_path / "gcloud-config"
    config.mkdir()
    token = tmp_path / "token"
    token.write_text("not-a-real-token\n")
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and not k.startswith("CLOUDSDK_")}
    env.update({
        "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}",
        "PYTHON": sys.executable,
        "CLOUDSDK_CONFIG": str(config),
        "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE": str(token),
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_AIPLATFORM": apis.url,
        "CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE": apis.url + "storage/v1/",
        "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
        "CLOUDSDK_CORE_DISABLE_USAGE_REPORTING": "true",
        "CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK": "true",
        "PROJECT_ID": PROJECT, "REGION": REGION, "BUCKET": BUCKET, "DISPLAY_NAME": "real-gcloud",
    })
    return env


def run(env, script, *args):
    return subprocess.run(["bash", str(SCRIPTS / script), *args], capture_output=True, text=True, env=env,
                          timeout=180)


def job_spec_from_dry_run(env, *args):
    """What the stand-in tests' model of gcloud makes of the same command line."""
    dry = run(env, "submit_training.sh", "--dry-run", *args)
    assert dry.returncode == 0, dry.stderr
    (create,) = [c for c in printed_commands(dry.stdout) if c[:3] == ["gcloud", "ai", "custom-jobs"]]
    config = next(v for v in vertex_spec.flag_values(create, "config"))
    with open(config) as f:
        return vertex_spec.custom_job_spec(create, {config: f.read()})


def test_custom_job_as_vertex_receives_it(apis, gcloud_env, tmp_path):
    pytest.importorskip("google.cloud.aiplatform_v1", reason="google-cloud-aiplatform is not installed")
    from google.protobuf import json_format

    args = (f"--out-dir={tmp_path / 'out'}", "--workers=2", "--spot", "--accelerator-type=NVIDIA_TESLA_T4",
            "--accelerator-count=2", "--", "--learning_rate=0.01", "--note=a,b", "--epochs", "3")
    result = run(gcloud_env, "submit_training.sh", *args)
    assert result.returncode == 0, result.stderr
    (body,) = apis.created("customJobs")
    job = vertex_spec.parse("CustomJob", body)
    assert job.display_name == "real-gcloud"
    spec = job.job_spec
    assert [p.replica_count for p in spec.worker_pool_specs] == [1, 2]
    for pool in spec.worker_pool_specs:
        assert pool.container_spec.image_uri == default_image("gpu")
        assert list(pool.container_spec.args) == ["--learning_rate=0.01", "--note=a,b", "--epochs", "3"]
        assert json_format.MessageToDict(pool.machine_spec) == {
            "machineType": "n1-standard-8", "acceleratorType": "NVIDIA_TESLA_T4", "acceleratorCount": 2}
    assert json_format.MessageToDict(spec.scheduling) == {"strategy": "SPOT", "restartJobOnWorkerRestart": True}
    assert spec.base_output_directory.output_uri_prefix == f"{BUCKET}/real-gcloud/"
    # The stand-in tests' model of gcloud gives the same CustomJobSpec.
    assert vertex_spec.parse("CustomJobSpec", job_spec_from_dry_run(gcloud_env, *args)) == spec


def test_python_package_upload_and_job(apis, gcloud_env, tmp_path):
    pytest.importorskip("google.cloud.aiplatform_v1", reason="google-cloud-aiplatform is not installed")
    executor = "us-docker.pkg.dev/vertex-ai/training/tf-cpu.2-21.py311:latest"  # one the pins install on
    result = run(gcloud_env, "submit_training.sh", f"--out-dir={tmp_path / 'out'}", "--python-package",
                 f"--executor-image-uri={executor}", "--", "--epochs=2")
    assert result.returncode == 0, result.stderr
    (sdist,) = (tmp_path / "out" / "sdist").glob("*.tar.gz")
    package_uri = f"{BUCKET}/real-gcloud/package/{sdist.name}"
    assert apis.uploads() == {package_uri: sdist.read_bytes()}
    (body,) = apis.created("customJobs")
    (pool,) = vertex_spec.parse("CustomJob", body).job_spec.worker_pool_specs
    assert pool.python_package_spec.executor_image_uri == executor
    assert pool.python_package_spec.python_module == "trainer.task"
    assert list(pool.python_package_spec.package_uris) == [package_uri]
    assert list(pool.python_package_spec.args) == ["--epochs=2"]


def test_tuning_job_as_vertex_receives_it(apis, gcloud_env, tmp_path):
    pytest.importorskip("google.cloud.aiplatform_v1", reason="google-cloud-aiplatform is not installed")
    result = run(gcloud_env, "submit_hptuning.sh", f"--config={STUDY}", f"--out-dir={tmp_path / 'out'}",
                 "--workers=1", "--spot", "--max-trial-count=6", "--", "--epochs=4")
    assert result.returncode == 0, result.stderr
    (body,) = apis.created("hyperparameterTuningJobs")
    job = vertex_spec.parse("HyperparameterTuningJob", body)
    rendered = yaml.safe_load((tmp_path / "out" / "hptuning_job.yaml").read_text())
    # gcloud sent the rendered file as it is.
    assert job == vertex_spec.parse("HyperparameterTuningJob", rendered)
    assert job.display_name == "real-gcloud"
    assert job.max_trial_count == 6
    assert [p.parameter_id for p in job.study_spec.parameters] == ["learning_rate", "batch_size", "optimizer", "units"]
    assert [p.replica_count for p in job.trial_job_spec.worker_pool_specs] == [1, 1]
    assert list(job.trial_job_spec.worker_pool_specs[0].container_spec.args) == ["--model=mlp", "--epochs=4"]
