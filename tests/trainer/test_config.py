"""Flag parsing and Config validation, in-process (no TensorFlow needed)."""
import json

import pytest

from trainer.errors import ConfigError


def test_both_flag_spellings_and_float_formatted_integers(parse_flags, tmp_path):
    config = parse_flags("--learning_rate", "0.05", "--batch_size=256.0", "--epochs", "7.0",
                         "--optimizer=sgd", f"--job_dir={tmp_path}")
    assert config.learning_rate == 0.05
    assert config.batch_size == 256 and isinstance(config.batch_size, int)
    assert config.epochs == 7
    assert config.optimizer == "sgd"


@pytest.mark.parametrize("args, flag", [
    (["--learning_rat=0.1"], "learning_rat"),
    (["--batch_size=12.5"], "batch_size"),
    (["--batch_size=abc"], "batch_size"),
    (["--optimizer=adagrad"], "optimizer"),
])
def test_flag_errors_name_the_flag(parse_flags, tmp_path, args, flag):
    with pytest.raises(ConfigError, match=flag):
        parse_flags(*args, f"--job_dir={tmp_path}")


def test_unknown_flag_suggests_the_right_one(parse_flags, tmp_path):
    with pytest.raises(ConfigError, match="Did you mean: learning_rate"):
        parse_flags("--learning_rat=0.1", f"--job_dir={tmp_path}")


def test_positional_argument_is_rejected(parse_flags, tmp_path):
    with pytest.raises(ConfigError, match="unexpected argument 'oops'"):
        parse_flags("oops", f"--job_dir={tmp_path}")


@pytest.mark.parametrize("args, message", [
    (["--learning_rate=-0.1"], "--learning_rate: must be a positive number"),
    (["--learning_rate=nan"], "--learning_rate: must be a positive number"),
    (["--batch_size=0"], "--batch_size: must be at least 1"),
    (["--epochs=0"], "--epochs: must be at least 1"),
    (["--validation_split=0"], "--validation_split: must be in (0, 1)"),
    (["--validation_split=1.5"], "--validation_split: must be in (0, 1)"),
    (["--dropout=1"], "--dropout: must be in [0, 1)"),
    (["--momentum=1.0"], "--momentum: must be in [0, 1)"),
    (["--label_smoothing=-0.1"], "--label_smoothing: must be in [0, 1)"),
    (["--patience=-1"], "--patience: must be >= 0"),
    (["--warmup_epochs=5", "--epochs=5"], "--warmup_epochs: (5) must be smaller than --epochs"),
    (["--units=0"], "--units: must be at least 1"),
    (["--cpu_replicas=-2"], "--cpu_replicas: must be >= 0"),
    (["--dataset=no_such_dataset"], "--dataset: unknown dataset 'no_such_dataset'"),
    (["--dataset=../etc"], "--dataset: unknown dataset '../etc'"),
    (["--dataset="], "--dataset: unknown dataset ''"),
])
def test_out_of_range_values_are_rejected(parse_flags, tmp_path, args, message):
    with pytest.raises(ConfigError) as raised:
        parse_flags(*args, f"--job_dir={tmp_path}")
    assert str(raised.value).startswith(message)


def test_output_dirs_default_to_job_dir_subfolders(parse_flags, tmp_path):
    config = parse_flags(f"--job_dir={tmp_path}")
    assert (config.model_dir, config.checkpoint_dir, config.tensorboard_dir) == (
        str(tmp_path / "model"), str(tmp_path / "checkpoints"), str(tmp_path / "logs"))


def test_output_dirs_follow_vertex_variables(parse_flags, tmp_path, monkeypatch):
    for name, sub in (("AIP_MODEL_DIR", "m"), ("AIP_CHECKPOINT_DIR", "c"), ("AIP_TENSORBOARD_LOG_DIR", "l")):
        monkeypatch.setenv(name, str(tmp_path / "trial7" / sub))
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "7")
    config = parse_flags(f"--job_dir={tmp_path / 'ignored'}")
    assert config.model_dir == str(tmp_path / "trial7" / "m")
    assert config.checkpoint_dir == str(tmp_path / "trial7" / "c")
    assert config.tensorboard_dir == str(tmp_path / "trial7" / "l")
    assert config.trial_id == "7"


def test_explicit_dir_flags_win_over_vertex_variables(parse_flags, tmp_path, monkeypatch):
    monkeypatch.setenv("AIP_MODEL_DIR", str(tmp_path / "aip"))
    config = parse_flags(f"--model_dir={tmp_path / 'mine'}", f"--job_dir={tmp_path}")
    assert config.model_dir == str(tmp_path / "mine")


def test_gcs_job_dir_subfolders(parse_flags):
    from absl import flags

    from trainer import config as config_lib

    parse_flags()  # resets the flags
    flags.FLAGS(["trainer.task", "--job_dir=gs://bucket/run/"])
    config = config_lib.from_flags(flags.FLAGS, env={})  # no write probe: nothing to reach here
    assert (config.model_dir, config.checkpoint_dir) == ("gs://bucket/run/model", "gs://bucket/run/checkpoints")


def test_unwritable_output_dir_is_a_config_error(parse_flags, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    with pytest.raises(ConfigError, match="--model_dir: cannot write to"):
        parse_flags(f"--job_dir={blocker / 'run'}")


def test_finished_run_is_not_overwritten_without_consent(parse_flags, tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "metrics.json").write_text("{}")
    with pytest.raises(ConfigError, match="already holds a finished run"):
        parse_flags(f"--job_dir={tmp_path}")
    assert parse_flags(f"--job_dir={tmp_path}", "--overwrite").overwrite


def test_config_json_records_hyperparameters_and_versions(parse_flags, tmp_path):
    record = json.loads(parse_flags(f"--job_dir={tmp_path}", "--units=33").to_json())
    assert record["units"] == 33
    assert record["versions"]["tensorflow"].startswith("2.21")
    assert record["cluster"]["num_workers"] == 1


def test_metric_goal_follows_the_metric(parse_flags, tmp_path):
    assert parse_flags(f"--job_dir={tmp_path}").metric_goal == "max"
    assert parse_flags(f"--job_dir={tmp_path}", "--hypertune_metric=val_loss").metric_goal == "min"
