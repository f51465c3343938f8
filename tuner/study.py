"""The study, and its oracle: what to try next, whether a trial stops, how it ended, when to end.

The oracle alone decides (keras-tuner's split): `suggest` hands out a trial with parameters,
`report` takes its measurements and says whether a stopping rule stops it, `complete` judges how
its run ended (state, final value, reason) and `budget_exhausted` says when the study is over.
The controller (tuner/controller.py) only runs what it is told, through a backend; nothing here
knows where a trial runs.

The study lives in Optuna storage, spoken to through Optuna's public API only: by default
`<output_dir>/study.journal` (Optuna's append-only journal file, safe for several processes);
`--storage` names another journal file (e.g. on NFS) or a database URL, so tuners on several
machines can share one study. A trial is an Optuna trial (its number + 1 is the Vertex trial id)
whose measurements are also its intermediate values (so Optuna's own tools, such as
`optuna.visualization` and optuna-dashboard, show its curves; with several metrics, the first
metric's: Optuna keeps one intermediate value a step), with user attributes:
`parameters` ({parameterId: value} as the trial receives them), `owner` (the tuner running it),
`runs`, `run` (the latest run as its backend names it), `command`, `measurements` (with times),
`elapsed_s`, and once finished `state` and `reason`. Each tuner announces itself in a study
attribute with a heartbeat. A RUNNING trial whose tuner is gone (its process is dead, on this
host; no heartbeat for `STALE_S` or `run --heartbeat-timeout`, elsewhere) is an orphan: the
next tuner runs it again with the same id and parameters, so it resumes from its own
checkpoints. Trials created past the budget
by racing tuners, or suggested and then not run, are marked `discarded` and ignored everywhere.
A failed trial run again (`run --retry-failed`, after the user fixed the trainer) stays in storage;
its rerun, a new trial with its parameters, names it in `retry_of`; from then on it counts nowhere.

Several metrics make a multi-objective Optuna study (one direction per metric): a trial is told
one final value per metric, each taken at the last step at which every metric was reported.
"""
from __future__ import annotations

import importlib
import json
import math
import os
import re
import signal
import socket
import time
import uuid
from dataclasses import dataclass

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState as OptunaState

from tuner import gp, keeper, search, stopping
from tuner import spec as S
from tuner.journal import Journal
from tuner.trial import Exit, Measurement, TrialRecord, TrialState

HEARTBEAT_S = 5.0
STALE_S = 60.0
ADOPT_SETTLE_S = 1.0
JOURNAL = "study.journal"


class StudyMismatch(Exception):
    """The storage already holds a study of this name with another search space."""


@dataclass(frozen=True)
class Verdict:
    """The study is over: its budget is used up (`failed`: its failure budget)."""

    failed: bool
    message: str


def storage_for(output_dir: str, storage: str | None) -> tuple[optuna.storages.BaseStorage, str]:
    """The Optuna storage and the text that names it (kept in tuner.json for `results`)."""
    if storage and "://" in storage:
        return database(storage), storage
    path = os.path.abspath(storage or os.path.join(output_dir, JOURNAL))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return Journal(path), path


def existing_storage(url: str) -> optuna.storages.BaseStorage:
    """Opens storage that must already hold a study (for `results`, which only reads: Optuna's
    reader skips a torn last record, and a study a live tuner writes, or a read-only copy of
    one, must show as it is; the next `run` repairs it)."""
    if "://" in url:
        if url.startswith("sqlite:"):  # SQLAlchemy would create a missing file
            import sqlalchemy

            path = sqlalchemy.engine.make_url(url).database
            if path and path != ":memory:" and not os.path.exists(path):
                raise FileNotFoundError(path)
        return database(url)
    if not os.path.exists(url):
        raise FileNotFoundError(url)
    return Journal(url)


