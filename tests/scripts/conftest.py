"""Fixtures for the tests of scripts/: stand-ins for gcloud, gsutil and docker, and a runner."""
import os
import subprocess
import sys

import pytest

from tests.scripts.support import SCRIPTS, SETTINGS, Standins


@pytest.fixture
def standins(tmp_path):
    return Standins(tmp_path)


@pytest.fixture
def script_env(standins, tmp_path):
    """The environment of a script run: stand-ins first on PATH, no settings, this Python."""
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS and not k.startswith("STANDIN_")}
    env["PATH"] = f"{standins.bin}{os.pathsep}{os.path.dirname(sys.executable)}{os.pathsep}{env.get('PATH', '')}"
    env["STANDIN_LOG"] = str(standins.log)
    env["PYTHON"] = sys.executable
    env["HOME"] = str(tmp_path / "home")
    return env


@pytest.fixture
def run_script(script_env, tmp_path):
    """run_script("build.sh", *args, env={...}) -> CompletedProcess, run as a user would."""

    def run(name, *args, env=None, timeout=120, cwd=None):
        full_env = dict(script_env)
        full_env.update(env or {})
        return subprocess.run(["bash", str(SCRIPTS / name), *args], capture_output=True, text=True,
                              env=full_env, timeout=timeout, cwd=cwd or tmp_path)

    return run


def pytest_collection_modifyitems(config, items):
    """The real image build (test_image.py, about 10 minutes) runs after every other test."""
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test_image.py")
    slow = [item for item in items if str(item.path) == here]
    if slow:
        items[:] = [item for item in items if item not in slow] + slow
