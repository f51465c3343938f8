"""The resume state: what a rerun of a killed run continues from.

One TensorFlow checkpoint per completed epoch holds the model (with its dropout generators),
the optimizer, and the progress: epochs done, the epoch history, and whether training is
finished and why. The two newest are kept, so a checkpoint torn or garbled on disk falls
back to the one before it. The state stays until the run's outputs (SavedModel and
metrics.json) are complete: a run killed during the export goes straight to the export.

Not BackupAndRestore: it deletes its state when `fit` returns, keeps one checkpoint, and
knows nothing of a finished training or of history.json.

Under MultiWorkerMirroredStrategy every worker restores from the chief's dir and runs the
same saves (reading some variables is a collective), the others into a temporary dir.
"""
import dataclasses
import json
import logging
import re

import tensorflow as tf
import tf_keras as keras

from trainer.config import Config
from trainer.errors import RunError

log = logging.getLogger(__name__)

PREFIX = "ckpt"
_KEEP = 2


@dataclasses.dataclass
class Progress:
    epochs_done: int = 0
    history: list = dataclasses.field(default_factory=list)  # one record per epoch, as history.json
    finished: str | None = None  # why training ended, once it has


class _ProgressState(tf.train.experimental.PythonState):
    """Progress as JSON inside the checkpoint, written in the same file as the weights."""

    def __init__(self):
        self.progress = Progress()

    def serialize(self):
        return json.dumps(dataclasses.asdict(self.progress))

    def deserialize(self, string_value):
        self.progress = Progress(**json.loads(string_value))


def _numbered(directory: str) -> list[int]:
    """The checkpoint numbers whose index is on disk, newest first (the index is written last)."""
    names = tf.io.gfile.glob(f"{directory}/{PREFIX}-*.index")
    numbers = (re.fullmatch(rf"{PREFIX}-(\d+)\.index", name.rsplit("/", 1)[-1]) for name in names)
    return sorted((int(m.group(1)) for m in numbers if m), reverse=True)


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200] if text else ''}"


class ResumeState:
    """Reads the resume state from `read_dir` (the chief's), writes it to `write_dir` (this worker's)."""

    def __init__(self, model: keras.Model, read_dir: str, write_dir: str):
        self._read_dir, self._write_dir = read_dir, write_dir
        self._state = _ProgressState()
        # Slot variables exist only once built: restored now, not at the first step, so a broken
        # checkpoint is found here and the next one tried.
        model.optimizer.build(model.trainable_variables)
        self._checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer, progress=self._state)

    def restore(self) -> Progress:
        """The newest state that restores whole, else a fresh start when there is none.

        Raises RunError when states exist and none restores: a silent start over would hide it.
        """
        failures = []
        for number in _numbered(self._read_dir):
            path = f"{self._read_dir}/{PREFIX}-{number}"
            try:
                self._checkpoint.read(path).assert_consumed()
            except Exception as e:  # a torn or garbled file: IndexError, OpError, DataLossError, ValueError, ...
                failures.append(f"{PREFIX}-{number}: {_first_line(e)}")
                log.warning("Resume state %s does not restore (%s); trying the one before it", path,
                            _first_line(e))
                continue
            return self._state.progress
        if failures:
            raise RunError(f"no resume state in {self._read_dir} restores ({'; '.join(failures)}); to start "
                           f"over, remove it ({_remove_command(self._read_dir)}) and rerun the same command")
        return Progress()

    @property
    def progress(self) -> Progress:
        """The progress last restored or saved: after `fit`, why training ended."""
        return self._state.progress

    def save(self, progress: Progress) -> None:
        """Writes the state of `progress.epochs_done`, then drops all but the two newest."""
        self._state.progress = progress
        number = progress.epochs_done
        self._checkpoint.write(f"{self._write_dir}/{PREFIX}-{number}")
        keep = {number, number - 1}  # newer numbers left there are broken ones this run fell back from
        for old in set(_numbered(self._write_dir)) - keep:
            for name in tf.io.gfile.glob(f"{self._write_dir}/{PREFIX}-{old}.*"):
                tf.io.gfile.remove(name)

    def discard(self) -> None:
        """Once the run's outputs are complete, the state has served."""
        if tf.io.gfile.exists(self._write_dir):
            tf.io.gfile.rmtree(self._write_dir)


def _remove_command(directory: str) -> str:
    if directory.startswith("gs://"):
        return f"gcloud storage rm --recursive {directory}"
    return f"rm -r {directory}"


class SaveEachEpoch(keras.callbacks.Callback):
    """Saves the resume state at each epoch's end; after EarlyStopping in the list, to see its decision."""

    def __init__(self, state: ResumeState, reporter, config: Config):
        super().__init__()
        self._state, self._reporter, self._config = state, reporter, config

    def on_epoch_end(self, epoch, logs=None):
        c, done = self._config, epoch + 1
        finished = None
        if self.model.stop_training:
            finished = (f"early stopping after epoch {done}: {c.hypertune_metric} did not improve for "
                        f"{c.patience} epochs (--patience)")
        elif done >= c.epochs:
            finished = f"all {c.epochs} epochs done (--epochs)"
        self._state.save(Progress(epochs_done=done, history=list(self._reporter.history), finished=finished))


class ContinuedEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping that counts the epochs a killed run completed, as if it had not stopped."""

    def __init__(self, earlier: list[dict], **kwargs):
        super().__init__(**kwargs)
        self._earlier = earlier

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        for record in self._earlier:  # none of them stopped training, or the state would say finished
            self.on_epoch_end(record["epoch"] - 1, record)
