"""--export=best|last: the SavedModel holds the best epoch's weights unless told otherwise.

The run below (SGD with momentum 0.99, seeded) peaks at epoch 2 and ends worse: the exported
model, evaluated on the validation split in a fresh process, must score the best value.
"""
import json
import os
import subprocess
import sys
import time

import pytest

from tests.support.trainer_runs import read_json, run_trainer, trainer_env

PEAKS_EARLY = ["--learning_rate=0.1", "--optimizer=sgd", "--momentum=0.99", "--epochs=4", "--patience=0",
               "--units=16", "--num_layers=1"]

EVALUATE = """
import json, sys
import numpy as np, tensorflow as tf
from trainer import task
from trainer import data as data_lib
config = task.parse(["trainer.task", *sys.argv[2:]])
serve = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
right = total = 0
for images, labels in data_lib.load(config, 1).validation:
    predicted = serve(image=images)["probabilities"].numpy().argmax(axis=1)
    right += int((predicted == labels.numpy().argmax(axis=1)).sum())
    total += len(predicted)
print(json.dumps({"val_accuracy": right / total}))
"""


def _saved_model_accuracy(tmp_path, model_dir, args):
    """The validation accuracy of the SavedModel, in a process of its own (the split as the run made it)."""
    result = subprocess.run([sys.executable, "-c", EVALUATE, model_dir, *args, f"--job_dir={tmp_path}/other"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=trainer_env(tmp_path),
                            check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["val_accuracy"]


@pytest.mark.parametrize("export", ["best", "last", None])
def test_the_saved_model_holds_the_weights_asked_for(tmp_path, export):
    args = PEAKS_EARLY + ([f"--export={export}"] if export else [])
    result = run_trainer(tmp_path, *args, f"--job_dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_json(tmp_path / "run" / "model" / "metrics.json")
    assert metrics["best"] > metrics["final"], f"the run must end worse than its best to test this: {metrics}"
    expected = export or "best"
    epoch, value = ((metrics["best_epoch"], metrics["best"]) if expected == "best"
                    else (metrics["epochs_run"], metrics["final"]))
    assert (metrics["exported"], metrics["exported_epoch"]) == (expected, epoch)
    assert metrics["ended"] == "all 4 epochs done (--epochs)"
    assert f"({expected} weights: epoch {epoch}" in result.stdout
    accuracy = _saved_model_accuracy(tmp_path, str(tmp_path / "run" / "model"), args)
    assert accuracy == pytest.approx(value, abs=1e-6)


def test_early_stopping_is_named_in_the_summary_and_metrics(tmp_path):
    result = run_trainer(tmp_path, *PEAKS_EARLY, "--epochs=10", "--patience=1", f"--job_dir={tmp_path}/run")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = read_json(tmp_path / "run" / "model" / "metrics.json")
    assert metrics["epochs_run"] < 10
    assert metrics["ended"].startswith(f"early stopping after epoch {metrics['epochs_run']}: val_accuracy")
    assert f"ended:              {metrics['ended']}" in result.stdout
    assert os.path.exists(tmp_path / "run" / "model" / "saved_model.pb")


def test_a_resumed_run_exports_the_best_epoch_of_the_run_it_resumed(tmp_path):
    """Killed (kill -9) after its best epoch: the rerun trains on, never beats it, exports it."""
    args = ["--learning_rate=0.02", "--optimizer=sgd", "--momentum=0.99", "--epochs=8", "--patience=0",
            "--units=16", "--num_layers=1", "--batch_size=4", f"--job_dir={tmp_path}/run"]
    env = trainer_env(tmp_path)
    third_epoch = tmp_path / "run" / "checkpoints" / "backup" / "ckpt-3.index"
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([sys.executable, "-m", "trainer.task", *args], cwd=tmp_path, env=env, stdout=log,
                                 stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 180
            while not third_epoch.exists() and time.time() < deadline:
                assert first.poll() is None, "the trainer ended before it could be killed"
                time.sleep(0.02)
        finally:
            first.kill()
            first.wait(timeout=30)
    assert third_epoch.exists() and not (tmp_path / "run" / "model" / "metrics.json").exists()

    second = run_trainer(tmp_path, *args, env=env)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed after epoch" in second.stdout
    metrics = read_json(tmp_path / "run" / "model" / "metrics.json")
    assert metrics["best_epoch"] <= 3 < metrics["epochs_run"] and metrics["best"] > metrics["final"], metrics
    assert (metrics["exported"], metrics["exported_epoch"]) == ("best", metrics["best_epoch"])
    accuracy = _saved_model_accuracy(tmp_path, str(tmp_path / "run" / "model"), args[:-1])
    assert accuracy == pytest.approx(metrics["best"], abs=1e-6)
