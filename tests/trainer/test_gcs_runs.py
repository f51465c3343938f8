"""The trainer with every path on gs://, against the GCS emulator (tests/support/gcs.py).

TensorFlow's own GCS filesystem writes the checkpoints, TensorBoard logs and the SavedModel,
and reads the prepared TFDS data; google-cloud-storage writes metrics.json, config.json and
history.json. A kill -9 in the middle, then the same command again, resumes from gs://.
"""
import json
import os
import signal
import subprocess
import sys
import time

from tests.support.trainer_runs import trainer_env


def _upload_prepared_dataset(tmp_path, bucket):
    from trainer.datasets.uci_digits import UciDigits

    UciDigits(data_dir=str(tmp_path / "tfds")).download_and_prepare()
    for root, _, files in os.walk(tmp_path / "tfds" / "uci_digits"):
        for name in files:
            local = os.path.join(root, name)
            bucket.blob("tfds/" + os.path.relpath(local, tmp_path / "tfds")).upload_from_filename(local)


def _history(bucket):
    blob = bucket.blob("run/checkpoints/history.json")
    return json.loads(blob.download_as_text()) if blob.exists() else []


def test_gcs_run_killed_and_resumed(tmp_path, gcs_emulator, gcs_bucket):
    bucket = gcs_emulator.client().bucket(gcs_bucket)
    _upload_prepared_dataset(tmp_path, bucket)
    args = [sys.executable, "-m", "trainer.task", f"--job_dir=gs://{gcs_bucket}/run", f"--data_dir=gs://{gcs_bucket}/tfds",
            "--epochs=6", "--batch_size=4", "--patience=0"]
    env = trainer_env(tmp_path, **gcs_emulator.tf_env())

    first = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 180
        while len(_history(bucket)) < 2:
            assert first.poll() is None, "the run ended before it could be killed"
            assert time.time() < deadline, "no two epochs on gs:// in time"
            time.sleep(0.2)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    done = len(_history(bucket))
    assert not bucket.blob("run/model/metrics.json").exists()

    second = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-4000:]
    epochs_rerun = [line for line in second.stdout.splitlines() if line.startswith("Epoch ")]
    assert 6 - done <= len(epochs_rerun) <= 6 - done + 1, epochs_rerun

    objects = gcs_emulator.list(gcs_bucket, prefix="run/")
    for expected in ("run/model/saved_model.pb", "run/model/metrics.json", "run/checkpoints/config.json",
                     "run/checkpoints/last/ckpt.index", "run/checkpoints/best/ckpt.index"):
        assert expected in objects, expected
    assert any(o.startswith("run/logs/validation/events.out.tfevents") for o in objects)
    metrics = json.loads(bucket.blob("run/model/metrics.json").download_as_text())
    assert metrics["epochs_run"] == 6
    assert [h["epoch"] for h in _history(bucket)] == list(range(1, 7))
    assert "model (SavedModel): gs://" in second.stdout
