"""Benchmark 5: search quality. The best value found after 10, 20 and 40 trials by each search
algorithm (median over 10 seeds), with every trial run through the tuner as a real process.

    python bench/search_quality.py            # full (~16 min)
    python bench/search_quality.py --quick    # Rosenbrock only, 2 seeds x 10 trials; 2 trainer trials (~1 min)

(a) Test functions with a known optimum of 0 (bench/trial.py): Rosenbrock in 4-D and Levy in 6-D,
each with a log-scale parameter and a categorical one added (6 and 8 parameters). Studies of 40
trials, `--seed` 0..9, run sequentially (--parallel-trial-count 1) and 4 in parallel:
- default: --algorithm algorithm-unspecified (the tuner's Bayesian optimisation);
- random:  --algorithm random-search;
- grid (full mode, sequential, seed-independent): --algorithm grid-search on a copy of each space
  with every continuous parameter discretised to 5 values (grids need discrete parameters).
With 4 in parallel, "after n trials" means the first n trials the tuner suggested (trial ids).
Goal: the default algorithm's median beats random search's at 20 trials, in both modes.

(b) The real trainer: `python -m trainer.task --epochs=3 --patience=0 --hypertune_metric=val_loss`
on the built-in dataset, tuning learning_rate (log), units (integer, log), dropout and
optimizer; 3 seeds of 8 trials with 2 in parallel; the best val_loss after 4 and 8 trials.
"""
import concurrent.futures
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402
import trial as trial_programs  # noqa: E402

ALGORITHMS = {"default": "algorithm-unspecified", "random": "random-search"}
MODES = {"sequential": 1, "4 parallel": 4}
FULL = {"functions": ("rosenbrock4", "levy6"), "seeds": 10, "trials": 40, "counts": (10, 20, 40),
        "trainer": {"seeds": 3, "trials": 8, "parallel": 2, "counts": (4, 8)}}
QUICK = {"functions": ("rosenbrock4",), "seeds": 2, "trials": 10, "counts": (5, 10),
         "trainer": {"seeds": 1, "trials": 2, "parallel": 2, "counts": (1, 2)}}
GRID_VALUES = {"rosenbrock4": [-2.0, -1.0, 0.0, 1.0, 2.0], "levy6": [-10.0, -4.5, 1.0, 5.5, 10.0]}
TRAINER_PARAMETERS = [
    {"parameterId": "learning_rate", "doubleValueSpec": {"minValue": 1e-4, "maxValue": 0.3},
     "scaleType": "UNIT_LOG_SCALE"},
    {"parameterId": "units", "integerValueSpec": {"minValue": 16, "maxValue": 512}, "scaleType": "UNIT_LOG_SCALE"},
    {"parameterId": "dropout", "doubleValueSpec": {"minValue": 0.0, "maxValue": 0.6}},
    {"parameterId": "optimizer", "categoricalValueSpec": {"values": ["adam", "sgd", "rmsprop"]}},
]


def grid_parameters(function: str) -> list[dict]:
    out = []
    for p in trial_programs.parameters(function):
        if p["parameterId"].startswith("x"):
            out.append({"parameterId": p["parameterId"], "discreteValueSpec": {"values": GRID_VALUES[function]}})
        elif p["parameterId"] == "scale":
            out.append({"parameterId": "scale", "discreteValueSpec": {"values": [1e-4, 1e-3, 1e-2, 1e-1, 1.0]},
                        "scaleType": "UNIT_LOG_SCALE"})
        else:
            out.append(p)
    return out


def run_study(job: dict) -> dict:
    """One tuner run; returns its values in trial-id order."""
    out = job["out"]
    B.run(B.tuner_argv(job["config"], out, job["command"], trials=job["trials"], parallel=job["parallel"],
                       algorithm=job["algorithm"], seed=job.get("seed")),
          env=job.get("env") or B.clean_env(), log=out.with_suffix(".log"), timeout=3600)
    rows = B.trials_csv(out)
    return {**{k: v for k, v in job.items() if k in ("key", "seed")}, "values": [r["value"] for r in rows],
            "states": [r["state"] for r in rows]}


