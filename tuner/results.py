"""What a study shows: the live view, the trials table, the files other tools read, the plots.

Files written into the study's output dir (replaced whole, never left half-written):
- `trials.csv`: trial_id, state, value, steps, elapsed_s, one column per parameterId (empty when
  inactive, else the text the trial received), reason. `value` is the final measurement after
  LAST/BEST selection; `steps` the last reported global_step (the number of measurements when
  every step is 0).
- `best_trial.json`: trial_id, value, parameters, command (shell-quoted argv of the best
  SUCCEEDED trial).
- `history.png`, `parallel_coordinates.png`, `curves.png` (intermediate values),
  `param_importances.png`: drawn by `optuna.visualization.matplotlib` over an in-memory Optuna
  study of the table's rows, whatever their source; a plot that a study cannot show (no value,
  no parameter, no measurement) is not drawn, with a line saying why.

With several metrics (`objectives`), `value` in trials.csv is one column per metricId,
`best_trial.json` holds `metrics` ({metricId: goal}) and `pareto_front`: the SUCCEEDED trials
no other beats on every metric (trial_id, values, parameters, command), best first metric
first, and `pareto_front.png` shows them among the others (Optuna draws the first two or
three metrics). The other plots show the first metric.

The same table can be built from a cloud job's outputs, `<base>/<trial id>/model/metrics.json`
as the trainer writes them (the curves from `<trial id>/checkpoints/history.json`), through
google-cloud-storage.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shlex
import shutil
import sys
import textwrap
import time
import uuid
from dataclasses import dataclass, field

from tuner import spec as S
from tuner.trial import TrialRecord, TrialState

SUBMIT_SCRIPT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                             "scripts", "submit_hptuning.sh")
REFRESH_S = 1.0


@dataclass
class Row:
    """One line of the table, whatever the source (a local study or a cloud job's files)."""

    trial_id: str
    state: TrialState
    value: float | None
    steps: int
    elapsed_s: float
    parameters: dict  # parameterId -> value text as the trial received it
    reason: str = ""
    command: list[str] = field(default_factory=list)
    curve: list[tuple[int, float]] = field(default_factory=list)
    values: tuple[float, ...] | None = None  # every metric's final value (several metrics)


def objectives(job: S.TuningJob) -> tuple[tuple[str, bool], ...]:
    """(metricId, maximize) of each metric of a multi-metric study; () with one metric."""
    if len(job.metrics) == 1:
        return ()
    return tuple((m.id, m.goal == S.MAXIMIZE) for m in job.metrics)


def _steps(record: TrialRecord) -> int:
    steps = [m.step for m in record.measurements if m.metric is None]  # the first metric's
    return max(steps) if any(steps) else len(steps)


def rows_from_records(job: S.TuningJob, records: list[TrialRecord]) -> list[Row]:
    formats: dict[str, S.Parameter] = {}
    for p in job.walk():
        formats.setdefault(p.id, p)
    return [Row(r.trial_id, r.state, r.value, _steps(r), round(r.elapsed_s, 1),
                {k: formats[k].format(v) for k, v in r.parameters.items() if k in formats},
                r.reason, r.command,
                [(m.step, m.value) for m in r.measurements if m.metric is None], r.values)
            for r in records if r.started]  # not one suggested ahead that never ran


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _short(text: str) -> str:
    try:
        return f"{float(text):.4g}"
    except ValueError:
        return text


def sort_rows(rows: list[Row], maximize: bool) -> list[Row]:
    """Best value first; trials without one after them (active, then failed), by id."""
    order = {TrialState.SUCCEEDED: 0, TrialState.STOPPED: 0, TrialState.ACTIVE: 1,
             TrialState.INFEASIBLE: 2, TrialState.FAILED: 2}

    def key(row: Row):
        has = row.value is not None and math.isfinite(row.value)
        value = (-row.value if maximize else row.value) if has else 0.0
        return (0 if has else 1 + order.get(row.state, 3), value, _as_int(row.trial_id))

    return sorted(rows, key=key)


def _as_int(text: str):
    return (0, int(text), "") if text.isdigit() else (1, 0, text)


def best_row(rows: list[Row], maximize: bool) -> Row | None:
    done = [r for r in rows if r.state == TrialState.SUCCEEDED and r.value is not None
            and math.isfinite(r.value)]
    return sort_rows(done, maximize)[0] if done else None


def pareto_front(rows: list[Row], objectives: tuple[tuple[str, bool], ...]) -> list[Row]:
    """The SUCCEEDED trials that no other is at least as good as on every metric and better
    on one, best first metric first."""
    signs = [1.0 if maximize else -1.0 for _, maximize in objectives]
    done = [(r, [s * v for s, v in zip(signs, r.values)]) for r in rows
            if r.state == TrialState.SUCCEEDED and r.values
            and all(math.isfinite(v) for v in r.values)]

    def beats(a: list[float], b: list[float]) -> bool:
        return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))

    front = [r for r, score in done if not any(beats(other, score) for _, other in done)]
    return sort_rows(front, objectives[0][1])


