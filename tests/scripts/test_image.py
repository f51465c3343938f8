"""Builds Dockerfile.cpu for real and trains one epoch in the image, through the project's scripts.

No Docker engine runs here and no image registry is reachable, so the image is built with podman
(through `DOCKER=podman scripts/build.sh cpu`) on a base made with debootstrap and imported into
podman: the Dockerfile's BASE_IMAGE build argument. Then `DOCKER=podman scripts/smoke_test.sh cpu`
runs it with no network, as Vertex AI would, and checks metrics.json and the hypertune file.

What podman needs on this kind of machine (measured; see the shared environment notes): root,
vfs storage in a temporary folder, chroot isolation for builds, runc with explicit ulimits for
runs, no intermediate layers (BUILDAH_LAYERS=false: vfs copies the whole file system per
layer), about 15 GB of temporary disk and about 10 minutes; pip inside the build reaches PyPI.
Skipped, with the reason, only where podman cannot run: not root, or podman, debootstrap or runc
missing (`apt-get install -y podman debootstrap runc`).
"""
import json
import os
import pathlib
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

from tests.scripts.support import ROOT, SCRIPTS, SETTINGS

IMAGE = "us-central1-docker.pkg.dev/test-project/vertex-tf-trainer/trainer-cpu:image-test"
BASE = "localhost/local/debian:bookworm"
SUITE = "bookworm"  # Python 3.11, as the Dockerfiles' default base has


def why_podman_cannot_run():
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root: podman builds here with vfs storage and chroot isolation, as root"
    missing = [tool for tool in ("podman", "debootstrap", "runc") if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install -y podman debootstrap runc)"
    return None


pytestmark = pytest.mark.skipif(why_podman_cannot_run() is not None, reason=str(why_podman_cannot_run()))


