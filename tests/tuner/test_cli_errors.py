"""Bad input and unclear ends of `python -m tuner`: one line on stderr, exit 2 before anything
is written (or a trial that ends with its reason), never a traceback.

Each case is the real thing: a missing or non-executable command, a file or a read-only mount
(a real tmpfs, remounted read-only) as the output dir, a FIFO as the config, two real SIGINTs,
a trial that really reports inf.
"""
import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.tuner.support import (
    TRIAL_SCRIPT,
    alive,
    config,
    last_line,
    mounted_tmpfs,
    read_csv,
    reported_steps,
    run_tuner,
    start_tuner,
    trial_runs,
    tuner_env,
    wait_for,
    write_yaml,
)

QUICK = config(maxTrialCount=1, parallelTrialCount=1, args=["--steps=1", "--sleep=0"])


def refused(result, message):
    """Exit 2 with exactly one line on stderr: `error: <message>`."""
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [f"error: {message}"]


def _script(path, text, mode):
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.mark.parametrize("case", ["on PATH", "missing", "not executable", "interpreter",
                                  "folder", "the config's"])
def test_a_trial_command_that_cannot_run_is_refused_before_the_study(tmp_path, case):
    out = tmp_path / "study"
    doc, command = QUICK, None
    if case == "on PATH":
        command, why = ["no-such-trainer-15"], "'no-such-trainer-15' is not found on PATH"
    elif case == "missing":
        program = tmp_path / "train.sh"
        command, why = [str(program)], f"{program} does not exist"
    elif case == "not executable":
        program = _script(tmp_path / "train.sh", "#!/bin/sh\n", 0o644)
        command = [str(program)]
        why = f"{program} is not executable (chmod +x it, or put its interpreter first)"
    elif case == "interpreter":
        program = _script(tmp_path / "train.py", "#!/no/such/python3 -u\n", 0o755)
        command = [str(program)]
        why = (f"{program} starts with #!/no/such/python3, which does not exist or is not "
               "executable")
    elif case == "folder":
        command, why = [str(tmp_path)], f"{tmp_path} is a folder"
    else:
        doc = config(maxTrialCount=1)
        doc["trialJobSpec"]["workerPoolSpecs"][0]["containerSpec"]["command"] = ["no-such-15"]
        why = "'no-such-15' is not found on PATH"
    path = write_yaml(tmp_path / "study.yaml", doc)
    result = run_tuner("run", path, "--output-dir", out, *(["--", *command] if command else []))
    refused(result, f"the trial command cannot run: {why}")
    assert not out.exists()


def test_an_output_dir_that_is_a_file_is_refused(tmp_path):
    path = write_yaml(tmp_path / "study.yaml", QUICK)
    taken = tmp_path / "taken"
    taken.write_text("keep me\n")
    refused(run_tuner("run", path, "--output-dir", taken),
            f"{taken}: {taken} is a file, not a folder; give --output-dir a folder that can be "
            "written")
    refused(run_tuner("run", path, "--output-dir", taken / "study"),
            f"{taken / 'study'}: {taken} is a file, not a folder; give --output-dir a folder "
            "that can be written")
    refused(run_tuner("run", path, "--output-dir", tmp_path / "ok", "--storage",
                      taken / "study.journal"),
            f"{taken}: {taken} is a file, not a folder; give --storage a folder that can be "
            "written")
    assert taken.read_text() == "keep me\n"
    assert not (tmp_path / "ok").exists()


def test_a_read_only_output_dir_is_refused_and_results_can_write_elsewhere(tmp_path):
    path = write_yaml(tmp_path / "study.yaml", QUICK)
    study = tmp_path / "study"
    assert run_tuner("run", path, "--output-dir", study).returncode == 0
    with mounted_tmpfs(tmp_path / "share", "8m") as share:
        shutil.copytree(study, share / "study")
        subprocess.run(["mount", "-o", "remount,ro", str(share)], check=True)
        copy = share / "study"
        before = {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()}
        refused(run_tuner("run", path, "--output-dir", copy),
                f"{copy}: {copy} is read-only; give --output-dir a folder that can be written")
        refused(run_tuner("results", copy),
                f"{copy}: {copy} is read-only (`results` writes trials.csv and the plots "
                "there); give --output-dir a folder that can be written")
        elsewhere = tmp_path / "tables"
        shown = run_tuner("results", copy, "--output-dir", elsewhere)
        assert shown.returncode == 0, shown.stderr
        assert "trials: 1 SUCCEEDED" in shown.stdout
        assert read_csv(elsewhere / "trials.csv") == read_csv(study / "trials.csv")
        assert {p.name: p.read_bytes() for p in copy.iterdir() if p.is_file()} == before


