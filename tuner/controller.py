"""The controller: runs what the oracle decides, through a backend, and never waits on a suggestion.

It starts trials up to the backend's capacity, hands their measurements to the oracle
(`Study.report`) and stops those it says to stop, has each ended run judged
(`Study.complete`), and ends the study when the oracle says so (`Study.budget_exhausted`).
Between events it sleeps in the backend's `wait`, woken by a trial's exit, a metric file's
change, a suggestion becoming ready, or a signal (`wake`).

Suggestions are made on a worker thread (`Suggester`), so the controller keeps watching and
stopping trials while the default search fits its model. Where it loses nothing, the next one
is prepared before a slot frees, so the slot is refilled at once: always for searches that do
not learn from results (random, grid), and for the default search until a first result or when
a suggestion costs more than AHEAD_SHARE of a typical trial (short trials, where waiting for it
would cost more than a suggestion that has not seen the newest result). Otherwise it is made
when a slot frees, from every result so far. What the search's model and the study's end
will need (scipy; the plot worker, tuner/plot_worker.py) is loaded or started on a thread of its
own once the first trial runs. Trial processes are still started from the main thread.
"""
from __future__ import annotations

import collections
import concurrent.futures
import os
import signal
import statistics
import threading
import time
from dataclasses import dataclass

from tuner.backends import StartFailed, drain
from tuner.study import HEARTBEAT_S, Study
from tuner.trial import Exit, TrialRecord, TrialState

AHEAD_SHARE = 0.05
_NOT_READY = object()


@dataclass
class Outcome:
    status: str  # "done" | "failed" | "interrupted"
    message: str = ""


class Suggester:
    """The oracle's next suggestion, computed on one worker thread; `take` never blocks."""

    def __init__(self, oracle: Study, wake):
        self._oracle, self._wake = oracle, wake
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="suggest")
        self._future: concurrent.futures.Future | None = None
        self._recent = collections.deque(maxlen=3)  # what the latest suggestions took

    @property
    def seconds(self) -> float:
        """What a suggestion costs now: the most of the latest few (the first of the model's
        follows cheap start-up ones)."""
        return max(self._recent, default=0.0)

    def request(self) -> None:
        if self._future is None:
            self._future = self._pool.submit(self._suggest)
            # once its result is set: a wake from inside `_suggest` could find it not yet done
            self._future.add_done_callback(lambda _: self._wake())

    def _suggest(self) -> TrialRecord | None:
        begun = time.monotonic()
        try:
            return self._oracle.suggest()
        finally:
            self._recent.append(time.monotonic() - begun)

    def take(self):
        """The suggestion (None: the study has no more trials), or _NOT_READY (asked now)."""
        self.request()
        if not self._future.done():
            return _NOT_READY
        future, self._future = self._future, None
        return future.result()  # the oracle's error (e.g. a full disk) is the controller's

    def close(self, *, withdraw: bool) -> None:
        """Ends the worker; with `withdraw`, a suggestion made and not taken is taken back
        (else it stays ACTIVE in the study, for the next tuner to run)."""
        future, self._future = self._future, None
        self._pool.shutdown(wait=withdraw, cancel_futures=True)
        if withdraw and future is not None and not future.cancelled() \
                and future.exception() is None and future.result() is not None:
            self._oracle.withdraw(future.result())


def _load_all(loads) -> None:
    for load in loads:
        load()