def run_all(jobs: list[dict], parallel_studies: int) -> list[dict]:
    with concurrent.futures.ThreadPoolExecutor(parallel_studies) as pool:
        return list(pool.map(run_study, jobs))


def summarize(results: list[dict], counts, minimize=True) -> dict:
    """{key: {"best_after": {n: [per seed]}, "median": {n: median}, "curve": median best-so-far}}."""
    out: dict = {}
    for r in results:
        entry = out.setdefault(r["key"], {"seeds": [], "best_after": {n: [] for n in counts}, "curves": []})
        entry["seeds"].append(r.get("seed"))
        for n, best in B.best_after(r["values"], counts, minimize).items():
            entry["best_after"][n].append(best)
        entry["curves"].append(list(B.best_after(r["values"], range(1, len(r["values"]) + 1), minimize).values()))
        entry["failed_trials"] = entry.get("failed_trials", 0) + sum(s != "SUCCEEDED" for s in r["states"])
    for entry in out.values():
        entry["median"] = {n: B.median(v) for n, v in entry["best_after"].items()}
        entry["median_curve"] = [B.median(list(col)) for col in zip(*entry["curves"])]
    return out


def compare(summary: dict, prefix: tuple, counts) -> dict:
    """Default vs random for one (function, mode): median ratio and per-seed wins at each n."""
    d, r = summary[(*prefix, "default")], summary[(*prefix, "random")]
    out = {}
    for n in counts:
        pairs = [(a, b) for a, b in zip(d["best_after"][n], r["best_after"][n]) if a is not None and b is not None]
        out[n] = {"default_median": d["median"][n], "random_median": r["median"][n],
                  "ratio": B.ratio(d["median"][n], r["median"][n]),
                  "default_wins": sum(a < b for a, b in pairs), "ties": sum(a == b for a, b in pairs),
                  "seeds": len(pairs)}
    return out


def _record(c: dict) -> str:
    lost = c["seeds"] - c["default_wins"] - c["ties"]
    return f"{c['default_wins']}-{c['ties']}-{lost}"


