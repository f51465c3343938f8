"""Benchmark 2: the same global batch on 1 vs 2 replicas (MirroredStrategy over two logical
CPUs) and on 1 vs 2 local workers (MultiWorkerMirroredStrategy through trainer.launch).

    python bench/strategy_scaling.py            # full (~8 min)
    python bench/strategy_scaling.py --quick    # small case, 2 epochs, 3 arms, once (~1 min)

Arms (global batch 64 in all; trainer defaults otherwise, --patience=0):
- 1 replica:  python -m trainer.task --batch_size=64                    (default strategy)
- 2 replicas: python -m trainer.task --batch_size=32 --cpu_replicas=2   (MirroredStrategy)
- 1 worker:   python -m trainer.launch --workers=1 -- --batch_size=64   (TF_CONFIG, one task)
- 2 workers:  python -m trainer.launch --workers=2 -- --batch_size=32   (MWMS, chief + worker)
- plain tf-keras, 1 and 2 replicas (full mode): bench/plain_keras.py [--cpu_replicas 2], the
  same model and global batch without the trainer, to tell Keras's own scaling from the trainer's.
Throughput = training examples x (E - 1) / time from the end of epoch 1 to the end of epoch E,
from the chief's history.json; each run's wall time (start to exit) is reported too.
Cases: small = uci_digits (23 steps an epoch); large = digits_x16 (360 steps an epoch; full mode;
the 2-worker arm runs fewer epochs there, since each of its steps waits on gRPC collectives).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

GLOBAL_BATCH = 64
ARMS = {  # name -> (launcher workers or 0 or "plain", per-replica batch, extra flags)
    "1 replica": (0, 64, []),
    "2 replicas (Mirrored)": (0, 32, ["--cpu_replicas=2"]),
    "1 worker (launcher)": (1, 64, []),
    "2 workers (MWMS)": (2, 32, []),
    "plain tf-keras, 1 replica": ("plain", 64, []),
    "plain tf-keras, 2 replicas (Mirrored)": ("plain", 64, ["--cpu_replicas", "2"]),  # global batch
}
PLAIN = ["plain tf-keras, 1 replica", "plain tf-keras, 2 replicas (Mirrored)"]
CASES = {
    "small": {"dataset": "uci_digits", "epochs": 6, "quick_epochs": 2, "reps": 3,
              "arms": list(ARMS), "quick_arms": ["1 replica", "2 replicas (Mirrored)", "2 workers (MWMS)"]},
    "large": {"dataset": "digits_x16", "epochs": 4, "reps": 3, "arms": ["1 replica", "2 replicas (Mirrored)", *PLAIN],
              "single_run_arms": {"2 workers (MWMS)": 2}},  # arm -> epochs, one repetition
}
PAIRS = [("2 replicas (Mirrored)", "1 replica"), ("2 workers (MWMS)", "1 worker (launcher)"),
         ("2 workers (MWMS)", "1 replica"), (PLAIN[1], PLAIN[0])]


def run_arm(arm: str, case: dict, work: Path, data_dir: Path, epochs: int, tag: str) -> dict:
    workers, batch, extra = ARMS[arm]
    job = work / tag
    if workers == "plain":
        job.mkdir(parents=True)
        done = B.run([B.PYTHON, B.BENCH / "plain_keras.py", "--dataset", case["dataset"], "--data_dir", data_dir,
                      "--epochs", epochs, "--batch_size", batch, "--times", job / "times.json", *extra],
                     env=B.trainer_env(job, data_dir), log=job.with_suffix(".log"))
        times = B.read_json(job / "times.json")
        return {"ends": times["epoch_end_times"], "wall_s": done.wall_s,
                "strategy": "MirroredStrategy" if extra else "DefaultStrategy", "num_replicas": 2 if extra else 1,
                "val_accuracy": times["logs"][-1]["val_accuracy"], "train_examples": times["train_examples"]}
    argv = B.trainer_argv(job, f"--batch_size={batch}", f"--epochs={epochs}", f"--dataset={case['dataset']}",
                          f"--data_dir={data_dir}", *extra, launch_workers=workers)
    done = B.run(argv, env=B.trainer_env(job, data_dir, case["dataset"]), log=job.with_suffix(".log"),
                 timeout=1800)
    metrics = B.read_json(job / "model" / "metrics.json")
    hist = B.history(job)
    return {"ends": [h["time"] for h in hist], "wall_s": done.wall_s, "strategy": metrics["strategy"],
            "num_replicas": metrics["num_replicas"], "val_accuracy": metrics["final"],
            "train_examples": B.train_examples(done)}


def measure_case(name: str, case: dict, args, work: Path, data_dir: Path) -> dict:
    epochs = case["quick_epochs"] if args.quick else case["epochs"]
    arms = {arm: (lambda rep, arm=arm: run_arm(arm, case, work, data_dir, epochs,
                                               f"{name}-{list(ARMS).index(arm)}-{rep}"))
            for arm in case["quick_arms" if args.quick else "arms"]}
    results = B.interleave(arms, B.reps(args, case["reps"]))
    if not args.quick:
        for arm, arm_epochs in case.get("single_run_arms", {}).items():
            results[arm] = [run_arm(arm, case, work, data_dir, arm_epochs,
                                    f"{name}-{list(ARMS).index(arm)}-single")]
    examples = results[case["arms"][0]][0]["train_examples"]
    figures = {"train_examples": examples, "epochs": epochs, "global_batch": GLOBAL_BATCH, "arms": {}}
    for arm, runs in results.items():
        rates = [B.steady_rate(r["ends"], examples) for r in runs]
        figures["arms"][arm] = {
            "examples_per_s": rates, "median_examples_per_s": B.median(rates),
            "wall_s": [r["wall_s"] for r in runs], "median_wall_s": B.median([r["wall_s"] for r in runs]),
            "epochs": len(runs[0]["ends"]), "strategy": runs[0]["strategy"],
            "num_replicas": runs[0]["num_replicas"], "final_val_accuracy": [r["val_accuracy"] for r in runs],
        }
    a = figures["arms"]
    figures["ratios"] = {f"{x} / {y}": {"throughput": B.ratio(a[x]["median_examples_per_s"],
                                                               a[y]["median_examples_per_s"]),
                                        "wall": B.ratio(a[x]["median_wall_s"], a[y]["median_wall_s"])}
                         for x, y in PAIRS if x in a and y in a}
    return figures


def main():
    args = B.parser(__doc__).parse_args()
    record = B.Record("strategy_scaling", args)
    cases = {k: v for k, v in CASES.items() if not (args.quick and k == "large")}
    with B.workdir(args, "scaling") as work:
        data_dir = work / "tfds"
        if not args.quick:  # prepares uci_digits and warms the page cache; not measured
            warm = work / "warmup"
            B.run(B.trainer_argv(warm, "--epochs=1", f"--data_dir={data_dir}"), env=B.trainer_env(warm, data_dir))
        if "large" in cases:
            B.prepare_dataset("digits_x16", data_dir)
        figures = {name: measure_case(name, case, args, work, data_dir) for name, case in cases.items()}

    for name, f in figures.items():
        B.table(["arm", "strategy", "replicas", "epochs", "examples/s", "ms/step", "wall s", "val_acc"],
                [[arm, a["strategy"], a["num_replicas"], a["epochs"], a["median_examples_per_s"],
                  1000 * GLOBAL_BATCH / a["median_examples_per_s"], a["median_wall_s"],
                  B.median(a["final_val_accuracy"])] for arm, a in f["arms"].items()],
                f"{name}: {f['train_examples']} training examples, global batch {GLOBAL_BATCH}, "
                f"median of the repetitions")
        B.table(["ratio", "throughput", "wall time"],
                [[pair, r["throughput"], r["wall"]] for pair, r in f["ratios"].items()],
                f"{name}: scaling ratios (throughput > 1 = faster; wall < 1 = faster)")
    record.figures = {"cases": figures}
    record.write()


if __name__ == "__main__":
    main()
