"""Fixtures for the tuner's tests."""
import pytest

from tests.tuner.support import write_yaml


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "real_trainer: the one tuner test that runs trainer.task (TensorFlow); "
                   "deselect with -m 'not real_trainer'")


@pytest.fixture
def write_config(tmp_path):
    """Writes a config document to a YAML file in the test's folder; returns its path."""
    def write(doc, name="study.yaml"):
        return write_yaml(tmp_path / name, doc)
    return write
