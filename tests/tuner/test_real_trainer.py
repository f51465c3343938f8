"""THE ONE TUNER TEST THAT RUNS TENSORFLOW: the project's hptuning_config.yaml, run as a user
runs it, with real `python -m trainer.task` trials on the built-in digits dataset.

Small on purpose (3 trials, 2 at a time, ~30 s on 2 cores). Every other tuner test uses the
tiny trial script. Deselect it with -m 'not real_trainer'.
"""
import json

import pytest

from tests.tuner.support import ROOT, read_csv, run_tuner, tuner_env

pytestmark = pytest.mark.real_trainer


def test_a_study_of_the_real_trainer(tmp_path):
    out = tmp_path / "study"
    # a fresh dataset folder: the first two trials prepare the dataset at the same time,
    # as they do on a new machine
    env = tuner_env(TFDS_DATA_DIR=str(tmp_path / "tfds"))
    result = run_tuner("run", ROOT / "hptuning_config.yaml", "--output-dir", out,
                       "--max-trial-count", "3", "--seed", "0", env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    rows = read_csv(out / "trials.csv")
    assert [r["trial_id"] for r in rows] == ["1", "2", "3"]
    assert list(rows[0])[5:] == ["learning_rate", "batch_size", "optimizer", "momentum",
                                 "units", "dropout", "reason"]
    for row in rows:
        assert row["state"] in ("SUCCEEDED", "STOPPED"), row
        assert 0.0 < float(row["value"]) <= 1.0
        # the trainer took the tuner's flags and wrote its outputs where AIP_MODEL_DIR said
        metrics = json.loads((out / row["trial_id"] / "model" / "metrics.json").read_text())
        hp = metrics["hyperparameters"]
        assert hp["learning_rate"] == pytest.approx(float(row["learning_rate"]))
        assert hp["batch_size"] == int(float(row["batch_size"]))
        assert hp["optimizer"] == row["optimizer"] and hp["units"] == int(row["units"])
        assert hp["epochs"] == 8 and metrics["metric"] == "val_accuracy"
        if row["state"] == "SUCCEEDED":
            assert int(row["steps"]) == metrics["epochs_run"]
            assert float(row["value"]) == pytest.approx(metrics["final"])
    best = json.loads((out / "best_trial.json").read_text())
    assert best["value"] > 0.8  # digits: a few epochs of any sane setting get there
    assert " -m trainer.task --epochs=8 --model=mlp --learning_rate=" in best["command"]
    assert "scripts/submit_hptuning.sh --config=" in result.stdout
