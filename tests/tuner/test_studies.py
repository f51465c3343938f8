"""Real studies: `python -m tuner run` with trial processes of tests/tuner/trial_script.py.

The script's objective is known (score = 1 - (x - 0.7)^2 [+ 0.1 momentum], reached at the last
step), so the tests can check values, states and the best trial exactly.
"""
import json
import os
import re
import shlex
import signal
import subprocess
import sys

import optuna
import pytest

from tests.tuner.support import (
    TRIAL_SCRIPT,
    alive,
    config,
    last_line,
    read_csv,
    reported_steps,
    run_tuner,
    start_tuner,
    trial_runs,
    tuner_env,
    wait_for,
)
from tuner import study as study_mod

X = {"parameterId": "x", "doubleValueSpec": {"minValue": 0.0, "maxValue": 1.0}}
OPTIMIZER = {"parameterId": "optimizer", "categoricalValueSpec": {"values": ["adam", "sgd"]},
             "conditionalParameterSpecs": [{
                 "parentCategoricalValues": {"values": ["sgd"]},
                 "parameterSpec": {"parameterId": "momentum",
                                   "doubleValueSpec": {"minValue": 0.0, "maxValue": 0.9}}}]}


def score(row):
    value = 1 - (float(row["x"]) - 0.7) ** 2
    return value + 0.1 * float(row["momentum"]) if row.get("momentum") else value