def debian_mirror():
    """The Debian mirror apt uses here (deb822 or one-line sources), else Debian's own."""
    sources = pathlib.Path("/etc/apt/sources.list.d")
    for path in sorted(sources.glob("*.sources")) if sources.is_dir() else []:
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "debian" in line and "security" not in line:
                return line.split()[1]
    listing = pathlib.Path("/etc/apt/sources.list")
    if listing.is_file():
        for line in listing.read_text().splitlines():
            match = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(https?://\S+)", line)
            if match and "security" not in match.group(1):
                return match.group(1)
    return "http://deb.debian.org/debian"


def oci_platform():
    machine = platform.machine()
    return "linux/" + {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def timed(what, command, env, timeout, **kwargs):
    start = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout, **kwargs)
    print(f"{what}: exit {result.returncode}, {time.monotonic() - start:.0f} s")
    return result


@pytest.fixture(scope="module")
def podman():
    """A podman with its own storage; yields (env for the scripts, podman argv prefix)."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="image-test-"))
    try:
        (work / "storage.conf").write_text(
            f'[storage]\ndriver = "vfs"\ngraphroot = "{work}/graph"\nrunroot = "{work}/run"\n')
        # crun cannot set rlimits here and cgroups are in hybrid mode: runc, with explicit ulimits.
        (work / "containers.conf").write_text(
            '[containers]\ndefault_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n'
            '[engine]\nruntime = "runc"\n')
        env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
        env.update({
            "CONTAINERS_STORAGE_CONF": str(work / "storage.conf"),
            "CONTAINERS_CONF": str(work / "containers.conf"),
            "BUILDAH_ISOLATION": "chroot",
            # vfs stores every layer as a full copy of the file system: without this, each
            # instruction of a stage costs another 2-3 GB (36 GB seen before it was set).
            "BUILDAH_LAYERS": "false",
            "DOCKER": "podman",
            "PYTHON": sys.executable,
            "PLATFORM": oci_platform(),
        })
        yield work, env
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="module")
def image(podman):
    """Dockerfile.cpu built by scripts/build.sh on a debootstrap base; yields the podman env."""
    work, env = podman
    rootfs = work / "rootfs"
    result = timed("debootstrap", ["debootstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
                                   SUITE, str(rootfs), debian_mirror()], env, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # This machine reaches PyPI through a proxy whose CA only the host trusts: the base trusts
    # what the host trusts, and pip uses that store (python:3.11-slim needs neither elsewhere).
    host_ca = pathlib.Path("/etc/ssl/certs/ca-certificates.crt")
    if host_ca.is_file():
        shutil.copyfile(host_ca, rootfs / "etc/ssl/certs/ca-certificates.crt")
        (rootfs / "etc/pip.conf").write_text("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    result = timed("podman import", ["podman", "import", "-", BASE], env, timeout=600, stdin=tar.stdout)
    tar.wait()
    assert result.returncode == 0, result.stderr
    shutil.rmtree(rootfs)

    result = timed("scripts/build.sh cpu", ["bash", str(SCRIPTS / "build.sh"), "cpu", f"--base-image={BASE}",
                                            f"--image-uri={IMAGE}"], env, timeout=1800)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    size = subprocess.run(["podman", "image", "inspect", "--format={{.Size}}", IMAGE], env=env,
                          capture_output=True, text=True, check=True).stdout.strip()
    print(f"image {IMAGE}: {int(size) / 1e9:.2f} GB (base {BASE}: a debootstrap minbase with python3)")
    return env


def in_image(env, *command, entrypoint="sh"):
    return subprocess.run(["podman", "run", "--rm", "--network=none", f"--entrypoint={entrypoint}", IMAGE, *command],
                          env=env, capture_output=True, text=True, timeout=300)


def test_smoke_test_trains_one_epoch_offline_in_the_image(image, tmp_path):
    out = tmp_path / "smoke"
    result = timed("scripts/smoke_test.sh cpu", ["bash", str(SCRIPTS / "smoke_test.sh"), "cpu",
                                                 f"--image-uri={IMAGE}", f"--out-dir={out}"], image, timeout=900)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert metrics["metric"] == "val_accuracy" and metrics["epochs_run"] == 1
    reports = [json.loads(line) for line in (out / "hypertune" / "output.metrics").read_text().splitlines() if line]
    assert reports and "val_accuracy" in reports[-1] and str(reports[-1]["global_step"]) == "1"
    # The SavedModel went to AIP_MODEL_DIR, the checkpoints to AIP_CHECKPOINT_DIR.
    assert (out / "model" / "saved_model.pb").is_file()
    assert (out / "checkpoints").is_dir() and (out / "logs").is_dir()


def test_arguments_reach_the_trainer_through_the_entrypoint(image):
    result = subprocess.run(["podman", "run", "--rm", "--network=none", IMAGE, "--no_such_flag=1"], env=image,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr  # the trainer's exit for bad usage
    assert "no_such_flag" in result.stderr


@pytest.fixture(scope="module")
def contents(image):
    """What one container of the image says about itself (a container costs a minute here:
    vfs copies the whole image for each): its user, what it lacks, the trainer's install, and
    which of requirements-tuner.txt's distributions it holds."""
    lines = (ROOT / "requirements-tuner.txt").read_text().splitlines()
    tuner_only = [re.split(r"[=<>\[ ]", line)[0] for line in lines if line.strip() and not line.startswith(("#", "-r"))]
    assert "optuna" in tuner_only
    probe = ("import json, os, shutil, sys\n"
             "from importlib import metadata\n"
             "import trainer\n"
             "def version(name):\n"
             "    try: return metadata.version(name)\n"
             "    except metadata.PackageNotFoundError: return None\n"
             "print(json.dumps({'uid': os.getuid(),\n"
             "    'present': [p for p in ('/src', '/opt/staging', '/root/.cache/pip', '/home/trainer/.cache/pip')\n"
             "                if os.path.exists(p)],\n"
             "    'compilers': [c for c in ('gcc', 'cc', 'make') if shutil.which(c)],\n"
             "    'trainer': trainer.__file__, 'version': version('vertex-tf-trainer'),\n"
             "    'tuner_dependencies': {n: version(n) for n in sys.argv[1:] if version(n)}}))\n")
    result = in_image(image, "-c", probe, *tuner_only, entrypoint="python")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_image_holds_the_installed_package_and_nothing_to_build_with(contents):
    assert contents["uid"] == 1000
    assert contents["present"] == [] and contents["compilers"] == [], contents
    assert contents["trainer"].startswith("/opt/venv/lib/python3")
    assert contents["trainer"].endswith("/site-packages/trainer/__init__.py")
    version = re.search(r'__version__ = "([^"]+)"', (ROOT / "trainer" / "__init__.py").read_text()).group(1)
    assert contents["version"] == version


def test_the_image_holds_no_tuner_dependency(contents):
    """The images install the trainer's pins only: none of requirements-tuner.txt's, not even
    through TensorFlow's own dependencies."""
    assert contents["tuner_dependencies"] == {}
