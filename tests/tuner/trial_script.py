"""A tiny trainer for the tuner's tests: takes flags, reports through cloudml-hypertune.

The objective is a known function of --x (and --y, --optimizer/--momentum when given), so the
tests know which trials should win. --mode picks a misbehaviour:
  ok      report `steps` measurements, one per step (sleeping --sleep seconds before each)
  fail    print a message to stderr and exit 3 after the first report
  silent  exit 0 without reporting anything
  other   report under another tag than the study's metric
  nan     report NaN as the last value
  slowbad like ok when x < 0.95; from 0.95 on, report a poor value each step, 4x slower
It also records what it was given (argv, the tuner's variables) in <AIP_MODEL_DIR>/seen.json
and resumes from <AIP_CHECKPOINT_DIR>/progress.json, like a trainer with checkpoints.
"""
import argparse
import json
import math
import os
import sys
import time

import hypertune

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, default=0.5)
parser.add_argument("--y", type=float, default=0.0)
parser.add_argument("--units", type=float, default=0.0)
parser.add_argument("--optimizer", default="adam")
parser.add_argument("--momentum", type=float)
parser.add_argument("--steps", type=int, default=3)
parser.add_argument("--sleep", type=float, default=0.1)
parser.add_argument("--mode", default="ok")
parser.add_argument("--metric", default="score")
args = parser.parse_args()

model_dir = os.environ["AIP_MODEL_DIR"]
checkpoint = os.path.join(os.environ["AIP_CHECKPOINT_DIR"], "progress.json")
seen = {"argv": sys.argv[1:], "pid": os.getpid(),
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("AIP_", "CLOUD_ML_", "OMP_", "TF_")) or k in (
                    "CUDA_VISIBLE_DEVICES", "CLUSTER_SPEC")}}
runs_file = os.path.join(model_dir, "runs.jsonl")
with open(runs_file, "a") as f:
    f.write(json.dumps(seen) + "\n")

start = 0
if os.path.exists(checkpoint):
    with open(checkpoint) as f:
        start = json.load(f)["step"]
    print(f"resumed at step {start}", file=sys.stderr)

score = 1.0 - (args.x - 0.7) ** 2 - 0.5 * args.y ** 2
if args.momentum is not None:
    score += 0.1 * args.momentum
reporter = hypertune.HyperTune()
slow = args.mode == "slowbad" and args.x >= 0.95
for step in range(start + 1, args.steps + 1):
    time.sleep(args.sleep * (4 if slow else 1))
    value = score * step / args.steps
    if slow:
        value = 0.01 * step
    if args.mode == "nan" and step == args.steps:
        value = math.nan
    if args.mode == "silent":
        continue
    tag = "something_else" if args.mode == "other" else args.metric
    reporter.report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag=tag, metric_value=value, global_step=step)
    with open(checkpoint, "w") as f:
        json.dump({"step": step}, f)
    if args.mode == "fail":
        print("Traceback (most recent call last):\nValueError: the trial broke on purpose",
              file=sys.stderr)
        sys.exit(3)
