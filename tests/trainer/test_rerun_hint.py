""""Rerun the same command to resume" must be true: a default run (runs/<time>, new each run)
names the --job_dir to add, and adding it resumes."""
import glob
import signal
import subprocess
import sys
import time

import pytest

from tests.support.trainer_runs import last_line, read_json, run_trainer, trainer_env

SLOW_EPOCHS = ["--epochs=6", "--batch_size=4", "--patience=0"]


def _wait_for_an_epoch(tmp_path, process, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "the trainer ended before it could be stopped"
        for path in glob.glob(str(tmp_path / "runs" / "*" / "checkpoints" / "backup" / "ckpt-*.index")):
            return path.split("/checkpoints/")[0]
        time.sleep(0.05)
    raise AssertionError(f"no completed epoch within {timeout} s")


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 1), (signal.SIGINT, 130)])
def test_a_stopped_default_run_names_the_job_dir_and_resumes_with_it(tmp_path, signum, code):
    env = trainer_env(tmp_path)
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([sys.executable, "-m", "trainer.task", *SLOW_EPOCHS], cwd=tmp_path, env=env,
                                 stdout=log, stderr=subprocess.PIPE, text=True)
        try:
            job_dir = _wait_for_an_epoch(tmp_path, first)
        finally:
            first.send_signal(signum)
            _, stderr = first.communicate(timeout=120)
    assert first.returncode == code, stderr[-3000:]
    assert "Traceback" not in stderr  # being stopped is no bug: the one line says it all
    assert last_line(stderr).endswith(f"rerun the same command with --job_dir={job_dir} to resume "
                                      + ("from it" if signum == signal.SIGTERM else "from the last completed epoch"))

    second = run_trainer(tmp_path, *SLOW_EPOCHS, f"--job_dir={job_dir}", env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed after epoch" in second.stdout
    assert read_json(f"{job_dir}/model/metrics.json")["epochs_run"] == 6
    assert len(glob.glob(str(tmp_path / "runs" / "*"))) == 1  # no second, fresh run dir


def test_the_hint_names_a_job_dir_only_when_it_was_defaulted(parse_flags, tmp_path, monkeypatch):
    default = parse_flags()
    assert default.rerun == f"rerun the same command with --job_dir={default.job_dir}"
    assert parse_flags(f"--job_dir={tmp_path}/run").rerun == "rerun the same command"
    for name, sub in (("AIP_MODEL_DIR", "model"), ("AIP_CHECKPOINT_DIR", "ckpt"), ("AIP_TENSORBOARD_LOG_DIR", "logs")):
        monkeypatch.setenv(name, str(tmp_path / sub))
    assert parse_flags().rerun == "rerun the same command"  # a tuning trial: the job dir is not used
