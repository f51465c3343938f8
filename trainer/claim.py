"""An exclusive claim on a run's output dirs: two trainers never write one job dir.

Two runs on one dir (started together, or the second during the first) would both write the
checkpoints and the export, whoever writes last winning; one once crashed on the other's
temporary checkpoint files. So each output dir holds a claim, taken before anything is
written there and released when the run ends, however it ends:

- local disk: an flock on ``<dir>/.claim-<task>``, which the kernel drops when the process
  dies (kill -9 included), so the next run takes it at once. The file names the holder.
- gs://: the object ``<dir>/.claim-<task>``, created only where none exists
  (``if_generation_match=0``) and rewritten every HEARTBEAT_S. A preempted VM never deletes
  it, so a claim is taken over when its heartbeat is older than STALE_AFTER_S; at once when it
  was left by the same task of the same Vertex job (CLOUD_ML_JOB_ID: Vertex restarts a task
  after preemption on a new VM only once the old one is gone, and the resume must not wait),
  or by a process of this machine that no longer exists.

One claim per task name (chief-0, worker-0, ...): every task of a multi-worker job is given
the same dirs and must not refuse the others, while a second job's task of the same name is
refused (its chief, as a single run's, is always chief-0).
"""
import contextlib
import datetime
import errno
import fcntl
import json
import logging
import os
import socket
import sys
import threading
import time

from trainer import storage
from trainer.config import Config
from trainer.errors import ConfigError

log = logging.getLogger(__name__)

HEARTBEAT_S = 30
STALE_AFTER_S = 300  # ten missed heartbeats: a GCS hiccup does not lose a live run its claim
HOLDER_WRITE_WAIT_S = 5  # a refused run waits this long for a holder that just locked to write its name


@contextlib.contextmanager
def claimed(config: Config):
    """Holds the claim on every output dir of the run; raises ConfigError naming the holder."""
    name = ".claim-" + config.cluster.task_name.replace(":", "-")
    holder = _holder(config)
    dirs = dict.fromkeys((config.model_dir, config.checkpoint_dir, config.tensorboard_dir))
    with contextlib.ExitStack() as stack:
        for directory in dirs:
            claim = _gcs_claim if storage.is_gcs(directory) else _local_claim
            stack.enter_context(claim(directory, name, holder))
        yield


def _holder(config: Config) -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "task": config.cluster.task_name,
        "job": os.environ.get("CLOUD_ML_JOB_ID"),
        "machine": _machine(),
    }


def _machine():
    """This kernel boot and pid namespace: where a holder's pid can be looked up (Linux only)."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f"{f.read().strip()} {os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def _refusal(directory: str, other: dict, extra: str = "") -> ConfigError:
    who = (f"host {other.get('host')}, pid {other.get('pid')}, since {other.get('since')}" if other
           else "its holder is starting")
    return ConfigError(f"{directory} is in use by another run ({who}{extra}); wait for that run to end, or pass "
                       "another --job_dir")


# -- local disk -----------------------------------------------------------------------------------


@contextlib.contextmanager
def _local_claim(directory: str, name: str, holder: dict):
    created = _missing_dirs(directory)
    try:
        os.makedirs(directory, exist_ok=True)
        fd = _lock(os.path.join(directory, name), directory)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(directory, name))  # before the lock goes: see _lock
        os.close(fd)
        _remove_empty(created)  # a run stopped before it wrote anything leaves nothing behind


def _lock(path: str, directory: str) -> int:
    """An flocked fd on path. The holder unlinks the file before it unlocks, so a lock won on
    an unlinked file (opened just before) is retried on the file now at that path."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = _read_holder(fd)
            os.close(fd)
            raise _refusal(directory, other) from None
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                raise
            log.warning("cannot lock %s (%s): runs on this dir are not kept apart", path, e.strerror)
            return os.open(path, os.O_RDWR)
        try:
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _read_holder(fd: int) -> dict:
    deadline = time.monotonic() + HOLDER_WRITE_WAIT_S
    while True:
        try:
            return json.loads(os.pread(fd, 4096, 0))
        except ValueError:  # empty or half-written: the holder locked a moment ago
            if time.monotonic() > deadline:
                return {}
            time.sleep(0.05)


