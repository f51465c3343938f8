"""A reference point for bench/tuner_overhead.py: the least a hand-written Optuna driver does.

    python bench/optuna_loop.py --trials 8 --parallel 2 --out DIR -- python bench/trial.py sleep --seconds=1.5

P threads each ask Optuna (default sampler, in-memory storage) for a value of `x` in [0, 1],
run the trial command with `--x=<value>` and its own CLOUD_ML_HP_METRIC_FILE, read the reported
`value` back and tell it; no study on disk, no results files, no plots, no stopping rules.
"""
import argparse
import json
import os
import subprocess
import sys
import threading


def main(argv):
    cut = argv.index("--")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", type=int, required=True)
    p.add_argument("--parallel", type=int, required=True)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv[:cut])
    command = argv[cut + 1:]

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    lock = threading.Lock()
    budget = iter(range(args.trials))

    def worker():
        while True:
            with lock:
                number = next(budget, None)
                if number is None:
                    return
                trial = study.ask()
            x = trial.suggest_float("x", 0.0, 1.0)
            metric_file = os.path.join(args.out, str(number + 1), "hypertune", "output.metrics")
            env = {**os.environ, "CLOUD_ML_HP_METRIC_FILE": metric_file, "CLOUD_ML_TRIAL_ID": str(number + 1)}
            done = subprocess.run([*command, f"--x={x}"], env=env, stdout=subprocess.DEVNULL)
            value = None
            if done.returncode == 0:
                with open(metric_file) as f:
                    value = float(json.loads(f.read().splitlines()[-1])["value"])
            with lock:
                if value is None:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                else:
                    study.tell(trial, value)

    threads = [threading.Thread(target=worker) for _ in range(args.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(f"{len(study.trials)} trials, best {study.best_value}")


if __name__ == "__main__":
    main(sys.argv[1:])
