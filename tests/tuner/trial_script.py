"""A tiny trainer for the tuner's tests: takes flags, reports through cloudml-hypertune.

The objective is a known function of --x (and --y, --optimizer/--momentum when given), so the
tests know which trials should win. --mode picks a misbehaviour:
  ok      report `steps` measurements, one per step (sleeping --sleep seconds before each)
  fail    print a message to stderr and exit 3 after the first report
  silent  exit 0 without reporting anything
  other   report under another tag than the study's metric
  nan     report NaN as the last value
  slowbad like ok when x < 0.95; from 0.95 on, report a poor value each step, 4x slower
  one     with --metric2: report only the first metric
--metric2=NAME also reports NAME = 100 x at each step, after the first metric: a cost that
trades off against the score for x below 0.7.
--child starts a child that ignores SIGTERM and sleeps; --flood=N writes N bytes of numbered
lines to stdout and to stderr first, ending with "flood done".
It also records what it was given (argv, the tuner's variables, its pid and start time, its
child's, whether it was the only run holding the trial folder's lock) in
<AIP_MODEL_DIR>/runs.jsonl and resumes from <AIP_CHECKPOINT_DIR>/progress.json, like a trainer
with checkpoints (gs:// dirs through the /gcs/ mount, GCS_FUSE_MOUNT where a test moved it).
"""
import argparse
import fcntl
import json
import math
import os
import subprocess
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
parser.add_argument("--metric2")
parser.add_argument("--child", action="store_true")
parser.add_argument("--flood", type=int, default=0)
args = parser.parse_args()


def start_time(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def mounted(path):
    """A gs:// path through the job's Cloud Storage FUSE mount, as code on Vertex AI can open it."""
    if path.startswith("gs://"):
        return os.path.join(os.environ.get("GCS_FUSE_MOUNT", "/gcs"), path[len("gs://"):])
    return path


model_dir = mounted(os.environ["AIP_MODEL_DIR"])
checkpoint = os.path.join(mounted(os.environ["AIP_CHECKPOINT_DIR"]), "progress.json")
os.makedirs(model_dir, exist_ok=True)
os.makedirs(os.path.dirname(checkpoint), exist_ok=True)
lock = open(os.path.join(model_dir, "writer.lock"), "w")  # held until this process (and its
try:                                                      # children) are gone
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    alone = True
except BlockingIOError:
    alone = False
seen = {"argv": sys.argv[1:], "pid": os.getpid(), "start": start_time(os.getpid()),
        "alone": alone,
        "env": {k: v for k, v in os.environ.items()
                if k.startswith(("AIP_", "CLOUD_ML_", "OMP_", "TF_")) or k in (
                    "CUDA_VISIBLE_DEVICES", "CLUSTER_SPEC")}}
if args.child:
    child = subprocess.Popen(
        [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, "
         "signal.SIG_IGN); print('ready', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    child.stdout.readline()  # it ignores SIGTERM from here on
    seen["child"] = [child.pid, start_time(child.pid)]
runs_file = os.path.join(model_dir, "runs.jsonl")
with open(runs_file, "a") as f:
    f.write(json.dumps(seen) + "\n")

if args.flood:
    size = len(f"line {0:012d} of a trial that floods its log\n")
    text = "".join(f"line {offset:012d} of a trial that floods its log\n"
                   for offset in range(0, args.flood, size)) + "flood done\n"
    for stream in (sys.stdout, sys.stderr):
        stream.write(text)
        stream.flush()

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
    if args.metric2 and args.mode != "one":
        reporter.report_hyperparameter_tuning_metric(
            hyperparameter_metric_tag=args.metric2, metric_value=100 * args.x, global_step=step)
    with open(checkpoint, "w") as f:
        json.dump({"step": step}, f)
    if args.mode == "fail":
        print("Traceback (most recent call last):\nValueError: the trial broke on purpose",
              file=sys.stderr)
        sys.exit(3)
