"""Nothing of a trial outlives it, whatever its command forks; a trial that cannot start or
floods its logs ends as it should.

Real tuners and real trial processes (tests/tuner/trial_script.py, which records its own pid
and start time, its child's, and whether it was alone holding its trial folder's lock), real
kill -9 and SIGINT; processes are checked in /proc by the pids and start times they recorded.
"""
import os
import shlex
import signal
import stat
import sys
import time

import pytest

from tests.tuner.support import (
    TRIAL_SCRIPT,
    config,
    last_line,
    read_csv,
    reported_steps,
    run_tuner,
    start_tuner,
    trial_runs,
    wait_for,
)
from tuner import keeper, runner
from tuner.runner import Slot

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="checks processes in /proc")


def gone(pid, start):
    """The process that had this pid and start time has ended (a zombie has ended too)."""
    stat_ = keeper.proc_stat(pid)
    return stat_ is None or stat_[3] != start or stat_[0] in ("Z", "X")


def wrapper(*args):
    """A trial command that forks the real trial: a shell wrapper, as launchers are."""
    script = f'{shlex.quote(sys.executable)} {shlex.quote(str(TRIAL_SCRIPT))} "$@" & wait $!'
    return ["sh", "-c", script, "sh", *args]


def test_a_forking_trial_command_ends_with_its_killed_tuner(write_config, tmp_path):
    """kill -9 of the tuner while a shell wrapper's background trial runs: the rerun runs the
    same trial id, and no process of the first run is left beside it."""
    path = write_config(config(maxTrialCount=1, parallelTrialCount=1))
    out = tmp_path / "study"
    tuner = start_tuner("run", path, "--output-dir", out, "--",
                        *wrapper("--steps=30", "--sleep=1"))  # 30 s if it were left running
    try:
        wait_for(lambda: reported_steps(out, 1) >= 1, timeout=60, what="trial 1 to report")
        tuner.kill()
        tuner.wait()
    finally:
        tuner.kill()
        tuner.communicate()
    result = run_tuner("run", path, "--output-dir", out, "--",
                       *wrapper("--steps=30", "--sleep=0"))
    assert result.returncode == 0, result.stderr
    first, second = trial_runs(out, 1)
    assert second["alone"], "the rerun's trial shared its folder with the first run's"
    assert gone(first["pid"], first["start"])
    assert [r["state"] for r in read_csv(out / "trials.csv")] == ["SUCCEEDED"]


def test_a_rerun_first_ends_what_a_killed_keeper_left(write_config, tmp_path):
    """The tuner frozen, its trial's keeper killed, then the tuner: nothing ended the trial, so
    the rerun must end it (by the run recorded in the study) before it runs the trial again."""
    path = write_config(config(maxTrialCount=1, parallelTrialCount=1,
                               args=["--steps=30", "--sleep=1"]))
    out = tmp_path / "study"
    tuner = start_tuner("run", path, "--output-dir", out)
    try:
        wait_for(lambda: reported_steps(out, 1) >= 1, timeout=60, what="trial 1 to report")
        (first,) = trial_runs(out, 1)
        tuner.send_signal(signal.SIGSTOP)
        os.kill(keeper.proc_stat(first["pid"])[1], signal.SIGKILL)
        tuner.kill()
        tuner.wait()
    finally:
        tuner.kill()
        tuner.communicate()
    assert not gone(first["pid"], first["start"])  # left behind, for the rerun to end
    result = run_tuner("run", path, "--output-dir", out, "--", sys.executable, TRIAL_SCRIPT,
                       "--steps=30", "--sleep=0")
    assert result.returncode == 0, result.stderr
    _, second = trial_runs(out, 1)
    assert second["alone"] and gone(first["pid"], first["start"])


