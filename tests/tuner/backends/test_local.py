"""The local backend: what wakes its wait, and runs that must not start."""
import os
import select
import time

import pytest

from tests.tuner.support import config
from tuner import spec as S
from tuner.backends import StartFailed, drain
from tuner.backends.local import LocalBackend, _Inotify
from tuner.runner import Slot
from tuner.trial import TrialRecord, TrialState


def test_a_metric_file_written_wakes_the_wait(tmp_path):
    inotify = _Inotify()
    if inotify.fd is None:
        pytest.skip("no inotify here: the wait polls instead")
    inotify.watch(str(tmp_path))
    assert select.select([inotify.fd], [], [], 0)[0] == []
    (tmp_path / "output.metrics").write_text('{"score": 1}\n')
    assert select.select([inotify.fd], [], [], 10)[0] == [inotify.fd]
    drain(inotify.fd)
    assert select.select([inotify.fd], [], [], 0)[0] == []
    inotify.close()


def _backend(tmp_path, *args):
    job = S.parse(config(args=list(args) or ["--steps=1", "--sleep=0"]))
    return LocalBackend([Slot(0)], str(tmp_path / "out"), list(job.trial_job.argv), job)


def _record():
    return TrialRecord(number=0, state=TrialState.ACTIVE, parameters={"x": 0.5})


def test_the_wait_ends_on_a_wake_and_on_a_trial_exit(tmp_path):
    backend = _backend(tmp_path)
    wake_r, wake_w = os.pipe()
    os.write(wake_w, b"!")
    backend.wait(30, wake_r)  # returns at once: the wake is readable
    os.read(wake_r, 1)
    run = backend.start(_record(), lambda command, name: None)
    deadline = time.monotonic() + 60
    while run.poll() is None and time.monotonic() < deadline:
        backend.wait(30, wake_r)  # each return is an exit or a metric file's change
    end = run.poll()
    assert end is not None and end.code == 0
    assert [m.value for m in run.read()] == [1 - (0.5 - 0.7) ** 2]


def test_a_run_the_study_could_not_record_never_starts(tmp_path):
    backend = _backend(tmp_path)

    def announce(command, name):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        backend.start(_record(), announce)
    assert not (tmp_path / "out" / "1" / "model" / "runs.jsonl").exists()


def test_a_trial_folder_that_cannot_be_made_fails_the_start(tmp_path):
    backend = _backend(tmp_path)
    (tmp_path / "out").write_text("a file where the output folder should be")
    with pytest.raises(StartFailed, match="out"):
        backend.start(_record(), lambda command, name: None)
