"""Shared pytest fixtures."""
import uuid

import pytest

from tests.support.gcs import GcsEmulator


@pytest.fixture(scope="session")
def gcs_emulator():
    """A started GcsEmulator (tests/support/gcs.py), shared by the whole session."""
    with GcsEmulator() as emulator:
        yield emulator


@pytest.fixture
def gcs_bucket(gcs_emulator):
    """The name of a new, empty bucket in the session's emulator."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    gcs_emulator.create_bucket(name)
    return name
