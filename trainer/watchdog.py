"""A watchdog process that bounds multi-worker start-up.

A worker that never starts blocks the chief forever inside the MultiWorkerMirroredStrategy
constructor, with the GIL held: no Python thread and no TensorFlow setting can end that
(reference/environment.md, Q1c). A separate process can. If start-up is not over within the
bound, it names the peers that do not accept connections, as the trainer's last line on
stderr, and kills the trainer.

    python -m trainer.watchdog PID TIMEOUT_S TASK PEERS_JSON     (stdin closed = start-up done)
"""
import json
import os
import select
import signal
import socket
import subprocess
import sys

from trainer.process import die_with_parent


class StartupWatchdog:
    """Started before the strategy is created; cancel() once it exists."""

    def __init__(self, timeout_s: int, task_name: str, peers: dict[str, str]):
        self._process = subprocess.Popen(
            [sys.executable, "-m", "trainer.watchdog", str(os.getpid()), str(timeout_s), task_name,
             json.dumps(peers)],
            stdin=subprocess.PIPE, preexec_fn=die_with_parent)

    def cancel(self) -> None:
        self._process.stdin.close()
        self._process.wait()


def _accepts_connections(address: str) -> bool:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except (OSError, ValueError):
        return False


def message(timeout_s: int, task_name: str, peers: dict[str, str]) -> str:
    missing = [f"{name} ({address})" for name, address in peers.items() if not _accepts_connections(address)]
    if missing:
        who = f"{', '.join(missing)} never came up"
    else:
        who = "every peer accepts connections, but the cluster did not form"
    return (f"error: multi-worker start-up of {task_name} timed out after {timeout_s} s (--startup_timeout): "
            f"{who}; check that worker's logs, or raise --startup_timeout")


def main(argv) -> int:
    pid, timeout_s, task_name, peers = int(argv[1]), int(argv[2]), argv[3], json.loads(argv[4])
    ready, _, _ = select.select([sys.stdin], [], [], timeout_s)
    if ready:  # EOF: start-up finished (or the trainer exited)
        return 0
    print(message(timeout_s, task_name, peers), file=sys.stderr, flush=True)
    os.kill(pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
