"""The Pythons setup.py claims are exactly those the pinned requirements have wheels for.

Asks the package index this machine's pip reaches (PyPI in CI) with `pip install --dry-run`,
one run per Python version: metadata only, no wheel is downloaded. Skipped when no index answers.
"""
import re
import subprocess
import sys

import pytest

from tests.scripts.support import ROOT

# The only pin published as an sdist alone (pure Python): built here for its metadata.
SDIST_ONLY = "cloudml-hypertune"


def claimed_range():
    """(lowest, first excluded) minor version of Python 3, from setup.py's python_requires."""
    text = (ROOT / "setup.py").read_text()
    match = re.search(r'python_requires=">=3\.(\d+),<3\.(\d+)"', text)
    assert match, 'setup.py: python_requires must read ">=3.A,<3.B": a claim without a top is a claim on ' \
                  "Pythons no one has tried"
    return int(match.group(1)), int(match.group(2))


# Each installable part's pins (the trainer's, the tuner's; both include requirements-common.txt).
PARTS = ["requirements.txt", "requirements-tuner.txt"]


def resolve(minor):
    """pip's verdict on installing every part's pins, binary wheels only, for Python 3.<minor>."""
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--no-deps",
         "--only-binary=:all:", f"--no-binary={SDIST_ONLY}", f"--python-version=3.{minor}", "--quiet",
         *[arg for part in PARTS for arg in ("-r", str(ROOT / part))]],
        capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def index_answers():
    """Skips when pip reaches no index that knows the pins (no network and no local mirror)."""
    low, _ = claimed_range()
    result = resolve(low)
    if result.returncode != 0 and "(from versions: none)" in result.stderr:
        pytest.skip(f"no package index answered pip: {result.stderr.strip().splitlines()[-1]}")
    return result


def test_the_pins_install_on_every_claimed_python(index_answers):
    low, high = claimed_range()
    assert index_answers.returncode == 0, f"Python 3.{low}: {index_answers.stderr.strip().splitlines()[-1]}"
    for minor in range(low + 1, high):
        result = resolve(minor)
        assert result.returncode == 0, f"Python 3.{minor}: {result.stderr.strip().splitlines()[-1]}"


@pytest.mark.parametrize("end", ["below the floor", "at the top"])
def test_the_pins_do_not_install_just_outside_the_claim(index_answers, end):
    """Each end of the claim is where the wheels stop, so neither end is set too tight."""
    low, high = claimed_range()
    minor = low - 1 if end == "below the floor" else high
    result = resolve(minor)
    assert result.returncode != 0, f"the pins install on Python 3.{minor}: widen python_requires"
    missing = re.search(r"No matching distribution found for (\S+)", result.stderr)
    assert missing, result.stderr
    pins = "".join(path.read_text() for path in ROOT.glob("requirements*.txt")).lower()
    assert missing.group(1).lower() in pins  # a pin has no wheel there, not a failure of pip itself
