"""Benchmark 6: what a kill costs. A trainer killed right after epoch k is saved resumes and
finishes in (E - k) epochs' time plus a start-up cost, reported here.

    python bench/resume_cost.py            # full: E = 12, k = 6, 3 repetitions, plus a SIGTERM run (~1.5 min)
    python bench/resume_cost.py --quick    # E = 6, k = 3, once (~40 s)

Per repetition, in this order (same command, default model, --patience=0):
- uninterrupted: `python -m trainer.task --epochs=E` in a fresh job dir;
- killed: the same command in another job dir, SIGKILLed as soon as the backup of epoch k is on
  disk (checkpoints/backup/ckpt-k.index exists);
- resumed: the same command again; it must train exactly E - k epochs (history.json, metrics.json).
From the process launch and exit times and the epoch end times in history.json, with t = the
steady epoch time (median time between epoch ends after the first) of the uninterrupted run:
- start-up = launch -> end of the first epoch trained, minus t (interpreter, TensorFlow, data,
  model, restoring, tracing: everything before training runs at its steady pace);
- wind-down = end of the last epoch -> exit (export of the SavedModel, metrics.json);
- fixed cost of a run = wall - epochs trained x t = start-up + wind-down;
- lost to the kill = the kill - end of epoch k (the part of epoch k+1 that is done again).
Goal (the issue): resumed wall = (E - k) x t + a start-up cost; reported: the resumed run's
fixed cost next to the uninterrupted one's, and (killed + resumed) / uninterrupted.
Full mode adds one SIGTERM run (Vertex's preemption notice): the time from SIGTERM to exit and
the epochs the resumed run then trains.
"""
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

FULL = {"epochs": 12, "kill_after": 6, "reps": 3}
QUICK = {"epochs": 6, "kill_after": 3}


def saved_epochs(job: Path) -> int:
    names = (job / "checkpoints" / "backup").glob("ckpt-*.index")
    return max((int(re.fullmatch(r"ckpt-(\d+)\.index", p.name).group(1)) for p in names), default=0)


