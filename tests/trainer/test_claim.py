"""The claim on a run's output dirs (trainer/claim.py): real trainer processes on one job dir,
and the gs:// claim against the emulator through the real google-cloud-storage client."""
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests.support.trainer_runs import last_line, read_json, trainer_env
from trainer import claim, environment
from trainer.errors import ConfigError

REFUSAL_TIMEOUT_S = 120  # a refused run imports no TensorFlow, but the machine may be loaded
RUN_TIMEOUT_S = 300


def _trainer(tmp_path, job_dir, *args, log_name):
    command = [sys.executable, "-m", "trainer.task", f"--job_dir={job_dir}", "--patience=0", *args]
    log = open(tmp_path / log_name, "w")
    process = subprocess.Popen(command, cwd=tmp_path, env=trainer_env(tmp_path), stdout=log, stderr=subprocess.STDOUT)
    process.log = tmp_path / log_name
    log.close()
    return process


def _refusal_names(line, pid):
    assert line.startswith("error: ") and "is in use by another run" in line, line
    assert f"host {socket.gethostname()}, pid {pid}, since " in line, line


def _wait_for(condition, process, timeout=RUN_TIMEOUT_S):
    deadline = time.time() + timeout
    while not condition():
        assert process.poll() is None, process.log.read_text()[-3000:]
        assert time.time() < deadline, f"not within {timeout} s"
        time.sleep(0.05)


def _epochs_done(history):
    try:
        return len(read_json(history))
    except (OSError, ValueError):  # not there yet, or being replaced
        return 0


def test_two_trainers_started_together_exactly_one_trains(tmp_path):
    job_dir = tmp_path / "run"
    runs = [_trainer(tmp_path, job_dir, "--epochs=2", log_name=f"{i}.log") for i in range(2)]
    codes = [p.wait(timeout=RUN_TIMEOUT_S) for p in runs]
    assert sorted(codes) == [0, 2], [p.log.read_text()[-3000:] for p in runs]
    winner, loser = runs if codes[0] == 0 else runs[::-1]
    loser_log = loser.log.read_text()
    _refusal_names(last_line(loser_log), winner.pid)
    assert "Traceback" not in loser_log and "Epoch 1/2" not in loser_log
    assert read_json(job_dir / "model" / "metrics.json")["epochs_run"] == 2
    assert [h["epoch"] for h in read_json(job_dir / "checkpoints" / "history.json")] == [1, 2]
    assert not list(job_dir.glob("*/.claim-*"))  # released when the run ended