def _values(row: Row, count: int) -> list:
    """The row's final value of each of `count` metrics, for a table line."""
    return list(row.values) if row.values else [row.value if count == 1 else None] * count


def table(rows: list[Row], metric: str, parameter_ids: list[str], width: int = 60, *,
          objectives: tuple[tuple[str, bool], ...] = ()) -> str:
    metrics = [m for m, _ in objectives] or [metric]
    header = ["trial", "state", *metrics, "steps", "elapsed_s", *parameter_ids, "reason"]
    lines = [[r.trial_id, r.state, *map(_fmt, _values(r, len(metrics))), str(r.steps),
              _fmt(r.elapsed_s),
              *[_short(r.parameters.get(p, "")) for p in parameter_ids],
              r.reason if len(r.reason) <= width else r.reason[:width - 3] + "..."]
             for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *lines)]
    return "\n".join("  ".join(str(c).ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in [header, *lines])


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------

def write_atomic(path: str, data: bytes, *, private: bool = False) -> None:
    """Replaces `path` whole; the file gets the mode any new file gets (the umask's, where
    mkstemp's is the owner's alone), or the owner's alone if `private`."""
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".tmp-{uuid.uuid4().hex[:12]}-{name}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_files(output_dir: str, rows: list[Row], parameter_ids: list[str], maximize: bool,
                metric: str, *, plots: bool,
                objectives: tuple[tuple[str, bool], ...] = ()) -> list[str]:
    """Writes trials.csv, best_trial.json (if a trial succeeded) and the plots; returns names."""
    metrics = [m for m, _ in objectives] or ["value"]
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trial_id", "state", *metrics, "steps", "elapsed_s", *parameter_ids,
                     "reason"])
    for r in sorted(rows, key=lambda r: _as_int(r.trial_id)):
        writer.writerow([r.trial_id, r.state,
                         *["" if v is None else repr(v) for v in _values(r, len(metrics))],
                         r.steps, r.elapsed_s, *[r.parameters.get(p, "") for p in parameter_ids],
                         r.reason])
    write_atomic(os.path.join(output_dir, "trials.csv"), out.getvalue().encode())
    written = ["trials.csv"]
    front = pareto_front(rows, objectives) if objectives else []
    best = None if objectives else best_row(rows, maximize)
    if front:
        document = {"metrics": {m: "MAXIMIZE" if up else "MINIMIZE" for m, up in objectives},
                    "pareto_front": [{"trial_id": r.trial_id, "values": dict(zip(metrics,
                                                                               r.values)),
                                      "parameters": r.parameters,
                                      "command": shlex.join(r.command)} for r in front]}
        write_atomic(os.path.join(output_dir, "best_trial.json"),
                     (json.dumps(document, indent=2) + "\n").encode())
        written.append("best_trial.json")
    if best:
        document = {"trial_id": best.trial_id, "value": best.value,
                    "parameters": best.parameters, "command": shlex.join(best.command)}
        write_atomic(os.path.join(output_dir, "best_trial.json"),
                      (json.dumps(document, indent=2) + "\n").encode())
        written.append("best_trial.json")
    if plots:
        written += write_plots(output_dir, rows, parameter_ids,
                               objectives or ((metric, maximize),))
    return written


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