def run_and_stop(argv, env, job: Path, after: int, signum: int, log: Path) -> dict:
    """Starts argv; sends `signum` once epoch `after` is backed up; waits for the exit."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        start = time.perf_counter()
        process = subprocess.Popen([str(a) for a in argv], env=env, cwd=B.REPO, stdout=out, stderr=subprocess.STDOUT)
        try:
            while saved_epochs(job) < after:
                if process.poll() is not None:
                    raise B.BenchError(f"the run ended (code {process.returncode}) before epoch {after} was "
                                       f"saved; see {log}")
                time.sleep(0.01)
            signalled, killed_at = time.perf_counter(), time.time()
            process.send_signal(signum)
            code = process.wait(timeout=120)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        ended = time.perf_counter()
    return {"wall_s": ended - start, "killed_at": killed_at, "stop_latency_s": ended - signalled,
            "exit_code": code, "saved_epochs": saved_epochs(job)}


def main():
    args = B.parser(__doc__).parse_args()
    plan = QUICK if args.quick else FULL
    epochs, k = plan["epochs"], plan["kill_after"]
    record = B.Record("resume_cost", args)
    runs = []
    with B.workdir(args, "resume") as work:
        data_dir = work / "tfds"
        warm = work / "warmup"  # prepares the dataset and warms the page cache; not measured
        B.run(B.trainer_argv(warm, "--epochs=1", f"--data_dir={data_dir}"), env=B.trainer_env(warm, data_dir))

        def command(job):
            return B.trainer_argv(job, f"--epochs={epochs}", f"--data_dir={data_dir}")

        def phases(launched: float, exited: float, ends: list, epoch_s: float) -> dict:
            return {"wall_s": exited - launched, "epochs": len(ends), "startup_s": ends[0] - launched - epoch_s,
                    "winddown_s": exited - ends[-1], "fixed_s": exited - launched - len(ends) * epoch_s}

        for rep in range(B.reps(args, plan.get("reps", 1))):
            full = work / f"full-{rep}"
            done = B.run(command(full), env=B.trainer_env(full, data_dir), log=full.with_suffix(".log"))
            full_hist = B.history(full)
            ends = [h["time"] for h in full_hist]
            epoch_s = B.median([b - a for a, b in zip(ends, ends[1:])])
            uninterrupted = phases(done.started_at, done.started_at + done.wall_s, ends, epoch_s)

            job = work / f"killed-{rep}"
            killed = run_and_stop(command(job), B.trainer_env(job, data_dir), job, k, signal.SIGKILL,
                                  job.with_suffix(".killed.log"))
            killed_ends = [h["time"] for h in B.history(job)]
            resumed = B.run(command(job), env=B.trainer_env(job, data_dir), log=job.with_suffix(".resumed.log"))
            metrics = B.read_json(job / "model" / "metrics.json")
            hist = B.history(job)
            new_ends = [h["time"] for h in hist if h["time"] > resumed.started_at]
            again = phases(resumed.started_at, resumed.started_at + resumed.wall_s, new_ends, epoch_s)
            r = {
                "epoch_s": epoch_s, "uninterrupted": uninterrupted, "resumed": again,
                "killed_wall_s": killed["wall_s"], "saved_epochs_at_kill": killed["saved_epochs"],
                "lost_s": killed["killed_at"] - killed_ends[killed["saved_epochs"] - 1],
                "resume_extra_startup_s": again["startup_s"] - uninterrupted["startup_s"],
                "resume_extra_fixed_s": again["fixed_s"] - uninterrupted["fixed_s"],
                "killed_plus_resumed_over_uninterrupted": (killed["wall_s"] + resumed.wall_s) / done.wall_s,
                "epochs_in_history": len(hist), "epochs_run_in_metrics": metrics["epochs_run"],
                "final_val_accuracy": {"uninterrupted": full_hist[-1]["val_accuracy"],
                                       "resumed": hist[-1]["val_accuracy"]},
            }
            r["ok"] = (again["epochs"] == epochs - killed["saved_epochs"] and len(hist) == epochs
                       and metrics["epochs_run"] == epochs)
            runs.append(r)

        sigterm = None
        if not args.quick:
            job = work / "sigterm"
            stopped = run_and_stop(command(job), B.trainer_env(job, data_dir), job, k, signal.SIGTERM,
                                   job.with_suffix(".stopped.log"))
            resumed_at = time.time()
            resumed = B.run(command(job), env=B.trainer_env(job, data_dir), log=job.with_suffix(".resumed.log"))
            hist = B.history(job)
            sigterm = {**stopped, "resumed_wall_s": resumed.wall_s,
                       "resumed_epochs_trained": sum(1 for h in hist if h["time"] > resumed_at),
                       "epochs_in_history": len(hist)}

    rows = [
        ("steady epoch t (s)", lambda r: r["epoch_s"]),
        ("uninterrupted: wall (s)", lambda r: r["uninterrupted"]["wall_s"]),
        ("uninterrupted: start-up (s)", lambda r: r["uninterrupted"]["startup_s"]),
        ("uninterrupted: wind-down (s)", lambda r: r["uninterrupted"]["winddown_s"]),
        ("uninterrupted: fixed cost (s)", lambda r: r["uninterrupted"]["fixed_s"]),
        ("killed run: wall (s)", lambda r: r["killed_wall_s"]),
        ("lost to the kill (s)", lambda r: r["lost_s"]),
        ("resumed: wall (s)", lambda r: r["resumed"]["wall_s"]),
        ("resumed: epochs trained", lambda r: r["resumed"]["epochs"]),
        ("resumed: start-up (s)", lambda r: r["resumed"]["startup_s"]),
        ("resumed: wind-down (s)", lambda r: r["resumed"]["winddown_s"]),
        ("resumed: fixed cost (s)", lambda r: r["resumed"]["fixed_s"]),
        ("resume start-up - fresh start-up (s)", lambda r: r["resume_extra_startup_s"]),
        ("(killed + resumed) / uninterrupted", lambda r: r["killed_plus_resumed_over_uninterrupted"]),
    ]
    medians = {name: B.median([get(r) for r in runs]) for name, get in rows}
    B.table(["figure", "median", *[f"rep {i}" for i in range(len(runs))]],
            [[name, medians[name], *[get(r) for r in runs]] for name, get in rows] +
            [["history / metrics epochs", f"{epochs} expected",
              *[f"{r['epochs_in_history']} / {r['epochs_run_in_metrics']}" for r in runs]]],
            f"E = {epochs} epochs, SIGKILL right after epoch {k} is saved; resumed run: {epochs - k} epochs expected")
    if sigterm:
        B.table(["figure", "value"],
                [["SIGTERM -> exit (s)", sigterm["stop_latency_s"]], ["exit code", sigterm["exit_code"]],
                 ["epochs saved at exit", sigterm["saved_epochs"]], ["resumed run: epochs trained",
                                                                     sigterm["resumed_epochs_trained"]],
                 ["resumed run wall (s)", sigterm["resumed_wall_s"]]],
                f"SIGTERM right after epoch {k} is saved")
    record.figures = {"epochs": epochs, "kill_after": k, "median": medians, "runs": runs, "sigterm": sigterm,
                      "all_resumed_exactly": all(r["ok"] for r in runs)}
    record.write()
    if not all(r["ok"] for r in runs):
        print("error: a resumed run did not train exactly the missing epochs", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
