"""Reporting the objective: cloudml-hypertune every epoch, the epoch history, metrics.json.

The epoch history is part of the resume state (checkpoints.py), so that a run resumed after
a kill still reports every epoch, in hypertune's file and in metrics.json; history.json beside
the checkpoints is its readable copy, rewritten whole at each epoch.
"""
import json
import math
import time

import hypertune
import tf_keras as keras

from trainer import storage
from trainer.config import METRICS_FILE, Config, package_versions
from trainer.errors import RunError

HISTORY_FILE = "history.json"


def best_of(values, goal):
    """NaN never counts as best, as in ModelCheckpoint(save_best_only), whose checkpoint is exported."""
    values = [v for v in values if not math.isnan(v)]
    pick = max if goal == "max" else min
    return pick(values) if values else None


def best_epoch(config: Config, history: list[dict]) -> int | None:
    """The first epoch with the best objective: the one whose weights the best checkpoint holds."""
    values = [h[config.hypertune_metric] for h in history]
    best = best_of(values, config.metric_goal)
    return None if best is None else history[values.index(best)]["epoch"]


class EpochReporter(keras.callbacks.Callback):
    """Records each epoch's logs and, on the chief, reports the objective to hypertune.

    global_step is the 1-based epoch: comparable across trials with different batch sizes,
    which the tuner's stopping rules need. One HyperTune instance per process: a second one
    would start an empty history and overwrite the file.
    """

    def __init__(self, config: Config, history_dir: str, history: list[dict]):
        """`history`: the records of the epochs already done (from the resume state)."""
        super().__init__()
        self._metric = config.hypertune_metric
        self._history_dir = history_dir
        self._report = config.cluster.is_chief
        self._hypertune = None
        self.history = list(history)
        self._write_history()  # a history.json a kill left torn is replaced at once

    def on_train_begin(self, logs=None):
        if self._report:
            self._hypertune = hypertune.HyperTune()
            self._keep_earlier_reports(len(self.history))

    def _keep_earlier_reports(self, completed_epochs):
        """Puts back the reports of epochs a killed run already made (its file would be wiped)."""
        try:
            with open(self._hypertune.metric_path) as f:
                records = [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError):
            return
        for record in records:
            if 0 < int(record.get("global_step", 0)) <= completed_epochs:
                self._hypertune.metrics_queue.append(record)

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if self._metric not in logs:
            raise RunError(f"the objective --hypertune_metric={self._metric} is not among this epoch's metrics "
                           f"{sorted(logs)}")
        record = {"epoch": epoch + 1, "time": time.time(), **{k: float(v) for k, v in logs.items()}}
        self.history = [h for h in self.history if h["epoch"] < epoch + 1] + [record]
        self._write_history()
        if self._hypertune is not None:
            self._hypertune.report_hyperparameter_tuning_metric(
                hyperparameter_metric_tag=self._metric, metric_value=logs[self._metric], global_step=epoch + 1)

    def _write_history(self):
        storage.write_text(storage.join(self._history_dir, HISTORY_FILE), json.dumps(self.history, indent=1))


def summarize(config: Config, history: list[dict], strategy_name: str, num_replicas: int,
              wall_time_s: float, exported: str, exported_epoch: int, ended: str | None) -> dict:
    """The metrics.json record: a contract that the tuner and the scripts read.

    `exported`: "best" or "last", whose weights (of `exported_epoch`) the SavedModel holds;
    `ended`: why training ended (early stopping, the epoch count).
    """
    values = [h[config.hypertune_metric] for h in history]
    val_losses = [h["val_loss"] for h in history if "val_loss" in h]
    return {
        "metric": config.hypertune_metric,
        "final": values[-1] if values else None,
        "best": best_of(values, config.metric_goal),
        "best_epoch": best_epoch(config, history),
        "exported": exported,
        "exported_epoch": exported_epoch,
        "ended": ended,
        "val_loss_final": val_losses[-1] if val_losses else None,
        "val_loss_best": best_of(val_losses, "min"),
        "epochs_run": len(history),
        "wall_time_s": round(wall_time_s, 3),
        "strategy": strategy_name,
        "num_replicas": num_replicas,
        "hyperparameters": config.hyperparameters,
        "versions": package_versions(),
    }


def write_metrics(model_dir: str, metrics: dict) -> str:
    path = storage.join(model_dir, METRICS_FILE)
    storage.write_text(path, json.dumps(metrics, indent=2) + "\n")
    return path
