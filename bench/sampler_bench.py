"""Which sampler should ALGORITHM_UNSPECIFIED use? Regret after N trials on tuning-shaped problems.

    python bench/sampler_bench.py [--seeds 10] [--trials 20] [--parallel 1 4]

Each problem is a study spec (the tuner's own parser and search space) and a deterministic
objective to minimise whose optimum is known or found by a dense search. Trials run
"asynchronously": with P > 1, P trials are in flight and the oldest finishes next, so samplers
see pending trials as the tuner shows them. Prints, per problem and P, the median and mean
simple regret of each sampler and its ratio to random search measured in the same run, plus
the mean time per suggestion.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
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

def log_continuous(v):
    """A loss surface over learning rate and weight decay (log scales) and dropout, with a
    ridge (the best weight decay moves with the learning rate) and mild ripples."""
    a = math.log10(v["learning_rate"]) + 2.5
    b = math.log10(v["weight_decay"]) + 4.0
    return (0.5 * a * a + 0.3 * (b - 0.7 * a) ** 2 + 2.0 * (v["dropout"] - 0.25) ** 2
            + 0.05 * math.sin(3 * a) ** 2)


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


PROBLEMS = {
    "log-continuous(3)": (_space(_double("learning_rate", 1e-5, 1.0, "UNIT_LOG_SCALE"),
                                 _double("weight_decay", 1e-7, 1e-1, "UNIT_LOG_SCALE"),
                                 _double("dropout", 0.0, 0.8)), log_continuous, 0.0),
    "hartmann6": (_space(*[_double(f"x{i}", 0.0, 1.0) for i in range(6)]), hartmann6,
                  -3.32237),
    "mixed(5)": (_space(
        {"parameterId": "optimizer",
         "categoricalValueSpec": {"values": ["adam", "sgd", "rmsprop"]}},
        _double("learning_rate", 1e-5, 1.0, "UNIT_LOG_SCALE"),
        {"parameterId": "batch_size", "scaleType": "UNIT_LOG_SCALE",
         "discreteValueSpec": {"values": [16, 32, 64, 128, 256, 512]}},
        {"parameterId": "units", "scaleType": "UNIT_LOG_SCALE",
         "integerValueSpec": {"minValue": 16, "maxValue": 1024}},
        _double("dropout", 0.0, 0.7)), mixed, None),
    "conditional(2+1|1)": (_space(
        {"parameterId": "optimizer", "categoricalValueSpec": {"values": ["adam", "sgd"]},
         "conditionalParameterSpecs": [
             {"parentCategoricalValues": {"values": ["sgd"]},
              "parameterSpec": _double("momentum", 0.0, 0.99)},
             {"parentCategoricalValues": {"values": ["adam"]},
              "parameterSpec": _double("epsilon", 1e-10, 1e-2, "UNIT_LOG_SCALE")}]},
        _double("learning_rate", 1e-5, 1.0, "UNIT_LOG_SCALE")), conditional, 0.02),
}


def _optimum(parameters, objective, samples=200_000) -> float:
    """Dense random search plus local polish: the reference optimum when none is known."""
    space = search.Space(parameters)
    rng = np.random.RandomState(0)
    best = math.inf
    for _ in range(samples):
        internal = space.complete({}, rng)
        values = {n.parameter.id: n.to_value(internal[n.name]) for n in space.nodes
                  if n.name in internal}
        best = min(best, objective(values))
    return best


def _samplers(space, seed):
    return {
        "random": optuna.samplers.RandomSampler(seed=seed),
        "tpe": optuna.samplers.TPESampler(seed=seed),
        "tpe-mv5": optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True,
                                              n_startup_trials=5),
        "gp": search.GPSampler(space, seed=seed),
    }


def run_one(parameters, objective, sampler, trials, parallel, noise, seed):
    """Best true loss after `trials` trials, and the mean seconds per suggestion."""
    space = search.Space(parameters)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    rng = np.random.RandomState(seed + 1000)
    in_flight, best, spent, asked = [], math.inf, 0.0, 0
    while asked < trials or in_flight:
        while asked < trials and len(in_flight) < parallel:
            t0 = time.perf_counter()
            trial = study.ask()
            values = space.suggest(trial)
            spent += time.perf_counter() - t0
            asked += 1
            in_flight.append((trial, values))
        trial, values = in_flight.pop(0)
        loss = objective(values)
        best = min(best, loss)
        study.tell(trial, loss + (rng.normal(0, noise) if noise else 0.0))
    return best, spent / trials


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--parallel", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--noise", type=float, default=0.0,
                        help="std of Gaussian noise added to what the sampler observes")
    parser.add_argument("--problems", nargs="+", default=list(PROBLEMS))
    parser.add_argument("--samplers", nargs="+", default=["random", "tpe", "tpe-mv5", "gp"])
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    print(f"simple regret after {args.trials} trials, {args.seeds} seeds, noise {args.noise}")
    print(f"{'problem':<20} {'P':>2} {'sampler':<8} {'median':>9} {'mean':>9} "
          f"{'median/random':>14} {'s/suggest':>10}")
    for name in args.problems:
        parameters, objective, optimum = PROBLEMS[name]
        if optimum is None:
            optimum = _optimum(parameters, objective)
        for parallel in args.parallel:
            results = {}
            for sampler_name in args.samplers:
                regrets, times = [], []
                for seed in range(args.seeds):
                    sampler = _samplers(search.Space(parameters), seed)[sampler_name]
                    best, per = run_one(parameters, objective, sampler, args.trials, parallel,
                                        args.noise, seed)
                    regrets.append(max(best - optimum, 0.0))
                    times.append(per)
                results[sampler_name] = (statistics.median(regrets), statistics.mean(regrets),
                                         statistics.mean(times))
            baseline = results.get("random", (None,))[0]
            for sampler_name, (median, mean, per) in results.items():
                ratio = f"{median / baseline:.3f}" if baseline else "-"
                print(f"{name:<20} {parallel:>2} {sampler_name:<8} {median:>9.4f} {mean:>9.4f} "
                      f"{ratio:>14} {per:>10.3f}", flush=True)


if __name__ == "__main__":
    main()