PLOTS = HISTORY, PARALLEL, CURVES, IMPORTANCES = (
    "history.png", "parallel_coordinates.png", "curves.png", "param_importances.png")
PARETO_PLOT = "pareto_front.png"
PLOT_DPI = 100


def plotting():
    """optuna.visualization.matplotlib, with pyplot on the file-only Agg backend, and
    optuna.importance. Their imports cost seconds: the tuner has them loaded off its
    controller's thread while the first trial runs, so the plots at the study's end do not wait
    for them. optuna.importance also imports scikit-learn wherever it is installed, for fANOVA,
    which the plots do not use (PED-ANOVA, Optuna's default, needs none): 2.5 s of CPU here,
    taken from the trials and the controller. So it is imported with scikit-learn hidden (None
    in sys.modules: Python's own "not installed"), shown again at once."""
    import matplotlib

    matplotlib.use("Agg")
    hide = "sklearn" not in sys.modules
    if hide:
        sys.modules["sklearn"] = None
    try:
        import optuna.importance  # noqa: F401 (loaded here, used by plot_param_importances)
    finally:
        if hide and "sklearn" in sys.modules and sys.modules["sklearn"] is None:
            del sys.modules["sklearn"]
    import optuna.visualization.matplotlib as plots

    return plots


def plotted_study(rows: list[Row], parameter_ids: list[str],
                  objectives: tuple[tuple[str, bool], ...]):
    """The rows as an in-memory Optuna study: what every plot is drawn from, for a local study
    and a cloud job's files alike. Parameters hold the values the trials received (the local
    study's own are Optuna's internal ones: a DISCRETE value's index, a REVERSE_LOG reflection),
    numbers on a log axis where they span 20x or more; measurements are its intermediate values."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not "A new study created in memory"
    directions = ["maximize" if up else "minimize" for _, up in objectives]
    study = optuna.create_study(storage=optuna.storages.InMemoryStorage(),
                                directions=directions)
    distributions = _distributions(rows, parameter_ids)
    for r in sorted(rows, key=lambda r: _as_int(r.trial_id)):
        values = r.values or ((r.value,) if r.value is not None else None)
        complete = values is not None and all(math.isfinite(v) for v in values)
        if complete and r.state in (TrialState.SUCCEEDED, TrialState.STOPPED):
            state = optuna.trial.TrialState.COMPLETE
        elif r.state is TrialState.ACTIVE:
            state, values = optuna.trial.TrialState.RUNNING, None
        elif r.state is TrialState.STOPPED:
            state, values = optuna.trial.TrialState.PRUNED, None
        else:
            state, values = optuna.trial.TrialState.FAIL, None
        params = {p: r.parameters[p] if isinstance(distributions[p], CategoricalDistribution)
                  else float(r.parameters[p]) for p in parameter_ids
                  if r.parameters.get(p, "") != ""}
        study.add_trial(optuna.trial.create_trial(
            state=state, values=values, params=params,
            distributions={p: distributions[p] for p in params},
            intermediate_values=_intermediate_values(r.curve)))
    return study


def _distributions(rows: list[Row], parameter_ids: list[str]) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    out = {}
    for p in parameter_ids:
        texts = sorted({r.parameters[p] for r in rows if r.parameters.get(p, "") != ""})
        try:
            numbers = [float(t) for t in texts]
        except ValueError:
            out[p] = CategoricalDistribution(texts)
            continue
        low, high = min(numbers, default=0.0), max(numbers, default=1.0)
        out[p] = FloatDistribution(low, high, log=low > 0 and high / low >= 20)
    return out


def _intermediate_values(curve: list[tuple[int, float]]) -> dict[int, float]:
    """{step: value}; by measurement number where every step is 0 (as `steps` counts them)."""
    if any(step for step, _ in curve):
        return {step: value for step, value in curve}
    return {i + 1: value for i, (_, value) in enumerate(curve)}


def figures(study, objectives: tuple[tuple[str, bool], ...]) -> dict:
    """{file name: the matplotlib Axes drawn, or why that plot is not drawn}. A multi-metric
    study's plots show its first metric, and it gets the Pareto front."""
    import warnings

    import optuna

    plots = plotting()
    metric = objectives[0][0]
    first = {"target": (lambda t: t.values[0]) if len(objectives) > 1 else None,
             "target_name": metric}
    # PED-ANOVA (Optuna's default, and unlike fANOVA without scikit-learn) takes a target as
    # lower-is-better; Optuna's own target for each of several metrics would be that too
    sign = -1.0 if objectives[0][1] else 1.0
    ranked = {"target": (lambda t: sign * t.values[0]) if len(objectives) > 1 else None,
              "target_name": metric}
    trials = study.get_trials(deepcopy=False)
    done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    params = sorted({p for t in done for p in t.params})
    why_not = {}
    if not done:
        why_not.update(dict.fromkeys((HISTORY, PARALLEL, IMPORTANCES, PARETO_PLOT),
                                     "no trial has a value"))
    elif not params:
        why_not.update(dict.fromkeys((PARALLEL, IMPORTANCES), "no parameter took values"))
    elif len(done) < 2:
        why_not.update(dict.fromkeys((PARALLEL, IMPORTANCES),
                                     "one trial has a value: nothing to compare it with"))
    elif len(params) < 2:
        why_not[IMPORTANCES] = "one parameter: it has all the importance"
    if not any(t.intermediate_values for t in trials):
        why_not[CURVES] = "no trial reported intermediate measurements"
    draw = {HISTORY: lambda: plots.plot_optimization_history(study, **first),
            PARALLEL: lambda: plots.plot_parallel_coordinate(study, **first),
            CURVES: lambda: plots.plot_intermediate_values(study),
            IMPORTANCES: lambda: plots.plot_param_importances(study, **ranked)}
    if len(objectives) > 1:
        shown = 2 if len(objectives) > 3 else len(objectives)  # Optuna draws 2 or 3 axes
        draw[PARETO_PLOT] = lambda: plots.plot_pareto_front(
            study, targets=lambda t: t.values[:shown],
            target_names=[m for m, _ in objectives[:shown]])
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        warnings.filterwarnings("ignore", "PedAnovaImportanceEvaluator computes")  # `ranked`
        for name, plot in draw.items():
            out[name] = why_not.get(name) or plot()
    return out


