"""scripts/smoke_test.sh, run for real against a recording stand-in of docker.

The stand-in's `docker cp` leaves the outputs a good run leaves; tests/scripts/test_image.py
runs the same script against a real image built with podman.
"""
import json

import pytest

from tests.scripts.support import PROJECT, REGION, default_image, one_line_error, printed_commands


@pytest.fixture
def out_dir(tmp_path):
    return tmp_path / "smoke-out"


@pytest.fixture
def smoke(run_script, out_dir):
    def run(*args, env=None):
        settings = {"PROJECT_ID": PROJECT, "REGION": REGION}
        settings.update(env or {})
        return run_script("smoke_test.sh", f"--out-dir={out_dir}", *args, env=settings)

    return run


def created(standins):
    return standins.only("docker", "create")["argv"]


def container_env(argv):
    return dict(a[len("--env="):].split("=", 1) for a in argv if a.startswith("--env="))


def test_cpu_runs_one_epoch_offline_as_vertex_runs_it(smoke, standins, out_dir):
    result = smoke("cpu")
    assert result.returncode == 0, result.stderr
    assert "passed" in result.stderr.strip().splitlines()[-1]
    image = default_image("cpu")
    argv = created(standins)
    assert "--network=none" in argv and "--gpus=all" not in argv
    # The image's ENTRYPOINT is the trainer: what follows the image are its flags.
    assert argv[argv.index(image) + 1:] == ["--epochs=1"]
    env = container_env(argv)
    assert env["AIP_MODEL_DIR"] == "/tmp/smoke/model/"
    assert env["AIP_CHECKPOINT_DIR"] == "/tmp/smoke/checkpoints/"
    assert env["AIP_TENSORBOARD_LOG_DIR"] == "/tmp/smoke/logs/"
    assert env["CLOUD_ML_TRIAL_ID"] == "1"
    assert env["CLOUD_ML_HP_METRIC_FILE"] == "/tmp/smoke/hypertune/output.metrics"
    assert json.loads(env["CLUSTER_SPEC"])["task"] == {"type": "workerpool0", "index": 0, "trial": "1"}
    name = next(a.split("=", 1)[1] for a in argv if a.startswith("--name="))
    steps = [a[1:] for a in standins.argvs("docker")]
    assert [s[0] for s in steps] == ["info", "image", "create", "start", "cp", "rm"]
    assert steps[3] == ["start", "--attach", name]
    assert steps[4] == ["cp", f"{name}:/tmp/smoke/.", str(out_dir)]
    assert (out_dir / "model" / "metrics.json").is_file()


def test_gpu_checks_that_tensorflow_sees_a_gpu_first(smoke, standins):
    result = smoke("gpu", env={"STANDIN_DOCKER_GPUS": "2"})
    assert result.returncode == 0, result.stderr
    assert "sees 2 GPU(s)" in result.stderr
    probe = standins.only("docker", "run")["argv"]
    assert "--gpus=all" in probe and "--entrypoint=python" in probe
    assert default_image("gpu") in probe
    assert "--gpus=all" in created(standins)


def test_trainer_args_follow_the_default_epoch(smoke, standins):
    assert smoke("cpu", "--", "--model=cnn", "--batch_size=32").returncode == 0
    argv = created(standins)
    assert argv[argv.index(default_image("cpu")) + 1:] == ["--epochs=1", "--model=cnn", "--batch_size=32"]


def test_no_docker(smoke, standins):
    standins.bin.joinpath("docker").unlink()
    result = smoke("cpu", env={"PATH": f"{standins.bin}:/usr/bin:/bin", "DOCKER": "docker-that-is-not-here"})
    assert result.returncode == 1
    assert "docker-that-is-not-here not found on PATH" in result.stderr