@pytest.mark.parametrize("end", ["normal end", "Ctrl-C", "kill -9"])
def test_a_child_that_ignores_sigterm_does_not_outlive_its_trial(write_config, tmp_path, end):
    steps = 1 if end == "normal end" else 100
    path = write_config(config(maxTrialCount=1, parallelTrialCount=1,
                               args=[f"--steps={steps}", "--sleep=0.2", "--child"]))
    out = tmp_path / "study"
    tuner = start_tuner("run", path, "--output-dir", out)
    try:
        if end == "normal end":
            tuner.communicate(timeout=120)
            assert tuner.returncode == 0
        else:
            wait_for(lambda: reported_steps(out, 1) >= 1, timeout=60, what="trial 1 to report")
            if end == "Ctrl-C":
                tuner.send_signal(signal.SIGINT)
                tuner.communicate(timeout=120)
                assert tuner.returncode == 128 + signal.SIGINT
            else:
                tuner.kill()
                tuner.wait()
    finally:
        tuner.kill()
        tuner.communicate()
    (run,) = trial_runs(out, 1)
    if end == "kill -9":  # nobody to wait for: the keeper ends the tree on its own
        wait_for(lambda: gone(*run["child"]), timeout=60, what="the trial's child to be ended")
    assert gone(*run["child"]) and gone(run["pid"], run["start"])
    if end == "normal end":
        assert [r["state"] for r in read_csv(out / "trials.csv")] == ["SUCCEEDED"]


def test_a_detached_grandchild_is_ended_with_its_trial(tmp_path):
    """A daemon that left the trial's session (setsid) and its parent is still found: it stays
    in the keeper's tree, and the keeper is a subreaper."""
    pid_file = tmp_path / "daemon.pid"
    code = ("import os, sys, time\n"
            "if os.fork() == 0:\n"
            "    os.setsid()\n"
            "    if os.fork() == 0:\n"
            "        start = open('/proc/self/stat').read().rsplit(')', 1)[1].split()[19]\n"
            "        open(sys.argv[1] + '.new', 'w').write(f'{os.getpid()} {start}')\n"
            "        os.rename(sys.argv[1] + '.new', sys.argv[1])\n"
            "        time.sleep(600)\n"
            "    os._exit(0)\n"
            "while not os.path.exists(sys.argv[1]):\n"
            "    time.sleep(0.05)\n")
    process = _trial_process(tmp_path, [sys.executable, "-c", code, str(pid_file)])
    assert _wait_exit(process) == 0
    daemon, start = map(int, pid_file.read_text().split())
    assert gone(daemon, start)


def test_what_a_killed_keeper_left_is_ended(tmp_path):
    """The keeper itself killed with SIGKILL: the tuner ends the rest of its session."""
    code = ("import subprocess, sys, time\n"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
            "print(child.pid, flush=True); time.sleep(600)\n")
    process = _trial_process(tmp_path, [sys.executable, "-c", code])
    stdout = tmp_path / "1" / "stdout"
    wait_for(lambda: stdout.read_text().splitlines()[-1].isdigit(), timeout=60, what="the trial's child")
    child = int(stdout.read_text().splitlines()[-1])
    child_start = keeper.proc_stat(child)[3]
    os.kill(process.pid, signal.SIGKILL)
    assert _wait_exit(process) == -signal.SIGKILL
    assert gone(child, child_start)


# -- a trial that cannot start ----------------------------------------------------------------

def _trial_process(tmp_path, argv, **fields):
    env = runner.full_env(runner.contract_env("1", str(tmp_path / "1"), Slot(0)), Slot(0))
    process = runner.TrialProcess("1", argv, env, str(tmp_path / "1"), "score", **fields)
    process.start(1)
    process.release()
    return process


def _wait_exit(process):
    wait_for(lambda: process.poll() is not None, timeout=60, what="the trial to end")
    return process.poll()


def _unstartable(tmp_path, kind):
    path = tmp_path / "bin" / "train"
    path.parent.mkdir()
    if kind == "missing":
        return path, 127, "No such file or directory; check the trial command"
    path.write_bytes(b"\x7fELF garbage, not a program\n")
    if kind == "not executable":
        return path, 126, "Permission denied; make it executable (chmod +x)"
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path, 126, "Exec format error; it is not a program"