def write_plots(output_dir: str, rows: list[Row], parameter_ids: list[str],
                objectives: tuple[tuple[str, bool], ...]) -> list[str]:
    """Draws the plots of `figures` into PNGs; says why each one that is not drawn is not (a
    copy left from an earlier run is removed: it would show another study's state)."""
    import matplotlib.pyplot as plt

    written = []
    for name, drawn in figures(plotted_study(rows, parameter_ids, objectives),
                               objectives).items():
        path = os.path.join(output_dir, name)
        if isinstance(drawn, str):
            print(f"{name} not drawn: {drawn}")
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            continue
        figure = drawn.figure
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=PLOT_DPI)
        plt.close(figure)
        write_atomic(path, buffer.getvalue())
        written.append(name)
    return written


# --------------------------------------------------------------------------------------------
# Commands shown to the user
# --------------------------------------------------------------------------------------------

def submit_command(job: S.TuningJob, config_path: str, overrides: dict) -> list[str]:
    """scripts/submit_hptuning.sh for the same study, with its overrides: the config alone
    would fail on Vertex (its image is a placeholder and it has no baseOutputDirectory), the
    script fills those in and validates before it submits. A legacy file is converted first."""
    lines = []
    config = config_path
    if job.dialect == "legacy":
        stem, _ = os.path.splitext(config_path)
        config = f"{stem}.vertex.yaml"
        lines.append(f"python -m tuner convert {shlex.quote(config_path)} "
                     f"-o {shlex.quote(config)}")
    script = os.path.relpath(SUBMIT_SCRIPT)
    flags = [f"--config={shlex.quote(config)}", '--region="$REGION"', '--bucket="$BUCKET"']
    if overrides.get("maxTrialCount") is not None:
        flags.append(f"--max-trial-count={overrides['maxTrialCount']}")
    if overrides.get("parallelTrialCount") is not None:
        flags.append(f"--parallel-trial-count={overrides['parallelTrialCount']}")
    if overrides.get("algorithm"):
        flags.append(f"--algorithm={overrides['algorithm'].lower().replace('_', '-')}")
    lines.append(" ".join([shlex.quote(SUBMIT_SCRIPT if script.startswith("..") else script),
                           *flags]))
    return lines