def test_no_image(smoke, standins):
    result = smoke("gpu", env={"STANDIN_DOCKER_IMAGES": "0"})
    assert result.returncode == 1
    assert "build it with scripts/build.sh gpu" in result.stderr.strip().splitlines()[-1]
    assert standins.argvs("docker")[-1][1:3] == ["image", "inspect"]


def test_no_gpu_runtime(smoke, standins):
    result = smoke("gpu", env={"STANDIN_DOCKER_GPUS": "none"})
    assert result.returncode == 1
    assert "NVIDIA Container Toolkit" in result.stderr.strip().splitlines()[-1]
    assert not standins.calls("docker") or standins.argvs("docker")[-1][1] == "run"


def test_no_gpu_seen(smoke, standins):
    result = smoke("gpu", env={"STANDIN_DOCKER_GPUS": "0"})
    assert result.returncode == 1
    assert "sees no GPU" in result.stderr.strip().splitlines()[-1]


def test_a_failed_training_run_fails_and_removes_the_container(smoke, standins):
    result = smoke("cpu", env={"STANDIN_DOCKER_TRAIN_EXIT": "1"})
    assert result.returncode == 1
    assert "the trainer failed in the image" in result.stderr.strip().splitlines()[-1]
    assert standins.argvs("docker")[-1][1:3] == ["rm", "--force"]


def test_missing_outputs_fail_the_check(smoke, standins):
    result = smoke("cpu", env={"STANDIN_DOCKER_OUTPUTS": "none"})
    assert result.returncode == 1
    assert "metrics.json" in result.stderr and "hypertune" in result.stderr


def test_an_out_dir_with_old_outputs_is_refused(smoke, standins, out_dir):
    out_dir.mkdir()
    (out_dir / "old").write_text("")
    line = one_line_error(smoke("cpu"))
    assert "not an empty directory" in line
    assert standins.costly() == []


def test_dry_run_prints_what_a_real_run_runs_and_runs_nothing(run_script, standins, tmp_path):
    env = {"IMAGE_URI": default_image("gpu")}
    dry = run_script("smoke_test.sh", "gpu", "--dry-run", f"--out-dir={tmp_path / 'o'}", env=env)
    assert dry.returncode == 0, dry.stderr
    assert standins.costly() == []
    assert not (tmp_path / "o").exists()
    real = run_script("smoke_test.sh", "gpu", f"--out-dir={tmp_path / 'o'}", env=env)
    assert real.returncode == 0, real.stderr
    # The container name holds the time and the process: compare without it.
    def normal(commands):
        return [[w.split("-smoke-")[0] if "-smoke-" in w else w for w in c] for c in commands]
    assert normal(printed_commands(dry.stdout)) == normal(standins.costly())


def test_help(run_script):
    result = run_script("smoke_test.sh", "--help")
    assert result.returncode == 0
    for word in ("cpu|gpu", "PROJECT_ID", "REGION", "IMAGE_URI", "--dry-run", "AIP_MODEL_DIR",
                 "CLOUD_ML_HP_METRIC_FILE", "--gpus all", "gcloud's configured project"):
        assert word in result.stdout, word


BAD_INPUT = [
    ("no variant", [], {}, ["give cpu or gpu"]),
    ("missing project", ["cpu"], {"PROJECT_ID": ""}, ["project is missing"]),
    ("missing region", ["cpu"], {"REGION": ""}, ["region is missing"]),
    ("image not a registry path", ["cpu", "--image-uri=my-image:1"], {}, ["registry path"]),
    ("metachar in project", ["cpu", "--project=p|id"], {}, ["'|' is not allowed"]),
    ("metachar in trainer argument", ["cpu", "--", "--epochs=1>/tmp/x"], {},
     ["trainer argument", "'>' is not allowed"]),
]


@pytest.mark.parametrize("what,args,env,words", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_refused_before_anything_runs(smoke, standins, what, args, env, words):
    line = one_line_error(smoke(*args, env=env))
    for word in words:
        assert word in line, line
    assert standins.costly() == []
