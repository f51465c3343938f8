"""Benchmark 4: the same CPU-bound trials through the tuner with 1 slot vs 2 slots on this
2-core machine, with thread caps on.

    python bench/parallel_efficiency.py            # full (~7 min)
    python bench/parallel_efficiency.py --quick    # 4 short trials, once (~30 s)

Trials: `bench/trial.py cpu --matmuls=M` (M products of 256x256 matrices in numpy/OpenBLAS: CPU
bound, and multi-threaded unless capped), random search, in ABAB order:
- 1 slot, caps on:  --parallel-trial-count 1 with OMP_NUM_THREADS = TF_NUM_INTRAOP_THREADS =
  TF_NUM_INTEROP_THREADS = 1 set by this script (the tuner caps nothing for a lone trial);
- 2 slots, caps on: --parallel-trial-count 2 with no thread variables set, so the tuner sets its
  own caps (cores / slots = 1 thread each; each trial records what it got);
- 2 slots, caps off (full mode): the same with OMP_NUM_THREADS=2 set by this script (the tuner
  keeps a user's setting): 4 BLAS threads on 2 cores, to show what the caps are for.
- xargs -P 1 and -P 2, caps on: the same trial commands without the tuner (OMP_NUM_THREADS etc.
  = 1 for each), to show what this machine allows two single-threaded processes (it is shared).
Speed-up = wall(1 slot) / wall(2 slots), each against its own 1-slot arm (tuner against tuner,
xargs against xargs); efficiency = speed-up / 2; the span speed-up compares first trial start to
last trial end instead (without the tuner's own start-up and wind-down). Goal: speed-up >= 1.8.
Full mode adds real trainer trials (python -m trainer.task --epochs=3, default model): 1 slot
as a user gets it (no caps: TensorFlow uses both cores) vs 2 slots with the tuner's caps.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

THREAD_VARS = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OPENBLAS_NUM_THREADS",
               "MKL_NUM_THREADS")
CPU = {"trials": 8, "matmuls": 2400, "quick_trials": 4, "quick_matmuls": 800}
TRAINER = {"trials": 4, "epochs": 3}


def env(caps):
    """This process's environment with no thread settings, then `caps` (name -> value) added."""
    base = {k: v for k, v in B.clean_env().items() if k not in THREAD_VARS}
    return {**base, **caps}


ONE = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
SHORT = {"OMP_NUM_THREADS": "omp", "TF_NUM_INTRAOP_THREADS": "intra", "TF_NUM_INTEROP_THREADS": "inter"}


CPU_STUDY = ([{"parameterId": "x", "doubleValueSpec": {"minValue": 0.0, "maxValue": 1.0}}], "value", "MINIMIZE")
# The trainer trials differ only in their seed: the same work each.
TRAINER_STUDY = ([{"parameterId": "seed", "integerValueSpec": {"minValue": 1, "maxValue": 1000}}], "val_accuracy",
                 "MAXIMIZE")


def study(work: Path, tag: str, command, trials: int, parallel: int, caps: dict, space=CPU_STUDY) -> dict:
    parameters, metric, goal = space
    config = B.study_yaml(work / f"{tag}.yaml", parameters, metric=metric, goal=goal, name="efficiency")
    out = work / tag
    done = B.run(B.tuner_argv(config, out, command, trials=trials, parallel=parallel, algorithm="random-search",
                              seed=0), env=env(caps), log=work / f"{tag}.log", timeout=1800)
    rows = B.trials_csv(out)
    if len(rows) != trials or any(r["state"] != "SUCCEEDED" for r in rows):
        raise B.BenchError(f"{tag}: not every trial succeeded: {[r['state'] for r in rows]}")
    return {"wall_s": done.wall_s, **_spans(B.trial_times(out)),  # bench/trial.py trials only
            "elapsed_s": B.median([float(r["elapsed_s"]) for r in rows])}


def floor(work: Path, tag: str, command, trials: int, parallel: int) -> dict:
    """The same trials started by `xargs -P` with the caps set: what the machine itself allows."""
    out = work / tag
    out.mkdir(parents=True)
    done = B.run(B.xargs_argv(out, trials, parallel, command, ONE), env=env({}), log=work / f"{tag}.log",
                 timeout=1800)
    times = B.trial_times(out)
    if len(times) != trials:
        raise B.BenchError(f"{tag}: {len(times)} of {trials} trials finished")
    return {"wall_s": done.wall_s, **_spans(times), "elapsed_s": None}


def _spans(times: list[dict]) -> dict:
    if not times:
        return {"span_s": None, "trial_s": None, "threads_seen": None}
    return {"span_s": max(t["end"] for t in times) - min(t["start"] for t in times),
            "trial_s": B.median([t["end"] - t["start"] for t in times]), "threads_seen": times[0]["threads"]}


