"""What a study shows: the live view, the trials table, the files other tools read, the plots.

Files written into the study's output dir (replaced whole, never left half-written):
- `trials.csv`: trial_id, state, value, steps, elapsed_s, one column per parameterId (empty when
  inactive, else the text the trial received), reason. `value` is the final measurement after
  LAST/BEST selection; `steps` the last reported global_step (the number of measurements when
  every step is 0).
- `best_trial.json`: trial_id, value, parameters, command (shell-quoted argv of the best
  SUCCEEDED trial).
- `history.png`, `parallel_coordinates.png`, `curves.png`.

With several metrics (`objectives`), `value` in trials.csv is one column per metricId,
`best_trial.json` holds `metrics` ({metricId: goal}) and `pareto_front`: the SUCCEEDED trials
no other beats on every metric (trial_id, values, parameters, command), best first metric
first, and `pareto_front.png` shows them among the others, for each pair of metrics. History,
parallel coordinates and curves show the first metric.

The same table can be built from a cloud job's outputs, `<base>/<trial id>/model/metrics.json`
as the trainer writes them, through google-cloud-storage.
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
import tempfile
import textwrap
import time
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

def write_atomic(path: str, data: bytes) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=os.path.basename(path))
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
    if plots and any(r.value is not None for r in rows):
        written += write_plots(output_dir, rows, parameter_ids, maximize, metric)
    if plots and front:
        written.append(write_pareto_plot(output_dir, rows, front, objectives))
    return written


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------

def pyplot():
    """matplotlib's pyplot on the file-only Agg backend. Its import costs 1-1.5 s here: the
    tuner has it loaded off its controller's thread while the first trial runs, so the plots at
    the study's end do not wait for it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(output_dir: str, rows: list[Row], parameter_ids: list[str], maximize: bool,
                metric: str) -> list[str]:
    plt = pyplot()
    done = sorted([r for r in rows if r.value is not None and math.isfinite(r.value)],
                  key=lambda r: _as_int(r.trial_id))
    figures = {"history.png": _history(plt, done, maximize, metric),
               "parallel_coordinates.png": _parallel(plt, done, parameter_ids, maximize, metric),
               "curves.png": _curves(plt, rows, metric)}
    for name, figure in figures.items():
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        plt.close(figure)
        write_atomic(os.path.join(output_dir, name), buffer.getvalue())
    return list(figures)


def write_pareto_plot(output_dir: str, rows: list[Row], front: list[Row],
                      objectives: tuple[tuple[str, bool], ...]) -> str:
    """pareto_front.png: the trials with every metric's value, one scatter per pair of
    metrics (one with two metrics), the front (over all metrics) marked and, with two
    metrics, joined in order."""
    import itertools

    plt = pyplot()
    done = [r for r in rows if r.values and all(math.isfinite(v) for v in r.values)]
    pairs = list(itertools.combinations(range(len(objectives)), 2))
    figure, axes = plt.subplots(1, len(pairs), figsize=(5.5 * len(pairs), 4.5), squeeze=False)
    on_front = {r.trial_id for r in front}
    for ax, (i, j) in zip(axes[0], pairs):
        rest = [r for r in done if r.trial_id not in on_front]
        ax.scatter([r.values[i] for r in rest], [r.values[j] for r in rest], color="tab:blue",
                   alpha=0.6, label="dominated")
        points = sorted((r.values[i], r.values[j], r.trial_id) for r in front)
        ax.scatter([p[0] for p in points], [p[1] for p in points], color="tab:red", zorder=3,
                   label="Pareto front")
        if len(objectives) == 2:
            ax.plot([p[0] for p in points], [p[1] for p in points], color="tab:red", alpha=0.5)
        for x, y, trial_id in points:
            ax.annotate(trial_id, (x, y), xytext=(4, 4), textcoords="offset points",
                        fontsize=8)
        (xi, x_up), (yj, y_up) = objectives[i], objectives[j]
        ax.set(xlabel=f"{xi} ({'max' if x_up else 'min'})",
               ylabel=f"{yj} ({'max' if y_up else 'min'})")
        ax.legend()
    figure.suptitle("Pareto front" + (f" over all {len(objectives)} metrics"
                                      if len(objectives) > 2 else ""))
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    write_atomic(os.path.join(output_dir, "pareto_front.png"), buffer.getvalue())
    return "pareto_front.png"


def _history(plt, done: list[Row], maximize: bool, metric: str):
    figure, axes = plt.subplots(figsize=(7, 4))
    best, running = [], None
    for r in done:
        running = r.value if running is None else (max if maximize else min)(running, r.value)
        best.append(running)
    x = [int(r.trial_id) if r.trial_id.isdigit() else i for i, r in enumerate(done)]
    for state, marker in ((TrialState.SUCCEEDED, "o"), (TrialState.STOPPED, "x")):
        points = [(xi, r.value) for xi, r in zip(x, done) if r.state == state]
        if points:
            axes.scatter(*zip(*points), marker=marker, label=state.value.lower())
    axes.step(x, best, where="post", color="tab:red", label="best so far")
    axes.set(xlabel="trial id", ylabel=metric, title="Optimisation history")
    axes.legend()
    figure.tight_layout()
    return figure


