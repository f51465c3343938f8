"""Multi-worker training with real processes on loopback: the launcher, MWMS, kills and restarts."""
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.support.trainer_runs import hypertune_records, last_line, logged_epochs, read_json, trainer_env
from trainer import launch


def test_tf_config_and_cluster_spec_are_shaped_as_vertex_shapes_them():
    addresses = ["127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003"]
    env = launch.cluster_env(addresses, "worker", 1, trial="4")
    tf_config, cluster_spec = json.loads(env["TF_CONFIG"]), json.loads(env["CLUSTER_SPEC"])
    assert tf_config == {"cluster": {"chief": ["127.0.0.1:1001"], "worker": ["127.0.0.1:1002", "127.0.0.1:1003"]},
                         "task": {"type": "worker", "index": 1, "trial": "4"}, "environment": "cloud"}
    assert cluster_spec == {"cluster": {"workerpool0": ["127.0.0.1:1001"],
                                        "workerpool1": ["127.0.0.1:1002", "127.0.0.1:1003"]},
                            "task": {"type": "workerpool1", "index": 1, "trial": "4"}, "environment": "cloud"}
    chief = json.loads(launch.cluster_env(addresses, "chief", 0)["TF_CONFIG"])
    assert chief["task"] == {"type": "chief", "index": 0}


def test_a_single_replica_gets_a_chief_only_cluster():
    tf_config = json.loads(launch.cluster_env(["127.0.0.1:1001"], "chief", 0)["TF_CONFIG"])
    assert tf_config["cluster"] == {"chief": ["127.0.0.1:1001"]}


def test_free_ports_are_distinct():
    ports = launch.free_ports(5)
    assert len(set(ports)) == 5


def _launch(tmp_path, *trainer_args, workers=2):
    env = trainer_env(tmp_path, TMPDIR=str(tmp_path / "tmp"))
    os.makedirs(tmp_path / "tmp", exist_ok=True)
    return [sys.executable, "-m", "trainer.launch", f"--workers={workers}", "--", *trainer_args], env


def test_two_workers_train_together_and_only_the_chief_writes(tmp_path):
    args, env = _launch(tmp_path, "--epochs=2", f"--job_dir={tmp_path}/run", "--patience=0")
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics = read_json(tmp_path / "run" / "model" / "metrics.json")
    assert (metrics["strategy"], metrics["num_replicas"], metrics["epochs_run"]) == (
        "MultiWorkerMirroredStrategy", 2, 2)
    assert "[chief] Epoch 1/2" in result.stdout and "[worker-0] Epoch 1/2" in result.stdout
    assert "Training done" in result.stdout and "[worker-0] Training done" not in result.stdout
    # Hypertune reports come from the chief alone: one per epoch.
    assert [int(r["global_step"]) for r in hypertune_records(tmp_path)] == [1, 2]
    leftovers = [p for p in glob.glob(str(tmp_path / "run" / "**"), recursive=True) if "workertemp" in p]
    assert leftovers == []
    # The worker's own temporary dirs are gone (TFDS may leave a tmp*tfds dir of its own there).
    assert [d for d in os.listdir(tmp_path / "tmp") if d.startswith("trainer-worker-")] == []


def _wait_for(predicate, what, timeout=120, processes=()):
    deadline = time.time() + timeout
    while time.time() < deadline:
        for p in processes:
            assert p.poll() is None, f"a process ended while waiting for {what}"
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _epochs_done(path):
    try:
        return len(read_json(path))
    except (OSError, ValueError):
        return 0


def _worker_pid(launcher_pid):
    """The worker process among the launcher's children (its TF_CONFIG says worker)."""
    children = open(f"/proc/{launcher_pid}/task/{launcher_pid}/children").read().split()
    for pid in children:
        environ = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        if any(e.startswith(b"TF_CONFIG=") and b'"type": "worker"' in e for e in environ):
            return int(pid)
    raise AssertionError("no worker process found")