def summarize(results: dict, baselines: dict) -> dict:
    """Per arm: medians, and the speed-up over its own 1-slot baseline (baselines: arm -> arm)."""
    out = {}
    for arm, runs in results.items():
        base = baselines[arm]
        wall = B.median([r["wall_s"] for r in runs])
        base_wall = B.median([r["wall_s"] for r in results[base]])
        span = B.median([r["span_s"] for r in runs])
        base_span = B.median([r["span_s"] for r in results[base]])
        slots = 2 if "2" in arm.split(",")[0] else 1
        out[arm] = {"baseline": base, "wall_s": [r["wall_s"] for r in runs], "median_wall_s": wall,
                    "speedup": base_wall / wall, "efficiency": base_wall / wall / slots,
                    "median_span_s": span, "span_speedup": B.ratio(base_span, span),
                    "median_trial_s": B.median([r["trial_s"] for r in runs]),
                    "median_elapsed_s": B.median([r["elapsed_s"] for r in runs]),
                    "threads_seen": runs[0]["threads_seen"]}
    return out


def main():
    args = B.parser(__doc__).parse_args()
    record = B.Record("parallel_efficiency", args)
    trials = CPU["quick_trials"] if args.quick else CPU["trials"]
    matmuls = CPU["quick_matmuls"] if args.quick else CPU["matmuls"]
    cpu_command = [B.PYTHON, B.TRIAL, "cpu", f"--matmuls={matmuls}"]
    figures = {}
    with B.workdir(args, "efficiency") as work:
        arms = {
            "tuner 1 slot, caps on": lambda rep: study(work, f"cpu-1-{rep}", cpu_command, trials, 1, ONE),
            "tuner 2 slots, caps on": lambda rep: study(work, f"cpu-2-{rep}", cpu_command, trials, 2, {}),
            "xargs -P 1, caps on": lambda rep: floor(work, f"xargs-1-{rep}", cpu_command, trials, 1),
            "xargs -P 2, caps on": lambda rep: floor(work, f"xargs-2-{rep}", cpu_command, trials, 2),
        }
        baselines = {"tuner 1 slot, caps on": "tuner 1 slot, caps on",
                     "tuner 2 slots, caps on": "tuner 1 slot, caps on",
                     "xargs -P 1, caps on": "xargs -P 1, caps on",
                     "xargs -P 2, caps on": "xargs -P 1, caps on"}
        if not args.quick:
            arms["tuner 2 slots, caps off"] = lambda rep: study(work, f"cpu-2off-{rep}", cpu_command, trials, 2,
                                                                {"OMP_NUM_THREADS": "2"})
            baselines["tuner 2 slots, caps off"] = "tuner 1 slot, caps on"
        results = B.interleave(arms, B.reps(args, 2))
        figures["cpu"] = {"trials": trials, "matmuls": matmuls, "arms": summarize(results, baselines)}

        if not args.quick:
            data_dir = work / "tfds"
            warm = work / "warmup"
            B.run(B.trainer_argv(warm, "--epochs=1", f"--data_dir={data_dir}"), env=B.trainer_env(warm, data_dir))
            command = [B.PYTHON, "-m", "trainer.task", f"--epochs={TRAINER['epochs']}", "--patience=0",
                       f"--data_dir={data_dir}"]
            arms = {
                "tuner 1 slot, no caps (default)": lambda rep: study(work, f"tf-1-{rep}", command, TRAINER["trials"],
                                                                     1, {}, TRAINER_STUDY),
                "tuner 2 slots, tuner caps": lambda rep: study(work, f"tf-2-{rep}", command, TRAINER["trials"], 2,
                                                               {}, TRAINER_STUDY),
            }
            results = B.interleave(arms, B.reps(args, 2))
            figures["trainer"] = {"trials": TRAINER["trials"], "epochs": TRAINER["epochs"],
                                  "arms": summarize(results, {arm: "tuner 1 slot, no caps (default)" for arm in arms})}

    for name, f in figures.items():
        B.table(["arm", "wall s", "speed-up", "efficiency", "trials span s", "span speed-up", "trial s",
                 "threads the trials got"],
                [[arm, a["median_wall_s"], a["speedup"], a["efficiency"], a["median_span_s"], a["span_speedup"],
                  a["median_trial_s"] if a["median_trial_s"] is not None else a["median_elapsed_s"],
                  " ".join(f"{SHORT[k]}={v}" for k, v in (a["threads_seen"] or {}).items() if v)
                  or ("(not set)" if a["threads_seen"] is not None else "-")]
                 for arm, a in f["arms"].items()],
                f"{name} trials: {f['trials']} of them, median of the repetitions (goal speed-up >= 1.8)")
    record.figures = {"goal_speedup": 1.8, "cases": figures}
    record.write()


if __name__ == "__main__":
    main()
