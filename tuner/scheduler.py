"""The study loop: up to P trials in flight, stopping rules, the trial and failure budgets.

One thread, polling.
"""
from __future__ import annotations

import errno
import math
import os
import select
import signal
import time
from dataclasses import dataclass

from tuner import spec as S
from tuner import stopping
from tuner.runner import (STOP_GRACE_S, Slot, TrialProcess, contract_env, end_leftovers,
                          full_env, select_final, trial_argv)
from tuner.study import (ACTIVE, FAILED, INFEASIBLE, STOPPED, SUCCEEDED, Study,
                         TrialRecord)

POLL_S = 0.25


def _failed_on_a_full_disk(trial_dir: str, stderr_tail: list[str]) -> bool:
    if stderr_tail and os.strerror(errno.ENOSPC) in stderr_tail[-1]:
        return True
    return os.statvfs(trial_dir).f_bavail == 0


@dataclass
class Outcome:
    status: str  # "done" | "failed" | "interrupted"
    message: str = ""


class Scheduler:
    def __init__(self, study: Study, slots: list[Slot], output_dir: str, command: list[str],
                 view, *, grace_s: float = STOP_GRACE_S):
        self.study = study
        self.job: S.TuningJob = study.job
        self.slots = slots
        self.output_dir = output_dir
        self.command = command
        self.view = view
        self.grace_s = grace_s
        self.interrupted: int | None = None  # the signal that asked us to stop
        self.running: dict[int, tuple[TrialRecord, TrialProcess]] = {}
        self.on_change = None  # called after a trial ends (the results files are rewritten)

    def run(self) -> Outcome:
        self.study.heartbeat(force=True)  # before any claim: other tuners must see us alive
        exhausted = False
        try:
            while True:
                if self.interrupted:
                    return self._interrupt()
                self.study.heartbeat()
                for index, (record, process) in list(self.running.items()):
                    self._observe(record, process)
                    code = process.poll()
                    if code is not None:
                        del self.running[index]
                        self._finish(record, process, code)
                failure = self._failure_budget()
                if failure:
                    self._end_running(f"study failed: {failure}")
                    return Outcome("failed", failure)
                while not exhausted and len(self.running) < len(self.slots):
                    record = self._next_trial()
                    if record is None:
                        exhausted = True
                    elif not self._launch(record):
                        break  # the failure budget has its say before the next one
                if exhausted and not self.running:
                    return Outcome("done")
                self.view.tick(self.study.records)
                self._wait()
        finally:
            for _, process in self.running.values():  # on an exception: leave no trial behind
                process.kill_now()
            self.study.heartbeat(ended=True)

    def _next_trial(self) -> TrialRecord | None:
        for orphan in self.study.orphans():
            record = self.study.adopt(orphan)
            if record is not None:
                return record
        return self.study.new_trial()

    def _launch(self, record: TrialRecord) -> bool:
        """Starts a trial; False if its process could not be started (it is FAILED then)."""
        slot = next(s for s in self.slots if s.index not in self.running)
        trial_dir = os.path.join(self.output_dir, record.trial_id)
        argv = trial_argv(self.command, record.parameters, self.job.parameters)
        contract = contract_env(record.trial_id, trial_dir, slot, self.job.trial_job.env)
        process = TrialProcess(record.trial_id, argv, full_env(contract, slot), trial_dir,
                               self.job.metric, elapsed_before_s=record.elapsed_s,
                               grace_s=self.grace_s, measurements=list(record.measurements))
        end_leftovers(record.keeper)  # of an earlier run whose tuner was killed
        try:
            process.start(record.runs + 1)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # not the trial's fault: the study stops with one line, the trial stays ACTIVE
            why = f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror or exc
            self.study.finish(record, FAILED, None, f"cannot start the trial: {why}",
                              record.elapsed_s)
            self.view.finished(record, [])
            if self.on_change:
                self.on_change()
            return False
        self.running[slot.index] = (record, process)  # from here on, ended with the tuner
        self.study.started(record, argv, process.run)
        process.release()
        self.view.started(record, slot)
        return True

    def _observe(self, record: TrialRecord, process: TrialProcess) -> None:
        new = process.read()
        if not new:
            return
        self.study.measured(record, process.measurements, process.elapsed_s())
        self.view.measured(record, new)
        if self.job.stopping and process.stop_reason is None:
            reason = self._stopping_rule(process)
            if reason:
                process.stop(reason)
                self.view.stopping(record, reason)

    def _stopping_rule(self, process: TrialProcess) -> str | None:
        rule = self.job.stopping
        maximize = self.job.goal == S.MAXIMIZE
        done = [r for r in self.study.records() if r.state == SUCCEEDED]
        curves = [r.measurements for r in done]
        if rule.rule == "median":
            return stopping.median_rule(process.measurements, curves, maximize, rule.use_elapsed)
        return stopping.decay_curve_rule(process.measurements, curves, [r.value for r in done],
                                         maximize, rule.use_elapsed)

    def _finish(self, record: TrialRecord, process: TrialProcess, code: int) -> None:
        new = process.read()
        if new:
            self.study.measured(record, process.measurements, process.elapsed_s())
            self.view.measured(record, new)
        final = select_final(process.measurements, self.job.goal == S.MAXIMIZE,
                             self.job.measurement == S.BEST)
        tail: list[str] = []
        if process.stop_reason is not None:
            state, reason = STOPPED, process.stop_reason
        elif code != 0:
            tail = process.stderr_tail()
            if _failed_on_a_full_disk(process.trial_dir, tail):
                # not the trial's fault: it stays ACTIVE, and runs again once there is space
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), process.trial_dir)
            how = (f"killed by {signal.Signals(-code).name}" if code < 0
                   else f"exit code {code}")
            state, reason = FAILED, f"{how}: {tail[-1]}" if tail else how
        elif final is None:
            seen = sorted(process.tags_seen)
            state = INFEASIBLE
            reason = (f"reported no value for {self.job.metric!r}"
                      + (f" (it reported {', '.join(seen)})" if seen else
                         " (nothing in CLOUD_ML_HP_METRIC_FILE: does it report through "
                         "cloudml-hypertune?)"))
        elif not math.isfinite(final):  # nothing to rank: like no value at all
            state, reason = (INFEASIBLE,
                             f"final {self.job.metric} is {'NaN' if math.isnan(final) else final}")
        else:
            state, reason = SUCCEEDED, ""
        if state in (FAILED, INFEASIBLE):
            final = None
        self.study.finish(record, state, final, reason, process.elapsed_s())
        self.view.finished(record, tail)
        if self.on_change:
            self.on_change()

    def _failure_budget(self) -> str | None:
        """Vertex's rule (reference 1.10); with no maxFailedTrialCount, our reading of it."""
        records = self.study.records()
        failed = sum(1 for r in records if r.state in (FAILED, INFEASIBLE))
        succeeded = sum(1 for r in records if r.state == SUCCEEDED)
        limit = self.job.max_failed_trial_count
        if limit:
            if failed >= limit:
                return f"{failed} trials failed (maxFailedTrialCount is {limit})"
        elif failed and not succeeded:
            return ("a trial failed before any succeeded (maxFailedTrialCount is unset: "
                    "the first failure ends the study)")
        elif failed > succeeded:
            return (f"{failed} trials failed against {succeeded} succeeded (maxFailedTrialCount "
                    "is unset: more failures than successes end the study)")
        return None

    def _wait(self) -> None:
        """Sleeps up to POLL_S, waking as soon as a trial process exits (Linux pidfds)."""
        fds = [p.exit_fd for _, p in self.running.values() if p.exit_fd is not None]
        if fds:
            select.select(fds, [], [], POLL_S)
        else:
            time.sleep(POLL_S)

    def _wait_all(self) -> None:
        while any(p.poll() is None for _, p in self.running.values()):
            time.sleep(POLL_S)

    def _end_running(self, reason: str) -> None:
        """Stops every running trial for good: it ends STOPPED with what it measured."""
        for _, process in self.running.values():
            process.stop(reason)
        self._wait_all()
        for index, (record, process) in list(self.running.items()):
            del self.running[index]
            self._finish(record, process, process.poll())

    def _interrupt(self) -> Outcome:
        """Stops the trial processes but leaves their trials ACTIVE: a rerun runs them again."""
        for _, process in self.running.values():
            process.stop("tuner interrupted")
        self._wait_all()
        active = [record for record, _ in self.running.values()]
        for record, process in self.running.values():
            if process.read():
                self.study.measured(record, process.measurements, process.elapsed_s())
        self.running.clear()
        name = signal.Signals(self.interrupted).name
        return Outcome("interrupted", f"{name}: {len(active)} running trial(s) left "
                                      f"{ACTIVE}; run the same command again to resume")
