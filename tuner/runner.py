"""Trial processes: Vertex's trial contract, device slots, reading metrics, stopping a trial.

One process per trial, started from an argv list (never a shell), in its own session so a
stop reaches everything it started. On Linux a parent-death signal kills the trial when the
tuner dies, even by kill -9, so a trial never outlives the tuner that would record it and a
resumed study never has two processes writing one trial's folder. (Processes the trial itself
forks are not covered: they die with it only if it passes the signal on.)
"""
from __future__ import annotations

import ctypes
import functools
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

from tuner.spec import walk_parameters

PR_SET_PDEATHSIG = 1
THREAD_VARS = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
# Inherited variables that would contradict the contract: the tuner sets its own or none.
CONTRACT_PREFIXES = ("AIP_", "CLOUD_ML_")
CONTRACT_NAMES = ("TF_CONFIG", "CLUSTER_SPEC", "CUDA_VISIBLE_DEVICES")
METRIC_FILE = os.path.join("hypertune", "output.metrics")
STDERR_TAIL_LINES = 5


# --------------------------------------------------------------------------------------------
# Device slots
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Slot:
    """Where one trial runs: its GPUs (none for a CPU slot) and its thread cap, if any."""

    index: int
    gpus: tuple[str, ...] = ()
    threads: int | None = None
    shares_gpu: bool = False


class SlotError(ValueError):
    """A device request this machine cannot satisfy; the text says what to change."""


def visible_gpus(environ=None) -> list[str]:
    """The GPUs this process may hand out, as CUDA_VISIBLE_DEVICES would name them."""
    environ = os.environ if environ is None else environ
    value = environ.get("CUDA_VISIBLE_DEVICES")
    if value is not None:
        out = []
        for item in (v.strip() for v in value.split(",")):
            if not item or item.startswith("-"):
                break  # CUDA ignores everything from the first invalid entry on
            out.append(item)
        return out
    try:
        listing = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                 timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in listing.splitlines()
                                             if l.startswith("GPU "))]


