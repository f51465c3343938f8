"""Shared pytest fixtures."""
import uuid

import pytest

# The modules that take longest (`make test ARGS=--durations=0`, summed by module, 2026-12-01:
# 746, 415, 266, 245, 216 and 161 s), run first: the suite runs on two workers (pytest-xdist,
# each module whole on one), and a long module that started last would run alone at the end.
LONGEST_FIRST = (
    "tests/scripts/test_image.py",
    "tests/trainer/test_launch.py",
    "tests/trainer/test_resume.py",
    "tests/bench/test_bench_quick.py",
    "tests/trainer/test_task.py",
    "tests/tuner/backends/test_vertex.py",
)


def pytest_collection_modifyitems(items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable


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
