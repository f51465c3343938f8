"""What every benchmark in bench/ shares: arguments, subprocesses, interleaved repetitions,
medians, the printed table, the JSON record with the machine it ran on, plots, and the small
readers of what the trainer and the tuner leave on disk.

Nothing here imports TensorFlow or Optuna: the tuner benchmarks must not pay for TensorFlow,
and each measured program runs in its own process anyway.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import hashlib
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
PYTHON = sys.executable
DEFAULT_OUT = BENCH / "results"
TRIAL = BENCH / "trial.py"  # the trial programs of the tuner benchmarks
BENCH_DATASETS = ("digits_x16",)  # TFDS datasets of bench/ itself (see bench/site)

# Variables that would make a subprocess think it runs on Vertex or inside a study.
_FOREIGN_PREFIXES = ("AIP_", "CLOUD_ML_")
_FOREIGN_NAMES = ("TF_CONFIG", "CLUSTER_SPEC")


class BenchError(RuntimeError):
    """A measured program failed: the benchmark stops and says why."""


# --------------------------------------------------------------------------------------------
# Arguments and the work dir
# --------------------------------------------------------------------------------------------

def parser(doc: str) -> argparse.ArgumentParser:
    """--quick, --out, --reps, --keep: the arguments every benchmark takes."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                epilog="\n".join(doc.strip().splitlines()[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="a small version that runs in a minute or two (figures are rough)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"where the JSON (and PNG) files go (default {DEFAULT_OUT.relative_to(REPO)})")
    p.add_argument("--reps", type=int, default=None,
                   help="repetitions of each arm (default: 1 with --quick, else the benchmark's own)")
    p.add_argument("--keep", action="store_true", help="keep the work dir (its path is printed)")
    return p


def reps(args, full: int) -> int:
    return args.reps or (1 if args.quick else full)


@contextlib.contextmanager
def workdir(args, name: str):
    """A fresh temporary dir for the runs of one benchmark; removed unless --keep."""
    path = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    try:
        yield path
    finally:
        if args.keep:
            print(f"work dir kept: {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Subprocesses
# --------------------------------------------------------------------------------------------

def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without Vertex or study variables, with tf-keras selected.

    Thread settings (OMP_NUM_THREADS, TF_NUM_*) are inherited as they are, so every arm of a
    comparison runs with the same ones.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(_FOREIGN_PREFIXES) and k not in _FOREIGN_NAMES}
    env.update({"TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))})
    env.update(extra)
    return env


@dataclass
class Run:
    argv: list
    rc: int
    wall_s: float
    stdout: str
    stderr: str
    started_at: float = 0.0  # time.time() just before the fork, to compare with times programs log


def run(argv, *, env=None, cwd=None, timeout=900, check=True, log: Path | None = None) -> Run:
    """Runs argv to completion; its wall time is from just before the fork to its exit."""
    argv = [str(a) for a in argv]
    started_at, start = time.time(), time.perf_counter()
    done = subprocess.run(argv, env=env or clean_env(), cwd=cwd or REPO, capture_output=True,
                          text=True, timeout=timeout)
    result = Run(argv, done.returncode, time.perf_counter() - start, done.stdout, done.stderr, started_at)
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"$ {shlex.join(argv)}\n# rc={result.rc} wall={result.wall_s:.3f}s\n"
                       f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr}")
    if check and result.rc != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise BenchError(f"exit code {result.rc} from: {shlex.join(argv)}\n{tail}")
    return result


def interleave(arms: dict, repetitions: int) -> dict[str, list]:
    """Runs each arm (name -> callable(rep) -> result) `repetitions` times, in ABAB order, so
    that a change in the machine's load falls on every arm alike. (Benchmarks that start
    TensorFlow make one unmeasured warm-up run first, which also prepares the dataset.)"""
    results: dict[str, list] = {name: [] for name in arms}
    for rep in range(repetitions):
        for name, fn in arms.items():
            results[name].append(fn(rep))
    return results


# --------------------------------------------------------------------------------------------
# Figures, tables, JSON, plots
# --------------------------------------------------------------------------------------------

def median(values):
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return statistics.median(values) if values else None


def ratio(a, b):
    return None if a is None or not b else a / b


def fmt(value, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 10 ** -digits):
            return f"{value:.{digits}g}"
        return f"{value:.{digits}f}"
    return str(value)


def table(headers, rows, title: str | None = None) -> str:
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else fmt(c) for c in row]
                                           for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    text = "\n".join(lines)
    if title:
        text = f"{title}\n{text}"
    print(text + "\n", flush=True)
    return text


