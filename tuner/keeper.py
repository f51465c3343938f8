"""A trial's keeper: the tuner's direct child, which runs the trial command and leaves nothing of
it behind.

A parent-death signal or a process group reaches only the processes that stay in it: a shell
wrapper's background job, a launcher's workers or a daemon that called setsid() outlived a killed
tuner and wrote the trial's folder beside its rerun. The keeper is a child subreaper (Linux), so
every process the trial starts stays in its tree however it forks or detaches, and it ends that
whole tree
  - when the trial's leader exits: SIGTERM to the rest, SIGKILL after the grace;
  - when the tuner stops the trial (SIGTERM to the keeper): SIGTERM to all, SIGKILL after the grace;
  - at once, with SIGKILL, when the tuner goes away: the tuner holds the only write end of the
    keeper's stdin, which the kernel closes when the tuner dies, even by kill -9.
It exits only once the tree is empty, with the leader's exit status (dying by the same signal).
It is started before it has a trial (`spawn`), and waits for its order on stdin (`order`: one
line naming the command, its environment and log folder): the tuner first records the keeper in
the study, so a rerun always knows which run to end before it runs the trial again. A keeper
started ahead of its trial takes its own start-up (an interpreter, tens of milliseconds) off the
time a freed slot waits for its next trial.

It also writes the trial's stdout and stderr (from pipes) to `<trial dir>/stdout` and `stderr`,
each kept under LOG_CAP_BYTES by rotating it to `stdout.1` / `stderr.1`, so a trial that floods
its output neither fills the disk nor costs the tuner's loop anything.

Elsewhere than Linux (no subreaper, no /proc) it ends the trial's process group only.
Stdlib only, run as a script (`python -I -S keeper.py`): it starts fast, and the trial's
environment (PYTHONPATH, ...) does not change it. It ends without the interpreter's clean-up
(`os._exit`, once its logs are written): the tuner sees the trial's end that much sooner.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import resource
import select
import signal
import subprocess
import sys
import time

LINUX = sys.platform.startswith("linux")
PR_SET_CHILD_SUBREAPER = 36
# Enough for the end of any trainer's log (tens of thousands of lines); with the rotated file at
# most 2 x 4 MiB a stream, 16 MiB a trial: a hundred trials that flood keep 1.6 GiB, not 100 GB.
LOG_CAP_BYTES = 4 * 1024 * 1024
READ_BYTES = 65536
KILL_AGAIN_S = 0.05  # while SIGKILLed processes are still there: look for new ones this often
HANDLED = (signal.SIGCHLD, signal.SIGTERM)
EXIT_NOT_FOUND, EXIT_NOT_STARTED = 127, 126  # a shell's codes for the same failures
START_HINTS = {
    errno.ENOENT: "check the trial command (the config's containerSpec command, or the one "
                  "after --)",
    errno.EACCES: "make it executable (chmod +x) or start it with its interpreter",
    errno.ENOEXEC: "it is not a program: start it with its interpreter or give it a #! line",
}


def spawn() -> subprocess.Popen:
    """A keeper waiting for its order; a new session of its own, so a rerun finds what is left
    of its tree by the session id even if it is killed."""
    return subprocess.Popen([sys.executable, "-I", "-S", __file__], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def order(log_dir: str, grace_s: float, command: list[str], env: dict[str, str]) -> bytes:
    """The line that has a keeper start `command` with `env`, logging into `log_dir`."""
    return (json.dumps({"log_dir": log_dir, "grace_s": grace_s, "command": command,
                        "env": env}) + "\n").encode()


def _read_order() -> dict | None:
    """The order from stdin, or None if the tuner went away before it gave one."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = os.read(0, READ_BYTES)
        if not chunk:
            return None
        data += chunk
    return json.loads(data)


# --------------------------------------------------------------------------------------------
# Processes, from /proc (Linux)
# --------------------------------------------------------------------------------------------