def test_a_study_of_a_conditional_space(write_config, tmp_path):
    path = write_config(config(maxTrialCount=6, study={"parameters": [X, OPTIMIZER],
                                                       "algorithm": "RANDOM_SEARCH"}))
    out = tmp_path / "study"
    result = run_tuner("run", path, "--output-dir", out, "--seed", "5")
    assert result.returncode == 0, result.stderr
    rows = read_csv(out / "trials.csv")
    assert list(rows[0]) == ["trial_id", "state", "value", "steps", "elapsed_s", "x",
                             "optimizer", "momentum", "reason"]
    assert [r["trial_id"] for r in rows] == ["1", "2", "3", "4", "5", "6"]
    assert {r["optimizer"] for r in rows} == {"adam", "sgd"}
    for row in rows:
        assert row["state"] == "SUCCEEDED" and row["steps"] == "2" and row["reason"] == ""
        assert (row["momentum"] == "") == (row["optimizer"] == "adam")
        assert float(row["value"]) == pytest.approx(score(row))
        (seen,) = trial_runs(out, row["trial_id"])
        flags = [f"--x={row['x']}", f"--optimizer={row['optimizer']}"]
        if row["momentum"]:
            flags.append(f"--momentum={row['momentum']}")
        assert seen["argv"] == ["--steps=2", "--sleep=0.1", *flags]
        env = seen["env"]
        trial_dir = str(out / row["trial_id"])
        assert env["CLOUD_ML_TRIAL_ID"] == row["trial_id"]
        assert env["CLOUD_ML_HP_METRIC_FILE"] == f"{trial_dir}/hypertune/output.metrics"
        assert env["AIP_MODEL_DIR"] == f"{trial_dir}/model/"
        assert env["AIP_CHECKPOINT_DIR"] == f"{trial_dir}/checkpoints/"
        assert env["AIP_TENSORBOARD_LOG_DIR"] == f"{trial_dir}/logs/"
        assert env["CUDA_VISIBLE_DEVICES"] == ""
        assert json.loads(env["CLUSTER_SPEC"])["task"]["trial"] == row["trial_id"]
        assert "TF_CONFIG" not in env
        if "OMP_NUM_THREADS" not in os.environ:
            assert env["OMP_NUM_THREADS"] == str(max(1, (os.cpu_count() or 1) // 2))
        assert (out / row["trial_id"] / "stderr").exists()
    best = max(rows, key=lambda r: float(r["value"]))
    document = json.loads((out / "best_trial.json").read_text())
    assert document["trial_id"] == best["trial_id"]
    assert document["value"] == float(best["value"])
    assert document["parameters"]["x"] == best["x"]
    (seen,) = trial_runs(out, best["trial_id"])
    assert shlex.split(document["command"])[1:] == [str(TRIAL_SCRIPT), *seen["argv"]]
    for name in ("history.png", "parallel_coordinates.png", "curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stdout = result.stdout
    assert "trial 1 started on cpu slot" in stdout and "trial 1 step 2: score=" in stdout
    assert f"best trial {best['trial_id']}: score=" in stdout
    assert f"  reproduce: {document['command']}" in stdout
    assert (f"scripts/submit_hptuning.sh --config={path} --region=\"$REGION\" "
            "--bucket=\"$BUCKET\"") in stdout
    # `results` shows the same study again and rewrites the files from the journal
    (out / "trials.csv").unlink()
    again = run_tuner("results", out)
    assert again.returncode == 0, again.stderr
    assert f"best trial {best['trial_id']}: score=" in again.stdout
    assert read_csv(out / "trials.csv") == rows


MODES = {"parameterId": "mode", "categoricalValueSpec": {
    "values": ["ok", "fail", "silent", "nan", "other"]}}


def test_failed_and_infeasible_trials_say_why(write_config, tmp_path):
    path = write_config(config(maxTrialCount=8, maxFailedTrialCount=5,
                               study={"parameters": [MODES], "algorithm": "GRID_SEARCH"}))
    out = tmp_path / "study"
    result = run_tuner("run", path, "--output-dir", out)
    assert result.returncode == 0, result.stderr
    rows = {r["mode"]: r for r in read_csv(out / "trials.csv")}
    assert len(rows) == 5  # the grid is used up before maxTrialCount
    assert rows["ok"]["state"] == "SUCCEEDED" and float(rows["ok"]["value"]) > 0
    assert rows["fail"]["state"] == "FAILED"
    assert rows["fail"]["reason"] == "exit code 3: ValueError: the trial broke on purpose"
    assert rows["silent"]["state"] == "INFEASIBLE"
    assert rows["silent"]["reason"].startswith("reported no value for 'score' (nothing in "
                                               "CLOUD_ML_HP_METRIC_FILE")
    assert rows["nan"]["state"] == "INFEASIBLE"
    assert rows["nan"]["reason"] == "final score is NaN"
    assert rows["other"]["state"] == "INFEASIBLE"
    assert rows["other"]["reason"] == ("reported no value for 'score' (it reported "
                                       "something_else)")
    assert all(rows[m]["value"] == "" for m in ("fail", "silent", "nan", "other"))
    assert "    | Traceback (most recent call last):" in result.stdout  # the stderr tail
    assert json.loads((out / "best_trial.json").read_text())["parameters"] == {"mode": "ok"}


@pytest.mark.parametrize("limit,expected_trials", [(None, 1), (2, 2)])
def test_the_failure_budget_ends_the_study(write_config, tmp_path, limit, expected_trials):
    doc = config(maxTrialCount=6, parallelTrialCount=1, args=["--mode=fail", "--sleep=0"],
                 study={"algorithm": "RANDOM_SEARCH"})
    if limit:
        doc["maxFailedTrialCount"] = limit
    out = tmp_path / "study"
    result = run_tuner("run", write_config(doc), "--output-dir", out)
    assert result.returncode == 1
    assert last_line(result.stderr).startswith("error: study failed: ")
    rows = read_csv(out / "trials.csv")
    assert [r["state"] for r in rows] == ["FAILED"] * expected_trials


def test_the_median_rule_stops_a_slow_bad_trial(write_config, tmp_path):
    """Three good trials complete first (one at a time, grid order); the fourth reports a
    poor value every 0.4 s and is stopped long before its 6 steps."""
    doc = config(maxTrialCount=4, parallelTrialCount=1, args=["--steps=6", "--sleep=0.1",
                                                              "--mode=slowbad"],
                 study={"parameters": [{"parameterId": "x", "discreteValueSpec": {
                     "values": [0.6, 0.7, 0.8, 0.99]}}], "algorithm": "GRID_SEARCH",
                     "medianAutomatedStoppingSpec": {"useElapsedDuration": False}})
    out = tmp_path / "study"
    result = run_tuner("run", write_config(doc), "--output-dir", out)
    assert result.returncode == 0, result.stderr
    rows = {r["x"]: r for r in read_csv(out / "trials.csv")}
    assert [rows[x]["state"] for x in ("0.6", "0.7", "0.8")] == ["SUCCEEDED"] * 3
    bad = rows["0.99"]
    assert bad["state"] == "STOPPED"
    assert bad["reason"].startswith("median rule: best ")
    assert 2 <= int(bad["steps"]) < 6
    assert float(bad["value"]) == pytest.approx(0.01 * int(bad["steps"]))
    assert float(bad["elapsed_s"]) < 6 * 0.4
    assert "trial 4 stopping: median rule" in result.stdout


def test_grid_search_runs_each_point_once_and_ends_early(write_config, tmp_path):
    optimizer = {"parameterId": "optimizer", "categoricalValueSpec": {"values": ["adam", "sgd"]},
                 "conditionalParameterSpecs": [{
                     "parentCategoricalValues": {"values": ["sgd"]},
                     "parameterSpec": {"parameterId": "momentum",
                                       "discreteValueSpec": {"values": [0.5, 0.9]}}}]}
    x = {"parameterId": "x", "discreteValueSpec": {"values": [0.2, 0.7]}}
    doc = config(maxTrialCount=10, study={"parameters": [x, optimizer],
                                          "algorithm": "GRID_SEARCH"})
    out = tmp_path / "study"
    result = run_tuner("run", write_config(doc), "--output-dir", out)
    assert result.returncode == 0, result.stderr
    points = sorted((r["x"], r["optimizer"], r["momentum"]) for r in read_csv(out / "trials.csv"))
    assert points == sorted([(x, "adam", "") for x in ("0.2", "0.7")]
                            + [(x, "sgd", m) for x in ("0.2", "0.7") for m in ("0.5", "0.9")])
    assert "trials: 6 SUCCEEDED" in result.stdout


def test_a_trial_command_after_double_dash_replaces_the_jobs(write_config, tmp_path):
    doc = config(maxTrialCount=2, study={"algorithm": "RANDOM_SEARCH"})
    out = tmp_path / "study"
    result = run_tuner("run", write_config(doc), "--output-dir", out, "--",
                       sys.executable, TRIAL_SCRIPT, "--steps=1", "--sleep=0", "--metric", "score")
    assert result.returncode == 0, result.stderr
    for trial_id in ("1", "2"):
        (seen,) = trial_runs(out, trial_id)
        assert seen["argv"][:4] == ["--steps=1", "--sleep=0", "--metric", "score"]
        assert seen["argv"][4].startswith("--x=")
    assert "Vertex runs the config's trialJobSpec, not the command given after --" in \
        result.stdout


def test_dry_run_prints_every_trial_and_runs_nothing(write_config, tmp_path):
    doc = config(maxTrialCount=3, study={"algorithm": "RANDOM_SEARCH"})
    out = tmp_path / "study"
    env = tuner_env(CUDA_VISIBLE_DEVICES="GPU-aaaa,GPU-bbbb,GPU-cccc")
    result = run_tuner("run", write_config(doc), "--output-dir", out, "--dry-run", "--seed", "1",
                       "--gpus", "GPU-cccc,GPU-aaaa", "--trials-per-gpu", "2",
                       "--parallel-trial-count", "3", env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "3 trials, 3 at a time on 3 GPU slot(s) on GPU GPU-aaaa, GPU-cccc" in lines[0]
    assert lines[1].startswith("trial command (containerSpec command + args): ")
    blocks = {}
    for line in lines:
        if line.startswith("trial ") and line.endswith("):"):
            blocks[line] = current = []
        elif line.startswith("  ") and blocks:
            current.append(line)
    assert list(blocks) == ["trial 1 (gpu GPU-cccc):", "trial 2 (gpu GPU-aaaa):",
                            "trial 3 (gpu GPU-cccc):"]
    trial_1, trial_2, trial_3 = blocks.values()
    assert "  CUDA_VISIBLE_DEVICES=GPU-cccc" in trial_1
    assert "  CUDA_VISIBLE_DEVICES=GPU-aaaa" in trial_2
    assert f"  AIP_MODEL_DIR={out}/1/model/" in trial_1 and "  CLOUD_ML_TRIAL_ID=1" in trial_1
    # two trials share GPU-cccc: they grow their memory; the one on GPU-aaaa need not
    assert "  TF_FORCE_GPU_ALLOW_GROWTH=true" in trial_1 and "  TF_FORCE_GPU_ALLOW_GROWTH=true" \
        in trial_3
    assert not any("TF_FORCE_GPU_ALLOW_GROWTH" in line for line in trial_2)
    commands = [line for line in lines if line.startswith("  $ ")]
    assert len(commands) == 3
    assert all(f"{TRIAL_SCRIPT} --steps=2 --sleep=0.1 --x=" in c for c in commands)
    assert not out.exists()
    refused = run_tuner("run", write_config(doc), "--dry-run", "--gpus", "0", env=env)
    assert refused.returncode == 2 and "GPU 0 is not visible" in refused.stderr


def test_bayesian_dry_run_shows_the_trials_it_can_know(write_config):
    result = run_tuner("run", write_config(config(maxTrialCount=5)), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("  $ ") == 2
    assert "trials 3-5 are suggested from the results of earlier ones" in result.stdout


def test_resume_after_the_tuner_is_killed(write_config, tmp_path):
    """kill -9 while two trials run: they die with the tuner; the same command runs them
    again under the same ids and parameters, they resume from their checkpoints, and the
    study still has exactly maxTrialCount trials."""
    doc = config(maxTrialCount=4, args=["--steps=8", "--sleep=0.25"],
                 study={"parameters": [X, OPTIMIZER], "algorithm": "RANDOM_SEARCH"})
    path = write_config(doc)
    out = tmp_path / "study"
    args = ("run", path, "--output-dir", out, "--seed", "3")
    tuner = start_tuner(*args)
    try:
        wait_for(lambda: reported_steps(out, 1) >= 2 and reported_steps(out, 2) >= 2,
                 what="two trials to report twice")
        pids = [trial_runs(out, i)[0]["pid"] for i in (1, 2)]
        assert all(alive(pid) for pid in pids)
        tuner.kill()
        tuner.wait()
    finally:
        tuner.kill()
        tuner.communicate()
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=10,
             what="the trials to die with their tuner")
    result = run_tuner(*args)
    assert result.returncode == 0, result.stderr
    assert "resuming: 0 trial(s) finished" in result.stdout
    rows = read_csv(out / "trials.csv")
    assert [r["trial_id"] for r in rows] == ["1", "2", "3", "4"]
    assert all(r["state"] == "SUCCEEDED" and r["steps"] == "8" for r in rows)
    for trial_id in ("1", "2"):
        first, second = trial_runs(out, trial_id)
        assert first["argv"] == second["argv"]
        stderr = (out / trial_id / "stderr").read_text()
        resumed_at = int(stderr.split("resumed at step ")[1].split()[0])
        assert resumed_at >= 2
    assert [len(trial_runs(out, i)) for i in ("3", "4")] == [1, 1]
    assert len({r["x"] for r in rows}) == 4  # the resumed tuner repeated no suggestion


def test_what_a_trial_reported_while_its_tuner_was_not_looking_is_kept(write_config, tmp_path):
    """The tuner frozen (SIGSTOP) while its trial reports its last steps and ends, then killed:
    the rerun finds the trial done (it resumes at its last step and reports nothing more), and
    the steps it reported unseen still count, at the time that run had reached."""
    doc = config(maxTrialCount=1, parallelTrialCount=1, args=["--steps=3", "--sleep=0.5"])
    path = write_config(doc)
    out = tmp_path / "study"
    args = ("run", path, "--output-dir", out)
    tuner = start_tuner(*args)
    progress = out / "1" / "checkpoints" / "progress.json"
    try:
        wait_for(lambda: reported_steps(out, 1) >= 1, what="trial 1 to report")
        tuner.send_signal(signal.SIGSTOP)
        wait_for(lambda: progress.exists() and json.loads(progress.read_text())["step"] == 3,
                 what="trial 1 to reach its last step")
        wait_for(lambda: not alive(trial_runs(out, 1)[0]["pid"]), what="trial 1 to end")
    finally:
        tuner.kill()
        tuner.communicate()
    result = run_tuner(*args)
    assert result.returncode == 0, result.stderr
    (row,) = read_csv(out / "trials.csv")
    assert (row["state"], row["steps"]) == ("SUCCEEDED", "3")
    assert float(row["value"]) == pytest.approx(1 - (float(row["x"]) - 0.7) ** 2)
    (trial,) = optuna.load_study(storage=study_mod.existing_storage(str(out / "study.journal")),
                                 study_name="tuner-test").trials
    elapsed = [m[1] for m in trial.user_attrs["measurements"]]
    assert elapsed == sorted(elapsed) and elapsed[-1] <= trial.user_attrs["elapsed_s"]


def test_an_interrupted_study_leaves_its_trials_to_the_next_run(write_config, tmp_path):
    doc = config(maxTrialCount=2, parallelTrialCount=1, args=["--steps=20", "--sleep=0.2"],
                 study={"algorithm": "RANDOM_SEARCH"})
    path = write_config(doc)
    out = tmp_path / "study"
    tuner = start_tuner("run", path, "--output-dir", out)
    try:
        wait_for(lambda: reported_steps(out, 1) >= 1, what="trial 1 to report")
        pid = trial_runs(out, 1)[0]["pid"]
        tuner.send_signal(signal.SIGINT)
        _, stderr = tuner.communicate(timeout=30)
    finally:
        tuner.kill()
    assert tuner.returncode == 128 + signal.SIGINT
    assert "interrupted (SIGINT: 1 running trial(s) left ACTIVE" in stderr
    assert not alive(pid)
    assert [r["state"] for r in read_csv(out / "trials.csv")] == ["ACTIVE"]
    result = run_tuner("run", path, "--output-dir", out, "--parallel-trial-count", "2")
    assert result.returncode == 0, result.stderr
    assert "trial 1 restarted (run 2)" in result.stdout
    assert [r["state"] for r in read_csv(out / "trials.csv")] == ["SUCCEEDED"] * 2


def test_two_tuners_share_one_study(write_config, tmp_path):
    doc = config(maxTrialCount=6, parallelTrialCount=1, args=["--steps=2", "--sleep=0.3"])
    path = write_config(doc)
    storage = tmp_path / "shared" / "study.journal"
    outs = [tmp_path / "machine-a", tmp_path / "machine-b"]
    tuners = [start_tuner("run", path, "--output-dir", out, "--storage", storage)
              for out in outs]
    results = [t.communicate(timeout=120) for t in tuners]
    for tuner, (stdout, stderr) in zip(tuners, results):
        assert tuner.returncode == 0, stdout[-2000:] + stderr[-2000:]
    ran = [sorted(p.name for p in out.iterdir() if p.name.isdigit()) for out in outs]
    assert all(ran), ran  # both did some of the work
    assert sorted(ran[0] + ran[1], key=int) == ["1", "2", "3", "4", "5", "6"]
    for out in outs:  # either output dir shows the whole study
        assert run_tuner("results", out).returncode == 0
        assert [r["state"] for r in read_csv(out / "trials.csv")] == ["SUCCEEDED"] * 6


def test_an_output_dir_keeps_its_own_study(write_config, tmp_path):
    out = tmp_path / "study"
    first = run_tuner("run", write_config(config(maxTrialCount=1)), "--output-dir", out)
    assert first.returncode == 0, first.stderr
    other = config(maxTrialCount=1, study={"parameters": [
        {"parameterId": "x", "doubleValueSpec": {"minValue": 0.0, "maxValue": 2.0}}]})
    second = run_tuner("run", write_config(other, "other.yaml"), "--output-dir", out)
    assert second.returncode == 2
    assert "already holds study 'tuner-test' with another search space (parameter 'x' " \
           "differs)" in last_line(second.stderr)
    assert len(read_csv(out / "trials.csv")) == 1


def test_a_legacy_config_runs_as_is(tmp_path):
    legacy = tmp_path / "legacy.yaml"
    legacy.write_text(
        "trainingInput:\n"
        "  scaleTier: BASIC\n"
        "  hyperparameters:\n"
        "    goal: maximize\n"
        "    hyperparameterMetricTag: score\n"
        "    maxTrials: 3\n"
        "    maxParallelTrials: 2\n"
        "    params:\n"
        "    - {parameterName: x, type: double, minValue: 0.0, maxValue: 1.0}\n"
        "    - {parameterName: optimizer, type: categorical, categoricalValues: [adam, sgd]}\n")
    out = tmp_path / "study"
    result = run_tuner("run", legacy, "--output-dir", out, "--seed", "0", "--",
                       sys.executable, TRIAL_SCRIPT, "--steps=1", "--sleep=0")
    assert result.returncode == 0, result.stderr
    rows = read_csv(out / "trials.csv")
    assert len(rows) == 3 and all(r["state"] == "SUCCEEDED" for r in rows)
    assert all(float(r["value"]) == pytest.approx(1 - (float(r["x"]) - 0.7) ** 2) for r in rows)
    # Vertex takes only the converted form: the printed commands say how to get it
    assert f"python -m tuner convert {legacy} -o {tmp_path / 'legacy.vertex.yaml'}" in \
        result.stdout
    assert f"--config={tmp_path / 'legacy.vertex.yaml'}" in result.stdout


def test_nothing_heavy_is_imported_before_the_first_trial_starts(write_config, tmp_path):
    """The default search's model needs scipy, the plots matplotlib: neither may delay the
    first trial (Python's own import log, in order with the tuner's lines on one pipe)."""
    path = write_config(config(maxTrialCount=1, parallelTrialCount=1))
    result = subprocess.run([sys.executable, "-X", "importtime", "-m", "tuner", "run", path,
                             "--output-dir", tmp_path / "study"], env=tuner_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]
    before = result.stdout.split("trial 1 started")[0]
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0]
                for line in before.splitlines() if line.startswith("import time:")}
    assert "optuna" in imported  # the log is there
    assert not imported & {"scipy", "sklearn", "matplotlib"}


def test_a_study_resumed_with_another_trial_command_says_so(write_config, tmp_path):
    path = write_config(config(maxTrialCount=2, parallelTrialCount=1))
    out = tmp_path / "study"
    first = run_tuner("run", path, "--output-dir", out, "--max-trial-count", "1")
    assert first.returncode == 0, first.stderr
    assert "note: this study's trials ran" not in first.stderr
    other = run_tuner("run", path, "--output-dir", out, "--", sys.executable, TRIAL_SCRIPT,
                      "--steps=3", "--sleep=0")
    assert other.returncode == 0, other.stderr
    assert "note: this study's trials ran `" in other.stderr
    assert f"the trials run from now on run `{shlex.join([sys.executable, str(TRIAL_SCRIPT)])} " \
           "--steps=3 --sleep=0`" in other.stderr
    rows = read_csv(out / "trials.csv")
    assert [r["steps"] for r in rows] == ["2", "3"]  # each ran its own command


def test_a_study_that_failed_on_its_budget_continues_with_retry_failed(write_config, tmp_path):
    doc = config(maxTrialCount=4, parallelTrialCount=1, maxFailedTrialCount=2,
                 args=["--mode=fail", "--sleep=0"], study={"algorithm": "RANDOM_SEARCH"})
    path, out = write_config(doc), tmp_path / "study"
    assert run_tuner("run", path, "--output-dir", out).returncode == 1
    failed = read_csv(out / "trials.csv")
    again = run_tuner("run", path, "--output-dir", out)
    assert again.returncode == 1 and "--retry-failed" in last_line(again.stderr)

    fixed = ["--", sys.executable, str(TRIAL_SCRIPT), "--sleep=0"]
    result = run_tuner("run", path, "--output-dir", out, "--retry-failed", *fixed)
    assert result.returncode == 0, result.stderr
    reruns = re.search(r"retrying 2 failed trial\(s\) with the same parameters: trial 1 as trial "
                       r"(\d+), trial 2 as trial (\d+)", result.stdout)
    assert reruns, result.stdout
    rows = read_csv(out / "trials.csv")
    assert [r["state"] for r in rows] == ["SUCCEEDED"] * 4  # the budget: 4 trials, as asked
    assert [r["trial_id"] for r in rows[:2]] == list(reruns.groups())
    assert [r["x"] for r in rows[:2]] == [r["x"] for r in failed]
    kept = optuna.load_study(storage=study_mod.existing_storage(str(out / "study.journal")),
                             study_name="tuner-test").trials
    assert [t.state.name for t in kept[:2]] == ["FAIL", "FAIL"]
    retry_of = {t.number + 1: t.user_attrs["retry_of"] + 1 for t in kept
                if "retry_of" in t.user_attrs}
    assert retry_of == {int(reruns[1]): 1, int(reruns[2]): 2}
