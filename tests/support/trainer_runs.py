"""Running the trainer as a user does, and reading what it leaves behind (shared by several tests)."""
import json
import os
import subprocess
import sys


def trainer_env(tmp_path, **extra):
    """The environment of a trainer subprocess: no Vertex variables unless given, its own hypertune file."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIP_", "CLOUD_ML_")) and k not in ("TF_CONFIG", "CLUSTER_SPEC")}
    env["CLOUD_ML_HP_METRIC_FILE"] = str(tmp_path / "hypertune" / "output.metrics")
    env["TFDS_DATA_DIR"] = str(tmp_path / "tfds")
    env.update(extra)
    return env


def run_trainer(tmp_path, *args, env=None, timeout=300, **popen):
    """Runs `python -m trainer.task` as a user would; returns the CompletedProcess."""
    return subprocess.run([sys.executable, "-m", "trainer.task", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=timeout, env=env or trainer_env(tmp_path), **popen)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def hypertune_records(tmp_path):
    with open(tmp_path / "hypertune" / "output.metrics") as f:
        return [json.loads(line) for line in f if line.strip()]


def last_line(text):
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


def logged_epochs(log_dir) -> list[int]:
    """The epochs whose loss a TensorBoard log folder holds (steps from 0)."""
    from tensorboard.backend.event_processing import event_accumulator  # noqa: PLC0415  TensorBoard is slow to import

    events = event_accumulator.EventAccumulator(str(log_dir))
    events.Reload()
    return [e.step for e in events.Tensors("epoch_loss")] if "epoch_loss" in events.Tags()["tensors"] else []
