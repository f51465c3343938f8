"""SIGTERM, as Vertex sends it on preemption and maintenance (spot VMs get about 30 s).

The run must stop promptly and stay resumable. Two traps: a graceful `stop_training` lets
BackupAndRestore treat the run as finished and delete its state (the rerun would start over),
and under MultiWorkerMirroredStrategy TensorFlow catches SIGTERM itself and trains on. So the
trainer installs its own handler once the strategy exists, and fails the run at the next batch:
the backup of the last completed epoch stays, and rerunning the same command resumes from it.
"""
import signal

import tf_keras as keras

from trainer.errors import RunError


class Preempted(RunError):
    pass


class SigtermGuard(keras.callbacks.Callback):
    def __init__(self, checkpoint_dir: str):
        super().__init__()
        self._supports_tf_logs = True  # the per-batch hook must not force logs to numpy (a sync)
        self._checkpoint_dir = checkpoint_dir
        self._received = False
        self._epoch = 0
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        self._received = True

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._stop_if_asked()

    def on_train_batch_end(self, batch, logs=None):
        self._stop_if_asked()

    def _stop_if_asked(self):
        if self._received:
            raise Preempted(
                f"received SIGTERM (preemption or maintenance) during epoch {self._epoch + 1}; the last completed "
                f"epoch is saved in {self._checkpoint_dir}: rerun the same command to resume from it")
