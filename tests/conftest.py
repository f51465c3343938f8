"""Shared pytest fixtures."""
import uuid

import pytest


@pytest.fixture(scope="session")
def gcs_emulator():
    """A started GcsEmulator (tests/support/gcs.py), shared by the whole session."""
    from tests.support.gcs import GcsEmulator  # only the GCS tests pay for its imports

    with GcsEmulator() as emulator:
        yield emulator


@pytest.fixture
def gcs_bucket(gcs_emulator):
    """The name of a new, empty bucket in the session's emulator."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    gcs_emulator.create_bucket(name)
    return name
