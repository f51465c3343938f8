"""Benchmark 5: search quality of the default search (ALGORITHM_UNSPECIFIED), against random
search and the default search before issue 10, all measured in one run, in process.

    python bench/search_quality.py          # full: 5 problems x {sequential, 4 pending} x 15 studies
    python bench/search_quality.py --quick  # 2 problems, 3 studies, 20 trials (rough; ~1 min)

Each problem is a study spec (the tuner's own parser and search space) and a deterministic
objective to minimise whose optimum is known or found by a dense search: branin (smooth 2-D),
hartmann6 (6-D, multimodal), a mixed space (log float, float, log integer, discrete,
categorical), a conditional space, and hartmann6 with N(0, 0.1) noise on what the sampler
observes (regret is always measured on the true value). Trials run through Optuna's ask/tell,
no trial processes: with P = 4, four trials are in flight and the oldest finishes next, so the
samplers see pending (RUNNING) trials with their parameters as the tuner's study shows them.
"After n trials" is the first n suggested (trial numbers), as the tuner's results count them.

Samplers: the tuner's random search, its default search (`search.make_sampler`), and the
default search before issue 10 (`OldGPSampler`, a copy kept here as the baseline; slow, so
measured at the smallest trial count only). Prints the median simple regret of each cell, the
ratios the issue's goals are about and whether each goal is met, and the time of one default
suggestion at 10, 50 and 100 trials. Writes bench/results/search_quality.json.

The earlier version of this benchmark ran every trial as a real tuner process (Rosenbrock and
Levy through bench/trial.py, 10 seeds: 16 minutes for four cells); it was dropped: the
process overhead is bench/tuner_overhead.py's subject, and 10 seeds could not rank samplers.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import statistics
import sys
import time
import warnings
from pathlib import Path

# One BLAS thread for every sampler (the tuner's GP sets it for itself): more only spin here
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import optuna  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from tuner import search, spec  # noqa: E402


def _space(*parameters) -> tuple:
    job = spec.parse({
        "studySpec": {"metrics": [{"metricId": "loss", "goal": "MINIMIZE"}],
                      "parameters": list(parameters)},
        "maxTrialCount": 1, "parallelTrialCount": 1,
        "trialJobSpec": {"workerPoolSpecs": [{"machineSpec": {"machineType": "n1-standard-4"},
                                              "containerSpec": {"imageUri": "x"}}]}})
    return job.parameters


def _double(pid, low, high, scale="UNIT_LINEAR_SCALE", **extra):
    return {"parameterId": pid, "doubleValueSpec": {"minValue": low, "maxValue": high},
            "scaleType": scale, **extra}


# -- problems: (parameters, objective(values) -> loss) -----------------------------------------

def branin(v):
    """The classic smooth 2-D test function (three global minima of 0.397887)."""
    a, b = v["x0"], v["x1"]
    return ((b - 5.1 / (4 * math.pi ** 2) * a * a + 5 / math.pi * a - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(a) + 10)


HARTMANN_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                       [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]])
HARTMANN_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886],
                              [2329, 4135, 8307, 3736, 1004, 9991],
                              [2348, 1451, 3522, 2883, 3047, 6650],
                              [4047, 8828, 8732, 5743, 1091, 381]])
HARTMANN_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def hartmann6(v):
    x = np.array([v[f"x{i}"] for i in range(6)])
    return float(-np.sum(HARTMANN_ALPHA * np.exp(-np.sum(HARTMANN_A * (x - HARTMANN_P) ** 2,
                                                         axis=1))))


def mixed(v):
    """Optimizer (categorical), learning rate (log), batch size (discrete), units (integer,
    log) and dropout: the best learning rate depends on the optimizer and grows with the
    batch, the best dropout grows with the width."""
    base = {"adam": 0.05, "sgd": 0.03, "rmsprop": 0.07}[v["optimizer"]]
    best_lr = {"adam": -3.0, "sgd": -1.3, "rmsprop": -3.3}[v["optimizer"]]
    best_lr += 0.5 * math.log10(v["batch_size"] / 128)
    width = math.log2(v["units"])
    return (base + 0.15 * (math.log10(v["learning_rate"]) - best_lr) ** 2
            + 0.01 * math.log2(v["batch_size"] / 64) ** 2 + 0.008 * (width - 8) ** 2
            + 0.5 * (v["dropout"] - (0.1 + 0.05 * (width - 4))) ** 2)


def conditional(v):
    """sgd is best but only with momentum tuned to the learning rate; adam is easier."""
    lr = math.log10(v["learning_rate"])
    if v["optimizer"] == "adam":
        return 0.06 + 0.15 * (lr + 3) ** 2 + 0.002 * (math.log10(v["epsilon"]) + 7) ** 2
    m = v["momentum"]
    return 0.02 + 0.2 * (lr + 1.5 + 1.5 * (m - 0.9)) ** 2 + 0.6 * (m - 0.9) ** 2


HARTMANN6 = _space(*[_double(f"x{i}", 0.0, 1.0) for i in range(6)])

# name: (parameters, objective, optimum (None: found by a dense search), observation noise std)
PROBLEMS = {
    "branin(2)": (_space(_double("x0", -5.0, 10.0), _double("x1", 0.0, 15.0)), branin,
                  0.397887, 0.0),
    "hartmann6": (HARTMANN6, hartmann6, -3.32237, 0.0),
    "mixed(5)": (_space(
        {"parameterId": "optimizer",
         "categoricalValueSpec": {"values": ["adam", "sgd", "rmsprop"]}},
        _double("learning_rate", 1e-5, 1.0, "UNIT_LOG_SCALE"),
        {"parameterId": "batch_size", "scaleType": "UNIT_LOG_SCALE",
         "discreteValueSpec": {"values": [16, 32, 64, 128, 256, 512]}},
        {"parameterId": "units", "scaleType": "UNIT_LOG_SCALE",
         "integerValueSpec": {"minValue": 16, "maxValue": 1024}},
        _double("dropout", 0.0, 0.7)), mixed, None, 0.0),
    "conditional(2+1|1)": (_space(
        {"parameterId": "optimizer", "categoricalValueSpec": {"values": ["adam", "sgd"]},
         "conditionalParameterSpecs": [
             {"parentCategoricalValues": {"values": ["sgd"]},
              "parameterSpec": _double("momentum", 0.0, 0.99)},
             {"parentCategoricalValues": {"values": ["adam"]},
              "parameterSpec": _double("epsilon", 1e-10, 1e-2, "UNIT_LOG_SCALE")}]},
        _double("learning_rate", 1e-5, 1.0, "UNIT_LOG_SCALE")), conditional, 0.02, 0.0),
    "hartmann6-noisy": (HARTMANN6, hartmann6, -3.32237, 0.1),
}
QUICK_PROBLEMS = ["branin(2)", "mixed(5)"]
PARALLEL = (1, 4)  # trials in flight


def _optimum(parameters, objective, samples=200_000) -> float:
    """Dense random search: the reference optimum when none is known."""
    space = search.Space(parameters)
    rng = np.random.RandomState(0)
    best = math.inf
    for _ in range(samples):
        values = _values(space, space.complete({}, rng))
        best = min(best, objective(values))
    return best


def _values(space, internal: dict) -> dict:
    return {n.parameter.id: n.to_value(internal[n.name]) for n in space.nodes
            if n.name in internal}


class OldGPSampler(search.RandomTreeSampler):
    """The default search before issue 10 (commit c23fb20), kept as the baseline: a GP
    (scikit-learn, Matern 5/2, ARD) on unit-scaled features, expected improvement.

    The first `n_startup_trials` suggestions are random. Trials still running count as
    observed at the GP's own prediction (a "kriging believer"), which collapses the
    uncertainty around them so parallel suggestions spread out. Conditional parameters that
    are inactive in a trial get a constant feature outside the unit box. The acquisition is
    maximised over random points of the tree plus perturbations of the best trials.
    """

    def __init__(self, space: search.Space, *, seed: int | None = None, n_startup_trials: int = 5,
                 n_candidates: int = 1000):
        super().__init__(space, seed=seed)
        self._n_startup = n_startup_trials
        self._n_candidates = n_candidates

    def sample_relative(self, study, trial, search_space):
        rng = search._trial_rng(self._seed, trial.number)
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
        if len(done) < self._n_startup:
            return self._space.complete({}, rng)
        pending = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if t.number != trial.number and t.params]
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        x = np.array([self._space.features(t.params) for t in done])
        y = np.array([sign * t.value for t in done])
        try:
            gp = _fit(x, y, self._seed)
            incumbent = float(np.max(y))
            if pending:  # believed at the GP's mean: no improvement expected where they run
                xp = np.array([self._space.features(t.params) for t in pending])
                believed = gp.predict(xp)
                gp = _fit(np.vstack([x, xp]), np.concatenate([y, believed]), self._seed,
                          kernel=gp.kernel_)
                incumbent = max(incumbent, float(np.max(believed)))
        except np.linalg.LinAlgError:
            return self._space.complete({}, rng)
        best = [t.params for t in sorted(done, key=lambda t: -sign * t.value)[:5]]
        return self._maximise(gp, incumbent, best, rng)

    def _maximise(self, gp, incumbent: float, best: list[dict], rng) -> dict:
        candidates = [self._space.complete({}, rng) for _ in range(self._n_candidates)]
        for params in best:
            candidates += [self._perturb(params, 0.15, rng)
                           for _ in range(self._n_candidates // 10)]
        chosen, score = self._best_of(gp, candidates, incumbent)
        for scale in (0.05, 0.02):  # refine around the winner
            local, local_score = self._best_of(
                gp, [self._perturb(chosen, scale, rng) for _ in range(200)], incumbent)
            if local_score > score:
                chosen, score = local, local_score
        return chosen

    def _best_of(self, gp, candidates: list[dict], incumbent: float) -> tuple[dict, float]:
        x = np.array([self._space.features(c) for c in candidates])
        scores = _expected_improvement(gp, x, incumbent)
        i = int(np.argmax(scores))
        return candidates[i], float(scores[i])

    def _perturb(self, params: dict, scale: float, rng) -> dict:
        """A nearby point: numeric values moved along their scale, now and then a category."""
        moved = {}
        for name, value in params.items():
            node = self._space.by_name[name]
            if isinstance(node.distribution, optuna.distributions.CategoricalDistribution):
                if rng.rand() >= 1.0 / len(params):
                    moved[name] = value  # else dropped: `complete` draws it again
            else:
                moved[name] = node.from_unit(node.unit(value) + rng.normal(0, scale))
        return self._space.complete(moved, rng)


def _fit(x: np.ndarray, y: np.ndarray, seed, kernel=None):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    if kernel is None:
        kernel = (ConstantKernel(1.0, (1e-2, 1e2))
                  * Matern(np.full(x.shape[1], 0.5), (1e-2, 1e2), nu=2.5)
                  + WhiteKernel(1e-3, (1e-6, 1e-1)))
        optimizer, restarts = "fmin_l_bfgs_b", 2
    else:
        optimizer, restarts = None, 0  # refit on pending points with the learned kernel
    gp = GaussianProcessRegressor(kernel, normalize_y=True, optimizer=optimizer,
                                  n_restarts_optimizer=restarts, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gp.fit(x, y)
    return gp


def _expected_improvement(gp, x: np.ndarray, incumbent: float) -> np.ndarray:
    from scipy.special import ndtr

    mean, std = gp.predict(x, return_std=True)
    std = np.maximum(std, 1e-12)
    z = (mean - incumbent) / std
    return (mean - incumbent) * ndtr(z) + std * np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


SAMPLERS = {
    "random": lambda space, seed: search.RandomTreeSampler(space, seed=seed),
    "gp-old": lambda space, seed: OldGPSampler(space, seed=seed),
    "default": lambda space, seed: search.make_sampler(spec.BAYESIAN, space, seed),
}


def run_study(task) -> dict:
    """One study: the best true loss after each count of trials, and seconds per suggestion."""
    name, sampler_name, parallel, trials, counts, seed = task
    parameters, objective, _, noise = PROBLEMS[name]
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    space = search.Space(parameters)
    study = optuna.create_study(direction="minimize",
                                sampler=SAMPLERS[sampler_name](space, seed))
    rng = np.random.RandomState(seed + 1000)
    in_flight, told, spent = [], 0, 0.0
    while told < trials:
        while told + len(in_flight) < trials and len(in_flight) < parallel:
            t0 = time.perf_counter()
            trial = study.ask()
            values = space.suggest(trial)
            spent += time.perf_counter() - t0
            in_flight.append((trial, values))
        trial, values = in_flight.pop(0)  # the oldest finishes first
        study.tell(trial, objective(values) + (rng.normal(0, noise) if noise else 0.0))
        told += 1
    return {"task": task, "best_after": {n: reported_loss(study.trials[:n], space, objective)
                                         for n in counts},
            "s_per_suggestion": spent / trials}


def reported_loss(trials, space, objective) -> float:
    """The true loss of the trial the study reports as best: the one with the best OBSERVED
    value, what a user gets. Under noise it can be worse than the best true loss seen."""
    best = min(trials, key=lambda t: t.value)
    return objective(_values(space, best.params))


def suggestion_time(name: str, trials: int = 100, pending: int = 3, repeats: int = 3) -> float:
    """Median seconds of one default suggestion in a study of `trials` trials (random values
    told) with `pending` more running: what a suggestion costs late in a long study."""
    parameters, objective, _, _ = PROBLEMS[name]
    space = search.Space(parameters)
    rng = np.random.RandomState(0)
    study = optuna.create_study(direction="minimize", sampler=search.make_sampler(spec.BAYESIAN, space, 0))
    for _ in range(trials):
        internal = space.complete({}, rng)
        study.enqueue_trial(internal)
        trial = study.ask()
        study.tell(trial, objective(space.suggest(trial)))
    for _ in range(pending):
        study.enqueue_trial(space.complete({}, rng))
        space.suggest(study.ask())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        trial = study.ask()
        space.suggest(trial)
        times.append(time.perf_counter() - t0)
        study.tell(trial, state=TrialState.FAIL)
    return statistics.median(times)


GOAL_TRIALS, GOAL_RANDOM, GOAL_OLD, GOAL_PENDING, GOAL_SECONDS = 20, 3.0, 3.0, 1.3, 1.0


def main():
    parser = B.parser(__doc__)
    parser.add_argument("--studies", type=int, default=15, help="studies (seeds) per cell")
    parser.add_argument("--trials", type=int, nargs="+", default=[20, 50])
    parser.add_argument("--problems", nargs="+", choices=list(PROBLEMS), default=list(PROBLEMS))
    parser.add_argument("--parallel", type=int, nargs="+", choices=PARALLEL, default=list(PARALLEL),
                        help="trials in flight (P=4 cells need P=1 for their ratio)")
    parser.add_argument("--samplers", nargs="+", choices=list(SAMPLERS), default=list(SAMPLERS))
    parser.add_argument("--jobs", type=int, default=2, help="studies run at once (processes)")
    parser.add_argument("--no-timing", action="store_true",
                        help="skip timing a suggestion at 10, 50 and 100 trials")
    args = parser.parse_args()
    if args.quick:
        args.studies, args.problems, args.trials = 3, QUICK_PROBLEMS, [20]
    record = B.Record("search_quality", args)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    optima = {name: PROBLEMS[name][2] if PROBLEMS[name][2] is not None
              else _optimum(*PROBLEMS[name][:2]) for name in args.problems}
    first = min(args.trials)
    tasks = [(name, sampler, parallel, max(counts), counts, seed)
             for name in args.problems for parallel in args.parallel for sampler in args.samplers
             for counts in [[first] if sampler == "gp-old" else args.trials]
             for seed in range(args.studies)]
    with multiprocessing.Pool(args.jobs) as pool:
        results = pool.map(run_study, tasks, chunksize=1)

    cells = {}  # (problem, trials, P, sampler) -> cell
    for (name, sampler, parallel, _, counts, _) in tasks:
        for n in counts:
            runs = [r for r in results if r["task"][:3] == (name, sampler, parallel)]
            regrets = [max(r["best_after"][n] - optima[name], 0.0) for r in runs]
            cells[(name, n, parallel, sampler)] = {
                "problem": name, "trials": n, "parallel": parallel, "sampler": sampler,
                "median_regret": B.median(regrets), "regrets": regrets,
                "s_per_suggestion": statistics.mean(r["s_per_suggestion"] for r in runs)}
    def median(name, n, parallel, sampler):  # None for a cell this run left out
        cell = cells.get((name, n, parallel, sampler))
        return cell and cell["median_regret"]

    rows, default_vs_random = [], {}
    for (name, n, parallel, sampler), cell in cells.items():
        if sampler != "default":
            continue
        regret, random, old = (cell["median_regret"], median(name, n, parallel, "random"),
                               median(name, n, parallel, "gp-old"))
        cell["random_over_default"] = B.ratio(random, regret)
        cell["old_over_default"] = B.ratio(old, regret)
        cell["pending_over_sequential"] = (B.ratio(regret, median(name, n, 1, sampler))
                                           if parallel > 1 else None)
        default_vs_random[f"{name}, {n} trials, P={parallel}"] = cell["random_over_default"]
        rows.append([name, n, parallel, random, old, regret, cell["random_over_default"],
                     cell["old_over_default"], cell["pending_over_sequential"],
                     cell["s_per_suggestion"]])
    B.table(["problem", "trials", "P", "random", "old GP", "default", "random/default",
             "old/default", "P=4 / P=1", "s/suggestion"], rows,
            f"median simple regret over {args.studies} studies (x/default > 1: the default is better)")

    timing = {} if args.no_timing else {
        name: {n: suggestion_time(name, n) for n in (10, 50, 100)}
        for name in ("hartmann6", "mixed(5)")}
    if timing:
        B.table(["problem", "s a suggestion at 10 trials", "at 50", "at 100"],
                [[name, *t.values()] for name, t in timing.items()],
                "one default suggestion, 3 trials pending (median of 3)")

    goals = []
    for name in args.problems:
        cell = cells.get((name, GOAL_TRIALS, 1, "default"))
        if cell is None:
            continue
        goals.append([f"{name}: random / default", f">= {GOAL_RANDOM}", cell["random_over_default"],
                      _met(cell["random_over_default"], GOAL_RANDOM, above=True)])
        if name.startswith("mixed"):
            goals.append([f"{name}: old GP / default", f">= {GOAL_OLD}", cell["old_over_default"],
                          _met(cell["old_over_default"], GOAL_OLD, above=True)])
        for parallel in args.parallel[1:]:
            ratio = cells[(name, GOAL_TRIALS, parallel, "default")]["pending_over_sequential"]
            goals.append([f"{name}: P={parallel} / P=1", f"<= {GOAL_PENDING}", ratio,
                          _met(ratio, GOAL_PENDING, above=False)])
    if timing:
        slowest = max(t[100] for t in timing.values())
        goals.append(["s a suggestion at 100 trials", f"<= {GOAL_SECONDS}", slowest,
                      _met(slowest, GOAL_SECONDS, above=False)])
    B.table(["goal (issue 10)", "goal", "measured", "met"], goals, f"at {GOAL_TRIALS} trials")
    record.figures = {"studies": args.studies, "optima": optima,
                      "default_vs_random": default_vs_random,
                      "goals": [dict(zip(("what", "goal", "measured", "met"), g, strict=True)) for g in goals],
                      "suggestion_s": timing, "cells": list(cells.values())}
    record.write()


def _met(value, goal: float, *, above: bool) -> str:
    if value is None:
        return "-"
    return "yes" if (value >= goal if above else value <= goal) else "no"


if __name__ == "__main__":
    main()