def _missing_dirs(directory: str) -> list[str]:
    """The dirs makedirs will create for directory, deepest first."""
    missing = []
    path = os.path.abspath(directory)
    while not os.path.lexists(path):
        missing.append(path)
        path = os.path.dirname(path)
    return missing


def _remove_empty(dirs: list[str]) -> None:
    for path in dirs:
        try:
            os.rmdir(path)
        except OSError:  # not empty (the run wrote there) or gone: keep the rest too
            return


# -- gs:// ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def _gcs_claim(directory: str, name: str, holder: dict):
    path = storage.join(directory, name)
    with storage.gcs_errors(path, "write"):
        generation = _take(path, directory, holder)
    heartbeat = _Heartbeat(path, holder, generation)
    try:
        yield
    finally:
        heartbeat.stop()
        _delete(path, heartbeat.generation)


def _take(path: str, directory: str, holder: dict) -> int:
    from google.api_core.exceptions import NotFound, PreconditionFailed

    text = json.dumps(holder)
    blob = storage.gcs_blob(path)
    for _ in range(3):  # the claim may change between the read and the write; then look again
        try:
            blob.upload_from_string(text, if_generation_match=0)
            return blob.generation
        except PreconditionFailed:
            pass
        existing = blob.bucket.get_blob(blob.name)
        if existing is None:
            continue
        try:
            other = json.loads(existing.download_as_text(if_generation_match=existing.generation))
        except (NotFound, PreconditionFailed):
            continue
        except ValueError:
            other = {}
        age = time.time() - existing.updated.timestamp()
        reason = _takeover_reason(other, holder, age)
        if reason is None:
            raise _refusal(directory, other, f", last heartbeat {age:.0f} s ago; a claim without heartbeat for "
                                             f"{STALE_AFTER_S} s is taken over")
        log.warning("Taking over the claim on %s from host %s, pid %s: %s", directory, other.get("host"),
                    other.get("pid"), reason)
        try:
            blob.upload_from_string(text, if_generation_match=existing.generation)
            return blob.generation
        except PreconditionFailed:
            continue
    raise ConfigError(f"{directory}: its claim ({path}) changed three times while this run tried to take it; "
                      "another run is starting there")


def _takeover_reason(other: dict, holder: dict, age: float):
    if age > STALE_AFTER_S:
        return f"no heartbeat for {age:.0f} s"
    if holder["job"] and other.get("job") == holder["job"]:
        return f"an earlier attempt of the same Vertex AI job {holder['job']} (restarted)"
    if holder["machine"] and other.get("machine") == holder["machine"] and not _alive(other.get("pid")):
        return "its process is gone"
    return None


def _alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, TypeError, ValueError, OverflowError):
        return True  # exists, or cannot tell: assume alive
    return True


def _delete(path: str, generation: int) -> None:
    from google.api_core.exceptions import GoogleAPICallError

    try:
        storage.gcs_blob(path).delete(if_generation_match=generation)
    except GoogleAPICallError as e:  # taken over, or unreachable: it goes stale by itself
        log.warning("could not release the claim %s: %s", path, e)


class _Heartbeat:
    """Rewrites the claim every HEARTBEAT_S. A claim lost to another run (this one looked dead
    to it) ends this run at once: two writers are what the claim exists to prevent."""

    def __init__(self, path: str, holder: dict, generation: int):
        self._path = path
        self._text = json.dumps(holder)
        self.generation = generation
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="claim-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        from google.api_core.exceptions import PreconditionFailed

        while not self._stopped.wait(HEARTBEAT_S):
            blob = storage.gcs_blob(self._path)
            try:
                blob.upload_from_string(self._text, if_generation_match=self.generation)
                self.generation = blob.generation
            except PreconditionFailed:
                print(f"error: this run lost its claim {self._path} to another run (no heartbeat got through for "
                      f"{STALE_AFTER_S} s); stopping so that only one run writes there", file=sys.stderr, flush=True)
                os._exit(1)
            except Exception as e:  # noqa: BLE001  network errors come as requests' exceptions too; try again
                log.warning("claim heartbeat failed (retried in %d s): %s", HEARTBEAT_S, e)