def make_slots(parallel: int, gpus: str, trials_per_gpu: int, visible: list[str],
               cpu_count: int) -> list[Slot]:
    """P slots: CPU slots, or `trials_per_gpu` slots on each chosen GPU (fewer if P is less).

    `gpus` is "auto" (every visible GPU, else CPU), "none", "all", or a list like "0,1" of
    devices that must be visible to this process. Slots go round the GPUs first, so P trials
    spread over all GPUs before any GPU gets a second one. Thread caps split the CPU cores
    between trials only when more than one trial runs at a time.
    """
    if trials_per_gpu < 1:
        raise SlotError("--trials-per-gpu must be at least 1")
    if gpus == "auto":
        chosen = visible
    elif gpus == "none":
        chosen = []
    elif gpus == "all":
        if not visible:
            raise SlotError("--gpus=all: no GPU is visible to this process "
                            "(CUDA_VISIBLE_DEVICES or nvidia-smi); use --gpus=none")
        chosen = visible
    else:
        chosen = [g.strip() for g in gpus.split(",") if g.strip()]
        missing = [g for g in chosen if g not in visible]
        if missing or not chosen:
            raise SlotError(f"--gpus={gpus}: GPU {', '.join(missing) or '?'} is not visible to "
                            f"this process (visible: {', '.join(visible) or 'none'})")
        if len(set(chosen)) != len(chosen):
            raise SlotError(f"--gpus={gpus}: a GPU is listed twice; use --trials-per-gpu to "
                            "run several trials on one GPU")
    if chosen:
        order = [(gpu,) for _ in range(trials_per_gpu) for gpu in chosen][:parallel]
    else:
        order = [() for _ in range(parallel)]
    threads = max(1, cpu_count // len(order)) if len(order) > 1 else None
    return [Slot(i, g, threads, shares_gpu=bool(g) and order.count(g) > 1)
            for i, g in enumerate(order)]


# --------------------------------------------------------------------------------------------
# The trial contract
# --------------------------------------------------------------------------------------------

def trial_argv(command: tuple[str, ...] | list[str], parameters: dict, space_parameters) -> list[str]:
    """The job's command plus one `--<parameterId>=<value>` per active parameter, tree order."""
    argv = list(command)
    formats = {}
    for p in walk_parameters(space_parameters):
        formats.setdefault(p.id, p)
    for pid, value in parameters.items():
        argv.append(f"--{pid}={formats[pid].format(value)}")
    return argv


def contract_env(trial_id: str, trial_dir: str, slot: Slot, job_env=()) -> dict[str, str]:
    """The variables Vertex gives a single-replica trial, for this local trial and slot."""
    trial_dir = os.path.abspath(trial_dir)
    env = dict(job_env)
    env.update({
        "CLOUD_ML_TRIAL_ID": trial_id,
        "CLOUD_ML_HP_METRIC_FILE": os.path.join(trial_dir, METRIC_FILE),
        "AIP_MODEL_DIR": os.path.join(trial_dir, "model") + os.sep,
        "AIP_CHECKPOINT_DIR": os.path.join(trial_dir, "checkpoints") + os.sep,
        "AIP_TENSORBOARD_LOG_DIR": os.path.join(trial_dir, "logs") + os.sep,
        "CLUSTER_SPEC": json.dumps({"cluster": {"workerpool0": ["localhost:2222"]},
                                    "environment": "cloud",
                                    "task": {"type": "workerpool0", "index": 0,
                                             "trial": trial_id}}),
        "CUDA_VISIBLE_DEVICES": ",".join(slot.gpus),
    })
    if slot.shares_gpu:
        env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"  # else the first trial takes all the memory
    return env


def full_env(contract: dict[str, str], slot: Slot, base=None) -> dict[str, str]:
    """The parent's environment without Vertex variables of its own, plus the contract.

    Thread caps are set unless the user set them for the tuner already.
    """
    base = os.environ if base is None else base
    env = {k: v for k, v in base.items()
           if not k.startswith(CONTRACT_PREFIXES) and k not in CONTRACT_NAMES}
    if slot.threads:
        for name in THREAD_VARS:
            env.setdefault(name, str(slot.threads))
    env.update(contract)
    return env


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Measurement:
    step: int
    elapsed_s: float
    value: float
    timestamp: float  # the hypertune record's own, to recognise it when read again


def read_hypertune(path: str, metric: str) -> tuple[list[tuple[int, float, float]], set[str]]:
    """(step, value, timestamp) of each record for `metric`, and the tags seen.

    hypertune rewrites its whole file on each report without a lock, so a read may catch it
    empty or cut short: unreadable lines are skipped and the next read sees them whole.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return [], set()
    records, tags = [], set()
    for line in data.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        tags.update(k for k in record if k not in ("global_step", "timestamp", "trial",
                                                    "checkpoint_path"))
        if metric not in record:
            continue
        try:
            value = float(record[metric])
            step = int(float(record.get("global_step") or 0))
            stamp = float(record.get("timestamp") or 0.0)
        except (TypeError, ValueError):
            continue
        records.append((step, value, stamp))
    return records, tags


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


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------

def _load_prctl():
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl() if sys.platform.startswith("linux") else None


def _die_with_parent(parent_pid: int):
    """Runs in the child between fork and exec: SIGKILL it when the tuner goes away."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the tuner died before prctl took effect
        os._exit(1)


@dataclass
class TrialProcess:
    """One run of one trial: its process, its log files, the measurements read so far."""

    trial_id: str
    argv: list[str]
    env: dict[str, str]
    trial_dir: str
    metric: str
    elapsed_before_s: float = 0.0  # earlier runs of the same trial (resume)
    measurements: list[Measurement] = field(default_factory=list)
    tags_seen: set = field(default_factory=set)
    stop_reason: str | None = None
    process: subprocess.Popen | None = None
    started_wall: float = 0.0
    started: float = 0.0
    exit_fd: int | None = None  # readable once the process exits (a pidfd, where there are)
    _kill_at: float | None = None
    _seen: set = field(default_factory=set)

    def __post_init__(self):
        self._seen = {(m.step, m.timestamp) for m in self.measurements}

    def start(self, run: int) -> None:
        for sub in ("model", "checkpoints", "logs", "hypertune"):
            os.makedirs(os.path.join(self.trial_dir, sub), exist_ok=True)
        self.read()  # what an earlier run reported after its tuner's last look, if anything
        stdout = open(os.path.join(self.trial_dir, "stdout"), "ab")
        stderr = open(os.path.join(self.trial_dir, "stderr"), "ab")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for log in (stdout, stderr):
            log.write(f"[tuner] {stamp} trial {self.trial_id} run {run}: "
                      f"{shlex.join(self.argv)}\n".encode())
            log.flush()
        self.started_wall, self.started = time.time(), time.monotonic()
        try:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=stdout,
                stderr=stderr, start_new_session=True,
                preexec_fn=functools.partial(_die_with_parent, os.getpid()))
        finally:
            stdout.close()
            stderr.close()
        try:
            self.exit_fd = os.pidfd_open(self.process.pid)
        except (AttributeError, OSError):  # not Linux >= 5.3: the loop polls instead
            self.exit_fd = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def elapsed_s(self) -> float:
        return self.elapsed_before_s + (time.monotonic() - self.started)

    def read(self) -> list[Measurement]:
        """New measurements since the last read, kept ordered by (step, elapsed)."""
        records, tags = read_hypertune(self.env["CLOUD_ML_HP_METRIC_FILE"], self.metric)
        self.tags_seen |= tags
        new = []
        for step, value, stamp in records:
            if (step, stamp) in self._seen:
                continue
            self._seen.add((step, stamp))
            # an earlier run's record (read at start, or before this run first reports) counts
            # at the time that run had reached
            elapsed = self.elapsed_before_s + max(0.0, stamp - self.started_wall)
            new.append(Measurement(step, round(elapsed, 3), value, stamp))
        if new:
            self.measurements = sorted(self.measurements + new,
                                       key=lambda m: (m.step, m.elapsed_s))
        return new

    def poll(self) -> int | None:
        code = self.process.poll()
        if code is not None and self.exit_fd is not None:
            os.close(self.exit_fd)
            self.exit_fd = None
        if code is None and self._kill_at is not None and time.monotonic() >= self._kill_at:
            self._signal(signal.SIGKILL)
            self._kill_at = None
        return code

    def stop(self, reason: str, grace_s: float) -> None:
        """SIGTERM to the trial's process group now, SIGKILL after `grace_s` if still there."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self._signal(signal.SIGTERM)
            self._kill_at = time.monotonic() + grace_s

    def kill_now(self) -> None:
        self._signal(signal.SIGKILL)
        self._kill_at = None

    def _signal(self, signum: int) -> None:
        try:
            os.killpg(self.process.pid, signum)
        except ProcessLookupError:
            pass

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> list[str]:
        try:
            with open(os.path.join(self.trial_dir, "stderr"), "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 16384))
                text = f.read().decode(errors="replace")
        except OSError:
            return []
        kept = [l for l in text.splitlines() if l.strip() and not l.startswith("[tuner] ")]
        return kept[-lines:]