# SIGSTOP: a frozen worker (no TCP reset); only the coordination service's heartbeat notices it.
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP])
def test_killed_worker_fails_the_job_promptly_and_the_rerun_resumes(tmp_path, sig):
    args, env = _launch(tmp_path, "--epochs=6", f"--job_dir={tmp_path}/run", "--batch_size=8", "--patience=0")
    history = tmp_path / "run" / "checkpoints" / "history.json"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for(lambda: _epochs_done(history) >= 2, "two epochs", processes=[first])
            os.kill(_worker_pid(first.pid), sig)
            killed_at = time.time()
            first.wait(timeout=90)
        finally:
            first.kill()
    failed_after = time.time() - killed_at
    assert first.returncode != 0
    log_text = open(tmp_path / "first.log").read()
    if sig == signal.SIGTERM:
        assert "received SIGTERM" in log_text
    if sig != signal.SIGTERM:  # the peer named as the cluster names it, not as a TensorFlow node
        assert re.search(r"\[chief\] error: lost contact with worker:0 \(127\.0\.0\.1:\d+\); rerun", log_text), \
            log_text[-3000:]
    assert "lost contact with" in log_text or "received SIGTERM" in log_text, log_text[-3000:]
    if sig != signal.SIGSTOP:  # the chief ends by itself once it has said why, not by the launcher's kill
        assert "stopping the chief" not in log_text and "the chief exited with status 1 " in log_text, \
            log_text[-3000:]
    # A frozen worker is killed by the launcher once the chief has failed and the workers' grace is over.
    bound = 30 + (launch.STOP_GRACE_S if sig == signal.SIGSTOP else 0)
    assert failed_after < bound, f"the job took {failed_after:.0f} s to fail"
    done = _epochs_done(history)
    assert not (tmp_path / "run" / "model" / "metrics.json").exists()
    # The chief's TensorBoard events outlive its exit without teardown: every epoch it completed is there
    # (the last may be missing where the loss came in the end-of-epoch saves, after history.json).
    assert done - 1 <= len(logged_epochs(tmp_path / "run" / "logs" / "validation")) <= done

    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-4000:]
    chief_epochs = [line for line in second.stdout.splitlines() if line.startswith("[chief] Epoch ")]
    assert 6 - done <= len(chief_epochs) <= 6 - done + 1, chief_epochs  # resumed, not started over
    metrics = read_json(tmp_path / "run" / "model" / "metrics.json")
    assert metrics["epochs_run"] == 6 and metrics["num_replicas"] == 2
    assert [h["epoch"] for h in read_json(history)] == list(range(1, 7))


def test_ctrl_c_stops_the_launch_even_where_its_parent_ignores_sigint(tmp_path):
    """A shell starts `cmd &` with SIGINT ignored; the launcher still takes it, and so must the replicas."""
    args, env = _launch(tmp_path, "--epochs=200", f"--job_dir={tmp_path}/run", "--batch_size=8", "--patience=0")
    history = tmp_path / "run" / "checkpoints" / "history.json"
    with open(tmp_path / "launch.log", "w") as log:
        launcher = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        try:
            _wait_for(lambda: _epochs_done(history) >= 1, "one epoch", processes=[launcher])
            launcher.send_signal(signal.SIGINT)
            launcher.wait(timeout=120)
        finally:
            launcher.kill()
    stderr = open(tmp_path / "launch.log").read()
    assert launcher.returncode == 130, stderr[-3000:]
    assert "[chief] error: interrupted; rerun the same command to resume" in stderr
    assert "[worker-0] error: interrupted" in stderr
    assert _epochs_done(history) < 200


def test_a_worker_that_dies_during_start_up_stops_the_launch(tmp_path):
    args, env = _launch(tmp_path, f"--job_dir={tmp_path}/run")
    launcher = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True)
    try:
        deadline = time.time() + 30
        while True:  # kill the worker as soon as it exists, long before the cluster can form
            try:
                os.kill(_worker_pid(launcher.pid), signal.SIGKILL)
                break
            except (AssertionError, OSError):
                assert time.time() < deadline, "no worker process appeared"
                time.sleep(0.02)
        killed_at = time.time()
        _, stderr = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert launcher.returncode != 0
    assert "[launch] worker-0 exited with status -9; stopping the chief" in stderr
    assert time.time() - killed_at < launch.WORKER_FAILURE_GRACE_S + 30
    assert last_line(stderr).startswith("error: the chief exited with status")


def test_a_worker_that_never_starts_fails_the_chief_within_the_bound(tmp_path):
    chief_port, missing_port = launch.free_ports(2)
    env = trainer_env(tmp_path, **launch.cluster_env([f"127.0.0.1:{chief_port}", f"127.0.0.1:{missing_port}"],
                                                     "chief", 0))
    started = time.time()
    result = subprocess.run([sys.executable, "-m", "trainer.task", f"--job_dir={tmp_path}/run", "--startup_timeout=8"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    elapsed = time.time() - started
    assert result.returncode != 0
    line = last_line(result.stderr)
    assert line.startswith("error: multi-worker start-up of chief:0 timed out after 8 s (--startup_timeout)"), line
    assert f"worker:0 (127.0.0.1:{missing_port}) never came up" in line
    assert elapsed < 60


def test_sigterm_stops_a_single_process_run_promptly_and_the_rerun_resumes(tmp_path):
    args = [sys.executable, "-m", "trainer.task", f"--job_dir={tmp_path}/run", "--epochs=6", "--batch_size=4",
            "--patience=0"]
    env = trainer_env(tmp_path)
    history = tmp_path / "run" / "checkpoints" / "history.json"
    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: _epochs_done(history) >= 2, "two epochs", processes=[first])
        first.send_signal(signal.SIGTERM)
        sent = time.time()
        _, stderr = first.communicate(timeout=60)
    finally:
        first.kill()
    assert time.time() - sent < 30
    assert first.returncode == 1
    assert last_line(stderr).startswith("error: received SIGTERM (preemption or maintenance)"), stderr[-2000:]
    done = _epochs_done(history)
    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resumed after epoch {done}" in second.stdout or f"resumed after epoch {done - 1}" in second.stdout
    assert read_json(tmp_path / "run" / "model" / "metrics.json")["epochs_run"] == 6
