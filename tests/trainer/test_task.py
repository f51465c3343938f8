"""End to end: `python -m trainer.task` as a subprocess, checked through what it leaves on disk."""
import glob
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.support.trainer_runs import hypertune_records, last_line, read_json, run_trainer, trainer_env
from trainer import config as config_lib

HYPERPARAMETER_FLAGS = config_lib.HYPERPARAMETERS


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    """The quick-start command with no flags at all, run once for the tests below."""
    tmp_path = tmp_path_factory.mktemp("default")
    result = run_trainer(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (job_dir,) = glob.glob(str(tmp_path / "runs" / "*"))
    return tmp_path, job_dir, result


def test_default_run_reaches_the_accuracy_bar(default_run):
    _, job_dir, result = default_run
    metrics = read_json(os.path.join(job_dir, "model", "metrics.json"))
    assert metrics["metric"] == "val_accuracy"
    assert metrics["final"] >= 0.95, metrics
    assert metrics["best"] >= metrics["final"]
    assert 1 <= metrics["best_epoch"] <= metrics["epochs_run"]
    assert metrics["num_replicas"] == 1
    assert metrics["hyperparameters"]["learning_rate"] == 3e-3
    assert set(metrics["versions"]) >= {"tensorflow", "tf-keras", "vertex-tf-trainer"}
    assert "Training done" in result.stdout and job_dir in result.stdout
    assert f"final {metrics['final']:.4f}" in result.stdout


def test_default_run_writes_every_artefact(default_run):
    _, job_dir, _ = default_run
    checkpoints = os.path.join(job_dir, "checkpoints")
    assert os.path.exists(os.path.join(job_dir, "model", "saved_model.pb"))
    config = read_json(os.path.join(checkpoints, "config.json"))
    assert config["model_dir"] == os.path.join(job_dir, "model") and config["versions"]["tensorflow"]
    for kind in ("last", "best"):
        assert glob.glob(os.path.join(checkpoints, kind, "ckpt.index")), kind
    # BackupAndRestore removes its own state after a successful run.
    assert not glob.glob(os.path.join(checkpoints, "backup", "**", "*.index"), recursive=True)
    history = read_json(os.path.join(checkpoints, "history.json"))
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))


def test_default_run_reports_every_epoch_to_hypertune(default_run):
    tmp_path, job_dir, _ = default_run
    metrics = read_json(os.path.join(job_dir, "model", "metrics.json"))
    records = hypertune_records(tmp_path)
    assert [int(r["global_step"]) for r in records] == list(range(1, metrics["epochs_run"] + 1))
    assert float(records[-1]["val_accuracy"]) == pytest.approx(metrics["final"])


def test_default_run_logs_scalars_and_hparams_for_tensorboard(default_run):
    _, job_dir, _ = default_run
    from tensorboard.backend.event_processing import event_accumulator

    validation = event_accumulator.EventAccumulator(os.path.join(job_dir, "logs", "validation"))
    validation.Reload()
    assert "epoch_accuracy" in validation.Tags()["tensors"] + validation.Tags()["scalars"]
    root = event_accumulator.EventAccumulator(os.path.join(job_dir, "logs"))
    root.Reload()
    assert "hparams" in root.PluginTagToContent("hparams") or root.PluginTagToContent("hparams")


def test_saved_model_predicts_in_a_fresh_process(default_run, tmp_path):
    _, job_dir, _ = default_run
    script = """
import sys, json
from importlib import resources
import numpy as np, tensorflow as tf
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
with resources.files("trainer.datasets").joinpath("uci_digits.npz").open("rb") as f:
    data = np.load(f)
    images, labels = data["images"][:200, :, :, None], data["labels"][:200]
probs = serve(image=tf.constant(images))["probabilities"].numpy()
print(json.dumps({"shape": probs.shape, "sum": float(probs.sum(axis=1).mean()),
                  "accuracy": float((probs.argmax(axis=1) == labels).mean())}))
"""
    result = subprocess.run([sys.executable, "-c", script, os.path.join(job_dir, "model")], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path, env=trainer_env(tmp_path))
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["shape"] == [200, 10]
    assert out["sum"] == pytest.approx(1.0, abs=1e-4)
    assert out["accuracy"] >= 0.9


