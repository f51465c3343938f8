"""Trial processes: Vertex's trial contract, device slots, reading metrics, stopping a trial.

One process per trial, started from an argv list (never a shell) under a keeper of its own
(tuner/keeper.py): the keeper ends the trial's whole process tree when the trial ends, when it
is stopped and when the tuner dies (even by kill -9), and it keeps the trial's logs capped. Each
run's keeper is recorded in the study, and before a trial runs again whatever that run left on
this machine is ended first: two processes never write one trial's folder, whatever the trial
command forks.
"""
from __future__ import annotations

import json
import os
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field

from tuner import keeper
from tuner.spec import walk_parameters
from tuner.trial import Measurement

THREAD_VARS = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
# Inherited variables that would contradict the contract: the tuner sets its own or none.
CONTRACT_PREFIXES = ("AIP_", "CLOUD_ML_")
CONTRACT_NAMES = ("TF_CONFIG", "CLUSTER_SPEC", "CUDA_VISIBLE_DEVICES")
METRIC_FILE = os.path.join("hypertune", "output.metrics")
STDERR_TAIL_LINES = 5
TAIL_BYTES = 16384
STOP_GRACE_S = 10.0
LEFTOVER_WAIT_S = 30.0  # for a keeper still ending its tree when its trial runs again


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
    return [str(i) for i, line in enumerate(entry for entry in listing.splitlines()
                                             if entry.startswith("GPU "))]


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
    return parse_hypertune(data, metric)


def parse_hypertune(data: bytes, metric: str) -> tuple[list[tuple[int, float, float]], set[str]]:
    """read_hypertune of a metric file's content (a cloud trial's, read from Cloud Storage)."""
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


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------

def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return None


def run_identity(pid: int) -> dict | None:
    """What names a run's keeper for later tuners: host, boot, pid (its session id) and start
    time. None where there is no /proc: leftovers are then not looked for."""
    stat = keeper.proc_stat(pid)
    if stat is None:
        return None
    return {"host": socket.gethostname(), "boot": _boot_id(), "pid": pid, "start": stat[3]}


def end_leftovers(run: dict | None) -> None:
    """Ends what is left of a trial's run on this machine: the processes of its keeper's session.

    The keeper ends its tree itself; this is for a keeper that was killed, or that is still at
    work when its trial runs again (its tuner was killed). A live keeper gets LEFTOVER_WAIT_S
    to finish (the processes that left its session die only by its hand); the others SIGKILL at
    once. The kernel does not reuse a session id while a member lives, so the members are the
    run's own, unless a newer process now has the keeper's pid (the session is over then).
    """
    if not run or run.get("host") != socket.gethostname() or run["boot"] != _boot_id():
        return  # another machine's, or a cloud job's (tuner/backends/vertex.py)
    session = run["pid"]
    deadline = time.monotonic() + LEFTOVER_WAIT_S
    while True:
        table = keeper.processes()
        if session in table and table[session][3] != run["start"]:
            return
        members = [pid for pid, (state, _, sid, _) in table.items()
                   if sid == session and state not in ("Z", "X")]
        overdue = time.monotonic() >= deadline
        for pid in members:
            if pid != session or overdue:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        if not members or overdue:
            return
        time.sleep(keeper.KILL_AGAIN_S)


