"""scripts/build.sh, run for real against a recording stand-in of docker."""
import subprocess

import pytest

from tests.scripts.support import (
    PROJECT,
    REGION,
    ROOT,
    default_image,
    one_line_error,
    package_version,
    printed_commands,
)


@pytest.fixture
def build(run_script):
    def run(*args, env=None):
        settings = {"PROJECT_ID": PROJECT, "REGION": REGION}
        settings.update(env or {})
        return run_script("build.sh", *args, env=settings)

    return run


def git_revision(variant):
    """What build.sh should find: the short commit, -dirty when the image's inputs differ from it."""
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "--verify", "--quiet", "HEAD"],
                          capture_output=True, text=True)
    if head.returncode != 0:
        return None
    dockerfiles = [f"Dockerfile.{variant.removeprefix('tuner-')}"]
    if variant.startswith("tuner-"):
        dockerfiles.append("Dockerfile.tuner")
    inputs = [*dockerfiles, ".dockerignore", "setup.py", "pyproject.toml", "requirements*.txt",
              "trainer", "tuner"]
    dirty = subprocess.run(["git", "status", "--porcelain", "--", *inputs], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    return head.stdout.strip() + ("-dirty" if dirty else "")


def expected_tags(image, variant="cpu"):
    revision = git_revision(variant)
    tags = [image]
    if revision:
        tags.append(f"{image.rsplit(':', 1)[0]}:{package_version()}-g{revision}")
    return tags


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_builds_the_variants_dockerfile_with_version_and_revision_tags(build, standins, variant):
    result = build(variant)
    assert result.returncode == 0, result.stderr
    call = standins.only("docker", "build")
    argv = call["argv"]
    assert f"--file={ROOT}/Dockerfile.{variant}" in argv
    assert "--platform=linux/amd64" in argv
    assert argv[-1] == str(ROOT)
    tags = [a.split("=", 1)[1] for a in argv if a.startswith("--tag=")]
    assert tags == expected_tags(default_image(variant), variant)
    assert f"--label=org.opencontainers.image.version={package_version()}" in argv
    assert not any(a.startswith("--build-arg=") for a in argv)
    assert call["env"]["DOCKER_BUILDKIT"] == "1"
    assert standins.argvs("docker") == [["docker", *argv]]  # no push without --push


@pytest.mark.parametrize("variant", ["tuner-cpu", "tuner-gpu"])
def test_the_tuners_image_is_built_on_the_trainer_image_and_only_it_is_pushed(build, standins, variant):
    """The image scripts/submit_tuning_job.sh defaults to: the trainer's, plus the tuner's pins."""
    result = build(variant, "--push")
    assert result.returncode == 0, result.stderr
    trainer, tuner = [a[1:] for a in standins.argvs("docker") if a[1] == "build"]
    assert f"--file={ROOT}/Dockerfile.{variant[len('tuner-'):]}" in trainer
    (base,) = [a.split("=", 1)[1] for a in trainer if a.startswith("--tag=")]
    assert base.startswith("localhost/")  # a local name: never pushed
    assert f"--file={ROOT}/Dockerfile.tuner" in tuner and f"--build-arg=TRAINER_IMAGE={base}" in tuner
    tags = [a.split("=", 1)[1] for a in tuner if a.startswith("--tag=")]
    assert tags == expected_tags(default_image(variant), variant)
    assert [a[2] for a in standins.argvs("docker") if a[1] == "push"] == tags


def test_push_pushes_every_tag_after_the_build(build, standins):
    result = build("cpu", "--push")
    assert result.returncode == 0, result.stderr
    tags = expected_tags(default_image("cpu"))
    assert [a[1] for a in standins.argvs("docker")] == ["build"] + ["push"] * len(tags)
    assert [a[2] for a in standins.argvs("docker")[1:]] == tags


def test_a_failed_push_says_how_to_log_in(build, standins):
    result = build("cpu", "--push", env={"STANDIN_FAIL": "docker push"})
    assert result.returncode == 1
    assert f"gcloud auth configure-docker {REGION}-docker.pkg.dev" in result.stderr.strip().splitlines()[-1]


def test_a_failed_build_fails_the_script(build, standins):
    result = build("gpu", env={"STANDIN_FAIL": "docker build"})
    assert result.returncode == 1
    assert "step failed (exit 1): docker build" in result.stderr
    assert len(standins.argvs("docker")) == 1


def test_base_image_platform_and_image_uri_from_the_environment(build, standins):
    image = "europe-docker.pkg.dev/other-proj/repo/trainer:dev"
    result = build("cpu", env={"BASE_IMAGE": "localhost/local/debian:bookworm", "PLATFORM": "linux/arm64",
                               "IMAGE_URI": image, "PROJECT_ID": "", "REGION": ""})
    assert result.returncode == 0, result.stderr
    argv = standins.only("docker", "build")["argv"]
    assert "--build-arg=BASE_IMAGE=localhost/local/debian:bookworm" in argv
    assert "--platform=linux/arm64" in argv
    assert [a.split("=", 1)[1] for a in argv if a.startswith("--tag=")] == expected_tags(image)
    # With IMAGE_URI given, gcloud is not even asked for a project.
    assert standins.argvs("gcloud") == []


def test_repo_and_image_name(build, standins):
    assert build("gpu", "--repo=ml", "--image-name=digits").returncode == 0
    tags = [a for a in standins.only("docker", "build")["argv"] if a.startswith("--tag=")]
    assert tags[0] == f"--tag={REGION}-docker.pkg.dev/{PROJECT}/ml/digits-gpu:{package_version()}"


def test_another_container_cli(build, standins):
    standins.bin.joinpath("podman").symlink_to(standins.bin / "docker")
    assert build("cpu", env={"DOCKER": "podman"}).returncode == 0
    # The symlink runs the docker stand-in, which records itself as docker.
    assert standins.argvs("docker")[0][1] == "build"


def test_dry_run_prints_what_a_real_run_runs_and_runs_nothing(build, standins):
    dry = build("gpu", "--push", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert standins.costly() == []
    real = build("gpu", "--push")
    assert real.returncode == 0, real.stderr
    assert printed_commands(dry.stdout) == standins.costly()


def test_help(run_script):
    result = run_script("build.sh", "--help")
    assert result.returncode == 0
    for word in ("cpu|gpu", "--push", "PROJECT_ID", "REGION", "IMAGE_URI", "--base-image", "BASE_IMAGE",
                 "--dry-run", "gcloud's configured project", "DOCKER"):
        assert word in result.stdout, word


BAD_INPUT = [
    ("no variant", [], {}, ["give cpu, gpu, tuner-cpu or tuner-gpu"]),
    ("two variants", ["cpu", "gpu"], {}, ["one variant"]),
    ("unknown variant", ["tpu"], {}, ["unknown argument tpu"]),
    ("missing project", ["cpu"], {"PROJECT_ID": ""}, ["project is missing", "PROJECT_ID"]),
    ("missing region", ["cpu"], {"REGION": ""}, ["region is missing", "REGION"]),
    ("image not a registry path", ["cpu", "--image-uri=trainer"], {},
     ["--image-uri/IMAGE_URI=trainer", "registry path"]),
    ("image with a space", ["cpu", "--image-uri=us-docker.pkg.dev/p/r/i:a b"], {}, ["a space is not allowed"]),
    ("metachar in region", ["cpu", "--region=us-central1&&id"], {}, ["'&' is not allowed"]),
    ("metachar in base image", ["cpu", "--base-image=debian;id"], {},
     ["--base-image/BASE_IMAGE", "';' is not allowed"]),
    ("metachar in DOCKER", ["cpu"], {"DOCKER": "docker --debug"}, ["DOCKER", "a space is not allowed"]),
    ("bad platform", ["cpu", "--platform=amd64"], {}, ["--platform/PLATFORM=amd64"]),
    ("bad repo", ["cpu", "--repo=My_Repo"], {}, ["--repo/REPO=My_Repo"]),
]


@pytest.mark.parametrize("what,args,env,words", BAD_INPUT, ids=[case[0] for case in BAD_INPUT])
def test_bad_input_is_refused_before_anything_runs(build, standins, what, args, env, words):
    line = one_line_error(build(*args, env=env))
    for word in words:
        assert word in line, line
    assert standins.costly() == []