class Controller:
    def __init__(self, oracle: Study, backend, view, on_change=None, preload=()):
        self.oracle = oracle
        self.backend = backend
        self.view = view
        # called after trials end (the results files are rewritten), once the freed slots run
        # again: the next trial does not wait for the files
        self.on_change = on_change
        self._changed = False
        self.interrupted: int | None = None  # the signal that asked us to stop
        self.running: list[tuple[TrialRecord, object]] = []
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._wake_lock = threading.RLock()  # re-entrant: a signal handler may interrupt close
        self._closed = False
        self._suggester = Suggester(oracle, self.wake)
        # what the search and the study's end will need, loaded on a thread of its own once a
        # trial runs (so that a suggestion never queues behind an import)
        self._preload = threading.Thread(target=_load_all, args=((*preload, oracle.warm_up),),
                                         name="preload")
        self._exhausted = False  # the oracle has no more trials to suggest
        self._waited = False  # said once that other tuners' trials keep the study open
        self._durations: list[float] = []  # of the runs that ended here
        self._begun: dict[int, float] = {}

    def wake(self) -> None:
        """Ends the current wait at once (safe in a signal handler and from other threads,
        also after the run: a closed pipe's descriptor may belong to another file by then)."""
        with self._wake_lock:
            if self._closed:
                return
            try:
                os.write(self._wake_w, b"!")
            except BlockingIOError:
                pass  # the pipe is full of wake-ups already

    def _close_wakes(self) -> None:
        with self._wake_lock:
            self._closed = True
            os.close(self._wake_r)
            os.close(self._wake_w)

    def run(self) -> Outcome:
        self.oracle.heartbeat(force=True)  # before any claim: other tuners must see us alive
        withdraw = False
        try:
            while True:
                if self.interrupted:
                    return self._interrupt()
                self.oracle.heartbeat()
                for record, run in list(self.running):
                    self._observe(record, run)
                    end = run.poll()
                    if end is not None:
                        self.running.remove((record, run))
                        self._complete(record, run, end)
                verdict = self.oracle.budget_exhausted()
                if verdict and verdict.failed:
                    withdraw = True
                    self._end_running(f"study failed: {verdict.message}")
                    return Outcome("failed", verdict.message)
                again = self._fill(ahead=verdict is None)
                self._report_changes()  # once the free slots run again
                if self._exhausted and not self.running:
                    if not self._others_active():
                        return Outcome("done")
                    self._exhausted = False  # ask again: they end, or are orphans to run here
                self.view.tick(self.oracle.records)
                if not again:
                    self.backend.wait(HEARTBEAT_S, self._wake_r)
                    drain(self._wake_r)
        finally:
            for _, run in self.running:  # on an exception: leave no trial behind
                run.kill_now()
            self._suggester.close(withdraw=withdraw)
            self.backend.close()
            self.oracle.heartbeat(ended=True)
            self._close_wakes()
            if self._preload.ident is not None:
                self._preload.join()  # what it starts is the caller's to end

    def _fill(self, *, ahead: bool) -> bool:
        """Starts suggested trials on free capacity; True to look again at once (a trial could
        not start: the failure budget has its say before the next one)."""
        while not self._exhausted and len(self.running) < self.backend.capacity:
            record = self._suggester.take()
            if record is _NOT_READY:
                return False
            if record is None:
                self._exhausted = True
                return False
            if not self._launch(record):
                return True
        if ahead and not self._exhausted and self._prepare_ahead():
            self._suggester.request()
        return False

    def _others_active(self) -> bool:
        """Trials this run does not hold are ACTIVE: the study is not over. Their tuner may be
        dead on another machine (a restarted job's old one) and look alive until its heartbeat
        goes stale; then the oracle hands them out as orphans, to be run again here."""
        waiting = [r for r in self.oracle.records()
                   if r.state is TrialState.ACTIVE and r.owner != self.oracle.token]
        if waiting and not self._waited:
            self._waited = True
            self.view.note(f"waiting for {len(waiting)} trial(s) another tuner holds: they run "
                           "here if its heartbeat stops")
        return bool(waiting)

    def _prepare_ahead(self) -> bool:
        if not self.oracle.learns_from_results or not self._durations:
            return True
        return self._suggester.seconds > AHEAD_SHARE * statistics.median(self._durations)

    def _launch(self, record: TrialRecord) -> bool:
        """Starts a trial; False if it could not start (it is FAILED then)."""
        try:
            run = self.backend.start(
                record, lambda command, name: self.oracle.started(record, command, name))
        except StartFailed as exc:
            self.oracle.complete(record, Exit(None, record.elapsed_s, tail=(str(exc),)))
            self.view.finished(record, [])
            self._changed = True
            return False
        self.running.append((record, run))  # from here on, ended with the tuner
        self._begun[record.number] = time.monotonic()
        self.view.started(record, run.where)
        if self._preload.ident is None:  # not started yet
            self._preload.start()  # now that a trial runs: nothing heavy before the first
        return True

    def _observe(self, record: TrialRecord, run) -> None:
        new = run.read()
        if not self._unreported(record, run):
            return
        reason = self.oracle.report(record, run.measurements, run.elapsed_s())
        self.view.measured(record, new)
        if reason and not run.stopping:
            run.stop(reason)
            self.view.stopping(record, reason)

    def _complete(self, record: TrialRecord, run, end: Exit) -> None:
        new = run.read()  # what it reported last
        if self._unreported(record, run):
            self.oracle.report(record, run.measurements, run.elapsed_s())
            self.view.measured(record, new)
        self.oracle.complete(record, end)
        self._durations.append(time.monotonic() - self._begun.pop(record.number))
        self.view.finished(record, list(end.tail) if record.state is TrialState.FAILED else [])
        self._changed = True

    @staticmethod
    def _unreported(record: TrialRecord, run) -> bool:
        """The run holds measurements the oracle has not had: new ones, or those an earlier run
        wrote after its tuner's last look (the run reads them at its start)."""
        return len(run.measurements) != len(record.measurements)

    def _report_changes(self) -> None:
        if self._changed and self.on_change:
            self.on_change()
        self._changed = False

    def _wait_all(self) -> None:
        while any(run.poll() is None for _, run in self.running):
            self.backend.wait(HEARTBEAT_S, self._wake_r)
            drain(self._wake_r)

    def _end_running(self, reason: str) -> None:
        """Stops every running trial for good: it ends STOPPED with what it measured."""
        for _, run in self.running:
            run.stop(reason)
        self._wait_all()
        for record, run in list(self.running):
            self.running.remove((record, run))
            self._complete(record, run, run.poll())

    def _interrupt(self) -> Outcome:
        """Stops the trials' runs (unless the backend leaves them running: cloud jobs) but
        leaves their trials ACTIVE: a rerun runs them again, or follows them."""
        left_running = self.backend.on_interrupt([run for _, run in self.running])
        if not left_running:
            for _, run in self.running:
                run.stop("tuner interrupted")
            self._wait_all()
        active = [record for record, _ in self.running]
        for record, run in self.running:
            if run.read():
                self.oracle.report(record, run.measurements, run.elapsed_s())
        self.running.clear()
        name = signal.Signals(self.interrupted).name
        how = " (their jobs still running)" if left_running else ""
        return Outcome("interrupted", f"{name}: {len(active)} running trial(s) left "
                                      f"{TrialState.ACTIVE}{how}; run the same command again "
                                      "to resume")
