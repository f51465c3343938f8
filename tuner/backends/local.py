"""Trials as processes on this machine, one per device slot, under Vertex's trial contract.

Each run is a `runner.TrialProcess` (a keeper and its trial, tuner/runner.py and
tuner/keeper.py) in `<output_dir>/<trial id>/`. The controller sleeps in `wait` until a trial
process exits (a pidfd) or a metric file changes (inotify on each running trial's
`hypertune/` folder); where either is missing (not Linux) it looks every POLL_S.
"""
from __future__ import annotations

import ctypes
import errno
import os
import select
import shlex
import subprocess
import sys
from dataclasses import dataclass

from tuner import keeper
from tuner import spec as S
from tuner.backends import StartFailed, drain
from tuner.runner import (
    STOP_GRACE_S,
    THREAD_VARS,
    Slot,
    TrialProcess,
    contract_env,
    end_leftovers,
    full_env,
    trial_argv,
)
from tuner.trial import Exit, Measurement, TrialRecord

POLL_S = 0.25
# inotify(7): a write, a writer closing, a file renamed or created into the folder
_WATCH_MASK = 0x2 | 0x8 | 0x80 | 0x100


class _Inotify:
    """Wakes a select() when a watched folder's files change (Linux; else `fd` is None)."""

    def __init__(self):
        self.fd = None
        if not sys.platform.startswith("linux"):
            return
        try:
            self._libc = ctypes.CDLL(None, use_errno=True)
            fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        except (OSError, AttributeError):
            return
        self.fd = fd if fd >= 0 else None

    def watch(self, folder: str) -> int | None:
        if self.fd is None:
            return None
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(folder), _WATCH_MASK)
        return wd if wd >= 0 else None

    def unwatch(self, wd: int | None) -> None:
        if self.fd is not None and wd is not None:
            self._libc.inotify_rm_watch(self.fd, wd)  # fails harmlessly if the folder is gone

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _failed_on_a_full_disk(trial_dir: str, stderr_tail: list[str]) -> bool:
    if stderr_tail and os.strerror(errno.ENOSPC) in stderr_tail[-1]:
        return True
    return os.statvfs(trial_dir).f_bavail == 0


@dataclass
class Launch:
    """A trial's run as this backend would start it."""

    slot: Slot
    trial_dir: str
    argv: list[str]
    contract: dict[str, str]  # the variables of Vertex's trial contract

    @property
    def where(self) -> str:
        return f"gpu {','.join(self.slot.gpus)}" if self.slot.gpus else \
            f"cpu slot {self.slot.index}"


class LocalRun:
    """One run of a trial as a local process."""

    def __init__(self, process: TrialProcess, launch: Launch, inotify: _Inotify):
        self.process, self.launch = process, launch
        self.where = launch.where
        self._inotify = inotify
        self._watch = inotify.watch(os.path.dirname(process.env["CLOUD_ML_HP_METRIC_FILE"]))
        self._exit: Exit | None = None

    @property
    def measurements(self) -> list[Measurement]:
        return self.process.measurements

    @property
    def stopping(self) -> bool:
        return self.process.stop_reason is not None

    def read(self) -> list[Measurement]:
        return self.process.read()

    def elapsed_s(self) -> float:
        return self.process.elapsed_s()

    def poll(self) -> Exit | None:
        """How the run ended, once it has. Raises OSError ENOSPC for a trial that failed on a
        full disk: not its fault, so it stays ACTIVE and runs again once there is space."""
        if self._exit is not None:
            return self._exit
        code = self.process.poll()
        if code is None:
            return None
        self._inotify.unwatch(self._watch)
        tail: list[str] = []
        if code != 0 and not self.stopping:
            tail = self.process.stderr_tail()
            if _failed_on_a_full_disk(self.process.trial_dir, tail):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self.process.trial_dir)
        self._exit = Exit(code, self.process.elapsed_s(), self.process.stop_reason,
                          tuple(tail), frozenset(self.process.tags_seen))
        return self._exit

    def stop(self, reason: str) -> None:
        self.process.stop(reason)

    def kill_now(self) -> None:
        self.process.kill_now()

    @property
    def exit_fd(self) -> int | None:
        return self.process.exit_fd

    @property
    def ended(self) -> bool:
        return self._exit is not None