def summary(job: S.TuningJob, rows: list[Row], *, config_path: str | None = None,
            overrides: dict | None = None, custom_command: bool = False) -> str:
    maximize = job.goal == S.MAXIMIZE
    parameter_ids = job.parameter_ids()
    several = objectives(job)
    out = [table(sort_rows(rows, maximize), job.metric, parameter_ids, objectives=several)]
    counts = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    out.append("trials: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items(),
                                                                    key=lambda c: c[0].value)))
    best = None if several else best_row(rows, maximize)
    front = pareto_front(rows, several) if several else []
    if front:
        goals = ", ".join(f"{m.id} {m.goal}" for m in job.metrics)
        out.append(f"Pareto front ({goals}): {len(front)} trial(s) that no other beats on "
                   "every metric")
        for r in front:
            out += [f"  trial {r.trial_id}: " + " ".join(f"{m}={v:.6g}" for (m, _), v in
                                                       zip(several, r.values)),
                    f"    reproduce: {shlex.join(r.command)}"]
    elif best:
        out += [f"best trial {best.trial_id}: {job.metric}={best.value:.6g}",
                f"  reproduce: {shlex.join(best.command)}"]
    else:
        out.append("no trial succeeded")
    if config_path:
        out.append("run this study on Vertex AI (on the image that scripts/build.sh --push "
                   "made):")
        out += [f"  {line}" for line in submit_command(job, config_path, overrides or {})]
        if custom_command:
            out.append("  (Vertex runs the config's trialJobSpec, not the command given "
                       "after --)")
    return "\n".join(out)