def _create_tables_once(url: str) -> optuna.storages.RDBStorage:
    """RDBStorage, which creates Optuna's tables in a new database. Tuners started together
    race there (measured: "duplicate key value violates unique constraint
    pg_type_typname_nsp_index" in PostgreSQL's CREATE TYPE): the loser finds the tables the
    winner made when it tries again."""
    import sqlalchemy

    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            if attempt == SCHEMA_ATTEMPTS - 1:
                raise
            time.sleep(SCHEMA_RETRY_S)


class StorageUnusable(Exception):
    """A database URL that cannot be used (no driver, no server): the text is one line."""


SCHEMA_ATTEMPTS = 5
SCHEMA_RETRY_S = 0.5
DRIVERS = {"postgresql": ("psycopg", "psycopg[binary]==3.3.9", "postgresql")}


def shown(storage: str) -> str:
    """A storage's name as printed: a database URL's password as ***."""
    return re.sub(r"(://[^/:@]*:)[^/@]*@", r"\1***@", storage)


def has_password(storage: str) -> bool:
    return shown(storage) != storage


def database(url: str) -> optuna.storages.RDBStorage:
    """Optuna's storage in the database at `url` (SQLAlchemy's form). `postgresql://`, as users
    type it, means psycopg 3 (`postgresql+psycopg://`): SQLAlchemy's default for it is
    psycopg2, which the tuner does not install."""
    import sqlalchemy

    parsed = sqlalchemy.engine.make_url(url)
    shown = parsed.render_as_string(hide_password=True)
    if parsed.drivername in DRIVERS:
        module, requirement, extra = DRIVERS[parsed.drivername]
        try:
            importlib.import_module(module)
        except ImportError:
            raise StorageUnusable(
                f"--storage {shown}: the {parsed.drivername} driver {module} is not installed: "
                f"pip install '{requirement}' (or the tuner's extra: pip install "
                f"'.[{extra}]')") from None
        parsed = parsed.set(drivername=f"{parsed.drivername}+{module}")
    try:
        return _create_tables_once(parsed.render_as_string(hide_password=False))
    except ModuleNotFoundError as exc:
        raise StorageUnusable(f"--storage {shown}: its driver {exc.name} is not installed: "
                              f"pip install {exc.name}") from None
    except sqlalchemy.exc.DBAPIError as exc:
        reason = " ".join(str(exc.orig).split()) or type(exc.orig).__name__
        raise StorageUnusable(f"--storage {shown}: cannot use the database ({reason}): check "
                              "that its server runs and the URL's host, port, user and "
                              "database") from None


def _process_start(pid: int) -> int | str | None:
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
    stat = keeper.proc_stat(pid)
    return None if stat is None or stat[0] in ("Z", "X") else stat[3]


_INT_PARSE = re.compile(r"(?:invalid int value|invalid literal for int\(\) with base 10): "
                        r"'(-?\d+\.0)'")


def _integer_parse_hint(tail: tuple[str, ...]) -> str:
    """What a trial that parses a DISCRETE value with `type=int` needs to hear: Vertex sends
    DISCRETE (and DOUBLE) values as floats, `--batch_size=16.0`, and so does the tuner."""
    for line in tail:
        found = _INT_PARSE.search(line)
        if found:
            return (f" (the tuner passes DISCRETE values as floats, e.g. {found.group(1)}, as Vertex "
                    "does: parse the flag as a float and convert it, or make it an INTEGER "
                    "parameter)")
    return ""


def select_final(measurements: list[Measurement], maximize: bool, best: bool) -> float | None:
    """The trial's final value: its last measurement, or its best (NaN never counts as best)."""
    if not measurements:
        return None
    if not best:
        return measurements[-1].value
    finite = [m.value for m in measurements if math.isfinite(m.value)]
    if not finite:
        return math.nan
    return max(finite) if maximize else min(finite)


