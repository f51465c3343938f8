"""The trial programs of the tuner benchmarks: each takes the tuner's `--<parameterId>=<value>`
flags and reports one metric, `value`, through cloudml-hypertune, as a real trial does.

    python bench/trial.py sleep --seconds=1.5 [--x=0.3]       # waits, reports x (or 0)
    python bench/trial.py cpu --matmuls=1200 [--x=0.3]        # CPU-bound: 256x256 matmuls, numpy
    python bench/trial.py rosenbrock4 --x1=... --x4=... --scale=... --kind=...
    python bench/trial.py levy6 --x1=... --x6=... --scale=... --kind=...

The test functions (to minimise; optimum 0, at x_i = 1, scale = 10**-2.5, kind = b):
- Rosenbrock in 4-D on [-2.048, 2.048]^4: sum_i 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2;
- Levy in 6-D on [-10, 10]^6 (w_i = 1 + (x_i - 1) / 4): sin^2(pi w_1)
  + sum_{i<6} (w_i - 1)^2 (1 + 10 sin^2(pi w_i + 1)) + (w_6 - 1)^2 (1 + sin^2(2 pi w_6));
each plus two parameters that tuning jobs always have: `scale` on a log scale in [1e-4, 1]
adding (log10(scale) + 2.5)^2, and a categorical `kind` in {a, b, c} adding 1, 0 or 3.

Every trial also writes `trial_times.json` (when its program started and ended) beside its
metric file, so a benchmark can tell the trial's own time from the time around it.
"""
import argparse
import json
import math
import os
import sys
import time

STARTED = time.time()

KIND_COST = {"a": 1.0, "b": 0.0, "c": 3.0}
SCALE_BEST = -2.5  # log10 of the best `scale`
DOMAINS = {"rosenbrock4": (4, -2.048, 2.048), "levy6": (6, -10.0, 10.0)}


def rosenbrock(x):
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (1.0 - x[i]) ** 2 for i in range(len(x) - 1))


def levy(x):
    w = [1.0 + (v - 1.0) / 4.0 for v in x]
    head = math.sin(math.pi * w[0]) ** 2
    body = sum((wi - 1.0) ** 2 * (1.0 + 10.0 * math.sin(math.pi * wi + 1.0) ** 2) for wi in w[:-1])
    tail = (w[-1] - 1.0) ** 2 * (1.0 + math.sin(2.0 * math.pi * w[-1]) ** 2)
    return head + body + tail


def objective(name: str, x, scale: float, kind: str) -> float:
    base = rosenbrock(x) if name == "rosenbrock4" else levy(x)
    return base + (math.log10(scale) - SCALE_BEST) ** 2 + KIND_COST[kind]


def parameters(name: str) -> list[dict]:
    """The study's parameters for a test function, as Vertex studySpec.parameters."""
    dims, low, high = DOMAINS[name]
    return ([{"parameterId": f"x{i + 1}", "doubleValueSpec": {"minValue": low, "maxValue": high},
              "scaleType": "UNIT_LINEAR_SCALE"} for i in range(dims)]
            + [{"parameterId": "scale", "doubleValueSpec": {"minValue": 1e-4, "maxValue": 1.0},
                "scaleType": "UNIT_LOG_SCALE"},
               {"parameterId": "kind", "categoricalValueSpec": {"values": sorted(KIND_COST)}}])


def report(value: float) -> None:
    import hypertune

    hypertune.HyperTune().report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag="value", metric_value=value, global_step=1)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("program", choices=["sleep", "cpu", *DOMAINS])
    p.add_argument("--seconds", type=float, default=1.0, help="sleep: how long")
    p.add_argument("--matmuls", type=int, default=1200, help="cpu: how many 256x256 matrix products")
    p.add_argument("--x", type=float, default=0.0, help="sleep, cpu: the value reported")
    for i in range(6):
        p.add_argument(f"--x{i + 1}", type=float)
    p.add_argument("--scale", type=float)
    p.add_argument("--kind", choices=sorted(KIND_COST))
    args = p.parse_args(argv)  # strict: a misspelt parameterId fails the trial

    if args.program == "sleep":
        time.sleep(args.seconds)
        value = args.x
    elif args.program == "cpu":
        import numpy as np

        a = np.random.RandomState(0).rand(256, 256)
        for _ in range(args.matmuls):
            a = a @ a
            a /= np.abs(a).max()
        value = args.x
    else:
        dims = DOMAINS[args.program][0]
        x = [getattr(args, f"x{i + 1}") for i in range(dims)]
        if None in x or args.scale is None or args.kind is None:
            p.error(f"{args.program} needs --x1..--x{dims}, --scale and --kind")
        value = objective(args.program, x, args.scale, args.kind)
    report(value)
    metric_file = os.environ.get("CLOUD_ML_HP_METRIC_FILE")
    if metric_file:
        with open(os.path.join(os.path.dirname(metric_file), "trial_times.json"), "w") as f:
            json.dump({"start": STARTED, "end": time.time(), "pid": os.getpid(),
                       "threads": {k: os.environ.get(k) for k in
                                   ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")}}, f)


if __name__ == "__main__":
    main(sys.argv[1:])
