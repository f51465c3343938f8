"""SIGTERM, as Vertex sends it on preemption and maintenance (spot VMs get about 30 s).

The run must stop promptly and stay resumable. Two traps: a graceful `stop_training` would
end `fit` as if training were done (the resume state would record it finished, and the rerun
export a half-trained model), and under MultiWorkerMirroredStrategy TensorFlow catches SIGTERM
itself and trains on. So the trainer installs its own handler once the model exists and fails
the run from the handler: the resume state of the last completed epoch stays, and rerunning
the same command resumes from it. After training (the export) SIGTERM is noted, not acted on.

No per-batch hook: one callback with a batch hook makes tf-keras call every callback's batch
hooks (TensorBoard's cost 0.5 ms a batch, measured in bench/RESULTS.md). Instead the handler
raises at once, except while the end-of-epoch saves run, which finish first.
"""
import signal

import tf_keras as keras

from trainer.errors import Stopped


class Preempted(Stopped):
    pass


class SigtermGuard(keras.callbacks.Callback):
    """First in the callback list; `saves_done` goes last, after every end-of-epoch save."""

    def __init__(self, checkpoint_dir: str, rerun: str = "rerun the same command"):
        """`rerun`: how to resume, as Config.rerun says (the default job dir must be named)."""
        super().__init__()
        self._checkpoint_dir = checkpoint_dir
        self._rerun = rerun
        self._received = False
        self._training = False
        self._saving = False
        self._epoch = 0
        self.saves_done = keras.callbacks.LambdaCallback(on_epoch_end=self._saves_done)
        signal.signal(signal.SIGTERM, self._on_sigterm)

    def _on_sigterm(self, signum, frame):
        self._received = True
        if self._training and not self._saving:
            raise self._preempted()

    def _preempted(self):
        return Preempted(
            f"received SIGTERM (preemption or maintenance) during epoch {self._epoch + 1}; the last completed "
            f"epoch is saved in {self._checkpoint_dir}: {self._rerun} to resume from it")

    def on_train_begin(self, logs=None):
        self._training = True

    def on_train_end(self, logs=None):
        self._training = False  # the export that follows runs to the end

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self._saving = True

    def _saves_done(self, epoch, logs=None):
        self._saving = False
        if self._received:
            raise self._preempted()