class LiveView:
    """Prints events as they happen; on a terminal also keeps a table of running trials below
    them. There every line is fitted to the terminal's size at the time: the table is redrawn
    by moving the cursor up one line per line written, so a line the terminal wraps, or a
    table taller than the screen, would leave old copies behind."""

    def __init__(self, job: S.TuningJob, stream=None, tty: bool | None = None):
        self.job = job
        self.stream = stream or sys.stdout
        if tty is None:  # a dumb terminal (e.g. an editor's shell) cannot move the cursor
            tty = self.stream.isatty() and os.environ.get("TERM") != "dumb"
        self.tty = tty
        self.t0 = time.monotonic()
        self._block = 0
        self._last_tick = 0.0

    def _print(self, text: str) -> None:
        self._erase()  # the next tick draws the table again, from fresh records
        seconds = int(time.monotonic() - self.t0)
        line = f"[{seconds // 60:02d}:{seconds % 60:02d}] {text}"
        if self.tty:
            columns = shutil.get_terminal_size().columns
            line = "\n".join(textwrap.wrap(_printable(line), columns, subsequent_indent=" " * 8,
                                           break_on_hyphens=False))
        self.stream.write(line + "\n")
        self.stream.flush()

    def note(self, text: str) -> None:
        self._print(text)

    def _params(self, record: TrialRecord) -> str:
        formats = {p.id: p for p in self.job.walk()}
        return " ".join(f"{k}={_short(formats[k].format(v))}" for k, v in
                        record.parameters.items())

    def _pick(self, metric: str | None):
        """max or min: the goal of a measurement's metric (None: the first metric)."""
        goal = next((m.goal for m in self.job.metrics if m.id == metric), self.job.goal)
        return max if goal == S.MAXIMIZE else min

    def _values(self, record: TrialRecord) -> tuple[float | None, float | None]:
        """The first metric's latest and best value so far."""
        curve = [m for m in record.measurements if m.metric is None]
        values = [m.value for m in curve if math.isfinite(m.value)]
        if not curve:
            return None, None
        best = self._pick(None)(values) if values else None
        return curve[-1].value, best

    @staticmethod
    def _latest(record: TrialRecord, metric: str) -> float | None:
        """Another metric's latest value (a multi-metric study's running trials)."""
        return next((m.value for m in reversed(record.measurements) if m.metric == metric),
                    None)

    def started(self, record: TrialRecord, where: str) -> None:
        verb = "started" if record.runs <= 1 else f"restarted (run {record.runs})"
        self._print(f"trial {record.trial_id} {verb} on {where}: {self._params(record)}")

    def measured(self, record: TrialRecord, new: list) -> None:
        """One line per new measurement, with the trial's best value of its metric up to it."""
        for m in new:
            upto = [o.value for o in record.measurements if o.metric == m.metric
                    and (o.step, o.elapsed_s) <= (m.step, m.elapsed_s) and math.isfinite(o.value)]
            pick = self._pick(m.metric)
            self._print(f"trial {record.trial_id} step {m.step}: {m.metric or self.job.metric}="
                        f"{m.value:.4g} (best {_fmt(pick(upto) if upto else None)})")

    def stopping(self, record: TrialRecord, reason: str) -> None:
        self._print(f"trial {record.trial_id} stopping: {reason}")

    def finished(self, record: TrialRecord, stderr_tail: list[str]) -> None:
        value = "".join(f" {m.id}={v:.4g}" for m, v in zip(self.job.metrics, record.values)
                        ) if record.values is not None else ""
        why = f": {record.reason}" if record.reason else ""
        self._print(f"trial {record.trial_id} {record.state}{value} after "
                    f"{record.elapsed_s:.1f} s{why}")
        for line in stderr_tail[:-1]:  # the last line is already in the reason
            self._print(f"    | {line}")

    def tick(self, records) -> None:
        """Draws the running-trials table (terminals only): again after an event erased it,
        else at most once a second."""
        if not self.tty or (self._block and time.monotonic() - self._last_tick < REFRESH_S):
            return
        self._last_tick = time.monotonic()
        self._erase()
        self._draw(records())
        self.stream.flush()

    def close(self) -> None:
        """Takes the table off the screen: the final summary follows."""
        self._erase()
        self.stream.flush()

    def _erase(self) -> None:
        if self._block:
            self.stream.write(f"\x1b[{self._block}F\x1b[J")
            self._block = 0

    def _draw(self, records: list[TrialRecord]) -> None:
        columns, rows = shutil.get_terminal_size()
        active = [r for r in records if r.state is TrialState.ACTIVE and r.started]
        finished = [r for r in records if r.state is not TrialState.ACTIVE]
        lines = [f"-- {len(active)} running, {len(finished)} finished "
                 f"of {self.job.max_trial_count} --"]
        shown = active if len(active) < rows - 1 else active[:max(0, rows - 3)]
        for r in shown:
            latest, best = self._values(r)
            others = "".join(f" {m.id} {_fmt(self._latest(r, m.id)):>8}"
                             for m in self.job.metrics[1:])
            lines.append(f"   trial {r.trial_id:>3} ACTIVE latest {_fmt(latest):>8} "
                         f"best {_fmt(best):>8}{others}  {self._params(r)}")
        if len(shown) < len(active):
            lines.append(f"   ... and {len(active) - len(shown)} more")
        lines = [_clip(_printable(line), columns) for line in lines]
        self.stream.write("\n".join(lines) + "\n")
        self._block = len(lines)


