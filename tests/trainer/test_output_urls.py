"""Paths: only gs:// URLs and local paths; any other scheme is refused before anything is written."""
import pytest
from absl import flags

from tests.support.trainer_runs import last_line, run_trainer, trainer_env
from trainer import config as config_lib


@pytest.mark.parametrize("flag", config_lib.PATH_FLAGS)
@pytest.mark.parametrize("url", ["s3://bucket/run", "hdfs://namenode/run", "GS://bucket/run"])
def test_other_url_schemes_exit_2_with_one_line_and_write_nothing(tmp_path, flag, url):
    result = run_trainer(tmp_path, f"--{flag}={url}", timeout=120)
    assert result.returncode == 2, result.stderr[-2000:]
    line = last_line(result.stderr)
    assert line.startswith(f"error: --{flag}: '{url}'") and "gs://" in line, line
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no ./s3:/..., no runs/, no hypertune file


def test_a_vertex_variable_with_another_scheme_is_named(tmp_path):
    result = run_trainer(tmp_path, timeout=120, env=trainer_env(tmp_path, AIP_CHECKPOINT_DIR="s3://bucket/ckpt"))
    assert result.returncode == 2
    assert last_line(result.stderr).startswith("error: $AIP_CHECKPOINT_DIR: 's3://bucket/ckpt'")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", ["gs://bucket/run", "/gcs/bucket/run", "relative/run"])
def test_gs_urls_and_local_paths_are_taken(monkeypatch, path):
    for name in ("AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR", "TF_CONFIG", "CLUSTER_SPEC"):
        monkeypatch.delenv(name, raising=False)
    flags.FLAGS.unparse_flags()
    try:
        flags.FLAGS(["trainer.task", f"--job_dir={path}", f"--data_dir={path}/tfds"])
        config = config_lib.from_flags(flags.FLAGS)  # validation only: nothing is written
    finally:
        flags.FLAGS.unparse_flags()
    assert config.checkpoint_dir.endswith("run/checkpoints") and config.data_dir == f"{path}/tfds"
