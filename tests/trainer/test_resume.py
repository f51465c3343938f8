"""The resume state (trainer/checkpoints.py) under real faults: kill -9 and SIGTERM at chosen
points, a model dir on a tmpfs that fills, checkpoint files and history.json torn or garbled.

Every test compares with one uninterrupted run of the same command: a resumed run must end
with the very same epoch history, and a finished training is never trained again.
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from tests.support.trainer_runs import last_line, read_json, run_trainer, trainer_env

EPOCHS = 5
ARGS = [f"--epochs={EPOCHS}", "--batch_size=32", "--patience=0"]
METRICS = ("loss", "accuracy", "val_loss", "val_accuracy")


def _curve(history):
    """Each epoch's metrics, without the wall-clock time."""
    return [(h["epoch"], *(h[m] for m in METRICS)) for h in history]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("uninterrupted")
    result = run_trainer(tmp_path, *ARGS, f"--job_dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr[-3000:]
    return {"history": _curve(read_json(tmp_path / "run" / "checkpoints" / "history.json")),
            "metrics": read_json(tmp_path / "run" / "model" / "metrics.json")}


def _start(tmp_path, *args, log_name="first.log"):
    log = open(tmp_path / log_name, "w")
    process = subprocess.Popen([sys.executable, "-m", "trainer.task", *args], cwd=tmp_path,
                               env=trainer_env(tmp_path), stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process


def _stop_when(process, predicate, what, sig=signal.SIGKILL, timeout=240):
    """Sends `sig` as soon as `predicate()` holds; fails if the process ends first."""
    try:
        deadline = time.time() + timeout
        while not predicate():
            assert process.poll() is None, f"the trainer ended before {what}"
            assert time.time() < deadline, f"no {what} within {timeout} s"
            time.sleep(0.01)
        process.send_signal(sig)
        process.wait(timeout=120)
    finally:
        process.kill()
        process.wait()


def _state(tmp_path, epoch):
    return tmp_path / "run" / "checkpoints" / "backup" / f"ckpt-{epoch}.index"


def _epochs_trained(stdout):
    return [line for line in stdout.splitlines() if line.startswith("Epoch ")]


def _rerun(tmp_path, *args):
    result = run_trainer(tmp_path, *(args or ARGS), f"--job_dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def _assert_complete(tmp_path, expected_history):
    run = tmp_path / "run"
    assert (run / "model" / "saved_model.pb").exists()
    assert _curve(read_json(run / "checkpoints" / "history.json")) == expected_history
    metrics = read_json(run / "model" / "metrics.json")
    assert metrics["epochs_run"] == len(expected_history)
    assert not (run / "checkpoints" / "backup").exists()  # the state is gone once the outputs are complete
    return metrics


# Point 6: a resumed run continues the same sequence (data order, dropout masks, optimizer, early stopping).

@pytest.mark.parametrize("sig, after", [(signal.SIGKILL, 2), (signal.SIGTERM, 3)])
def test_a_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path, uninterrupted, sig, after):
    first = _start(tmp_path, *ARGS, f"--job_dir={tmp_path}/run")
    _stop_when(first, lambda: _state(tmp_path, after).exists(), f"epoch {after} saved", sig=sig)
    assert not (tmp_path / "run" / "model" / "metrics.json").exists()

    second = _rerun(tmp_path)
    assert "resumed after epoch" in second.stdout and len(_epochs_trained(second.stdout)) < EPOCHS
    metrics = _assert_complete(tmp_path, uninterrupted["history"])
    assert metrics["final"] == uninterrupted["metrics"]["final"]


def test_early_stopping_counts_the_epochs_before_the_kill(tmp_path):
    """A resumed run stops at the epoch an uninterrupted one stops at, not --patience epochs later."""
    args = ["--epochs=8", "--batch_size=32", "--patience=2", "--min_delta=0.5"]  # no epoch improves by 0.5
    whole = run_trainer(tmp_path, *args, f"--job_dir={tmp_path}/whole")
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert read_json(tmp_path / "whole" / "model" / "metrics.json")["epochs_run"] == 3

    first = _start(tmp_path, *args, f"--job_dir={tmp_path}/run")
    _stop_when(first, lambda: _state(tmp_path, 2).exists(), "epoch 2 saved")
    second = _rerun(tmp_path, *args)
    assert len(_epochs_trained(second.stdout)) == 1
    _assert_complete(tmp_path, _curve(read_json(tmp_path / "whole" / "checkpoints" / "history.json")))


# Point 2: the state outlives `fit` until the outputs are complete; a finished training goes straight to the export.

@pytest.mark.parametrize("moment", ["after the last epoch", "during the export"])
def test_a_kill_after_the_last_epoch_does_not_train_again(tmp_path, uninterrupted, moment):
    first = _start(tmp_path, *ARGS, f"--job_dir={tmp_path}/run")
    if moment == "after the last epoch":
        _stop_when(first, lambda: _state(tmp_path, EPOCHS).exists(), "the last epoch saved")
    else:
        _stop_when(first, lambda: (tmp_path / "run" / "model" / "variables").exists(), "the export begun")
    assert not (tmp_path / "run" / "model" / "metrics.json").exists()

    second = _rerun(tmp_path)
    assert _epochs_trained(second.stdout) == []
    assert f"all {EPOCHS} epochs done" in second.stderr
    _assert_complete(tmp_path, uninterrupted["history"])


def test_a_run_ended_by_early_stopping_is_not_trained_further(tmp_path):
    args = ["--epochs=10", "--batch_size=32", "--patience=1", "--min_delta=0.5"]  # stops after epoch 2
    first = _start(tmp_path, *args, f"--job_dir={tmp_path}/run")
    _stop_when(first, lambda: _state(tmp_path, 2).exists(), "epoch 2 saved")
    done = _curve(read_json(tmp_path / "run" / "checkpoints" / "history.json"))

    second = _rerun(tmp_path, *args)
    assert _epochs_trained(second.stdout) == []
    assert "early stopping after epoch 2" in second.stderr
    _assert_complete(tmp_path, done)


def test_a_rerun_with_fewer_epochs_than_were_done_exports_what_was_trained(tmp_path, uninterrupted):
    first = _start(tmp_path, *ARGS, f"--job_dir={tmp_path}/run")
    _stop_when(first, lambda: _state(tmp_path, 3).exists(), "epoch 3 saved")

    second = _rerun(tmp_path, "--epochs=2", "--batch_size=32", "--patience=0")
    assert _epochs_trained(second.stdout) == []
    assert "3 epochs done, --epochs=2" in second.stderr
    _assert_complete(tmp_path, uninterrupted["history"][:3])


@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 300 KB filesystem (the SavedModel needs about 500 KB); unmounted afterwards."""
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(mount_point)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): needs root outside a restricted container")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def test_a_full_model_dir_fails_the_export_and_the_rerun_only_exports(tmp_path, uninterrupted, small_tmpfs):
    model_dir = small_tmpfs / "model"
    args = [*ARGS, f"--model_dir={model_dir}"]
    first = run_trainer(tmp_path, *args, f"--job_dir={tmp_path}/run")
    assert first.returncode == 1
    assert "No space left on device" in first.stderr or "RESOURCE_EXHAUSTED" in first.stderr, first.stderr[-2000:]
    assert last_line(first.stderr).startswith("error: ")

    subprocess.run(["mount", "-o", "remount,size=4m", str(small_tmpfs)], check=True)  # space is freed
    second = _rerun(tmp_path, *args)
    assert _epochs_trained(second.stdout) == []
    assert (model_dir / "saved_model.pb").exists()
    assert read_json(model_dir / "metrics.json")["epochs_run"] == EPOCHS
    assert _curve(read_json(tmp_path / "run" / "checkpoints" / "history.json")) == uninterrupted["history"]


# Point 7: a broken checkpoint or history.json falls back to the newest state that restores, or says so in one line.

def _kill_after(tmp_path, epoch):
    first = _start(tmp_path, *ARGS, f"--job_dir={tmp_path}/run")
    _stop_when(first, lambda: _state(tmp_path, epoch).exists() and not _state(tmp_path, epoch - 2).exists(),
               f"epoch {epoch} saved")


def _truncate(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def _garble(path):
    with open(path, "r+b") as f:
        f.write(b"\x00garbled\xff" * 4)


def test_a_torn_checkpoint_and_history_fall_back_to_the_previous_epoch(tmp_path, uninterrupted):
    _kill_after(tmp_path, 3)
    backup = tmp_path / "run" / "checkpoints" / "backup"
    (data_file,) = backup.glob("ckpt-3.data-*")
    _truncate(data_file)
    _garble(tmp_path / "run" / "checkpoints" / "history.json")

    second = _rerun(tmp_path)
    assert "ckpt-3 does not restore (IndexError" in second.stderr, second.stderr[-3000:]
    assert "resumed after epoch 2" in second.stdout
    assert len(_epochs_trained(second.stdout)) == EPOCHS - 2
    metrics = _assert_complete(tmp_path, uninterrupted["history"])
    assert metrics["final"] == uninterrupted["metrics"]["final"]


def test_when_no_checkpoint_restores_one_line_says_what_is_broken_and_how_to_start_over(tmp_path, uninterrupted):
    _kill_after(tmp_path, 3)
    backup = tmp_path / "run" / "checkpoints" / "backup"
    _garble(backup / "ckpt-3.index")
    (data_file,) = backup.glob("ckpt-2.data-*")
    _garble(data_file)

    broken = run_trainer(tmp_path, *ARGS, f"--job_dir={tmp_path}/run")
    assert broken.returncode == 1
    line = last_line(broken.stderr)
    assert line.startswith(f"error: no resume state in {backup} restores (ckpt-3: "), line
    assert "ckpt-2: " in line and f"remove it (rm -r {backup}) and rerun the same command" in line
    assert _epochs_trained(broken.stdout) == []
    assert sorted(p.name for p in backup.glob("*.index")) == ["ckpt-2.index", "ckpt-3.index"]  # nothing deleted

    shutil.rmtree(backup)  # the command the line gives
    _rerun(tmp_path)
    _assert_complete(tmp_path, uninterrupted["history"])
