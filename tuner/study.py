"""Durable study state: trials, their parameters and measurements, in Optuna storage.

By default the study lives in `<output_dir>/study.journal` (Optuna's append-only journal file,
safe for several processes). `--storage` names another journal file (e.g. on NFS) or a
database URL, so tuners on several machines can share one study.

A trial is an Optuna trial (its number + 1 is the Vertex trial id) with user attributes:
`parameters` ({parameterId: value} as the trial receives them), `owner` (the tuner running
it), `runs`, `measurements`, `elapsed_s`, and once finished `state` and `reason`. Each tuner
announces itself in a study attribute with a heartbeat. A RUNNING trial whose tuner is gone
(its process is dead, on this host; no heartbeat for `STALE_S`, elsewhere) is an orphan: the
next tuner runs it again with the same id and parameters, so it resumes from its own
checkpoints. Trials created past the budget by racing tuners are marked `discarded` and
ignored everywhere.
"""
from __future__ import annotations

import json
import math
import os
import socket
import time
import uuid
from dataclasses import dataclass, field

import optuna
from optuna.distributions import (BaseDistribution, CategoricalDistribution, FloatDistribution,
                                  IntDistribution)
from optuna.storages import JournalStorage
from optuna.trial import TrialState

from tuner import search
from tuner import spec as S
from tuner.journal import JournalFile
from tuner.runner import Measurement

SUCCEEDED, STOPPED, FAILED, INFEASIBLE, ACTIVE = (
    "SUCCEEDED", "STOPPED", "FAILED", "INFEASIBLE", "ACTIVE")
HEARTBEAT_S = 5.0
STALE_S = 60.0
ADOPT_SETTLE_S = 1.0
JOURNAL = "study.journal"


class StudyMismatch(Exception):
    """The storage already holds a study of this name with another search space."""


@dataclass
class TrialRecord:
    """What the tuner and the results table need to know about one trial."""

    number: int
    state: str
    parameters: dict
    value: float | None = None
    measurements: list[Measurement] = field(default_factory=list)
    reason: str = ""
    elapsed_s: float = 0.0
    command: list[str] = field(default_factory=list)
    owner: str | None = None
    runs: int = 0
    keeper: dict | None = None  # the latest run's keeper process (runner.run_identity)

    @property
    def trial_id(self) -> str:
        return str(self.number + 1)


def storage_for(output_dir: str, storage: str | None) -> tuple[optuna.storages.BaseStorage, str]:
    """The Optuna storage and the text that names it (kept in tuner.json for `results`)."""
    if storage and "://" in storage:
        return optuna.storages.RDBStorage(storage), storage
    path = os.path.abspath(storage or os.path.join(output_dir, JOURNAL))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return JournalStorage(JournalFile(path)), path


def existing_storage(url: str) -> optuna.storages.BaseStorage:
    """Opens storage that must already hold a study (for `results`, which only reads: Optuna's
    reader skips a torn last record, and a study a live tuner writes, or a read-only copy of
    one, must show as it is; the next `run` repairs it)."""
    if "://" in url:
        return optuna.storages.RDBStorage(url)
    if not os.path.exists(url):
        raise FileNotFoundError(url)
    return JournalStorage(JournalFile(url))


def _process_start(pid: int) -> str | None:
    """The kernel's start time of a live process (None if gone or a zombie): it tells a live
    tuner from a reused pid, and a killed tuner its parent has not reaped yet from a live one."""
    if not os.path.isdir("/proc"):  # not Linux: whether the pid exists is all we can tell
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return "alive"
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