class LocalBackend:
    """Runs trials as processes on this machine's device slots."""

    def __init__(self, slots: list[Slot], output_dir: str, command: list[str],
                 job: S.TuningJob, *, grace_s: float = STOP_GRACE_S):
        self.slots = slots
        self.capacity = len(slots)
        self.output_dir = output_dir
        self.command = command
        self.job = job
        self.grace_s = grace_s
        self._runs: list[LocalRun] = []
        self._inotify = _Inotify()
        self._spare: subprocess.Popen | None = None  # a keeper spawned for the next start

    def launch(self, record: TrialRecord, slot: Slot) -> Launch:
        trial_dir = os.path.join(self.output_dir, record.trial_id)
        return Launch(slot, trial_dir, trial_argv(self.command, record.parameters,
                                                   self.job.parameters),
                      contract_env(record.trial_id, trial_dir, slot, self.job.trial_job.env))

    def _free_slot(self) -> Slot:
        self._runs = [r for r in self._runs if not r.ended]
        busy = {r.launch.slot.index for r in self._runs}
        return next(s for s in self.slots if s.index not in busy)

    def start(self, record: TrialRecord, announce) -> LocalRun:
        launch = self.launch(record, self._free_slot())
        process = TrialProcess(record.trial_id, launch.argv, full_env(launch.contract,
                                                                      launch.slot),
                               launch.trial_dir, self.job.metric,
                               others=tuple(m.id for m in self.job.metrics[1:]),
                               elapsed_before_s=record.elapsed_s, grace_s=self.grace_s,
                               measurements=list(record.measurements))
        end_leftovers(record.run)  # of an earlier run whose tuner was killed
        spare, self._spare = self._spare, None
        try:
            process.start(record.runs + 1, spare)
        except OSError as exc:
            if process.process is None:
                self._spare = spare  # not taken: the folder could not be written
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise
            raise StartFailed(f"{exc.strerror}: {exc.filename}" if exc.filename
                              else exc.strerror or str(exc)) from None
        try:
            announce(launch.argv, process.run)
        except BaseException:
            process.kill_now()  # recorded nowhere: it must not run
            raise
        process.release()
        run = LocalRun(process, launch, self._inotify)
        self._runs.append(run)
        try:
            self._spare = keeper.spawn()  # the next start does not wait for its interpreter
        except OSError:
            pass  # the next start spawns its own, and says what stops it
        return run

    def close(self) -> None:
        """Ends the spare keeper (no order: it starts nothing)."""
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.stdin.close()
            spare.wait()

    def on_interrupt(self, runs: list[LocalRun]) -> bool:
        """The controller stops local trials when the tuner is interrupted: nothing is left."""
        return False

    def wait(self, timeout_s: float, wake_fd: int) -> None:
        live = [r for r in self._runs if not r.ended]
        fds = [wake_fd] + [r.exit_fd for r in live if r.exit_fd is not None]
        if self._inotify.fd is not None:
            fds.append(self._inotify.fd)
        if self._inotify.fd is None or any(r.exit_fd is None for r in live):
            timeout_s = min(timeout_s, POLL_S)
        ready, _, _ = select.select(fds, [], [], timeout_s)
        if self._inotify.fd in ready:
            drain(self._inotify.fd)


class DryRun(LocalBackend):
    """Starts nothing: prints each trial's command and contract as LocalBackend would run it."""

    def start(self, record: TrialRecord, announce=None) -> None:
        """Prints the run; the dry run asks for no more than its capacity, so no slot frees."""
        launch = self.launch(record, self.slots[record.number % len(self.slots)])
        env = dict(launch.contract)
        if launch.slot.threads:
            env.update({name: str(launch.slot.threads) for name in THREAD_VARS
                        if name not in os.environ})
        print(f"\ntrial {record.trial_id} ({launch.where}):")
        for name, value in env.items():
            print(f"  {name}={shlex.quote(value)}")
        print(f"  $ {shlex.join(launch.argv)}")
