"""Helpers for the tests of scripts/: the stand-ins' records, and how a script's output is read."""
import json
import pathlib
import re
import shlex
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
STANDIN = pathlib.Path(__file__).with_name("standin.py")

# Settings the scripts read from the environment: a test starts with none of them.
SETTINGS = (
    "PROJECT_ID", "REGION", "BUCKET", "IMAGE_URI", "REPO", "IMAGE_NAME", "MACHINE_TYPE",
    "ACCELERATOR_TYPE", "ACCELERATOR_COUNT", "WORKER_COUNT", "SPOT", "PYTHON_PACKAGE",
    "EXECUTOR_IMAGE_URI", "DISPLAY_NAME", "HPTUNING_CONFIG", "MAX_TRIAL_COUNT",
    "PARALLEL_TRIAL_COUNT", "MAX_FAILED_TRIAL_COUNT", "ALGORITHM", "BASE_IMAGE", "PLATFORM", "DOCKER", "PYTHON",
)

PROJECT = "my-project-123"
REGION = "us-central1"
BUCKET = "gs://my-bucket"


def package_version():
    text = (ROOT / "trainer" / "__init__.py").read_text()
    return re.search(r'^__version__ = "([^"]+)"$', text, re.M).group(1)


def default_image(variant, project=PROJECT, region=REGION):
    """The image URI the scripts default to, as the README documents it."""
    return f"{region}-docker.pkg.dev/{project}/vertex-tf-trainer/trainer-{variant}:{package_version()}"


class Standins:
    """The PATH directory with the stand-ins, and what they recorded."""

    def __init__(self, tmp_path):
        self.bin = tmp_path / "standin-bin"
        self.bin.mkdir()
        self.log = tmp_path / "standin-calls.jsonl"
        for tool in ("gcloud", "gsutil", "docker"):
            path = self.bin / tool
            standin = f"{shlex.quote(sys.executable)} {shlex.quote(str(STANDIN))} {tool}"
            path.write_text(f"#!/bin/sh\nexec {standin} \"$@\"\n")
            path.chmod(0o755)

    def calls(self, tool=None):
        if not self.log.exists():
            return []
        entries = [json.loads(line) for line in self.log.read_text().splitlines()]
        return [e for e in entries if tool is None or e["tool"] == tool]

    def argvs(self, tool=None):
        return [[e["tool"], *e["argv"]] for e in self.calls(tool)]

    def only(self, tool, *words):
        """The one recorded call of `tool` whose argv starts with `words`."""
        found = [e for e in self.calls(tool) if e["argv"][:len(words)] == list(words)]
        assert len(found) == 1, f"expected one `{tool} {' '.join(words)}`, got {self.argvs()}"
        return found[0]

    def costly(self):
        """Every recorded call except reading gcloud's configured project."""
        return [a for a in self.argvs() if a[:4] != ["gcloud", "config", "get-value", "project"]]


def one_line_error(result):
    """The script refused with exit 2 and exactly one line on stderr; returns that line."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def printed_commands(stdout):
    """The commands a --dry-run printed, as argv lists (comments dropped, continuations joined)."""
    text = re.sub(r"\\\n\s*", " ", stdout)
    return [shlex.split(line) for line in text.splitlines() if line.strip() and not line.startswith("#")]