class Study:
    """One study in storage, seen by one tuner process."""

    def __init__(self, storage: optuna.storages.BaseStorage, name: str, job: S.TuningJob,
                 *, seed: int | None = None, create: bool = True):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._storage = storage
        self.name = name
        self.job = job
        self.space = search.Space(job.parameters)
        self.sampler = search.make_sampler(job.algorithm, self.space, seed)
        direction = "maximize" if job.goal == S.MAXIMIZE else "minimize"
        if create:
            self.optuna = optuna.create_study(storage=storage, study_name=name,
                                              direction=direction, sampler=self.sampler,
                                              load_if_exists=True)
        else:
            self.optuna = optuna.load_study(storage=storage, study_name=name,
                                            sampler=self.sampler)
        recorded = self.optuna.user_attrs.get("search_space")
        wanted = json.loads(json.dumps(job.search_space()))
        if recorded is None and create:
            self.optuna.set_user_attr("search_space", wanted)
        elif recorded is not None and recorded != wanted:
            raise StudyMismatch(_difference(recorded, wanted))
        self.study_id = storage.get_study_id_from_name(name)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._last_beat = 0.0

    # -- tuners ----------------------------------------------------------------------------

    def heartbeat(self, *, ended: bool = False, force: bool = False) -> None:
        now = time.time()
        if not (force or ended) and now - self._last_beat < HEARTBEAT_S:
            return
        self._last_beat = now
        host, pid, _ = self.token.split(":")
        self.optuna.set_user_attr(f"tuner:{self.token}", {
            "host": host, "pid": int(pid), "start": _process_start(int(pid)), "beat": now,
            "ended": ended})

    def _owner_alive(self, owner: str | None, attrs: dict) -> bool:
        if owner == self.token:
            return True
        info = attrs.get(f"tuner:{owner}")
        if not owner or not info or info.get("ended"):
            return False
        if info["host"] == socket.gethostname():
            start = _process_start(info["pid"])
            return start is not None and start == info["start"]
        return time.time() - info["beat"] < STALE_S

    # -- reading ---------------------------------------------------------------------------

    def records(self) -> list[TrialRecord]:
        """Every trial but the discarded ones, by trial id."""
        out = []
        for t in self.optuna.get_trials(deepcopy=False):
            attrs = t.user_attrs
            if attrs.get("discarded"):
                continue
            if t.state == TrialState.RUNNING:
                state = ACTIVE
            else:
                state = attrs.get("state") or (SUCCEEDED if t.state == TrialState.COMPLETE
                                               else FAILED)
            out.append(TrialRecord(
                number=t.number, state=state, parameters=attrs.get("parameters", {}),
                value=t.value if t.state == TrialState.COMPLETE else None,
                measurements=[Measurement(*m) for m in attrs.get("measurements", [])],
                reason=attrs.get("reason", ""), elapsed_s=attrs.get("elapsed_s", 0.0),
                command=attrs.get("command", []), owner=attrs.get("owner"),
                runs=attrs.get("runs", 0), keeper=attrs.get("keeper")))
        return out

    def orphans(self) -> list[TrialRecord]:
        """RUNNING trials whose tuner is gone: to be run again, same id and parameters."""
        attrs = self.optuna.user_attrs
        return [r for r in self.records()
                if r.state == ACTIVE and not self._owner_alive(r.owner, attrs)]

    # -- writing ---------------------------------------------------------------------------

    def _id_of(self, number: int) -> int:
        """The storage's id of a trial (its number is the study's)."""
        return self._storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def _set(self, number: int, key: str, value) -> None:
        self._storage.set_trial_user_attr(self._id_of(number), key, value)

    def new_trial(self) -> TrialRecord | None:
        """A new trial within the budget with suggested parameters, or None when done."""
        kept = self.records()
        if len(kept) >= self.job.max_trial_count:
            return None
        if self.job.algorithm == S.GRID and len(kept) >= self.space.grid_size():
            return None
        # created with its owner in one journal entry: between creation and suggestion (a GP
        # fit), another tuner must not take it for an orphan
        template = optuna.trial.create_trial(state=TrialState.RUNNING,
                                             user_attrs={"owner": self.token})
        number = self._storage.get_trial_number_from_id(
            self._storage.create_new_trial(self.study_id, template_trial=template))
        earlier = sum(1 for r in self.records() if r.number < number)  # others' too
        if earlier >= self.job.max_trial_count or (
                self.job.algorithm == S.GRID and earlier >= self.space.grid_size()):
            self._discard(number)  # another tuner took the last place first
            return None
        return self._claim(number)

    def adopt(self, record: TrialRecord) -> TrialRecord | None:
        """Takes over an orphan (None if another live tuner took it at the same moment);
        finishes its suggestion if its tuner died before that."""
        self._set(record.number, "owner", self.token)
        if self._others_alive():  # the last owner written wins; let a rival's write land
            time.sleep(ADOPT_SETTLE_S)
            owner = self._storage.get_trial_user_attrs(self._id_of(record.number)).get("owner")
            if owner != self.token:
                return None
        if not record.parameters:
            return self._claim(record.number)
        record.owner = self.token
        return record

    def _others_alive(self) -> bool:
        attrs = self.optuna.user_attrs
        return any(self._owner_alive(key[len("tuner:"):], attrs) for key in attrs
                   if key.startswith("tuner:") and key != f"tuner:{self.token}")

    def _claim(self, number: int) -> TrialRecord:
        if isinstance(self.sampler, search.GridPointSampler):
            self.sampler.index = sum(1 for r in self.records() if r.number < number)
        self._set(number, "owner", self.token)  # (again, for an adopted orphan)
        parameters = self.space.suggest(_Suggestions(self.optuna, self._storage,
                                                     self._id_of(number)))
        self._set(number, "parameters", parameters)
        return TrialRecord(number=number, state=ACTIVE, parameters=parameters,
                           owner=self.token)

    def _discard(self, number: int) -> None:
        self._set(number, "discarded", True)
        self.optuna.tell(number, state=TrialState.FAIL)

    def started(self, record: TrialRecord, command: list[str], keeper: dict | None) -> None:
        """A run of the trial begins. Its keeper is recorded before the trial starts, so a rerun
        can end what is left of this run first."""
        record.runs += 1
        record.command, record.keeper = command, keeper
        self._set(record.number, "runs", record.runs)
        self._set(record.number, "command", command)
        self._set(record.number, "keeper", keeper)

    def measured(self, record: TrialRecord, measurements: list[Measurement],
                 elapsed_s: float) -> None:
        record.measurements, record.elapsed_s = measurements, elapsed_s
        self._set(record.number, "measurements", [[m.step, m.elapsed_s, m.value, m.timestamp]
                                                  for m in measurements])
        self._set(record.number, "elapsed_s", round(elapsed_s, 3))

    def finish(self, record: TrialRecord, state: str, value: float | None, reason: str,
               elapsed_s: float) -> None:
        record.state, record.value, record.reason = state, value, reason
        record.elapsed_s = elapsed_s
        if self._storage.get_trial(self._id_of(record.number)).state.is_finished():
            return  # a rival tuner that adopted the same orphan recorded it first
        self._set(record.number, "state", state)
        self._set(record.number, "reason", reason)
        self._set(record.number, "elapsed_s", round(elapsed_s, 3))
        if value is not None and math.isfinite(value) and state in (SUCCEEDED, STOPPED):
            self.optuna.tell(record.number, value)
        else:  # the sampler learns nothing from it; a stopped trial may have no value yet
            self.optuna.tell(record.number, state=TrialState.FAIL)