def select_last_common(measurements: list[Measurement], metrics: list[str]
                       ) -> tuple[list[float] | None, str]:
    """Several metrics, LAST_MEASUREMENT: each metric's last report at the last step at which
    every metric was reported (Vertex's measurement holds every metric at one step), or None
    and what is missing. `metrics[0]` is the metric that Measurement.metric None names."""
    by_step: dict[int, dict[str, float]] = {}
    for m in measurements:  # ordered by (step, elapsed): a later report of a step wins
        by_step.setdefault(m.step, {})[m.metric or metrics[0]] = m.value
    common = [step for step, values in by_step.items() if len(values) == len(metrics)]
    if common:
        values = by_step[max(common)]
        return [values[metric] for metric in metrics], ""
    reported = {metric for values in by_step.values() for metric in values}
    missing = [metric for metric in metrics if metric not in reported]
    if missing:
        return None, f"reported no value for {', '.join(map(repr, missing))}"
    last = ", ".join(f"{metric} {max(s for s, v in by_step.items() if metric in v)}"
                     for metric in metrics)
    return None, (f"reported no step with every metric (last steps: {last}): report them all "
                  "with the same global_step")


class Study:
    """One study in storage, seen by one tuner process: the oracle of that tuner."""

    def __init__(self, storage: optuna.storages.BaseStorage, name: str, job: S.TuningJob,
                 *, seed: int | None = None, create: bool = True, stale_s: float = STALE_S):
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._storage = storage
        self.stale_s = stale_s  # how long another host's tuner may be silent before it is gone
        self.name = name
        self.job = job
        self.maximize = job.goal == S.MAXIMIZE
        self.metric_ids = [m.id for m in job.metrics]
        self.space = search.Space(job.parameters)
        if len(job.metrics) > 1:
            self.sampler = search.make_multi_objective_sampler(job.algorithm, self.space, seed)
        else:
            self.sampler = search.make_sampler(job.algorithm, self.space, seed)
        directions = ["maximize" if m.goal == S.MAXIMIZE else "minimize" for m in job.metrics]
        if create:
            self.optuna = optuna.create_study(storage=storage, study_name=name,
                                              directions=directions, sampler=self.sampler,
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
        self._storage_ids: dict[int, int] = {}
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._last_beat = 0.0

    @property
    def learns_from_results(self) -> bool:
        """Whether a suggestion depends on the results so far (only the default search's do)."""
        return self.job.algorithm == S.BAYESIAN

    def warm_up(self) -> None:
        """Loads what the search's model needs before its first suggestion needs it."""
        if self.learns_from_results:
            gp.load()

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
        if ended:
            self._sync()

    def _owner_alive(self, owner: str | None, attrs: dict) -> bool:
        if owner == self.token:
            return True
        info = attrs.get(f"tuner:{owner}")
        if not owner or not info or info.get("ended"):
            return False
        if info["host"] == socket.gethostname():
            start = _process_start(info["pid"])
            return start is not None and start == info["start"]
        return time.time() - info["beat"] < self.stale_s

    # -- reading ---------------------------------------------------------------------------

    def records(self) -> list[TrialRecord]:
        """Every trial but the discarded and the retried ones, by trial id."""
        out = []
        trials = self.optuna.get_trials(deepcopy=False)
        retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
        for t in trials:
            attrs = t.user_attrs
            if attrs.get("discarded") or t.number in retried:
                continue
            if t.state == OptunaState.RUNNING:
                state = TrialState.ACTIVE
            elif "state" in attrs:
                state = TrialState(attrs["state"])
            else:
                state = (TrialState.SUCCEEDED if t.state == OptunaState.COMPLETE
                         else TrialState.FAILED)
            values = tuple(t.values) if t.state == OptunaState.COMPLETE else None
            out.append(TrialRecord(
                number=t.number, state=state, parameters=attrs.get("parameters", {}),
                value=values[0] if values else None, values=values,
                measurements=[Measurement(*m) for m in attrs.get("measurements", [])],
                reason=attrs.get("reason", ""), elapsed_s=attrs.get("elapsed_s", 0.0),
                command=attrs.get("command", []), owner=attrs.get("owner"),
                runs=attrs.get("runs", 0), run=attrs.get("run")))
        return out

    def orphans(self) -> list[TrialRecord]:
        """RUNNING trials whose tuner is gone: to be run again, same id and parameters."""
        attrs = self.optuna.user_attrs
        return [r for r in self.records()
                if r.state is TrialState.ACTIVE and not self._owner_alive(r.owner, attrs)]

    # -- the oracle ------------------------------------------------------------------------

    def suggest(self) -> TrialRecord | None:
        """The next trial to run: an orphan first, else a new one; None when the budget (or
        the grid) is used up."""
        for orphan in self.orphans():
            record = self.adopt(orphan)
            if record is not None:
                return record
        return self.new_trial()

    def report(self, record: TrialRecord, measurements: list[Measurement],
               elapsed_s: float) -> str | None:
        """Records a running trial's measurements so far; returns why a stopping rule stops it,
        or None to let it go on."""
        known = set(record.measurements)
        trial_id = self._id_of(record.number)
        for m in measurements:
            if m not in known and m.metric is None:
                self._storage.set_trial_intermediate_value(trial_id, m.step, m.value)
        record.measurements, record.elapsed_s = list(measurements), elapsed_s
        # elapsed_s first: a tuner stopped between the two appends then leaves an elapsed_s no
        # smaller than any recorded measurement's, which a rerun starts counting from (the
        # other way round, steps reported unseen counted from 0 s, before the recorded ones)
        self._set(record.number, "elapsed_s", round(elapsed_s, 3))
        self._set(record.number, "measurements",
                  [[m.step, m.elapsed_s, m.value, m.timestamp, *([m.metric] if m.metric else [])]
                   for m in measurements])
        return self._stopping_rule(measurements)

    def _stopping_rule(self, measurements: list[Measurement]) -> str | None:
        rule = self.job.stopping
        if rule is None:
            return None
        done = [r for r in self.records() if r.state is TrialState.SUCCEEDED]
        curves = [r.measurements for r in done]
        if rule.rule == "median":
            return stopping.median_rule(measurements, curves, self.maximize, rule.use_elapsed)
        return stopping.decay_curve_rule(measurements, curves, [r.value for r in done],
                                         self.maximize, rule.use_elapsed)

    def complete(self, record: TrialRecord, exit: Exit) -> TrialRecord:
        """Judges how the trial's run ended, from its exit and its measurements, and records it."""
        final, missing = self._final(record.measurements)
        if exit.code is None:
            state, reason = TrialState.FAILED, f"cannot start the trial: {exit.tail[-1]}"
        elif exit.stopped is not None:
            state, reason = TrialState.STOPPED, exit.stopped
        elif exit.failure is not None:
            state, reason = TrialState.FAILED, exit.failure
        elif exit.code != 0:
            how = (f"killed by {signal.Signals(-exit.code).name}" if exit.code < 0
                   else f"exit code {exit.code}")
            state, reason = TrialState.FAILED, f"{how}: {exit.tail[-1]}" if exit.tail else how
            reason += _integer_parse_hint(exit.tail)
        elif final is None:
            seen = sorted(exit.reported)
            state = TrialState.INFEASIBLE
            reason = (missing
                      + (f" (it reported {', '.join(seen)})" if seen else
                         " (nothing in CLOUD_ML_HP_METRIC_FILE: does it report through "
                         "cloudml-hypertune?)"))
        elif not all(map(math.isfinite, final)):  # nothing to rank: like no value at all
            metric, value = next((m, v) for m, v in zip(self.metric_ids, final)
                                 if not math.isfinite(v))
            state, reason = (TrialState.INFEASIBLE,
                             f"final {metric} is {'NaN' if math.isnan(value) else value}")
        else:
            state, reason = TrialState.SUCCEEDED, ""
        if final is not None and len(final) == 1:
            final = final[0]  # a single-objective study is told a number
        self.finish(record, state, None if state.failed else final, reason, exit.elapsed_s)
        return record

    def _final(self, measurements: list[Measurement]) -> tuple[list[float] | None, str]:
        """The final value of each metric (None if there is none), and else why not."""
        if len(self.metric_ids) > 1:  # spec.local_problem refuses BEST with several metrics
            return select_last_common(measurements, self.metric_ids)
        final = select_final(measurements, self.maximize, self.job.measurement == S.BEST)
        return (None, f"reported no value for {self.job.metric!r}") if final is None else (
            [final], "")

    def budget_exhausted(self) -> Verdict | None:
        """Whether the study is over: failure budget (Vertex's rule, reference 1.10; with no
        maxFailedTrialCount our reading of it), trial budget or grid. Trials still running
        finish first unless the study failed."""
        records = self.records()
        failed = sum(1 for r in records if r.state.failed)
        succeeded = sum(1 for r in records if r.state is TrialState.SUCCEEDED)
        limit = self.job.max_failed_trial_count
        if limit:
            if failed >= limit:
                return Verdict(True, f"{failed} trials failed (maxFailedTrialCount is {limit})")
        elif failed and not succeeded:
            return Verdict(True, "a trial failed before any succeeded (maxFailedTrialCount is "
                                 "unset: the first failure ends the study)")
        elif failed > succeeded:
            return Verdict(True, f"{failed} trials failed against {succeeded} succeeded "
                                 "(maxFailedTrialCount is unset: more failures than successes "
                                 "end the study)")
        if len(records) >= self.trial_limit:
            return Verdict(False, f"all {len(records)} trials suggested")
        return None

    @property
    def trial_limit(self) -> int:
        """maxTrialCount, or the grid's size where that is smaller: the grid ends first."""
        if self.job.algorithm == S.GRID:
            return min(self.job.max_trial_count, self.space.grid_size())
        return self.job.max_trial_count

    def retry_failed(self) -> list[tuple[str, str]]:
        """Runs every trial the failure budget counts again, as a new trial with the same
        parameters (Optuna never reopens a finished trial), for a study that failed on its budget
        and whose trainer is fixed. Returns (failed id, rerun id) pairs. One write per trial:
        the rerun, naming the failure in `retry_of`, retires it."""
        retried = []
        trials = self.optuna.get_trials(deepcopy=False)
        for record in self.records():
            if record.state.failed:
                old = trials[record.number]
                template = optuna.trial.create_trial(
                    state=OptunaState.RUNNING, params=old.params, distributions=old.distributions,
                    user_attrs={"parameters": record.parameters, "retry_of": record.number})
                number = self._storage.get_trial_number_from_id(
                    self._storage.create_new_trial(self.study_id, template_trial=template))
                retried.append((record.trial_id, str(number + 1)))
        self._sync()
        return retried

    # -- writing ---------------------------------------------------------------------------

    def _id_of(self, number: int) -> int:
        """The storage's id of a trial (its number is the study's; neither ever changes)."""
        if number not in self._storage_ids:
            self._storage_ids[number] = self._storage.get_trial_id_from_study_id_trial_number(
                self.study_id, number)
        return self._storage_ids[number]

    def _sync(self) -> None:
        """Makes what is recorded so far survive a crash of the machine (a journal file's
        appends are not synced one by one; a database commits each)."""
        if isinstance(self._storage, Journal):
            self._storage.sync()

    def _set(self, number: int, key: str, value) -> None:
        self._storage.set_trial_user_attr(self._id_of(number), key, value)

    def new_trial(self) -> TrialRecord | None:
        """A new trial within the budget with suggested parameters, or None when done."""
        limit = self.trial_limit
        if len(self.records()) >= limit:
            return None
        # created with its owner in one journal entry: between creation and suggestion (a GP
        # fit), another tuner must not take it for an orphan
        template = optuna.trial.create_trial(state=OptunaState.RUNNING,
                                             user_attrs={"owner": self.token})
        number = self._storage.get_trial_number_from_id(
            self._storage.create_new_trial(self.study_id, template_trial=template))
        earlier = sum(1 for r in self.records() if r.number < number)  # others' too
        if earlier >= limit:
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
        return TrialRecord(number=number, state=TrialState.ACTIVE, parameters=parameters,
                           owner=self.token)

    def _discard(self, number: int) -> None:
        self._set(number, "discarded", True)
        self.optuna.tell(number, state=OptunaState.FAIL, skip_if_finished=True)

    def withdraw(self, record: TrialRecord) -> None:
        """Takes back a suggestion that no run began (the study ended before a slot was free)."""
        if not record.started:
            self._discard(record.number)

    def started(self, record: TrialRecord, command: list[str], run: dict | None) -> None:
        """A run of the trial begins. The backend's name for the run is recorded before the
        trial starts, so a rerun can end what is left of this run first."""
        record.runs += 1
        record.command, record.run = command, run
        self._set(record.number, "runs", record.runs)
        self._set(record.number, "command", command)
        self._set(record.number, "run", run)
        self._sync()

    def finish(self, record: TrialRecord, state: TrialState, value: float | list[float] | None,
               reason: str, elapsed_s: float) -> None:
        """Records how the trial ended; `value` is its final value, a list of one per metric
        in a multi-metric study (as Optuna's `tell` takes them)."""
        values = None if value is None else tuple(value) if isinstance(value, list) else (value,)
        record.state, record.values = state, values
        record.value = values[0] if values else None
        record.reason, record.elapsed_s = reason, elapsed_s
        if self._storage.get_trial(self._id_of(record.number)).state.is_finished():
            return  # a rival tuner that adopted the same orphan recorded it first
        self._set(record.number, "state", state.value)
        self._set(record.number, "reason", reason)
        self._set(record.number, "elapsed_s", round(elapsed_s, 3))
        if values is not None and all(map(math.isfinite, values)) and state in (
                TrialState.SUCCEEDED, TrialState.STOPPED):
            self.optuna.tell(record.number, value, skip_if_finished=True)
        else:  # the sampler learns nothing from it; a stopped trial may have no value yet
            self.optuna.tell(record.number, state=OptunaState.FAIL, skip_if_finished=True)
        self._sync()


class _Suggestions:
    """The suggest_* calls of `Space.suggest` for a trial that already exists (created with its
    owner, or an orphan): Optuna's public API gives a suggesting `Trial` only from `ask()`,
    which creates a trial without an owner, that another tuner could take for an orphan.
    Values come as Optuna's `Trial` gives them (checked identical for the three algorithms):
    one the trial already has (its dead tuner began the suggestion), else the sampler's
    relative sample, else its independent one; the sampler's `before_trial` hook runs first,
    its `after_trial` when the trial is told."""

    def __init__(self, study: optuna.Study, storage: optuna.storages.BaseStorage, trial_id: int):
        self.study, self.storage, self.trial_id = study, storage, trial_id
        self.trial = storage.get_trial(trial_id)
        sampler = study.sampler
        sampler.before_trial(study, self.trial)
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
    for key in ("metric", "goal", "metrics", "algorithm"):
        if recorded.get(key) != wanted.get(key):
            return f"{key} is {recorded.get(key)!r} there, {wanted.get(key)!r} here"
    old = {p["parameterId"]: p for p in recorded.get("parameters", [])}
    new = {p["parameterId"]: p for p in wanted.get("parameters", [])}
    for pid in list(old) + list(new):
        if old.get(pid) != new.get(pid):
            return f"parameter {pid!r} differs"
    return "the parameters differ"