def proc_stat(pid: int) -> tuple[str, int, int, int] | None:
    """(state, parent pid, session id, start time in clock ticks since boot), None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[1]), int(fields[3]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def processes() -> dict[int, tuple[str, int, int, int]]:
    """proc_stat of every process now."""
    table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat is not None:
                table[int(name)] = stat
    return table


def descendants(root: int) -> list[int]:
    """Every live process below `root` (zombies are only reaped, not signalled)."""
    table = processes()
    children: dict[int, list[int]] = {}
    for pid, (_, ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            todo.append(pid)
            if table[pid][0] not in ("Z", "X"):
                out.append(pid)
    return out


def _signal(pid: int, signum: int, group: bool = False) -> None:
    try:
        (os.killpg if group else os.kill)(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


# --------------------------------------------------------------------------------------------
# Logs
# --------------------------------------------------------------------------------------------

class RotatingLog:
    """An append-only file kept under LOG_CAP_BYTES: when the next write would pass the cap,
    the file becomes `<path>.1` (replacing the older one) and a new file starts."""

    def __init__(self, path: str, cap: int = LOG_CAP_BYTES):
        self.path, self.cap = path, cap
        self.file = open(path, "ab", buffering=0)
        self.size = self.file.tell()

    def write(self, data: bytes) -> None:
        if self.size + len(data) > self.cap and self.size:
            self.file.close()
            os.replace(self.path, self.path + ".1")
            self.file = open(self.path, "ab", buffering=0)
            self.size = 0
        self.file.write(data)
        self.size += len(data)


# --------------------------------------------------------------------------------------------
# The keeper
# --------------------------------------------------------------------------------------------

class Keeper:
    def __init__(self, command: list[str], env: dict[str, str], log_dir: str, grace_s: float):
        self.command, self.env = command, env
        self.grace_s = grace_s
        self.logs = [RotatingLog(os.path.join(log_dir, name)) for name in ("stdout", "stderr")]
        self.leader: subprocess.Popen | None = None
        self.status: int | None = None  # the leader's exit code, once reaped
        self.kill_at: float | None = None  # SIGKILL whatever is left from then on
        self.childless = False

    def run(self) -> int:
        wake_r, wake_w = os.pipe()
        for fd in (wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        for signum in HANDLED:
            signal.signal(signum, lambda *_: None)  # the wake-up byte says which one came
        if LINUX:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1)
        pipes = [os.pipe(), os.pipe()]
        try:
            # its own process group, in the keeper's session: the tuner finds the session
            # again if the keeper is killed; the trial's `kill 0` does not reach the keeper
            self.leader = subprocess.Popen(self.command, stdin=subprocess.DEVNULL,
                                           stdout=pipes[0][1], stderr=pipes[1][1],
                                           env=self.env, process_group=0)
        except OSError as exc:
            hint = START_HINTS.get(exc.errno, "")
            self.logs[1].write(f"cannot start {self.command[0]!r}: {exc.strerror}"
                               f"{'; ' + hint if hint else ''}\n".encode())
            return EXIT_NOT_FOUND if exc.errno == errno.ENOENT else EXIT_NOT_STARTED
        finally:
            for _, write_end in pipes:
                os.close(write_end)
        outputs = {read_end: log for (read_end, _), log in zip(pipes, self.logs)}
        watched = [0, wake_r]
        while not self.done():
            timeout = None
            if self.kill_at is not None:
                timeout = max(self.kill_at - time.monotonic(), 0.0) or KILL_AGAIN_S
            for fd in select.select(watched + list(outputs), [], [], timeout)[0]:
                if fd == 0 and not os.read(0, 1):  # the tuner is gone
                    watched.remove(0)
                    self.kill_at = time.monotonic()
                elif fd == wake_r and signal.SIGTERM in _read_all(wake_r):
                    self.end(signal.SIGTERM)
                elif fd in outputs:
                    self.copy(fd, outputs)
            self.reap()
            if self.kill_at is not None and time.monotonic() >= self.kill_at:
                self.signal_tree(signal.SIGKILL)
        for fd in list(outputs):  # what the tree wrote last; a holder outside it cannot keep us
            os.set_blocking(fd, False)
            while fd in outputs and self.copy(fd, outputs):
                pass
            if fd in outputs:
                del outputs[fd]
                os.close(fd)
        return self.status

    def done(self) -> bool:
        """The leader has ended and nothing of its tree is left."""
        if self.status is None or not self.childless:
            return False
        if LINUX:  # a subreaper without children has no descendants
            return True
        try:  # elsewhere orphans go to init: look for what is left of the process group
            os.killpg(self.leader.pid, 0)
        except (ProcessLookupError, PermissionError):
            return True
        return False

    def end(self, signum: int) -> None:
        """Asks the whole tree to end with `signum`; SIGKILL after the grace (once)."""
        self.signal_tree(signum)
        if self.kill_at is None:
            self.kill_at = time.monotonic() + self.grace_s

    def copy(self, fd: int, outputs: dict) -> bool:
        """Copies what the pipe holds to its log; closes it at its end. False: nothing came."""
        try:
            data = os.read(fd, READ_BYTES)
        except BlockingIOError:
            return False
        if not data:
            os.close(fd)
            del outputs[fd]
            return False
        outputs[fd].write(data)
        return True

    def reap(self) -> None:
        """Collects every child that ended (the leader, and orphans handed to us)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.childless = True
                return
            if pid == 0:
                return
            if pid == self.leader.pid:
                self.leader.returncode = self.status = os.waitstatus_to_exitcode(status)
                self.end(signal.SIGTERM)  # the rest of the tree: nothing of a trial outlives it

    def signal_tree(self, signum: int) -> None:
        if LINUX:
            for pid in descendants(os.getpid()):
                _signal(pid, signum)
        else:
            _signal(self.leader.pid, signum, group=True)


def _read_all(fd: int) -> bytes:
    data = b""
    while True:
        try:
            chunk = os.read(fd, 512)
        except BlockingIOError:
            return data
        if not chunk:
            return data
        data += chunk


def exit_like(code: int) -> None:
    """Ends this process the way the leader ended: its exit code, or death by its signal."""
    if code < 0:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the keeper's core is of no use
        if -code in HANDLED:
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        code = 128 - code  # a signal that does not end a process
    os._exit(code)


def main() -> None:
    wanted = _read_order()
    if wanted is None:
        os._exit(0)  # the tuner went away before it recorded this run: start nothing
    # the keeper's own messages (a traceback) go to the trial's stderr from here on
    stderr = os.open(os.path.join(wanted["log_dir"], "stderr"),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    os.dup2(stderr, 2)
    os.close(stderr)
    exit_like(Keeper(wanted["command"], wanted["env"], wanted["log_dir"],
                     float(wanted["grace_s"])).run())


if __name__ == "__main__":
    main()