def main():
    p = B.parser(__doc__)
    p.add_argument("--studies-at-once", type=int, default=2,
                   help="test-function studies run side by side (their trials are tiny; default 2)")
    p.add_argument("--replot", type=Path, metavar="JSON", help="only redraw the PNG of an earlier run's JSON")
    args = p.parse_args()
    if args.replot:
        plot(B.read_json(args.replot), args.replot.with_suffix(".png"))
        return
    plan = QUICK if args.quick else FULL
    record = B.Record("search_quality", args)
    counts = plan["counts"]
    with B.workdir(args, "quality") as work:
        # (a) test functions. Studies run side by side, each tuner on one BLAS thread (its GP), so
        # they share the cores instead of fighting over them; the trial programs are pure Python.
        one_thread = B.clean_env(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        jobs = []
        for function in plan["functions"]:
            config = B.study_yaml(work / f"{function}.yaml", trial_programs.parameters(function), metric="value",
                                  goal="MINIMIZE", name=function)
            for mode, parallel in MODES.items():
                for seed in range(plan["seeds"]):
                    for name, algorithm in ALGORITHMS.items():
                        jobs.append({"key": (function, mode, name), "seed": seed, "config": config,
                                     "out": work / f"{function}-{parallel}-{name}-{seed}",
                                     "command": [B.PYTHON, B.TRIAL, function], "trials": plan["trials"],
                                     "parallel": parallel, "algorithm": algorithm, "env": one_thread})
            if not args.quick:
                grid = B.study_yaml(work / f"{function}-grid.yaml", grid_parameters(function), metric="value",
                                    goal="MINIMIZE", name=f"{function}-grid")
                jobs.append({"key": (function, "sequential", "grid (discretised)"), "config": grid,
                             "out": work / f"{function}-grid", "command": [B.PYTHON, B.TRIAL, function],
                             "trials": plan["trials"], "parallel": 1, "algorithm": "grid-search", "env": one_thread})
        functions = summarize(run_all(jobs, args.studies_at_once), counts)

        # (b) the trainer
        t = plan["trainer"]
        data_dir = work / "tfds"
        if not args.quick:  # prepares the dataset before the first study; in quick mode its first trials do
            warm = work / "warmup"
            B.run(B.trainer_argv(warm, "--epochs=1", f"--data_dir={data_dir}"), env=B.trainer_env(warm, data_dir))
        config = B.study_yaml(work / "trainer.yaml", TRAINER_PARAMETERS, metric="val_loss", goal="MINIMIZE",
                              name="trainer")
        command = [B.PYTHON, "-m", "trainer.task", "--epochs=3", "--patience=0", "--hypertune_metric=val_loss",
                   f"--data_dir={data_dir}"]
        jobs = [{"key": ("trainer", f"{t['parallel']} parallel", name), "seed": seed, "config": config,
                 "out": work / f"trainer-{name}-{seed}", "command": command, "trials": t["trials"],
                 "parallel": t["parallel"], "algorithm": algorithm, "env": B.trainer_env(work, data_dir)}
                for seed in range(t["seeds"]) for name, algorithm in ALGORITHMS.items()]
        trainer = summarize(run_all(jobs, 1), t["counts"])

    comparisons = {}
    for function in plan["functions"]:
        for mode in MODES:
            comparisons[f"{function}, {mode}"] = compare(functions, (function, mode), counts)
            rows = []
            for (f, m, name), entry in functions.items():
                if (f, m) == (function, mode):
                    rows.append([name, len(entry["seeds"]), *[entry["median"][n] for n in counts]])
            B.table(["algorithm", "seeds", *[f"best after {n}" for n in counts]], rows,
                    f"{function}, {mode}: median best value (optimum 0; lower is better)")
    trainer_key = ("trainer", f"{t['parallel']} parallel")
    comparisons[f"trainer, {trainer_key[1]}"] = compare(trainer, trainer_key, t["counts"])
    B.table(["algorithm", "seeds", *[f"best after {n}" for n in t["counts"]]],
            [[key[2], len(e["seeds"]), *[e["median"][n] for n in t["counts"]]] for key, e in trainer.items()],
            f"trainer ({t['trials']} trials of 3 epochs, {t['parallel']} in parallel): median best val_loss")
    middle = counts[len(counts) // 2]
    B.table(["study", *[f"default/random @{n}" for n in counts], f"seeds won-tied-lost @{middle}"],
            [[study, *[c[n]["ratio"] for n in counts], _record(c[middle])]
             for study, c in comparisons.items() if not study.startswith("trainer")],
            f"Default vs random (ratio of medians < 1 = default better; goal: < 1 at {middle} trials)")

    def jsonable(summary):
        return {" / ".join(key): {k: v for k, v in e.items() if k != "curves"} for key, e in summary.items()}

    record.figures = {"plan": {k: v for k, v in plan.items()}, "functions": jsonable(functions),
                      "trainer": jsonable(trainer), "default_vs_random": comparisons}
    plot(record.figures, record.png("search_quality"))
    record.write()


def plot(figures: dict, path: Path) -> None:
    """Median best value so far vs trials: a panel per (function, mode), and the trainer's."""
    panels = {}
    for summary, ylabel in ((figures["functions"], "best value"), (figures["trainer"], "best val_loss")):
        for key, entry in summary.items():
            study, mode, algorithm = key.split(" / ")
            curve = entry["median_curve"]
            panel = panels.setdefault((study, mode), {
                "title": f"{study}, {mode}", "xlabel": "trials", "series": {}, "logy": study != "trainer",
                "ylabel": f"{ylabel} (median of {len(entry['seeds'])} seeds)"})
            panel["series"][algorithm] = (list(range(1, len(curve) + 1)), curve)
    B.plot(path, list(panels.values()), "best value found vs trials, by search algorithm")


if __name__ == "__main__":
    main()
