"""Packaging for the trainer and the local tuner; dependencies come from requirements.txt."""
import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


def _requirements(name):
    lines = (HERE / name).read_text().splitlines()
    return [l.strip() for l in lines if l.strip() and not l.startswith(("#", "-r"))]


VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "trainer" / "__init__.py").read_text()).group(1)

setup(
    name="vertex-tf-trainer",
    version=VERSION,
    description="Train and tune TensorFlow models on Vertex AI, and run the same tuning job locally.",
    # The Pythons the pins have wheels for (tests/scripts/test_python_floor.py checks both ends).
    python_requires=">=3.11,<3.14",
    packages=find_packages(include=["trainer", "trainer.*", "tuner", "tuner.*"]),
    package_data={"trainer.datasets": ["*.npz"]},
    install_requires=_requirements("requirements.txt"),
    extras_require={"dev": _requirements("requirements-dev.txt")},
)
