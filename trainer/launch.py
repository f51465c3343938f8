"""Local multi-worker launcher: a chief and N-1 workers on localhost, shaped as Vertex shapes them.

    python -m trainer.launch --workers=2 -- --epochs=3 --job_dir=runs/mw

Each process gets TF_CONFIG (`chief` from pool 0, `worker` from pool 1, `environment: cloud`)
and CLUSTER_SPEC (`workerpool0`, `workerpool1`) as Vertex sets them, so a multi-worker job can
be checked here before it is paid for. Logs are streamed with a role prefix; the exit status
is the chief's. Rerunning the same command after a failure resumes from the checkpoints.
"""
import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from trainer.process import die_with_parent

STOP_GRACE_S = 30  # how long workers get to finish after the chief is done
WORKER_FAILURE_GRACE_S = 20  # how long the chief gets to notice a failed worker itself


def free_ports(count: int) -> list[int]:
    """Ports the OS reports free now (bound together, so they are distinct)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def cluster_env(addresses: list[str], task_type: str, index: int, trial: str | None = None) -> dict:
    """TF_CONFIG and CLUSTER_SPEC for one replica; addresses[0] is the chief (pool 0)."""
    chief, workers = addresses[:1], addresses[1:]
    pool = "workerpool0" if task_type == "chief" else "workerpool1"
    task = {"type": task_type, "index": index}
    pool_task = {"type": pool, "index": index}
    if trial:
        task["trial"] = pool_task["trial"] = trial
    cluster = {"chief": chief, **({"worker": workers} if workers else {})}
    pools = {"workerpool0": chief, **({"workerpool1": workers} if workers else {})}
    return {
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": task, "environment": "cloud"}),
        "CLUSTER_SPEC": json.dumps({"cluster": pools, "task": pool_task, "environment": "cloud"}),
    }


def _stream(pipe, prefix: str, out) -> None:
    for line in iter(pipe.readline, ""):
        out.write(f"{prefix} {line}")
        out.flush()
    pipe.close()


def _parse(argv):
    parser = argparse.ArgumentParser(
        prog="python -m trainer.launch",
        description="Run a chief and N-1 workers of `python -m trainer.task` on localhost with Vertex-shaped "
                    "TF_CONFIG and CLUSTER_SPEC. Trainer flags go after `--`.")
    parser.add_argument("--workers", type=int, default=2, help="replicas in all: 1 chief + N-1 workers (default 2)")
    parser.add_argument("--host", default="127.0.0.1", help="address the replicas listen on (default 127.0.0.1)")
    parser.add_argument("trainer_args", nargs=argparse.REMAINDER, help="flags for trainer.task, after --")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    if args.trainer_args[:1] == ["--"]:
        args.trainer_args = args.trainer_args[1:]
    return args


def _start_replica() -> None:
    """preexec_fn: die with the launcher, and take Ctrl-C even where the launcher's own parent
    ignores it (a shell does for `cmd &`): the launcher forwards SIGINT, and a child that
    inherited SIG_IGN would train on."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _wait_for_chief(processes, roles) -> int:
    """The chief's status. A worker that fails first would leave the chief waiting for it (up to
    --startup_timeout at start-up): the chief is then stopped after a short grace period."""
    chief = processes[0]
    while True:
        try:
            return chief.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
        failed = [(role, p.returncode) for role, p in zip(roles[1:], processes[1:]) if p.poll() not in (None, 0)]
        if failed:
            try:
                return chief.wait(timeout=WORKER_FAILURE_GRACE_S)
            except subprocess.TimeoutExpired:
                (task_type, index), status = failed[0]
                print(f"[launch] {task_type}-{index} exited with status {status}; stopping the chief",
                      file=sys.stderr, flush=True)
                chief.kill()
                return chief.wait()


def _default_job_dir(trainer_args) -> list[str]:
    """One --job_dir for every process: each would otherwise pick its own runs/<time>."""
    if any(a.split("=")[0] in ("--job_dir", "--model_dir") for a in trainer_args) or "AIP_MODEL_DIR" in os.environ:
        return []
    return [f"--job_dir={os.path.abspath(os.path.join('runs', time.strftime('%Y%m%d-%H%M%S', time.gmtime())))}"]


def main(argv=None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    addresses = [f"{args.host}:{port}" for port in free_ports(args.workers)]
    roles = [("chief", 0)] + [("worker", i) for i in range(args.workers - 1)]
    trial = os.environ.get("CLOUD_ML_TRIAL_ID")
    trainer_args = args.trainer_args + _default_job_dir(args.trainer_args)
    processes, threads = [], []
    for task_type, index in roles:
        env = {**os.environ, **cluster_env(addresses, task_type, index, trial), "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen([sys.executable, "-m", "trainer.task", *trainer_args], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=_start_replica)
        prefix = f"[{task_type}-{index}]" if task_type == "worker" else "[chief]"
        for pipe, out in ((process.stdout, sys.stdout), (process.stderr, sys.stderr)):
            thread = threading.Thread(target=_stream, args=(pipe, prefix, out), daemon=True)
            thread.start()
            threads.append(thread)
        processes.append(process)

    def forward(signum, _frame):
        for p in processes:
            if p.poll() is None:
                p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    chief_status = _wait_for_chief(processes, roles)
    for p in processes[1:]:
        try:
            p.wait(timeout=STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    for thread in threads:
        thread.join(timeout=5)
    if chief_status != 0:
        statuses = ", ".join(f"{r[0]}-{r[1]}: {p.returncode}" for r, p in zip(roles, processes))
        print(f"error: the chief exited with status {chief_status} ({statuses}); rerun the same command to "
              "resume from the last completed epoch", file=sys.stderr)
    return 0 if chief_status == 0 else (chief_status if chief_status > 0 else 128 - chief_status)


if __name__ == "__main__":
    sys.exit(main())