@pytest.mark.parametrize("kind", ["a FIFO", "a directory", "a device"])
def test_a_config_that_is_not_a_regular_file_is_refused(tmp_path, kind):
    if kind == "a FIFO":
        config_path = tmp_path / "study.yaml"
        os.mkfifo(config_path)  # reading it would wait for a writer forever
    elif kind == "a directory":
        config_path = tmp_path
    else:
        config_path = "/dev/null"
    out = tmp_path / "study"
    for command in (["run", config_path, "--output-dir", out], ["validate", config_path]):
        refused(run_tuner(*command),
                f"{config_path}: is {kind}, not a regular file: give the path of a YAML config")
    assert not out.exists()


SIGTERM_NOTED = """\
import runpy, signal, sys
def noted(signum, frame):  # a trial slow to stop: it goes on after SIGTERM
    with open({mark!r}, "a") as f:
        f.write("SIGTERM\\n")
signal.signal(signal.SIGTERM, noted)
sys.argv = [{script!r}] + sys.argv[1:]
runpy.run_path({script!r}, run_name="__main__")
"""


def test_ctrl_c_twice_kills_the_trials_and_ends_with_one_line(tmp_path):
    mark = tmp_path / "sigterm"
    trial = tmp_path / "slow_to_stop.py"
    trial.write_text(SIGTERM_NOTED.format(mark=str(mark), script=str(TRIAL_SCRIPT)))
    path = write_yaml(tmp_path / "study.yaml", config(
        maxTrialCount=1, parallelTrialCount=1, study={"algorithm": "RANDOM_SEARCH"}))
    out = tmp_path / "study"
    args = ("run", path, "--output-dir", out, "--", sys.executable, trial, "--steps=40",
            "--sleep=0.2")
    tuner = start_tuner(*args)
    try:
        wait_for(lambda: reported_steps(out, 1) >= 1, timeout=120, what="trial 1 to report")
        pid = trial_runs(out, 1)[0]["pid"]
        tuner.send_signal(signal.SIGINT)
        wait_for(mark.exists, timeout=60, what="the trial to be asked to stop")
        tuner.send_signal(signal.SIGINT)
        _, stderr = tuner.communicate(timeout=120)
    finally:
        tuner.kill()
        tuner.communicate()
    assert tuner.returncode == 128 + signal.SIGINT, stderr
    assert "Traceback" not in stderr
    assert last_line(stderr) == ("interrupted (SIGINT twice: running trials killed and left "
                                 "ACTIVE; run the same command again to resume)")
    wait_for(lambda: not alive(pid), timeout=30, what="the trial to be killed")
    assert [r["state"] for r in read_csv(out / "trials.csv")] == ["ACTIVE"]
    mark.unlink()
    result = run_tuner(*args)
    assert result.returncode == 0, result.stderr
    assert [r["state"] for r in read_csv(out / "trials.csv")] == ["SUCCEEDED"]


REPORT_VALUE = ("import sys, hypertune; hypertune.HyperTune().report_hyperparameter_tuning_metric("
                "hyperparameter_metric_tag='score', metric_value=float(sys.argv[1].split('=')[1]),"
                " global_step=1)")


def test_a_trial_that_reports_inf_is_infeasible(tmp_path):
    reported = {"parameterId": "reported",
                "categoricalValueSpec": {"values": ["0.5", "inf", "-inf"]}}
    path = write_yaml(tmp_path / "study.yaml", config(
        maxTrialCount=3, parallelTrialCount=1, maxFailedTrialCount=3,
        study={"parameters": [reported], "algorithm": "GRID_SEARCH"}))
    out = tmp_path / "study"
    result = run_tuner("run", path, "--output-dir", out, "--", sys.executable, "-c",
                       REPORT_VALUE)
    assert result.returncode == 0, result.stderr
    rows = {r["reported"]: (r["state"], r["value"], r["reason"])
            for r in read_csv(out / "trials.csv")}
    assert rows == {"0.5": ("SUCCEEDED", "0.5", ""),
                    "inf": ("INFEASIBLE", "", "final score is inf"),
                    "-inf": ("INFEASIBLE", "", "final score is -inf")}
    assert "trials: 2 INFEASIBLE, 1 SUCCEEDED" in result.stdout
    assert "best trial " in result.stdout and "no trial succeeded" not in result.stdout


def test_output_to_a_reader_that_has_gone_ends_as_sigpipe_without_a_traceback(tmp_path):
    """`tuner validate X | head -0`: the pipe's reader is gone before the first line is written."""
    path = write_yaml(tmp_path / "config.yaml", QUICK)
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run([sys.executable, "-m", "tuner", "validate", str(path)], cwd=tmp_path,
                                stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, env=tuner_env())
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (128 + signal.SIGPIPE, "")
