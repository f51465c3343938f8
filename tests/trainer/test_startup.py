"""Start-up of `python -m trainer.task`: bad input refused before anything is written, and SIGTERM
before training began, each ending with one `error:` line (real processes, real signals)."""
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.trainer_runs import last_line, run_trainer, trainer_env
from trainer.errors import ConfigError

STARTUP_TIMEOUT_S = 180


@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seed_out_of_range_is_a_config_error(parse_flags, tmp_path, seed):
    with pytest.raises(ConfigError, match=r"^--seed: must be in \[0, 4294967295\]"):
        parse_flags(f"--seed={seed}", f"--job_dir={tmp_path / 'run'}")
    assert parse_flags(f"--seed={2**32 - 1}", f"--job_dir={tmp_path / 'run'}").seed == 2**32 - 1


def _assert_refused_with_nothing_written(result, tmp_path, words):
    assert sorted(os.listdir(tmp_path)) in ([], ["tfds"]), os.listdir(tmp_path)  # TFDS data is no output
    assert result.returncode == 2, result.stderr[-3000:]
    line = last_line(result.stderr)
    assert line.startswith("error: ") and all(w in line for w in words), line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, words", [
    (["--seed=4294967296"], ["--seed"]),
    (["--validation_split=0.9999"], ["--validation_split=0.9999", "leaves no training example"]),
])
def test_bad_seed_or_split_exits_2_and_writes_nothing(tmp_path, args, words):
    result = run_trainer(tmp_path, *args, "--epochs=1", f"--job_dir={tmp_path}/run", timeout=STARTUP_TIMEOUT_S)
    _assert_refused_with_nothing_written(result, tmp_path, words)


@pytest.mark.parametrize("job_dir, words", [
    ("deep/" + "n" * 300 + "/run", ["--model_dir: cannot write to", "longer than this file system's 255 bytes"]),
    ("/".join(["d" * 200] * 20), ["--model_dir: cannot write to", "the path is longer than"]),
])
def test_too_long_job_dir_exits_2_and_creates_nothing(tmp_path, job_dir, words):
    result = run_trainer(tmp_path, f"--job_dir={tmp_path / job_dir}", timeout=STARTUP_TIMEOUT_S)
    _assert_refused_with_nothing_written(result, tmp_path, words)


# -- SIGTERM during start-up ----------------------------------------------------------------------------


def _blocked_on_flock(pid):
    """Whether pid waits for an flock (a `->` line of /proc/locks)."""
    with open("/proc/locks") as f:
        return any("->" in line and line.split()[5] == str(pid) for line in f if len(line.split()) > 5)


def _claim_taken(job_dir):
    """Flags are parsed and the claim taken: TensorFlow's import (seconds) comes next."""
    return lambda pid: os.path.exists(os.path.join(job_dir, "checkpoints", ".claim-chief-0"))


@pytest.mark.parametrize("moment", ["importing TensorFlow", "preparing the dataset"])
def test_sigterm_during_startup_ends_with_one_error_line(tmp_path, moment):
    job_dir = str(tmp_path / "run")
    env = trainer_env(tmp_path)
    lock = None
    if moment == "preparing the dataset":  # another trainer prepares this data dir: this one waits for it
        os.makedirs(env["TFDS_DATA_DIR"])
        lock = open(os.path.join(env["TFDS_DATA_DIR"], ".trainer-prepare.lock"), "w")
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)
    reached = _claim_taken(job_dir) if moment == "importing TensorFlow" else _blocked_on_flock
    process = subprocess.Popen([sys.executable, "-m", "trainer.task", f"--job_dir={job_dir}", "--epochs=1"],
                               cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + STARTUP_TIMEOUT_S
        while not reached(process.pid):
            assert process.poll() is None and time.time() < deadline, f"never got to {moment}"
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=STARTUP_TIMEOUT_S)
    finally:
        process.kill()
        if lock:
            lock.close()
    assert process.returncode == 1, stderr[-3000:]
    assert last_line(stderr).startswith("error: stopped by SIGTERM during start-up, before training began: "
                                        "nothing was trained"), stderr[-3000:]
    assert "Traceback" not in stderr and "Epoch 1/1" not in stdout
    assert not os.path.exists(job_dir)  # the claim's dirs held nothing else: removed with it