@pytest.mark.parametrize("kind", ["missing", "not executable", "not a program"])
def test_a_command_that_cannot_start_ends_with_one_line(tmp_path, kind):
    command, code, why = _unstartable(tmp_path, kind)
    process = _trial_process(tmp_path, [str(command), "--x=0.5"])
    assert _wait_exit(process) == code
    (line,) = process.stderr_tail()
    assert line.startswith(f"cannot start {str(command)!r}: {why}")


def test_a_trial_that_cannot_start_is_failed_with_its_reason(write_config, tmp_path):
    command, _, why = _unstartable(tmp_path, "not a program")  # exists: passes any check
    out = tmp_path / "study"
    result = run_tuner("run", write_config(config(maxTrialCount=2, parallelTrialCount=1)),
                       "--output-dir", out, "--", command)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert last_line(result.stderr).startswith("error: study failed: a trial failed")
    (row,) = read_csv(out / "trials.csv")
    assert row["state"] == "FAILED"
    assert row["reason"].startswith(f"exit code 126: cannot start {str(command)!r}: {why}")


# -- logs -------------------------------------------------------------------------------------

def test_a_trial_that_floods_its_logs_keeps_their_end_within_the_cap(write_config, tmp_path):
    flood = 2 * keeper.LOG_CAP_BYTES + keeper.LOG_CAP_BYTES // 2
    modes = {"parameterId": "mode", "categoricalValueSpec": {"values": ["ok", "fail"]}}
    doc = config(maxTrialCount=2, maxFailedTrialCount=2,
                 args=["--steps=1", "--sleep=0", f"--flood={flood}"],
                 study={"parameters": [modes], "algorithm": "GRID_SEARCH"})
    out = tmp_path / "study"
    result = run_tuner("run", write_config(doc), "--output-dir", out)
    assert result.returncode == 0, result.stderr
    rows = {r["mode"]: r for r in read_csv(out / "trials.csv")}
    assert rows["ok"]["state"] == "SUCCEEDED"
    assert rows["fail"]["state"] == "FAILED"
    assert rows["fail"]["reason"] == "exit code 3: ValueError: the trial broke on purpose"
    for row in rows.values():
        trial_dir = out / row["trial_id"]
        for name in ("stdout", "stderr"):
            sizes = [(trial_dir / f).stat().st_size for f in (name, f"{name}.1")]
            assert max(sizes) <= keeper.LOG_CAP_BYTES, (name, sizes)
            kept = ((trial_dir / f"{name}.1").read_bytes() + (trial_dir / name).read_bytes())
            lines = kept.decode().splitlines()
            numbered = [int(entry.split()[1]) for entry in lines if entry.startswith("line ")]
            assert numbered == sorted(numbered) and len(numbered) > 1000
            step = numbered[1] - numbered[0]
            assert numbered == list(range(numbered[0], numbered[-1] + step, step))  # no gap
            assert numbered[-1] + step >= flood  # the newest are kept
        assert "flood done" in (trial_dir / "stdout").read_text().splitlines()


def test_a_keeper_spawned_ahead_runs_its_order_with_the_orders_environment(tmp_path):
    spare = keeper.spawn()
    time.sleep(0.5)  # up and waiting, as a spare is when its trial comes
    code = "import os, sys; print(os.environ['FROM']); sys.exit(3)"
    spare.stdin.write(keeper.order(str(tmp_path), 1.0, [sys.executable, "-c", code],
                                   {"FROM": "the order", "PATH": os.environ["PATH"]}))
    spare.stdin.flush()
    assert spare.wait(60) == 3  # the trial's exit status
    assert (tmp_path / "stdout").read_text() == "the order\n"


def test_a_spare_keeper_without_an_order_starts_nothing(tmp_path):
    spare = keeper.spawn()
    spare.stdin.close()  # what the tuner's end, even by kill -9, does
    assert spare.wait(60) == 0
    assert not any(tmp_path.iterdir())

