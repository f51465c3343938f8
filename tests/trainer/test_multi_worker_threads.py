"""A long multi-worker run keeps its thread count flat (issue 15, point 5).

With a timeout on its collectives, TensorFlow gave every collective a thread that slept for the
whole timeout: a run of many small steps grew by thousands of threads an epoch and aborted at
the kernel's limit (`what(): Resource temporarily unavailable`, exit 134).
"""
import subprocess
import time

from tests.trainer.test_launch import _epochs_done, _launch

EPOCHS = 4
MAX_GROWTH = 100  # threads, from the 2nd epoch to the last; the timed collectives added ~2000 an epoch here


def _threads(pid: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))


def test_the_thread_count_stays_flat_over_many_small_steps(tmp_path):
    # 180 steps an epoch of a tiny model: many collectives, little compute.
    args, env = _launch(tmp_path, f"--epochs={EPOCHS}", "--batch_size=4", "--units=8", "--num_layers=1",
                        "--patience=0", f"--job_dir={tmp_path}/run")
    history = tmp_path / "run" / "checkpoints" / "history.json"
    threads = {}  # epochs done -> thread count of each replica, sampled as the chief records the epoch
    with open(tmp_path / "launch.log", "w") as log:
        launcher = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            while launcher.poll() is None:
                done = _epochs_done(history)
                if done and done not in threads:
                    with open(f"/proc/{launcher.pid}/task/{launcher.pid}/children") as f:
                        replicas = f.read().split()
                    try:
                        threads[done] = [_threads(pid) for pid in replicas]
                    except (OSError, StopIteration):  # a replica ending after the last epoch
                        pass
                time.sleep(0.05)
        finally:
            launcher.kill()
            launcher.wait()
    log_text = open(tmp_path / "launch.log").read()
    assert launcher.returncode == 0, log_text[-3000:]
    assert {2, EPOCHS} <= set(threads), threads
    growth = [last - second for second, last in zip(threads[2], threads[EPOCHS])]
    assert len(growth) == 2 and max(growth) <= MAX_GROWTH, f"threads per replica by epoch: {threads}"