def test_second_trainer_is_refused_during_the_run_and_the_claim_dies_with_kill_9(tmp_path):
    job_dir = tmp_path / "run"
    history = job_dir / "checkpoints" / "history.json"
    first = _trainer(tmp_path, job_dir, "--epochs=8", "--batch_size=4", log_name="first.log")
    try:
        _wait_for(lambda: _epochs_done(history) >= 2, first)  # epoch 1's resume state is surely complete
        second = subprocess.run([sys.executable, "-m", "trainer.task", f"--job_dir={job_dir}", "--epochs=8"],
                                cwd=tmp_path, env=trainer_env(tmp_path), capture_output=True, text=True,
                                timeout=REFUSAL_TIMEOUT_S)
        assert second.returncode == 2, second.stderr[-3000:]
        _refusal_names(last_line(second.stderr), first.pid)
        assert "Traceback" not in second.stderr
        assert first.poll() is None, "the first run must still be training, undisturbed"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert list(job_dir.glob("checkpoints/.claim-*")), "kill -9 leaves the claim file; its lock died"

    third = subprocess.run([sys.executable, "-m", "trainer.task", f"--job_dir={job_dir}", "--epochs=8",
                            "--batch_size=4", "--patience=0"], cwd=tmp_path, env=trainer_env(tmp_path),
                           capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert third.returncode == 0, third.stderr[-3000:]
    assert "resumed after epoch" in third.stdout
    assert read_json(job_dir / "model" / "metrics.json")["epochs_run"] == 8


# -- in-process: one task name, one claim -----------------------------------------------------------


def _worker(config, index):
    return dataclasses.replace(config, cluster=environment.Cluster(role="worker", index=index, num_workers=3,
                                                                   is_chief=False))


def test_tasks_of_one_job_share_the_dirs_and_a_second_job_is_refused(parse_flags, tmp_path):
    chief = parse_flags(f"--job_dir={tmp_path / 'run'}")
    with claim.claimed(chief), claim.claimed(_worker(chief, 0)), claim.claimed(_worker(chief, 1)):
        for task in (chief, _worker(chief, 1)):  # the same task of another job on the same dirs
            with pytest.raises(ConfigError, match=f"in use by another run \\(host .*, pid {os.getpid()}, since "):
                with claim.claimed(task):
                    pass
    with claim.claimed(chief):  # released: free again
        pass
    assert not (tmp_path / "run").exists()  # nothing was written: the dirs the claim made are gone


# -- gs:// ----------------------------------------------------------------------------------------


@pytest.fixture
def gcs_config(parse_flags, gcs_emulator, gcs_bucket, monkeypatch):
    for name, value in gcs_emulator.client_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("CLOUD_ML_JOB_ID", raising=False)
    monkeypatch.setattr(claim, "HEARTBEAT_S", 0.2)
    return parse_flags(f"--job_dir=gs://{gcs_bucket}/run")


def _claim_object(gcs_emulator, bucket):
    return gcs_emulator.client().bucket(bucket).blob("run/checkpoints/.claim-chief-0")


def _plant(gcs_emulator, bucket, **holder):
    """A claim of another run, as that run's trainer would have written it."""
    record = {"host": "vm-7", "pid": 4242, "since": "2026-11-30 08:00:00 UTC", "task": "chief:0", "job": None,
              "machine": None, **holder}
    _claim_object(gcs_emulator, bucket).upload_from_string(json.dumps(record))


def test_gcs_claim_is_exclusive_and_released(gcs_config, gcs_emulator, gcs_bucket):
    with claim.claimed(gcs_config):
        held = json.loads(_claim_object(gcs_emulator, gcs_bucket).download_as_text())
        assert (held["host"], held["pid"]) == (socket.gethostname(), os.getpid())
        with pytest.raises(ConfigError, match=f"pid {os.getpid()}, since .*last heartbeat"):
            with claim.claimed(gcs_config):  # this process is alive: its claim is not taken over
                pass
    assert gcs_emulator.list(gcs_bucket) == []


def test_gcs_fresh_claim_of_another_host_is_refused(gcs_config, gcs_emulator, gcs_bucket):
    _plant(gcs_emulator, gcs_bucket)
    with pytest.raises(ConfigError) as refused:
        with claim.claimed(gcs_config):
            pass
    message = str(refused.value)
    assert "in use by another run (host vm-7, pid 4242, since 2026-11-30 08:00:00 UTC, last heartbeat" in message
    assert json.loads(_claim_object(gcs_emulator, gcs_bucket).download_as_text())["host"] == "vm-7"  # untouched


def test_gcs_stale_claim_is_taken_over(gcs_config, gcs_emulator, gcs_bucket, monkeypatch, caplog):
    monkeypatch.setattr(claim, "STALE_AFTER_S", 1)
    _plant(gcs_emulator, gcs_bucket)
    time.sleep(1.5)  # the planted claim's last heartbeat is now older than STALE_AFTER_S
    with claim.claimed(gcs_config):
        assert json.loads(_claim_object(gcs_emulator, gcs_bucket).download_as_text())["pid"] == os.getpid()
    assert "Taking over the claim" in caplog.text and "no heartbeat for" in caplog.text
    assert gcs_emulator.list(gcs_bucket) == []


def test_gcs_claim_of_the_same_vertex_job_is_taken_over_at_once(gcs_config, gcs_emulator, gcs_bucket, monkeypatch,
                                                                caplog):
    monkeypatch.setenv("CLOUD_ML_JOB_ID", "123456789")
    _plant(gcs_emulator, gcs_bucket, job="123456789")  # this task before the VM was preempted
    with claim.claimed(gcs_config):
        pass
    assert "same Vertex AI job 123456789" in caplog.text


def test_gcs_heartbeat_keeps_the_claim_fresh(gcs_config, gcs_emulator, gcs_bucket):
    with claim.claimed(gcs_config):
        blob = _claim_object(gcs_emulator, gcs_bucket)
        blob.reload()
        first = blob.generation
        deadline = time.time() + 60
        while blob.generation == first:
            assert time.time() < deadline, "no heartbeat rewrote the claim"
            time.sleep(0.1)
            blob.reload()


HOLDER_SCRIPT = """
import sys, time
from absl import flags
from trainer import claim, config
flags.FLAGS(["trainer.task", "--job_dir=" + sys.argv[1]])
claim.HEARTBEAT_S = 0.2
with claim.claimed(config.from_flags()):
    print("claimed", flush=True)
    time.sleep(600)
"""


def test_gcs_run_that_lost_its_claim_stops(tmp_path, gcs_emulator, gcs_bucket):
    env = {**trainer_env(tmp_path), **gcs_emulator.client_env()}
    holder = subprocess.Popen([sys.executable, "-c", HOLDER_SCRIPT, f"gs://{gcs_bucket}/run"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "claimed\n", holder.stderr.read()
        _plant(gcs_emulator, gcs_bucket, host="vm-9")  # another run took it over (this one looked dead to it)
        assert holder.wait(timeout=REFUSAL_TIMEOUT_S) == 1
    finally:
        holder.kill()
        holder.wait()
    assert last_line(holder.stderr.read()).startswith("error: this run lost its claim gs://")
