"""One training run: strategy, data, model, resume state, callbacks, fit, export, metrics.json.

Only the chief writes the model, metrics and reports. Other workers run the same save calls
(they are collective under MultiWorkerMirroredStrategy) into temporary dirs they remove.
"""
import contextlib
import dataclasses
import logging
import shutil
import sys
import tempfile
import time

import tensorflow as tf
import tf_keras as keras
from tensorboard.plugins.hparams import api as hparams_api

from trainer import checkpoints, distribution, models, optimization, reporting, storage
from trainer import data as data_lib
from trainer.config import Config
from trainer.errors import RunError
from trainer.preemption import SigtermGuard

log = logging.getLogger(__name__)

RESUME_DIR = "backup"  # in the checkpoint dir: the resume state (checkpoints.py)


@dataclasses.dataclass
class Outcome:
    metrics: dict
    metrics_path: str | None
    resumed_at_epoch: int


@contextlib.contextmanager
def _own_dir(path: str, is_chief: bool):
    """The chief writes to `path`; other workers to a temporary dir removed afterwards."""
    if is_chief:
        yield path
        return
    temp = tempfile.mkdtemp(prefix="trainer-worker-")
    try:
        yield temp
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def _compile(model, c: Config, steps_per_epoch: int):
    model.compile(
        optimizer=optimization.build_optimizer(c, steps_per_epoch),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=c.label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
        steps_per_execution=c.steps_per_execution,
        jit_compile=c.jit_compile,
    )


def _write_hparams(c: Config, log_dir: str):
    """The TensorBoard hparams dashboard: this run's hyperparameters and the objective."""
    writer = tf.summary.create_file_writer(log_dir)
    with writer.as_default():
        hparams_api.hparams_config(
            hparams=[hparams_api.HParam(name) for name in c.hyperparameters],
            metrics=[hparams_api.Metric("epoch_accuracy", group="validation", display_name="val_accuracy"),
                     hparams_api.Metric("epoch_loss", group="validation", display_name="val_loss")])
        hparams_api.hparams(c.hyperparameters, trial_id=c.trial_id)
    writer.close()


def _best_checkpoint(c: Config) -> str:
    return storage.join(c.checkpoint_dir, "best", "ckpt")


def _callbacks(c: Config, guard: SigtermGuard, reporter, state: checkpoints.ResumeState, progress):
    best_so_far = reporting.best_of([h[c.hypertune_metric] for h in progress.history], c.metric_goal)
    callbacks = [
        guard,
        reporter,
        keras.callbacks.ModelCheckpoint(storage.join(c.checkpoint_dir, "last", "ckpt"), save_weights_only=True),
        keras.callbacks.ModelCheckpoint(_best_checkpoint(c), save_weights_only=True,
                                        save_best_only=True, monitor=c.hypertune_metric, mode=c.metric_goal,
                                        initial_value_threshold=best_so_far),
        keras.callbacks.TensorBoard(c.tensorboard_dir, profile_batch=0),
    ]
    if c.patience > 0:
        callbacks.append(checkpoints.ContinuedEarlyStopping(
            progress.history, monitor=c.hypertune_metric, mode=c.metric_goal, patience=c.patience,
            min_delta=c.min_delta))
    # After EarlyStopping, whose decision the resume state records; before the guard's end of saves.
    return callbacks + [checkpoints.SaveEachEpoch(state, reporter, c), guard.saves_done]


def _weights_to_export(model, c: Config, strategy, history: list[dict]) -> tuple[str, int]:
    """Loads the best epoch's weights unless --export=last; returns ("best"|"last", their epoch).

    Every worker loads them, from the chief's checkpoint (the run's best may come from an earlier,
    killed run), after a collective that the chief reaches only once its last save is done.
    """
    last, best = history[-1]["epoch"], reporting.best_epoch(c, history)
    if c.export == "last" or best is None:  # no finite objective: no best checkpoint was written
        return "last", last
    if best == last:
        return "best", best
    if c.cluster.is_multi_worker:
        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)
    try:
        model.load_weights(_best_checkpoint(c)).expect_partial()
    except (tf.errors.OpError, ValueError) as e:
        raise RunError(f"the best checkpoint {_best_checkpoint(c)} (epoch {best}) does not load "
                       f"({type(e).__name__}); rerun with --export=last to export the last epoch's weights") from e
    log.info("Exporting the best epoch's weights (epoch %d of %d; --export=last for the last)", best, last)
    return "best", best