@dataclass
class TrialProcess:
    """One run of one trial: its keeper process, its log files, the measurements read so far."""

    trial_id: str
    argv: list[str]
    env: dict[str, str]
    trial_dir: str
    metric: str
    others: tuple[str, ...] = ()  # the study's other metrics, if it has several
    elapsed_before_s: float = 0.0  # earlier runs of the same trial (resume)
    grace_s: float = STOP_GRACE_S  # between SIGTERM and SIGKILL
    measurements: list[Measurement] = field(default_factory=list)
    tags_seen: set = field(default_factory=set)
    stop_reason: str | None = None
    process: subprocess.Popen | None = None  # the keeper
    run: dict | None = None  # run_identity of the keeper
    started_wall: float = 0.0
    started: float = 0.0
    exit_fd: int | None = None  # readable once the process exits (a pidfd, where there are)
    ended: bool = False
    _seen: set = field(default_factory=set)

    def __post_init__(self):
        self._seen = {(m.step, m.timestamp, m.metric) for m in self.measurements}

    def start(self, run: int, keeper_process: subprocess.Popen | None = None) -> None:
        """Takes a keeper (one spawned ahead, or a new one), which starts the trial on
        `release()`. Raises OSError if the trial's folder cannot be written or no process can be
        started."""
        for sub in ("model", "checkpoints", "logs", "hypertune"):
            os.makedirs(os.path.join(self.trial_dir, sub), exist_ok=True)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for name in ("stdout", "stderr"):
            with open(os.path.join(self.trial_dir, name), "ab") as log:
                log.write(f"[tuner] {stamp} trial {self.trial_id} run {run}: "
                          f"{shlex.join(self.argv)}\n".encode())
        self.started_wall, self.started = time.time(), time.monotonic()
        self.read()  # what an earlier run reported after its tuner's last look (at the time
        # that run had reached: before this start), if anything
        self.process = keeper_process or keeper.spawn()
        self.run = run_identity(self.process.pid)
        try:
            self.exit_fd = os.pidfd_open(self.process.pid)
        except (AttributeError, OSError):  # not Linux >= 5.3: the loop polls instead
            self.exit_fd = None

    def release(self) -> None:
        """Lets the keeper start the trial. Call it once `run` is recorded, so that a rerun
        always knows which run to end first."""
        try:
            self.process.stdin.write(keeper.order(self.trial_dir, self.grace_s, self.argv,
                                                  self.env))
            self.process.stdin.flush()
        except BrokenPipeError:  # the keeper is gone already: poll() says how
            pass

    @property
    def pid(self) -> int:
        return self.process.pid

    def elapsed_s(self) -> float:
        return self.elapsed_before_s + (time.monotonic() - self.started)

    def read(self) -> list[Measurement]:
        """New measurements since the last read, kept ordered by (step, elapsed). hypertune
        writes each metric on lines of its own, so each metric's records are read apart."""
        new = []
        for tag in (self.metric, *self.others):
            records, tags = read_hypertune(self.env["CLOUD_ML_HP_METRIC_FILE"], tag)
            self.tags_seen |= tags
            metric = None if tag == self.metric else tag
            for step, value, stamp in records:
                if (step, stamp, metric) in self._seen:
                    continue
                self._seen.add((step, stamp, metric))
                # an earlier run's record (read at start, or before this run first reports)
                # counts at the time that run had reached
                elapsed = self.elapsed_before_s + max(0.0, stamp - self.started_wall)
                new.append(Measurement(step, round(elapsed, 3), value, stamp, metric))
        if new:
            self.measurements = sorted(self.measurements + new,
                                       key=lambda m: (m.step, m.elapsed_s))
        return new

    def poll(self) -> int | None:
        """The keeper's exit code (the trial's) once it has ended, with nothing of it left."""
        code = self.process.poll()
        if code is not None and not self.ended:
            self.ended = True
            self.process.stdin.close()
            if self.exit_fd is not None:
                os.close(self.exit_fd)
                self.exit_fd = None
            if code != 0:  # a keeper that exits 0 ended its tree; one killed or crashed did not
                end_leftovers(self.run)
        return code

    def stop(self, reason: str) -> None:
        """SIGTERM to the whole trial now, SIGKILL after the grace if still there."""
        if self.stop_reason is None:
            self.stop_reason = reason
            self.process.send_signal(signal.SIGTERM)

    def kill_now(self) -> None:
        """SIGKILL to the whole trial: what the keeper does when the tuner goes away."""
        self.process.stdin.close()

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> list[str]:
        data = b""
        for name in ("stderr.1", "stderr"):  # the rotated file holds what came just before
            try:
                with open(os.path.join(self.trial_dir, name), "rb") as f:
                    f.seek(0, os.SEEK_END)
                    f.seek(max(0, f.tell() - TAIL_BYTES))
                    data += f.read()
            except OSError:
                pass
        text = data[-TAIL_BYTES:].decode(errors="replace")
        kept = [line for line in text.splitlines() if line.strip() and not line.startswith("[tuner] ")]
        return kept[-lines:]
