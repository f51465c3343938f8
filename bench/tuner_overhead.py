"""Benchmark 3: what the tuner costs over its trials, and what one suggestion costs.

    python bench/tuner_overhead.py            # full: 8 x 1.5 s and 40 x 0.2 s, 3 repetitions (~4 min)
    python bench/tuner_overhead.py --quick    # 4 x 0.5 s and 10 x 0.2 s, once (~1 min)

A study of N trials of `bench/trial.py sleep --seconds=S` (it sleeps, then reports through
cloudml-hypertune) with P = 2 parallel slots, against a floor run in the same script: the same N
trial commands started P at a time by `xargs -P 2` (no tuner). Arms, in ABAB order:
- floor:          xargs -P 2 -L 1 env, over N lines `CLOUD_ML_HP_METRIC_FILE=... python bench/trial.py ...`
- tuner (default): python -m tuner run CONFIG --parallel-trial-count 2 --algorithm algorithm-unspecified
- tuner (random):  the same with --algorithm random-search
- optuna loop:     bench/optuna_loop.py, a minimal hand-written Optuna ask/tell driver (a reference)
Each arm's wall time is from just before its process starts to its exit. Reported: wall / floor,
overhead per trial = (wall - floor wall) / N, and where the extra time goes, from the times each
trial program itself started and ended: start-up (launch -> first trial started), idle slot time
between trials (P x (last end - first start) - sum of trial times, per trial), wind-down (last
trial ended -> exit). Goals (issue 10), for the tuner with the default algorithm: <= 1.06x for
8 x 1.5 s and <= 1.10x for 40 x 0.2 s, what a bare Optuna loop costs; and its start-up against
the Optuna loop's.

Then the cost of one suggestion (the tuner's Study.suggest: reading the study, the sampler,
recording the trial in the journal file; the tuner makes it on a worker thread) for each
algorithm with 10, 50 and 200 completed trials in the study, on the Levy-6D space of
bench/trial.py (8 parameters; grid search on a discretised copy of it, since grids
need discrete parameters), after one warm-up suggestion.
"""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402
import trial as trial_programs  # noqa: E402

PARALLEL = 2
WORKLOADS = {"8 x 1.5 s": (8, 1.5), "40 x 0.2 s": (40, 0.2)}
QUICK_WORKLOADS = {"4 x 0.5 s": (4, 0.5), "10 x 0.2 s": (10, 0.2)}
GOALS = {"8 x 1.5 s": 1.06, "40 x 0.2 s": 1.10}  # for ARMS[1]
ARMS = ("floor (xargs -P 2)", "tuner (default algorithm)", "tuner (random search)", "optuna loop")
COUNTS, QUICK_COUNTS = (10, 50, 200), (10, 50)
TIMED = {"algorithm-unspecified": 5, "random-search": 20, "grid-search": 20}


def sleep_command(seconds: float) -> list[str]:
    return [B.PYTHON, B.TRIAL, "sleep", f"--seconds={seconds}"]


def run_arm(arm: str, n: int, seconds: float, out: Path, config: Path) -> dict:
    out.mkdir(parents=True)
    if arm.startswith("floor"):
        argv = B.xargs_argv(out, n, PARALLEL, sleep_command(seconds))
    elif arm.startswith("tuner"):
        algorithm = "random-search" if "random" in arm else "algorithm-unspecified"
        argv = B.tuner_argv(config, out / "study", sleep_command(seconds), trials=n, parallel=PARALLEL,
                            algorithm=algorithm, seed=0)
    else:
        argv = [B.PYTHON, B.BENCH / "optuna_loop.py", "--trials", n, "--parallel", PARALLEL, "--out", out,
                "--", *sleep_command(seconds)]
    launched = time.time()
    done = B.run(argv, env=B.clean_env(), log=out / "log.txt")
    exited = launched + done.wall_s
    times = B.trial_times(out)
    if len(times) != n:
        raise B.BenchError(f"{arm}: {len(times)} of {n} trials left their times in {out}")
    first, last = min(t["start"] for t in times), max(t["end"] for t in times)
    busy = sum(t["end"] - t["start"] for t in times)
    return {"wall_s": done.wall_s, "startup_s": first - launched, "winddown_s": exited - last,
            "idle_per_trial_s": (PARALLEL * (last - first) - busy) / n, "trial_s": busy / n}


def measure_workload(name: str, n: int, seconds: float, args, work: Path) -> dict:
    config = B.study_yaml(work / "sleep.yaml", [{"parameterId": "x", "doubleValueSpec": {"minValue": 0.0,
                                                                                         "maxValue": 1.0}}],
                          metric="value", goal="MINIMIZE", name="overhead")
    tag = name.replace(" ", "").replace(".", "p")
    arms = {arm: (lambda rep, arm=arm: run_arm(arm, n, seconds, work / f"{tag}-{ARMS.index(arm)}-{rep}", config))
            for arm in ARMS}
    results = B.interleave(arms, B.reps(args, 3))
    floor = B.median([r["wall_s"] for r in results[ARMS[0]]])
    figures = {"trials": n, "trial_seconds": seconds, "parallel": PARALLEL, "goal": GOALS.get(name), "arms": {}}
    for arm, runs in results.items():
        wall = B.median([r["wall_s"] for r in runs])
        figures["arms"][arm] = {
            "wall_s": [r["wall_s"] for r in runs], "median_wall_s": wall, "wall_over_floor": wall / floor,
            "overhead_per_trial_s": (wall - floor) / n,
            **{f"median_{k}": B.median([r[k] for r in runs])
               for k in ("startup_s", "idle_per_trial_s", "winddown_s", "trial_s")},
            "runs": runs,
        }
    return figures


