"""Benchmark 1: the trainer's training throughput against a plain tf-keras script, and the input
pipeline against the training step.

    python bench/trainer_overhead.py            # full: both cases, 5 and 3 repetitions (~6 min)
    python bench/trainer_overhead.py --quick    # the small case, 1 repetition (~1 min)

Arms, run as subprocesses in the same environment (TF_USE_LEGACY_KERAS=1, inherited thread
settings), in ABAB order after one discarded warm-up run:
- trainer: `python -m trainer.task --patience=0 --epochs=E` (default model and batch);
- plain:   bench/plain_keras.py, the same model, data, validation slice and batch, no callbacks;
- plain + stock callbacks (full mode): the plain script with the stock Keras callbacks the
  trainer uses (BackupAndRestore, two ModelCheckpoints, TensorBoard).
Throughput = training examples / the median time of epochs 2..E (from one epoch's end to the
next: its training steps, validation pass and callbacks, as a user waits for them); the JSON also
has the mean over epochs 2..E (mean_rate_examples_per_s). The median resists the bursts of the
other processes on this shared machine.

Cases: small = the built-in uci_digits (1,438 training examples, 23 steps an epoch: per-epoch
costs dominate); large = digits_x16 (bench/digits_x16: 23,002 examples, 360 steps an epoch; the
trainer gets its builder registered by bench/site/sitecustomize.py).

bench/trainer_probe.py then runs per case, as many times as the repetitions (medians reported):
the trainer's own input pipeline alone (iterated from Python) vs its training step alone (`fit`
without validation or callbacks): headroom = pipeline examples/s / step examples/s, goal >= 3;
and an epoch split into training steps, validation, each callback's epoch hooks and batch hooks,
and the rest, in one process (so free of the noise between processes).
Goal: trainer / plain >= 1.0.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib as B  # noqa: E402

CASES = {
    "small": {"dataset": "uci_digits", "epochs": 12, "quick_epochs": 5, "reps": 5},
    "large": {"dataset": "digits_x16", "epochs": 6, "quick_epochs": 3, "reps": 3},
}


def trainer_command(case: dict, job_dir: Path, data_dir: Path, epochs: int, probe_times=None):
    flags = [f"--dataset={case['dataset']}", f"--data_dir={data_dir}"]
    if probe_times:
        register = ["--register", case["dataset"]] if case["dataset"] in B.BENCH_DATASETS else []
        return [B.PYTHON, B.BENCH / "trainer_probe.py", "--epochs", epochs, "--times", probe_times,
                *register, "--", f"--job_dir={job_dir}", *flags]
    return B.trainer_argv(job_dir, *flags, f"--epochs={epochs}")


def measure_case(name: str, case: dict, args, work: Path, data_dir: Path) -> dict:
    epochs = case["quick_epochs"] if args.quick else case["epochs"]
    repetitions = B.reps(args, case["reps"])

    def trainer(rep):
        job = work / f"{name}-trainer-{rep}"
        B.run(trainer_command(case, job, data_dir, epochs), env=B.trainer_env(job, data_dir, case["dataset"]),
              log=job / "log.txt")
        hist = B.history(job)
        ends = [h["time"] for h in hist]
        return {"ends": ends, "val_accuracy": hist[-1]["val_accuracy"]}

    def plain(rep, callbacks="none"):
        out = work / f"{name}-plain-{callbacks}-{rep}"
        out.mkdir(parents=True)
        B.run([B.PYTHON, B.BENCH / "plain_keras.py", "--dataset", case["dataset"], "--data_dir", data_dir,
               "--epochs", epochs, "--times", out / "times.json", "--callbacks", callbacks,
               "--work_dir", out], env=B.trainer_env(out, data_dir, "uci_digits"), log=out / "log.txt")
        times = B.read_json(out / "times.json")
        return {"ends": times["epoch_end_times"], "val_accuracy": times["logs"][-1]["val_accuracy"],
                "train_examples": times["train_examples"]}

    arms = {"trainer": trainer, "plain": plain}
    if not args.quick:
        arms["plain + stock callbacks"] = lambda rep: plain(rep, "stock")
    results = B.interleave(arms, repetitions)
    examples = results["plain"][0]["train_examples"]
    figures = {"train_examples": examples, "epochs": epochs, "repetitions": repetitions, "arms": {}}
    for arm, runs in results.items():
        rates = [B.median_epoch_rate(r["ends"], examples) for r in runs]
        figures["arms"][arm] = {
            "examples_per_s": rates, "median_examples_per_s": B.median(rates),
            "mean_rate_examples_per_s": [B.steady_rate(r["ends"], examples) for r in runs],
            "median_ms_per_epoch": 1000 * examples / B.median(rates),
            "final_val_accuracy": [r["val_accuracy"] for r in runs],
            "epoch_examples_per_s": [B.epoch_rates(r["ends"], examples) for r in runs],
        }
    a = figures["arms"]
    figures["ratio_trainer_vs_plain"] = B.ratio(a["trainer"]["median_examples_per_s"],
                                                a["plain"]["median_examples_per_s"])
    figures["paired_ratios"] = [t / p for t, p in zip(a["trainer"]["examples_per_s"], a["plain"]["examples_per_s"])]
    figures["extra_ms_per_epoch"] = a["trainer"]["median_ms_per_epoch"] - a["plain"]["median_ms_per_epoch"]
    if "plain + stock callbacks" in a:
        figures["ratio_stock_callbacks_vs_plain"] = B.ratio(
            a["plain + stock callbacks"]["median_examples_per_s"], a["plain"]["median_examples_per_s"])

    # Probe runs (as many as the repetitions): pipeline vs step, and the epoch broken down.
    probes = [probe_run(case, work / f"{name}-probe-{rep}", data_dir, max(epochs, 4)) for rep in range(repetitions)]
    breakdowns = [p.pop("epoch_breakdown_ms") for p in probes]
    for probe, parts in zip(probes, breakdowns):
        # Measured inside one process, so free of the noise between processes: the share of an
        # epoch left if the callbacks cost nothing, i.e. the trainer/plain ratio they imply.
        callbacks = sum(v for k, v in parts.items() if k.endswith((" (epoch hooks)", " (batch hooks)")))
        probe["implied_ratio_without_callbacks"] = 1 - callbacks / parts["whole epoch (begin to begin)"]
    figures["probe"] = {
        **{key: B.median([p[key] for p in probes]) for key in probes[0] if key != "raw"},
        "epoch_breakdown_ms": {part: B.median([b[part] for b in breakdowns]) for part in breakdowns[0]},
        "runs": [{**p, "epoch_breakdown_ms": b} for p, b in zip(probes, breakdowns)],
    }
    return figures


def probe_run(case: dict, job: Path, data_dir: Path, epochs: int) -> dict:
    """One bench/trainer_probe.py run: its figures, medians over the epochs after the first."""
    job.mkdir()
    B.run(trainer_command(case, job, data_dir, epochs, probe_times=job / "probe.json"),
          env=B.trainer_env(job, data_dir), log=job / "log.txt")
    probe = B.read_json(job / "probe.json")
    after_first = lambda xs: xs[1:]  # noqa: E731
    n = probe["pipeline_examples"]
    pipeline = n / B.median(after_first(probe["pipeline_epoch_s"]))
    step = n / B.median(after_first(probe["step_epoch_s"]))
    epoch = probe["epoch"]
    # Batch hooks run inside the training loop: the steps' own time is what is left without them.
    batch_hooks = [sum(per_epoch) for per_epoch in zip(*[cb["batch"] for cb in epoch["callbacks_s"].values()])]
    parts = {"training steps (without batch hooks)": [t - h for t, h in zip(epoch["train_s"], batch_hooks)],
             "validation": epoch["validation_s"]}
    for cb, hooks in epoch["callbacks_s"].items():
        parts[f"{cb} (epoch hooks)"] = hooks["epoch"]
        parts[f"{cb} (batch hooks)"] = hooks["batch"]
    # epoch_s[i] runs from the start of epoch i to the start of epoch i+1: what the parts of
    # epoch i leave over is Keras's own work between the hooks (iterators, logs, progress).
    whole = epoch["epoch_s"]
    parts["other (Keras fit between the hooks)"] = [w - sum(p[i] for p in parts.values())
                                                    for i, w in enumerate(whole)]
    parts["whole epoch (begin to begin)"] = whole
    return {
        "pipeline_examples_per_s": pipeline, "step_examples_per_s": step, "headroom": pipeline / step,
        "steps_per_epoch": probe["steps_per_epoch"],
        "first_batch_ms": 1000 * B.median(after_first(probe["pipeline_first_batch_s"])),
        "pipeline_ms_per_epoch": 1000 * B.median(after_first(probe["pipeline_epoch_s"])),
        "epoch_breakdown_ms": {k: 1000 * B.median(after_first(v)) for k, v in parts.items()},
        "raw": probe,
    }


def main():
    args = B.parser(__doc__).parse_args()
    record = B.Record("trainer_overhead", args)
    cases = {k: v for k, v in CASES.items() if not (args.quick and k == "large")}
    with B.workdir(args, "overhead") as work:
        data_dir = work / "tfds"
        # A first trainer run prepares uci_digits (and warms the page cache); not measured.
        warm = work / "warmup"
        B.run(B.trainer_argv(warm, "--epochs=1", f"--data_dir={data_dir}"), env=B.trainer_env(warm, data_dir))
        if "large" in cases:
            B.prepare_dataset("digits_x16", data_dir)
        figures = {name: measure_case(name, case, args, work, data_dir) for name, case in cases.items()}

    rows = []
    for name, f in figures.items():
        a = f["arms"]
        rows.append([name, f["train_examples"], f["probe"]["steps_per_epoch"], a["plain"]["median_examples_per_s"],
                     a["trainer"]["median_examples_per_s"], f["ratio_trainer_vs_plain"],
                     a["plain"]["median_ms_per_epoch"], a["trainer"]["median_ms_per_epoch"],
                     f["extra_ms_per_epoch"], f.get("ratio_stock_callbacks_vs_plain")])
    B.table(["case", "train ex", "steps/ep", "plain ex/s", "trainer ex/s", "trainer/plain",
             "plain ms/ep", "trainer ms/ep", "extra ms/ep", "stock cb/plain"], rows,
            "Training throughput, examples / median epoch time over epochs 2..E, median of the repetitions "
            "(goal trainer/plain >= 1.0)")
    B.table(["case", "pipeline ex/s", "step ex/s", "headroom", "pipeline ms/ep", "first batch ms",
             "1 - callbacks/epoch"],
            [[name, f["probe"]["pipeline_examples_per_s"], f["probe"]["step_examples_per_s"], f["probe"]["headroom"],
              f["probe"]["pipeline_ms_per_epoch"], f["probe"]["first_batch_ms"],
              f["probe"]["implied_ratio_without_callbacks"]]
             for name, f in figures.items()],
            "Probe runs (medians): input pipeline alone vs training step alone (goal headroom >= 3), "
            "and the share of an epoch not spent in callbacks")
    parts = list(next(iter(figures.values()))["probe"]["epoch_breakdown_ms"])
    for f in figures.values():
        parts += [p for p in f["probe"]["epoch_breakdown_ms"] if p not in parts]
    B.table(["ms per epoch", *figures],
            [[part, *[f["probe"]["epoch_breakdown_ms"].get(part) for f in figures.values()]] for part in parts],
            "Where a trainer epoch goes (median over the probe runs of the median over epochs 2..E)")

    record.figures = {"goal": {"trainer_vs_plain": 1.0, "headroom": 3.0}, "cases": figures}
    panels = []
    for name, f in figures.items():
        series = {}
        for arm, data in f["arms"].items():
            per_epoch = data["epoch_examples_per_s"]
            medians = [B.median(list(col)) for col in zip(*per_epoch)]
            series[arm] = (list(range(2, len(medians) + 2)), medians)
        panels.append({"title": f"{name}: {f['train_examples']} training examples", "xlabel": "epoch",
                       "ylabel": "examples/s (median of repetitions)", "series": series})
    B.plot(record.png("trainer_overhead"), panels, "trainer vs plain tf-keras: throughput per epoch")
    record.write()


if __name__ == "__main__":
    main()
