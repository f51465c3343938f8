"""The controller in-process, over the real local backend and real trial processes: it keeps
watching trials while a suggestion is made, and prepares one ahead only where nothing is lost."""
import threading
import time

import optuna

from tests.tuner.support import config
from tuner import spec as S
from tuner.backends.local import LocalBackend
from tuner.controller import Controller
from tuner.runner import Slot
from tuner.study import Study
from tuner.trial import TrialState


class QuietView:
    def __getattr__(self, name):
        return lambda *args, **kwargs: None


class SlowSecondSuggestion(Study):
    """Its second suggestion waits until trial 1 has reported twice through `report`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reports_during_suggestion = 0
        self.reported_twice = threading.Event()
        self.suggesting = False
        self.calls = 0

    def report(self, record, measurements, elapsed_s):
        if self.suggesting:
            self.reports_during_suggestion += 1
        if len(measurements) >= 2:
            self.reported_twice.set()
        return super().report(record, measurements, elapsed_s)

    def suggest(self):
        self.calls += 1
        if self.calls == 2:
            self.suggesting = True
            assert self.reported_twice.wait(60), "trial 1's reports never reached the oracle"
            self.suggesting = False
        return super().suggest()


def _job(algorithm, trials, steps, sleep):
    return S.parse(config(maxTrialCount=trials, parallelTrialCount=1,
                          study={"algorithm": algorithm},
                          args=[f"--steps={steps}", f"--sleep={sleep}"]))


def _run(oracle, tmp_path):
    backend = LocalBackend([Slot(0)], str(tmp_path / "out"), list(oracle.job.trial_job.argv),
                           oracle.job)
    return Controller(oracle, backend, QuietView()).run()


def test_trials_are_watched_while_a_suggestion_is_made(tmp_path):
    job = _job("RANDOM_SEARCH", 2, 3, 0.3)
    oracle = SlowSecondSuggestion(optuna.storages.InMemoryStorage(), "s", job, seed=0)
    assert _run(oracle, tmp_path).status == "done"
    assert oracle.reports_during_suggestion >= 2  # a blocking suggestion would have seen none
    assert [r.state for r in oracle.records()] == [TrialState.SUCCEEDED] * 2


def _suggested_before_the_last_ended(oracle):
    trials = oracle.optuna.get_trials()
    return [later.datetime_start < earlier.datetime_complete
            for earlier, later in zip(trials, trials[1:])]


def test_a_search_that_does_not_learn_has_the_next_trial_ready_before_a_slot_frees(tmp_path):
    oracle = Study(optuna.storages.InMemoryStorage(), "s", _job("RANDOM_SEARCH", 3, 2, 0.3),
                   seed=0)
    assert _run(oracle, tmp_path).status == "done"
    assert _suggested_before_the_last_ended(oracle) == [True, True]


def test_the_default_search_waits_for_the_result_of_a_long_trial(tmp_path):
    """Before any result, nothing is lost by suggesting ahead; after one, a suggestion that costs
    little against a trial's time is made from every result so far."""
    oracle = Study(optuna.storages.InMemoryStorage(), "s",
                   _job("ALGORITHM_UNSPECIFIED", 3, 2, 0.5), seed=0)
    assert _run(oracle, tmp_path).status == "done"
    assert _suggested_before_the_last_ended(oracle) == [True, False]


class PatientBackend(LocalBackend):
    """Waits up to 30 s between events (not the 5 s heartbeat) and counts the waits that ran
    out: with every event waking the controller, none does."""

    timeouts = 0

    def wait(self, timeout_s, wake_fd):
        begun = time.monotonic()
        super().wait(30, wake_fd)
        if time.monotonic() - begun >= 29:
            self.timeouts += 1


def test_a_suggestion_made_when_a_slot_frees_wakes_the_controller(tmp_path):
    """Trials here are suggested after the latest results (the default search, trials long
    against a suggestion): the controller must wake for each, not at the next heartbeat."""
    job = S.parse(config(maxTrialCount=8, parallelTrialCount=2, args=["--steps=1", "--sleep=0.8"]))
    oracle = Study(optuna.storages.InMemoryStorage(), "s", job, seed=0)
    backend = PatientBackend([Slot(0), Slot(1)], str(tmp_path / "out"),
                             list(job.trial_job.argv), job)
    assert Controller(oracle, backend, QuietView()).run().status == "done"
    assert backend.timeouts == 0