def _git(*args) -> str | None:
    try:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def machine() -> dict:
    """Where the figures come from: cores, memory, CPU, versions, the code measured."""
    mem_gib, cpu = None, None
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gib = round(int(line.split()[1]) / 2**20, 1)
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": mem_gib,
        "cpu": cpu,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {n: _version(n) for n in ("tensorflow", "tf-keras", "tensorflow-datasets",
                                              "optuna", "numpy", "scikit-learn")},
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        # The packages change under active work, often before they are committed: a digest of
        # their sources says which code a figure was measured on.
        "source_sha256": {package: _digest(REPO / package) for package in ("trainer", "tuner")},
    }


def _digest(folder: Path) -> str | None:
    files = sorted(folder.rglob("*.py"))
    if not files:
        return None
    h = hashlib.sha256()
    for f in files:
        h.update(str(f.relative_to(folder)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


class Record:
    """The JSON file of one benchmark run: its figures, the command, the machine, the load."""

    def __init__(self, name: str, args):
        self.name, self.args = name, args
        self.started = time.time()
        self.load_before = os.getloadavg()
        self.machine = machine()  # at the start: the code measured, before anyone edits it
        self.figures: dict = {}

    def write(self) -> Path:
        args = self.args
        args.out.mkdir(parents=True, exist_ok=True)
        document = {
            "benchmark": self.name,
            "mode": "quick" if args.quick else "full",
            "command": shlex.join([Path(PYTHON).name, *sys.argv]),
            "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_s": round(time.time() - self.started, 1),
            "load_average_before": [round(x, 2) for x in self.load_before],
            "load_average_after": [round(x, 2) for x in os.getloadavg()],
            "machine": self.machine,
            **self.figures,
        }
        path = args.out / f"{self.name}{'_quick' if args.quick else ''}.json"
        path.write_text(json.dumps(document, indent=2, default=_jsonable) + "\n")
        print(f"wrote {path} ({document['duration_s']} s)")
        return path

    def png(self, stem: str) -> Path:
        self.args.out.mkdir(parents=True, exist_ok=True)
        return self.args.out / f"{stem}{'_quick' if self.args.quick else ''}.png"


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dict__"):
        return vars(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def plot(path: Path, panels: list[dict], title: str | None = None, columns: int = 3) -> Path:
    """One PNG of line panels, `columns` to a row: each {title, xlabel, ylabel,
    series: {label: (xs, ys)}, logy?, ylim?}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    columns = min(columns, len(panels))
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 4 * rows), squeeze=False)
    for axis in axes.flat[len(panels):]:
        axis.set_visible(False)
    for axis, panel in zip(axes.flat, panels):
        for label, (xs, ys) in panel["series"].items():
            axis.plot(xs, ys, marker="o", markersize=3, label=label)
        axis.set_title(panel.get("title", ""), fontsize=10)
        axis.set_xlabel(panel.get("xlabel", ""))
        axis.set_ylabel(panel.get("ylabel", ""))
        if panel.get("logy"):
            axis.set_yscale("log")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if panel.get("ylim"):
            axis.set_ylim(*panel["ylim"])
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    print(f"wrote {path}")
    return path


# --------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------

def trainer_argv(job_dir: Path, *flags: str, launch_workers: int = 0) -> list[str]:
    """`python -m trainer.task` (or the multi-worker launcher) with early stopping off."""
    flags = (f"--job_dir={job_dir}", "--patience=0", *flags)
    if launch_workers:
        return [PYTHON, "-m", "trainer.launch", f"--workers={launch_workers}", "--", *flags]
    return [PYTHON, "-m", "trainer.task", *flags]


def trainer_env(job_dir: Path, data_dir: Path, dataset: str = "uci_digits", **extra: str) -> dict[str, str]:
    """A trainer run's environment: its own hypertune file and the benchmark's TFDS dir; for
    the benchmarks' own datasets (bench/digits_x16), their builder registered at start-up."""
    env = clean_env(CLOUD_ML_HP_METRIC_FILE=str(Path(job_dir) / "hypertune" / "output.metrics"),
                    TFDS_DATA_DIR=str(data_dir), **extra)
    if dataset in BENCH_DATASETS:
        env["PYTHONPATH"] = os.pathsep.join([str(BENCH / "site"), env["PYTHONPATH"]])
        env["BENCH_TFDS_BUILDERS"] = dataset
    return env


def prepare_dataset(dataset: str, data_dir: Path) -> None:
    """Prepares a benchmark dataset (bench/digits_x16) in data_dir; uci_digits needs a trainer run."""
    run([PYTHON, BENCH / dataset, "prepare", data_dir], env=clean_env())


def train_examples(done: Run) -> int:
    """The training examples per epoch, from the trainer's "Data: ..." log line."""
    match = re.search(r"Data: .*?, (\d+) training examples", done.stderr + done.stdout)
    if not match:
        raise BenchError(f"no 'training examples' line in the output of {shlex.join(done.argv)}")
    return int(match.group(1))


def read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def history(job_dir: Path) -> list[dict]:
    return read_json(Path(job_dir) / "checkpoints" / "history.json")


def epoch_rates(end_times: list[float], examples: int) -> list[float]:
    """Examples/s of each epoch after the first, from the times each epoch ended."""
    return [examples / (b - a) for a, b in zip(end_times, end_times[1:])]


def steady_rate(end_times: list[float], examples: int) -> float:
    """Examples/s over the epochs after the first (the first pays for tracing and caching)."""
    return examples * (len(end_times) - 1) / (end_times[-1] - end_times[0])


def median_epoch_rate(end_times: list[float], examples: int) -> float:
    """Examples / the median time of the epochs after the first: like steady_rate, but an epoch
    that another process's burst slowed down does not move it."""
    return examples / median([b - a for a, b in zip(end_times, end_times[1:])])


# --------------------------------------------------------------------------------------------
# The tuner
# --------------------------------------------------------------------------------------------

def study_yaml(path: Path, parameters: list[dict], *, metric: str, goal: str,
               name: str = "bench", extra: dict | None = None) -> Path:
    """A Vertex HyperparameterTuningJob config (the trial command is given after `--`)."""
    import yaml  # the tuner's own dependency

    document = {
        "displayName": name,
        "maxTrialCount": 1,
        "parallelTrialCount": 1,
        "studySpec": {"metrics": [{"metricId": metric, "goal": goal}], "parameters": parameters,
                      **(extra or {})},
        "trialJobSpec": {"workerPoolSpecs": [{
            "machineSpec": {"machineType": "n1-standard-4"}, "replicaCount": 1,
            "containerSpec": {"imageUri": "local/bench:latest"}}]},
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def tuner_argv(config: Path, output_dir: Path, trial_command: list[str], *, trials: int,
               parallel: int, algorithm: str = "algorithm-unspecified",
               seed: int | None = None) -> list[str]:
    argv = [PYTHON, "-m", "tuner", "run", str(config), "--output-dir", str(output_dir),
            "--max-trial-count", str(trials), "--parallel-trial-count", str(parallel),
            "--algorithm", algorithm, "--gpus", "none"]
    if seed is not None:
        argv += ["--seed", str(seed)]
    return argv + ["--", *map(str, trial_command)]


def xargs_argv(out: Path, trials: int, parallel: int, command: list, extra_env: dict | None = None) -> list:
    """The floor of a study: `xargs -P parallel` over the same trial commands, no tuner.

    Trial i gets `--x=0.5`, its own CLOUD_ML_HP_METRIC_FILE (out/<i>/hypertune/output.metrics)
    and CLOUD_ML_TRIAL_ID, plus `extra_env`, through `env` (no shell). The paths must not
    contain spaces."""
    lines = []
    for i in range(1, trials + 1):
        variables = {"CLOUD_ML_HP_METRIC_FILE": str(Path(out) / str(i) / "hypertune" / "output.metrics"),
                     "CLOUD_ML_TRIAL_ID": str(i), **(extra_env or {})}
        lines.append(" ".join([*(f"{k}={v}" for k, v in variables.items()), *map(str, command), "--x=0.5"]))
    listing = Path(out) / "commands.txt"
    listing.write_text("\n".join(lines) + "\n")
    return ["xargs", "-a", listing, "-P", parallel, "-L", "1", "env"]


def trial_times(out: Path) -> list[dict]:
    """What bench/trial.py programs wrote about themselves under out (start, end, threads)."""
    return [json.loads(p.read_text()) for p in sorted(Path(out).glob("**/hypertune/trial_times.json"))]


def trials_csv(output_dir: Path) -> list[dict]:
    """The study's trials.csv rows, in trial-id order, values as floats (None if missing)."""
    with open(Path(output_dir) / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        row["value"] = float(row["value"]) if row["value"] else None
    return sorted(rows, key=lambda r: int(r["trial_id"]))


def best_after(values: list, counts, minimize: bool = True) -> dict[int, float | None]:
    """The best value among the first n trials (by trial id), for each n in counts."""
    out = {}
    for n in counts:
        seen = [v for v in values[:n] if v is not None and math.isfinite(v)]
        out[n] = (min(seen) if minimize else max(seen)) if seen else None
    return out
