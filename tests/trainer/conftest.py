"""Fixtures for the trainer's unit tests."""
import pytest
from absl import flags


@pytest.fixture
def parse_flags(monkeypatch):
    """Parses argv into a Config in-process, with a clean environment and fresh flag values."""
    from trainer import task

    for name in ("AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR", "TF_CONFIG", "CLUSTER_SPEC",
                 "CLOUD_ML_TRIAL_ID"):
        monkeypatch.delenv(name, raising=False)

    def parse(*args):
        flags.FLAGS.unparse_flags()
        return task.parse(["trainer.task", *args])

    yield parse
    flags.FLAGS.unparse_flags()