def export(model, path: str, image_shape, image_dtype):
    """A SavedModel whose serving signature takes raw images and returns class probabilities."""

    @tf.function(input_signature=[tf.TensorSpec([None, *image_shape], image_dtype, name="image")])
    def serve(image):
        return {"probabilities": model(image, training=False)}

    tf.saved_model.save(model, path, signatures={"serving_default": serve})


def run(c: Config) -> Outcome:
    started = time.time()
    strategy = distribution.create(c)  # before any other TF op
    keras.utils.set_random_seed(c.seed)
    if c.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_float16")
    data = data_lib.load(c, strategy.num_replicas_in_sync)
    log.info("Data: %s, %d training examples, global batch %d, %d steps per epoch", c.dataset,
             data.train_examples, c.batch_size * strategy.num_replicas_in_sync, data.steps_per_epoch)
    with strategy.scope():
        model = models.build(c, data.image_shape, data.image_dtype, data.num_classes, data.pixel_mean,
                             data.pixel_std)
        _compile(model, c, data.steps_per_epoch)

    chief = c.cluster.is_chief
    guard = SigtermGuard(c.checkpoint_dir, c.rerun)  # from here on SIGTERM leaves a resumable run
    with _own_dir(c.checkpoint_dir, chief) as checkpoint_dir, _own_dir(c.tensorboard_dir, chief) as log_dir:
        storage.write_text(storage.join(checkpoint_dir, "config.json"), c.to_json())
        _write_hparams(c, log_dir)
        with strategy.scope():
            state = checkpoints.ResumeState(model, read_dir=storage.join(c.checkpoint_dir, RESUME_DIR),
                                            write_dir=storage.join(checkpoint_dir, RESUME_DIR))
        progress = state.restore()
        if not progress.finished and progress.epochs_done >= c.epochs:  # rerun with a smaller --epochs
            progress.finished = f"{progress.epochs_done} epochs done, --epochs={c.epochs}"
        reporter = reporting.EpochReporter(c, checkpoint_dir, progress.history)
        if progress.finished:
            log.info("Training ended in an earlier run (%s); exporting its model", progress.finished)
        elif progress.epochs_done:
            log.info("Resuming after epoch %d of %d", progress.epochs_done, c.epochs)
        try:
            if not progress.finished:
                model.fit(data.epochs(progress.epochs_done, c.epochs), steps_per_epoch=data.steps_per_epoch,
                          initial_epoch=progress.epochs_done, epochs=c.epochs, validation_data=data.validation,
                          callbacks=_callbacks(c, guard, reporter, state, progress),
                          verbose=1 if sys.stdout.isatty() else 2)
        except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as e:
            if not c.cluster.is_multi_worker:
                raise
            raise RunError(f"lost contact with {distribution.lost_peer(c.cluster, e.message)}; {c.rerun} to "
                           "resume from the last completed epoch") from e

    exported, exported_epoch = _weights_to_export(model, c, strategy, reporter.history)
    with _own_dir(c.model_dir, chief) as model_dir:
        export(model, model_dir, data.image_shape, data.image_dtype)
        metrics = reporting.summarize(c, reporter.history, distribution.name(strategy),
                                      strategy.num_replicas_in_sync, time.time() - started, exported,
                                      exported_epoch, state.progress.finished)
        metrics_path = reporting.write_metrics(model_dir, metrics) if chief else None
    if chief:
        # Only now: a kill before metrics.json is written leaves a rerun that goes straight to the export.
        state.discard()
    return Outcome(metrics=metrics, metrics_path=metrics_path, resumed_at_epoch=progress.epochs_done)
