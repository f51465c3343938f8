"""Inside one trainer run: input pipeline vs training step, and where an epoch's time goes.

    python bench/trainer_probe.py --epochs 8 --times OUT.json -- [trainer flags]

Builds the trainer's own strategy, datasets, model and callbacks (trainer.data, trainer.models,
trainer.training) from trainer flags, then, in this order:

1. pipeline: iterates the training dataset for --epochs epochs from Python, no model;
2. step: `fit` on the training dataset alone (no validation, no callbacks) for --epochs epochs;
3. epoch: `fit` as the trainer calls it (validation and the trainer's callbacks, each wrapped
   in a timer) on a fresh model, splitting each epoch into training steps, validation, and the
   time spent in each callback.

Figures are per epoch over the epochs after the first (the first pays for tracing and for
filling the dataset cache). Used by bench/trainer_overhead.py; reads trainer internals.
"""
import argparse
import json
import os
import statistics
import sys
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

HOOKS = ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end", "on_train_batch_begin",
         "on_train_batch_end", "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--times", required=True)
    p.add_argument("--register", help="import this module first (registers a TFDS builder)")
    p.add_argument("trainer_flags", nargs=argparse.REMAINDER)
    args = p.parse_args()
    flags = args.trainer_flags[1:] if args.trainer_flags[:1] == ["--"] else args.trainer_flags
    if args.register:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        __import__(args.register)

    from trainer import task

    config = task.parse(["trainer.task", "--patience=0", f"--epochs={args.epochs}", *flags])

    import tensorflow as tf  # noqa: F401  (after the flags, as the trainer does)
    import tf_keras as keras

    from trainer import checkpoints as resume
    from trainer import data as data_lib
    from trainer import distribution, models, reporting, training
    from trainer.preemption import SigtermGuard

    strategy = distribution.create(config)
    keras.utils.set_random_seed(config.seed)
    data = data_lib.load(config, strategy.num_replicas_in_sync)
    result = {"train_examples": data.train_examples, "steps_per_epoch": data.steps_per_epoch,
              "global_batch": config.batch_size * strategy.num_replicas_in_sync}

    # 1. The input pipeline alone, iterated from Python as tfds.benchmark does. `fit` makes a new
    # iterator each epoch the same way and pulls each batch inside its graph, which costs less than
    # a Python `next`: this is a lower bound on the pipeline's speed, so on its headroom.
    ends, first_batch = [time.time()], []
    for _ in range(args.epochs):
        examples = 0
        for i, (images, _labels) in enumerate(data.epochs(0, 1)):
            if i == 0:  # includes filling the shuffle buffer (the whole training set)
                first_batch.append(time.time() - ends[-1])
            examples += int(images.shape[0])
        ends.append(time.time())
    result["pipeline_epoch_s"] = [b - a for a, b in zip(ends, ends[1:])]
    result["pipeline_first_batch_s"] = first_batch
    result["pipeline_examples"] = examples

    def new_model():
        with strategy.scope():
            model = models.build(config, data.image_shape, data.image_dtype, data.num_classes,
                                 data.pixel_mean, data.pixel_std)
            training._compile(model, config, data.steps_per_epoch)
        return model

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.marks = []

        def on_epoch_begin(self, epoch, logs=None):
            self.marks.append({"begin": time.time()})

        def on_test_begin(self, logs=None):
            self.marks[-1]["test_begin"] = time.time()

        def on_test_end(self, logs=None):
            self.marks[-1]["test_end"] = time.time()

        def on_epoch_end(self, epoch, logs=None):
            self.marks[-1]["end"] = time.time()

    # 2. The training step alone.
    clock = Clock()
    new_model().fit(data.epochs(0, args.epochs), steps_per_epoch=data.steps_per_epoch, epochs=args.epochs,
                    callbacks=[clock], verbose=0)
    result["step_epoch_s"] = [m["end"] - m["begin"] for m in clock.marks]

    # 3. An epoch as the trainer runs it, with every callback timed.
    class Timed(keras.callbacks.Callback):
        """Forwards every hook to `inner`; adds up, per epoch, the time its batch hooks and its
        other hooks take. Keras calls every callback's batch hooks as soon as one callback
        implements them, so a callback may pay per batch for another one's choice."""

        def __init__(self, inner, name):
            super().__init__()
            self.inner, self.name, self.once = inner, name, {}
            self.per_epoch = {"batch": [], "epoch": []}
            self._supports_tf_logs = getattr(inner, "_supports_tf_logs", False)
            for hook in HOOKS:
                setattr(self, hook, self._timed(getattr(inner, hook)))

        def _timed(self, method):
            hook = method.__name__
            kind = "batch" if "_batch_" in hook else "epoch"

            def call(*a, **k):
                if hook == "on_epoch_begin":
                    for series in self.per_epoch.values():
                        series.append(0.0)
                start = time.perf_counter()
                try:
                    return method(*a, **k)
                finally:
                    spent = time.perf_counter() - start
                    if hook in ("on_train_begin", "on_train_end"):
                        self.once[hook] = spent
                    else:
                        self.per_epoch[kind][-1] += spent
            return call

        def set_model(self, model):
            super().set_model(model)
            self.inner.set_model(model)

        def set_params(self, params):
            super().set_params(params)
            self.inner.set_params(params)

        def _implements_train_batch_hooks(self):
            return self.inner._implements_train_batch_hooks()

        def _implements_test_batch_hooks(self):
            return self.inner._implements_test_batch_hooks()

        def _implements_predict_batch_hooks(self):
            return self.inner._implements_predict_batch_hooks()

    reporter = reporting.EpochReporter(config, config.checkpoint_dir, [])
    names = {"SigtermGuard": "sigterm guard", "EpochReporter": "history + hypertune report",
             "SaveEachEpoch": "resume state", "TensorBoard": "TensorBoard"}
    model = new_model()
    with strategy.scope():
        state = resume.ResumeState(model, config.checkpoint_dir + "/backup", config.checkpoint_dir + "/backup")
    guard = SigtermGuard(config.checkpoint_dir)
    timed, checkpoints = [], 0
    for cb in training._callbacks(config, guard, reporter, state, resume.Progress()):
        name = names.get(type(cb).__name__, type(cb).__name__)
        if type(cb).__name__ == "ModelCheckpoint":
            checkpoints += 1
            name = "ModelCheckpoint last" if checkpoints == 1 else "ModelCheckpoint best"
        timed.append(Timed(cb, name))
    clock = Clock()
    training._write_hparams(config, config.tensorboard_dir)
    model.fit(data.epochs(0, args.epochs), steps_per_epoch=data.steps_per_epoch, validation_data=data.validation,
              epochs=args.epochs, callbacks=[clock, *timed], verbose=0)
    marks = clock.marks
    result["epoch"] = {
        "epoch_s": [b["begin"] - a["begin"] for a, b in zip(marks, marks[1:])],
        "train_s": [m["test_begin"] - m["begin"] for m in marks],
        "validation_s": [m["test_end"] - m["test_begin"] for m in marks],
        "callbacks_s": {t.name: t.per_epoch for t in timed},
        "callbacks_once_s": {t.name: t.once for t in timed},
    }
    with open(args.times, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: statistics.median(v[1:]) for k, v in result.items()
                      if isinstance(v, list) and len(v) > 1}))


if __name__ == "__main__":
    main()
