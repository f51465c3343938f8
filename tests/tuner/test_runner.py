"""Device slots, the trial environment, reading hypertune files, and stopping a process."""
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from tuner import runner
from tuner.runner import Slot, SlotError, make_slots

# -- slots ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,expected", [
    ("0,1", ["0", "1"]),
    ("2, 3", ["2", "3"]),
    ("GPU-8d6e2f1a-aaaa,GPU-19c4b0de-bbbb", ["GPU-8d6e2f1a-aaaa", "GPU-19c4b0de-bbbb"]),
    ("", []),
    ("-1", []),
    ("1,-1,0", ["1"]),  # CUDA stops at the first invalid entry
])
def test_visible_gpus_follow_the_parents_cuda_visible_devices(value, expected):
    assert runner.visible_gpus({"CUDA_VISIBLE_DEVICES": value}) == expected


def test_cpu_slots_split_the_cores():
    slots = make_slots(4, "auto", 1, visible=[], cpu_count=16)
    assert [s.gpus for s in slots] == [(), (), (), ()]
    assert {s.threads for s in slots} == {4}
    assert make_slots(1, "auto", 1, visible=[], cpu_count=16) == [Slot(0, (), None)]
    assert {s.threads for s in make_slots(8, "none", 1, visible=["0"], cpu_count=2)} == {1}


def test_gpu_slots_go_round_the_gpus_first():
    slots = make_slots(4, "auto", 2, visible=["0", "1"], cpu_count=8)
    assert [s.gpus for s in slots] == [("0",), ("1",), ("0",), ("1",)]
    assert all(s.shares_gpu for s in slots)
    assert {s.threads for s in slots} == {2}


def test_only_trials_on_a_shared_gpu_get_memory_growth():
    slots = make_slots(3, "all", 2, visible=["0", "1"], cpu_count=8)
    assert [(s.gpus, s.shares_gpu) for s in slots] == [(("0",), True), (("1",), False),
                                                        (("0",), True)]


def test_one_trial_per_gpu_does_not_share():
    slots = make_slots(2, "all", 2, visible=["0", "1"], cpu_count=8)
    assert [s.gpus for s in slots] == [("0",), ("1",)]
    assert not any(s.shares_gpu for s in slots)


def test_fewer_slots_than_parallel_trials_when_gpus_run_out():
    slots = make_slots(5, "all", 1, visible=["0", "1"], cpu_count=8)
    assert [s.gpus for s in slots] == [("0",), ("1",)]


def test_chosen_gpus_must_be_visible_and_are_handed_out_by_their_ids():
    visible = ["GPU-aaaa", "GPU-bbbb", "GPU-cccc"]  # e.g. the parent's CUDA_VISIBLE_DEVICES
    slots = make_slots(2, "GPU-cccc,GPU-aaaa", 1, visible=visible, cpu_count=4)
    assert [s.gpus for s in slots] == [("GPU-cccc",), ("GPU-aaaa",)]
    with pytest.raises(SlotError, match=r"GPU 0 is not visible to this process \(visible: 2, 3\)"):
        make_slots(2, "0,2", 1, visible=["2", "3"], cpu_count=4)
    with pytest.raises(SlotError, match="no GPU is visible"):
        make_slots(2, "all", 1, visible=[], cpu_count=4)
    with pytest.raises(SlotError, match="listed twice"):
        make_slots(2, "1,1", 1, visible=["1"], cpu_count=4)


# -- the environment --------------------------------------------------------------------------

def test_contract_environment(tmp_path):
    env = runner.contract_env("7", str(tmp_path / "7"), Slot(1, ("3",), 2, shares_gpu=True),
                              job_env=(("DATA", "gs://b"),))
    base = str(tmp_path / "7")
    assert env["CLOUD_ML_TRIAL_ID"] == "7"
    assert env["CLOUD_ML_HP_METRIC_FILE"] == f"{base}/hypertune/output.metrics"
    assert env["AIP_MODEL_DIR"] == f"{base}/model/"
    assert env["AIP_CHECKPOINT_DIR"] == f"{base}/checkpoints/"
    assert env["AIP_TENSORBOARD_LOG_DIR"] == f"{base}/logs/"
    assert env["CUDA_VISIBLE_DEVICES"] == "3"
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert env["DATA"] == "gs://b"
    spec = json.loads(env["CLUSTER_SPEC"])
    assert spec["cluster"] == {"workerpool0": ["localhost:2222"]}
    assert spec["task"] == {"type": "workerpool0", "index": 0, "trial": "7"}
    assert "TF_CONFIG" not in env