def _printable(text: str) -> str:
    """Control characters from a trial's output (\\r, escapes) would move the cursor."""
    return "".join(c if c.isprintable() else " " for c in text)


def _clip(line: str, columns: int) -> str:
    return line if len(line) <= columns else line[:max(0, columns - 3)] + "..."


# --------------------------------------------------------------------------------------------
# A cloud job's outputs on GCS
# --------------------------------------------------------------------------------------------

class CloudStorageError(Exception):
    """Reading a cloud job's outputs failed for a reason the user can fix; the text is one line."""


LOGIN = "gcloud auth application-default login"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


@contextlib.contextmanager
def _explained(bucket_name: str):
    """google-cloud-storage's failures as one line that says what to do (not a traceback)."""
    from google.api_core import exceptions as api
    from google.auth import exceptions as auth

    try:
        yield
    except auth.DefaultCredentialsError as exc:
        fix = f"log in with `{LOGIN}`"
        if os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"):  # it wins over a login
            fix = f"point GOOGLE_APPLICATION_CREDENTIALS at a valid key file, or unset it and {fix}"
        raise CloudStorageError(f"no usable Google Cloud credentials ({_one_line(exc)}): "
                                f"{fix}") from None
    except (auth.RefreshError, api.Unauthorized) as exc:
        raise CloudStorageError(f"the credentials were refused ({_one_line(exc)}): log in again "
                                f"with `{LOGIN}`") from None
    except api.Forbidden as exc:
        raise CloudStorageError(
            f"permission denied on bucket {bucket_name} ({_one_line(exc.message)}): the account "
            "needs storage.objects.list and storage.objects.get there (e.g. the role "
            f"roles/storage.objectViewer), or log in as one that has them with `{LOGIN}`"
        ) from None
    except api.NotFound:  # a trial folder without metrics.json is handled where it is read
        raise CloudStorageError(f"bucket {bucket_name} does not exist: check the name "
                                "(`gcloud storage ls` lists your buckets)") from None
    except api.RetryError as exc:
        raise CloudStorageError(f"cannot reach Cloud Storage ({_one_line(exc)}): check the "
                                "network") from None
    except api.GoogleAPICallError as exc:
        raise CloudStorageError(f"Cloud Storage refused the request: {_one_line(exc)}") from None


def tuner_study_from_gcs(uri: str, into: str) -> dict | None:
    """The study a tuner kept under `uri` itself (run inside a Vertex AI job with its
    --output-dir on the job's /gcs/ mount, as scripts/submit_tuning_job.sh runs it): its
    tuner.json, whose `storage` is then a copy of the study's journal downloaded into `into`.
    None where `uri` holds no tuner.json (the outputs of a tuning job of the service)."""
    from google.api_core.exceptions import NotFound
    from google.cloud import storage

    bucket_name, base = _bucket_and_base(uri)
    prefix = f"{base}/" if base else ""
    with _explained(bucket_name):
        bucket = storage.Client().bucket(bucket_name)
        try:
            state = json.loads(bucket.blob(f"{prefix}tuner.json").download_as_bytes())
        except NotFound:
            return None
        mount = f"/gcs/{bucket_name}/"
        journal = state.get("storage") or ""
        if not journal.startswith(mount):
            raise CloudStorageError(f"its tuner.json keeps the study in {journal}, not in the "
                                    "bucket: run `python -m tuner results` where that is")
        state["storage"] = os.path.join(into, os.path.basename(journal))
        try:
            bucket.blob(journal[len(mount):]).download_to_filename(state["storage"])
        except NotFound:
            raise CloudStorageError(f"its tuner.json names the journal gs://{bucket_name}/"
                                    f"{journal[len(mount):]}, which is not there") from None
    return state