def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    result = run_trainer(tmp_path, "--cpu_replicas=2", "--epochs=2", "--batch_size=32", f"--job_dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_json(tmp_path / "run" / "model" / "metrics.json")
    assert (metrics["strategy"], metrics["num_replicas"]) == ("MirroredStrategy", 2)
    assert "Strategy: MirroredStrategy with 2 replica(s)" in result.stderr
    assert "global batch 64" in result.stderr


@pytest.mark.parametrize("model, extra", [
    ("cnn", ["--mixed_precision", "--optimizer=rmsprop", "--lr_schedule=exponential", "--warmup_epochs=1"]),
    ("resnet", ["--jit_compile", "--steps_per_execution=4", "--optimizer=adamw", "--weight_decay=0.01",
                "--lr_schedule=cosine", "--label_smoothing=0.1"]),
])
def test_each_architecture_and_option_trains(tmp_path, model, extra):
    result = run_trainer(tmp_path, f"--model={model}", "--epochs=2", "--num_layers=1", "--filters=8", *extra,
                         f"--job_dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_json(tmp_path / "run" / "model" / "metrics.json")
    assert metrics["epochs_run"] == 2 and metrics["hyperparameters"]["model"] == model
    history = read_json(tmp_path / "run" / "checkpoints" / "history.json")
    assert history[-1]["loss"] < history[0]["loss"]  # it learns


def _wait_for_epochs(path, count, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert process.poll() is None, "the trainer ended before it could be killed"
        try:
            if len(read_json(path)) >= count:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no {count} epochs in {path} within {timeout} s")


def test_kill_9_then_rerun_resumes_from_the_last_completed_epoch(tmp_path):
    args = [sys.executable, "-m", "trainer.task", f"--job_dir={tmp_path}/run", "--epochs=8", "--batch_size=4",
            "--patience=0"]
    env = trainer_env(tmp_path)
    history_path = tmp_path / "run" / "checkpoints" / "history.json"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_epochs(history_path, 3, first)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=30)
    done_before = [h["epoch"] for h in read_json(history_path)]
    reports_before = hypertune_records(tmp_path)
    assert len(done_before) >= 3 and not (tmp_path / "run" / "model" / "metrics.json").exists()

    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    epochs_rerun = [line for line in second.stdout.splitlines() if line.startswith("Epoch ")]
    # BackupAndRestore saved after the last epoch in history.json or the one before it (a kill can
    # land between the two writes); either way, the rerun does not start over.
    assert 8 - len(done_before) <= len(epochs_rerun) <= 8 - len(done_before) + 1
    assert epochs_rerun[0].startswith(f"Epoch {8 - len(epochs_rerun) + 1}/8")
    metrics = read_json(tmp_path / "run" / "model" / "metrics.json")
    assert metrics["epochs_run"] == 8
    history = read_json(history_path)
    assert [h["epoch"] for h in history] == list(range(1, 9))
    # Earlier epochs' reports survive the restart, with their original timestamps.
    records = hypertune_records(tmp_path)
    assert [int(r["global_step"]) for r in records] == list(range(1, 9))
    first_epochs = {r["global_step"]: r["timestamp"] for r in reports_before}
    resumed_from = 8 - len(epochs_rerun)
    for record in records[:resumed_from]:
        assert record["timestamp"] == first_epochs[record["global_step"]]
    assert f"resumed after epoch {resumed_from}" in second.stdout


@pytest.mark.parametrize("args, flag", [
    (["--learning_rat=0.1"], "learning_rat"),
    (["--batch_size=abc"], "--batch_size"),
    (["--learning_rate=-1"], "--learning_rate"),
    (["--optimizer=adagrad"], "--optimizer"),
    (["--batch_size=0"], "--batch_size"),
    (["--validation_split=1.5"], "--validation_split"),
    (["--dropout=1.0"], "--dropout"),
    (["--model=transformer"], "--model"),
    (["--dataset=no_such_dataset"], "--dataset"),
])
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, args, flag):
    result = run_trainer(tmp_path, *args, f"--job_dir={tmp_path}/run", timeout=60)
    assert result.returncode == 2
    line = last_line(result.stderr)
    assert line.startswith("error: ") and flag in line, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
    assert not (tmp_path / "hypertune").exists()


def test_unwritable_output_dir_exits_2(tmp_path):
    (tmp_path / "file").write_text("x")
    result = run_trainer(tmp_path, f"--job_dir={tmp_path}/file/run", timeout=60)
    assert result.returncode == 2
    assert last_line(result.stderr).startswith("error: --model_dir: cannot write to")


def test_bad_tf_config_exits_2(tmp_path):
    result = run_trainer(tmp_path, f"--job_dir={tmp_path}/run", timeout=60,
                         env=trainer_env(tmp_path, TF_CONFIG="{broken"))
    assert result.returncode == 2
    assert last_line(result.stderr).startswith("error: TF_CONFIG is not valid JSON")


@pytest.mark.parametrize("help_flag", ["--help", "--helpfull"])
def test_help_documents_every_flag(tmp_path, help_flag):
    result = run_trainer(tmp_path, help_flag, timeout=60)
    assert result.returncode == 0
    for name in (*HYPERPARAMETER_FLAGS, "job_dir", "model_dir", "checkpoint_dir", "tensorboard_dir", "dataset",
                 "data_dir", "validation_split", "hypertune_metric", "mixed_precision", "jit_compile",
                 "steps_per_execution", "cpu_replicas"):
        assert f"--{name}" in result.stdout or f"--[no]{name}" in result.stdout, name


def test_vertex_job_without_output_dirs_is_warned_about_local_outputs(tmp_path):
    spec = ('{"cluster": {"workerpool0": ["h:2222"]}, "environment": "cloud", '
            '"task": {"type": "workerpool0", "index": 0}}')
    warned = run_trainer(tmp_path, "--epochs=1", f"--job_dir={tmp_path}/a",
                         env=trainer_env(tmp_path, CLUSTER_SPEC=spec))
    assert warned.returncode == 0 and "they are lost when the job ends" in warned.stderr
    quiet = run_trainer(tmp_path, "--epochs=1", env=trainer_env(tmp_path, CLUSTER_SPEC=spec,
                                                                AIP_MODEL_DIR=str(tmp_path / "b" / "model")))
    assert quiet.returncode == 0 and "they are lost" not in quiet.stderr


def test_a_local_multi_worker_launch_is_not_warned_about_lost_outputs(tmp_path):
    """trainer.launch sets CLUSTER_SPEC as Vertex does, with this machine's addresses."""
    spec = ('{"cluster": {"workerpool0": ["127.0.0.1:2222"], "workerpool1": ["localhost:2223"]}, '
            '"environment": "cloud", "task": {"type": "workerpool0", "index": 0}}')
    result = run_trainer(tmp_path, "--epochs=1", f"--job_dir={tmp_path}/a",
                         env=trainer_env(tmp_path, CLUSTER_SPEC=spec))
    assert result.returncode == 0 and "they are lost" not in result.stderr


def test_overwrite_keeps_the_old_tensorboard_logs_apart_from_the_new_ones(tmp_path):
    """Each run's curves once: the new run's events in a folder of their own, the old ones untouched."""
    job = tmp_path / "job"
    assert run_trainer(tmp_path, "--epochs=1", f"--job_dir={job}").returncode == 0
    logs = job / "logs"
    before = {p: p.stat().st_mtime_ns for p in logs.rglob("*") if p.is_file()}
    assert any("tfevents" in p.name for p in before)
    again = run_trainer(tmp_path, "--epochs=1", f"--job_dir={job}", "--overwrite")
    assert again.returncode == 0, again.stderr
    (new_run,) = [p for p in logs.iterdir() if p.name.startswith("overwrite-")]
    assert {"train", "validation"} <= {p.parent.name for p in new_run.rglob("*tfevents*")}
    assert f"TensorBoard logs:   {new_run}" in again.stdout
    after = {p: p.stat().st_mtime_ns for p in logs.rglob("*") if p.is_file() and new_run not in p.parents}
    assert after == before  # the old run's event files, as they were


def test_a_dataset_that_cannot_be_downloaded_fails_at_once_with_one_line(tmp_path):
    """Offline for real (a network namespace with no network): TFDS would retry for minutes."""
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a network namespace here (unshare -n)")
    result = subprocess.run(["unshare", "-n", sys.executable, "-m", "trainer.task", "--dataset=mnist",
                             f"--data_dir={tmp_path / 'data'}", f"--job_dir={tmp_path / 'job'}"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=trainer_env(tmp_path))
    assert result.returncode == 2
    assert last_line(result.stderr).startswith(f"error: --dataset=mnist is not prepared in {tmp_path / 'data'} and "
                                               "cannot be downloaded: storage.googleapis.com is not reachable")
    assert "--data_dir=DIR" in last_line(result.stderr) and "Traceback" not in result.stderr
    assert not (tmp_path / "job").exists()