def test_full_environment_drops_the_parents_vertex_variables():
    parent = {"PATH": "/bin", "TF_CONFIG": "{}", "AIP_MODEL_DIR": "gs://x/", "CLOUD_ML_JOB_ID": "j",
              "CUDA_VISIBLE_DEVICES": "0,1", "OMP_NUM_THREADS": "8"}
    contract = runner.contract_env("1", "/s/1", Slot(0, (), 3))
    env = runner.full_env(contract, Slot(0, (), 3), base=parent)
    assert "TF_CONFIG" not in env and "CLOUD_ML_JOB_ID" not in env
    assert env["AIP_MODEL_DIR"] == "/s/1/model/"
    assert env["CUDA_VISIBLE_DEVICES"] == ""  # a CPU slot sees no GPU
    assert env["OMP_NUM_THREADS"] == "8"  # the user's own setting wins
    assert env["TF_NUM_INTRAOP_THREADS"] == env["TF_NUM_INTEROP_THREADS"] == "3"
    assert env["PATH"] == "/bin"


def test_argv_has_one_flag_per_active_parameter():
    from tests.tuner.support import config
    from tuner import spec as S

    job = S.parse(config(study={"parameters": [
        {"parameterId": "lr", "doubleValueSpec": {"minValue": 0.001, "maxValue": 0.1}},
        {"parameterId": "batch", "discreteValueSpec": {"values": [32, 64]}},
        {"parameterId": "layers", "integerValueSpec": {"minValue": 1, "maxValue": 4}},
        {"parameterId": "act", "categoricalValueSpec": {"values": ["relu", "gelu tanh"]}}]}))
    argv = runner.trial_argv(["python", "-m", "t"], {"lr": 0.01, "batch": 64.0, "layers": 3,
                                                     "act": "gelu tanh"}, job.parameters)
    assert argv == ["python", "-m", "t", "--lr=0.01", "--batch=64.0", "--layers=3",
                    "--act=gelu tanh"]


# -- hypertune files --------------------------------------------------------------------------

def test_read_hypertune_tolerates_a_file_caught_mid_write(tmp_path):
    path = tmp_path / "output.metrics"
    whole = ('{"checkpoint_path": "", "global_step": "1", "score": "0.5", "timestamp": 10.5, '
             '"trial": "1"}\n{"global_step": "2", "score": "nan", "timestamp": 11.0}\n')
    path.write_text(whole + '{"global_step": "3", "score": "0.9", "timest')
    records, tags = runner.read_hypertune(str(path), "score")
    assert records[0] == (1, 0.5, 10.5)
    assert records[1][0] == 2 and math.isnan(records[1][1])
    assert len(records) == 2 and tags == {"score"}
    assert runner.read_hypertune(str(tmp_path / "missing"), "score") == ([], set())


def test_read_hypertune_reports_other_tags(tmp_path):
    path = tmp_path / "output.metrics"
    path.write_text('{"global_step": "0", "accuracy": "0.5", "timestamp": 1.0}\n')
    assert runner.read_hypertune(str(path), "score") == ([], {"accuracy"})


# -- processes --------------------------------------------------------------------------------

def test_stop_sends_sigterm_then_sigkill_to_the_whole_group(tmp_path):
    """The trial ignores SIGTERM and has a child: both are gone after the grace period."""
    code = ("import os, signal, subprocess, sys, time;"
            "signal.signal(signal.SIGTERM, lambda *a: print('TERM', flush=True));"
            "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
            "print(child.pid, flush=True); time.sleep(60)")
    env = runner.full_env(runner.contract_env("1", str(tmp_path / "1"), Slot(0)), Slot(0))
    process = runner.TrialProcess("1", [sys.executable, "-c", code], env, str(tmp_path / "1"),
                                  "score", grace_s=0.5)
    process.start(1)
    process.release()
    stdout = tmp_path / "1" / "stdout"
    deadline = time.monotonic() + 20
    while len(stdout.read_text().splitlines()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(stdout.read_text().splitlines()[1])
    process.stop("test")
    started = time.monotonic()
    while process.poll() is None and time.monotonic() - started < 10:
        time.sleep(0.05)
    assert process.poll() == -signal.SIGKILL
    assert time.monotonic() - started >= 0.5
    assert "TERM" in stdout.read_text()
    time.sleep(0.2)
    assert _gone(child)


def _gone(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux's")
def test_a_trial_dies_with_its_tuner(tmp_path):
    """A stand-in tuner starts a trial the tuner's way, then is killed with SIGKILL."""
    code = (
        "import sys, time; sys.path.insert(0, %r)\n"
        "from tuner import runner\n"
        "env = runner.full_env(runner.contract_env('1', %r, runner.Slot(0)), runner.Slot(0))\n"
        "p = runner.TrialProcess('1', [sys.executable, '-c', 'import time; time.sleep(60)'],"
        " env, %r, 'score')\n"
        "p.start(1); p.release(); print(p.pid, flush=True); time.sleep(60)\n"
    ) % (os.getcwd(), str(tmp_path / "1"), str(tmp_path / "1"))
    tuner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    trial = int(tuner.stdout.readline())
    assert not _gone(trial)
    tuner.kill()
    tuner.wait()
    deadline = time.monotonic() + 10
    while not _gone(trial) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(trial)