class _Suggestions:
    """The suggest_* calls of `Space.suggest` for a trial that already exists (created with its
    owner, or an orphan): Optuna's public API gives a suggesting `Trial` only from `ask()`,
    which creates a trial, without an owner. Values come as Optuna's `Trial` gives them (checked
    identical for the three algorithms): one the trial already has (its dead tuner began the
    suggestion), else the sampler's relative sample, else its independent one."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage, trial_id: int):
        self.study, self.storage, self.trial_id = study, storage, trial_id
        self.trial = storage.get_trial(trial_id)
        sampler = study.sampler
        self.relative = sampler.sample_relative(
            study, self.trial, sampler.infer_relative_search_space(study, self.trial))

    def suggest_float(self, name: str, low: float, high: float, *, log: bool = False) -> float:
        return self.suggest(name, FloatDistribution(low, high, log=log))

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int:
        return self.suggest(name, IntDistribution(low, high, log=log))

    def suggest_categorical(self, name: str, choices):
        return self.suggest(name, CategoricalDistribution(choices))

    def suggest(self, name: str, distribution: BaseDistribution):
        if name in self.trial.params:
            return self.trial.params[name]
        value = self.relative[name] if name in self.relative else \
            self.study.sampler.sample_independent(self.study, self.trial, name, distribution)
        self.storage.set_trial_param(self.trial_id, name, distribution.to_internal_repr(value),
                                     distribution)
        return value


def _difference(recorded: dict, wanted: dict) -> str:
    for key in ("metric", "goal", "algorithm"):
        if recorded.get(key) != wanted.get(key):
            return f"{key} is {recorded.get(key)!r} there, {wanted.get(key)!r} here"
    old = {p["parameterId"]: p for p in recorded.get("parameters", [])}
    new = {p["parameterId"]: p for p in wanted.get("parameters", [])}
    for pid in list(old) + list(new):
        if old.get(pid) != new.get(pid):
            return f"parameter {pid!r} differs"
    return "the parameters differ"