def _parallel(plt, done: list[Row], parameter_ids: list[str], maximize: bool, metric: str):
    """One axis per parameter (numbers on their own range, categories evenly spaced) and one
    for the objective; a line per trial, coloured by its value."""
    figure, axes = plt.subplots(figsize=(max(6, 1.6 * (len(parameter_ids) + 1)), 4.5))
    columns = [*parameter_ids, metric]
    positions: list[dict] = []
    for column in columns:
        texts = [r.parameters.get(column) if column != metric else repr(r.value) for r in done]
        present = [t for t in texts if t not in (None, "")]
        try:
            numbers = [float(t) for t in present]
            low, high = min(numbers, default=0.0), max(numbers, default=1.0)
            log = low > 0 and high / low >= 20  # spans 1.3+ decades: show it on a log axis
            def place(t, low=low, high=high, log=log):
                v = float(t)
                if high == low:
                    return 0.5
                if log:
                    return (math.log(v) - math.log(low)) / (math.log(high) - math.log(low))
                return (v - low) / (high - low)
            labels = {0.0: f"{low:.3g}", 1.0: f"{high:.3g}"}
        except ValueError:
            categories = sorted(set(present))
            step = 1.0 / max(1, len(categories) - 1)
            spots = {c: (i * step if len(categories) > 1 else 0.5)
                     for i, c in enumerate(categories)}
            def place(t, spots=spots):
                return spots[t]
            labels = {v: c for c, v in spots.items()}
        positions.append({"place": place, "labels": labels})
    values = [r.value for r in done]
    low, high = min(values), max(values)
    colormap = plt.get_cmap("viridis")
    for r in done:
        ys = []
        for column, axis in zip(columns, positions):
            text = r.parameters.get(column) if column != metric else repr(r.value)
            ys.append(axis["place"](text) if text not in (None, "") else math.nan)
        shade = 0.5 if high == low else (r.value - low) / (high - low)
        if not maximize:
            shade = 1 - shade
        axes.plot(range(len(columns)), ys, color=colormap(shade), alpha=0.8)
    for i, axis in enumerate(positions):
        axes.axvline(i, color="grey", lw=0.8)
        for y, label in axis["labels"].items():
            axes.annotate(label, (i, y), xytext=(3, 0), textcoords="offset points",
                          fontsize=7, va="center")
    axes.set_xticks(range(len(columns)), columns, rotation=20)
    axes.set_yticks([])
    axes.set_title(f"Parallel coordinates (bright = better {metric})")
    figure.tight_layout()
    return figure


def _curves(plt, rows: list[Row], metric: str):
    figure, axes = plt.subplots(figsize=(7, 4))
    colours = {TrialState.SUCCEEDED: "tab:blue", TrialState.STOPPED: "tab:orange",
               TrialState.ACTIVE: "tab:green"}
    for r in rows:
        if r.curve and r.state in colours:
            xs, ys = zip(*r.curve)
            axes.plot(xs, ys, marker=".", color=colours[r.state], alpha=0.7)
    for state, colour in colours.items():
        axes.plot([], [], color=colour, label=state.value.lower())
    axes.set(xlabel="step", ylabel=metric, title="Intermediate measurements")
    axes.legend()
    figure.tight_layout()
    return figure


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


def rows_from_gcs(uri: str, job: S.TuningJob | None) -> tuple[list[Row], list[str], str]:
    """Rows from `<uri>/<trial id>/model/metrics.json`, the parameter columns, the metric.

    Without a config: value = `final` (LAST) and the parameter columns are the trainer flags
    whose values differ between trials. A trial folder without metrics.json is INFEASIBLE:
    from the files alone, running, failed and stopped trials look the same.
    """
    bucket_name, _, base = uri[len("gs://"):].partition("/")
    if not bucket_name:
        raise CloudStorageError("no bucket named: give gs://BUCKET/BASE, the job's "
                                "baseOutputDirectory")
    with _explained(bucket_name):
        return _rows_from_gcs(bucket_name, base.strip("/"), job)


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
                        flags, "", command))
    if job is not None:
        parameter_ids = job.parameter_ids()
        metric = job.metric
    else:
        keys = list(dict.fromkeys(k for r in rows for k in r.parameters))
        parameter_ids = [k for k in keys if len({r.parameters.get(k) for r in rows
                                                 if r.parameters}) > 1]
        metric = metrics.pop() if len(metrics) == 1 else "value"
    return rows, parameter_ids, metric