def rows_from_gcs(uri: str, job: S.TuningJob | None) -> tuple[list[Row], list[str], str]:
    """Rows from `<uri>/<trial id>/model/metrics.json`, the parameter columns, the metric.

    Without a config: value = `final` (LAST) and the parameter columns are the trainer flags
    whose values differ between trials. A trial folder without metrics.json is INFEASIBLE:
    from the files alone, running, failed and stopped trials look the same.
    """
    bucket_name, base = _bucket_and_base(uri)
    with _explained(bucket_name):
        return _rows_from_gcs(bucket_name, base, job)


def _bucket_and_base(uri: str) -> tuple[str, str]:
    bucket_name, _, base = uri[len("gs://"):].partition("/")
    if not bucket_name:
        raise CloudStorageError("no bucket named: give gs://BUCKET/BASE, the job's "
                                "baseOutputDirectory")
    return bucket_name, base.strip("/")


def _rows_from_gcs(bucket_name: str, base: str, job: S.TuningJob | None):
    from google.api_core.exceptions import NotFound
    from google.cloud import storage

    prefix = f"{base}/" if base else ""
    client = storage.Client()
    blobs = client.list_blobs(bucket_name, prefix=prefix, delimiter="/")
    for _ in blobs.pages:
        pass  # the folder names arrive with the pages
    folders = sorted(blobs.prefixes)
    rows, metrics = [], set()
    bucket = client.bucket(bucket_name)
    for folder in folders:
        trial_id = folder[len(prefix):].strip("/")
        try:
            data = json.loads(bucket.blob(f"{folder}model/metrics.json").download_as_bytes())
        except NotFound:
            if trial_id.isdigit():
                rows.append(Row(trial_id, TrialState.INFEASIBLE, None, 0, 0.0, {},
                                "no model/metrics.json (running, failed or stopped)"))
            continue
        metrics.add(data.get("metric", ""))
        best = job is not None and job.measurement == S.BEST
        value = data.get("best" if best else "final")
        flags = {k: str(v) for k, v in (data.get("hyperparameters") or {}).items()}
        command = ["python", "-m", "trainer.task", *[f"--{k}={v}" for k, v in flags.items()]]
        rows.append(Row(trial_id, TrialState.SUCCEEDED, None if value is None else float(value),
                        int(data.get("epochs_run") or 0), float(data.get("wall_time_s") or 0),
                        flags, "", command, _curve(bucket, folder, data.get("metric"))))
    if job is not None:
        parameter_ids = job.parameter_ids()
        metric = job.metric
    else:
        keys = list(dict.fromkeys(k for r in rows for k in r.parameters))
        parameter_ids = [k for k in keys if len({r.parameters.get(k) for r in rows
                                                 if r.parameters}) > 1]
        metric = metrics.pop() if len(metrics) == 1 else "value"
    return rows, parameter_ids, metric


def _curve(bucket, folder: str, metric: str | None) -> list[tuple[int, float]]:
    """(epoch, value) of the metric from the trainer's `checkpoints/history.json` (its epoch
    history, beside the checkpoints); none where the file is missing or unreadable."""
    from google.api_core.exceptions import NotFound

    try:
        history = json.loads(bucket.blob(f"{folder}checkpoints/history.json").download_as_bytes())
        return [(int(h["epoch"]), float(h[metric])) for h in history if metric in h]
    except (NotFound, ValueError, TypeError, KeyError):
        return []