def suggestion_cost(args, work: Path) -> dict:
    """Seconds per Study.suggest for each algorithm at each study size (median of a few)."""
    import numpy as np
    import optuna

    from tuner import spec as S
    from tuner import study as study_mod
    from tuner.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    continuous = trial_programs.parameters("levy6")
    grid_values = [-10.0, -4.0, 1.0, 4.0, 10.0]
    discrete = ([{"parameterId": f"x{i + 1}", "discreteValueSpec": {"values": grid_values}} for i in range(6)]
                + [{"parameterId": "scale", "discreteValueSpec": {"values": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]}},
                   continuous[-1]])
    out = {}
    counts = QUICK_COUNTS if args.quick else COUNTS
    for algorithm, timed in TIMED.items():
        spec_algorithm = {"algorithm-unspecified": S.BAYESIAN, "random-search": S.RANDOM,
                          "grid-search": S.GRID}[algorithm]
        document = {"displayName": "cost", "maxTrialCount": 100_000, "parallelTrialCount": 1,
                    "studySpec": {"metrics": [{"metricId": "value", "goal": "MINIMIZE"}],
                                  "parameters": discrete if algorithm == "grid-search" else continuous,
                                  "algorithm": spec_algorithm},
                    "trialJobSpec": {"workerPoolSpecs": [{"machineSpec": {"machineType": "n1-standard-4"},
                                                          "containerSpec": {"imageUri": "local/bench"}}]}}
        job = S.parse(document)
        out[algorithm] = {}
        for count in counts:
            storage, _ = study_mod.storage_for(str(work / f"cost-{algorithm}-{count}"), None)
            study = study_mod.Study(storage, "cost", job, seed=0)
            rng = np.random.RandomState(count)
            for _ in range(count):  # completed trials, written straight into the study
                internal = study.space.complete({}, rng)
                values = {node.parameter.id: node.to_value(internal[node.name])
                          for node in study.space.nodes if node.name in internal}
                x = [float(values[f"x{i + 1}"]) for i in range(6)]
                value = trial_programs.objective("levy6", x, float(values["scale"]), values["kind"])
                study.optuna.add_trial(optuna.trial.create_trial(
                    params=internal, distributions={k: study.space.distributions[k] for k in internal},
                    value=value, user_attrs={"parameters": values, "state": TrialState.SUCCEEDED.value}))
            seconds = []
            for i in range(1 + (1 if args.quick else timed)):  # the first is a warm-up, not counted
                start = time.perf_counter()
                record = study.suggest()
                if i:
                    seconds.append(time.perf_counter() - start)
                # leave the study at `count` completed trials (public storage API, as the tuner)
                trial_id = storage.get_trial_id_from_study_id_trial_number(study.study_id, record.number)
                storage.set_trial_user_attr(trial_id, "discarded", True)
                study.optuna.tell(record.number, state=optuna.trial.TrialState.FAIL)
            out[algorithm][count] = {"median_s": B.median(seconds), "seconds": seconds}
    return out


def main():
    args = B.parser(__doc__).parse_args()
    record = B.Record("tuner_overhead", args)
    workloads = QUICK_WORKLOADS if args.quick else WORKLOADS
    with B.workdir(args, "tuner-overhead") as work:
        figures = {name: measure_workload(name, n, s, args, work) for name, (n, s) in workloads.items()}
        costs = suggestion_cost(args, work)

    for name, f in figures.items():
        goal = f" (goal for the default algorithm <= {f['goal']:.2f}x)" if f["goal"] else ""
        B.table(["arm", "wall s", "wall/floor", "overhead/trial ms", "start-up s", "idle/trial ms",
                 "wind-down s"],
                [[arm, a["median_wall_s"], a["wall_over_floor"], 1000 * a["overhead_per_trial_s"],
                  a["median_startup_s"], 1000 * a["median_idle_per_trial_s"], a["median_winddown_s"]]
                 for arm, a in f["arms"].items()],
                f"{name}, P = {PARALLEL}: median of the repetitions{goal}")
    counts = list(next(iter(costs.values())))
    B.table(["algorithm", *[f"{c} done (ms)" for c in counts]],
            [[alg, *[1000 * costs[alg][c]["median_s"] for c in counts]] for alg in costs],
            "One suggestion (Study.suggest), median ms, by trials already completed")
    for name, f in figures.items():
        tuner, loop = f["arms"][ARMS[1]], f["arms"][ARMS[3]]
        goal = (f" (goal {f['goal']:.2f}x: "
                f"{'met' if tuner['wall_over_floor'] <= f['goal'] else 'MISSED'})"
                if f["goal"] else "")
        print(f"{name}: default algorithm {tuner['wall_over_floor']:.3f}x the floor{goal}, "
              f"the Optuna loop {loop['wall_over_floor']:.3f}x; "
              f"start-up {tuner['median_startup_s']:.2f} s against the loop's "
              f"{loop['median_startup_s']:.2f} s")
    record.figures = {"workloads": figures, "suggestion_cost": costs}
    record.write()


if __name__ == "__main__":
    main()
