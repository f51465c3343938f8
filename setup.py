"""Packaging: one distribution whose extras install its parts apart.

`trainer` is trainer/ and its TensorFlow stack (what the images contain), `tuner` is tuner/
(pure Python: no TensorFlow), `dev` is everything plus the test and lint tools. The pins live
in requirements*.txt, one file per part, which the Dockerfiles install directly.
"""
import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


def _requirements(name):
    """The pins of a requirements file, following its `-r other.txt` lines."""
    pins = []
    for line in (HERE / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("-r "):
            pins += _requirements(line[3:].strip())
        elif line and not line.startswith("#"):
            pins.append(line)
    return pins


VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "trainer" / "__init__.py").read_text()).group(1)

EXTRAS = {
    "trainer": _requirements("requirements.txt"),
    "tuner": _requirements("requirements-tuner.txt"),
    # The tuner's `--storage postgresql://...`: several machines on one study.
    "postgresql": ["psycopg[binary]==3.3.9"],
    # The Vertex API's own client and message types (the script tests parse rendered job files).
    "vertex": ["google-cloud-aiplatform==2.7.0"],
}
EXTRAS["dev"] = sorted({pin for pins in EXTRAS.values() for pin in pins} | set(_requirements("requirements-dev.txt")))

setup(
    name="vertex-tf-trainer",
    version=VERSION,
    description="Train and tune TensorFlow models on Vertex AI, and run the same tuning job locally.",
    # The Pythons the pins have wheels for (tests/scripts/test_python_floor.py checks both ends).
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["trainer", "trainer.*", "tuner", "tuner.*"]),
    package_data={"trainer.datasets": ["*.npz"]},
    extras_require=EXTRAS,
)
