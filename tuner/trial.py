"""The study's vocabulary: a trial's states, its measurements, its record, how a run ended.

The oracle (tuner/study.py), the controller (tuner/controller.py), the backends that run
trials (tuner/backends/) and the results (tuner/results.py) all speak in these terms, so none
needs to know how another keeps them.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field


class TrialState(enum.Enum):
    """Vertex AI's trial states, as the results show them."""

    ACTIVE = "ACTIVE"          # suggested, running or to be run again (its tuner stopped)
    SUCCEEDED = "SUCCEEDED"    # ran to the end and reported a finite value
    STOPPED = "STOPPED"        # stopped early by a stopping rule or the study's end
    FAILED = "FAILED"          # could not start, or exited non-zero
    INFEASIBLE = "INFEASIBLE"  # exited 0 without a usable value

    def __str__(self) -> str:
        return self.value

    @property
    def failed(self) -> bool:
        """Counts against the failure budget."""
        return self in (TrialState.FAILED, TrialState.INFEASIBLE)


@dataclass(frozen=True)
class Measurement:
    """One report of one of the trial's metrics."""

    step: int
    elapsed_s: float  # since the trial first started, over all its runs
    value: float
    timestamp: float  # the reporter's own, to recognise the record when read again
    metric: str | None = None  # None: the study's first metric (its only one, mostly)


@dataclass
class TrialRecord:
    """What the tuner and the results know about one trial."""

    number: int
    state: TrialState
    parameters: dict  # {parameterId: value} as the trial receives them
    value: float | None = None  # the final value of the (first) metric
    values: tuple[float, ...] | None = None  # the final value of every metric, in spec order
    measurements: list[Measurement] = field(default_factory=list)
    reason: str = ""
    elapsed_s: float = 0.0
    command: list[str] = field(default_factory=list)
    owner: str | None = None  # the tuner that runs it
    runs: int = 0
    run: dict | None = None  # the latest run, as its backend names it (local: its keeper)

    @property
    def trial_id(self) -> str:
        return str(self.number + 1)

    @property
    def started(self) -> bool:
        """False for a trial suggested ahead of a free slot that no run has begun yet."""
        return self.runs > 0 or self.state is not TrialState.ACTIVE


@dataclass(frozen=True)
class Exit:
    """How one run of a trial ended, as its backend saw it; the oracle judges it."""

    code: int | None  # exit status; negative: killed by that signal; None: it never started
    elapsed_s: float  # the trial's time over all its runs
    stopped: str | None = None  # why the tuner stopped it, if it did
    tail: tuple[str, ...] = ()  # the last lines of its error output, or why it did not start
    reported: frozenset[str] = frozenset()  # every metric it reported, to say what was missing
    failure: str | None = None  # why it failed where no exit status says it (a cloud job's error)
