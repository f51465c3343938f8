"""The baseline of bench/trainer_overhead.py: the hand-written tf-keras script a user would write.

    python bench/plain_keras.py --data_dir DIR --epochs 10 --times OUT.json

The same model as the trainer's default (`--model=mlp`: normalise, flatten, 2 x Dense(128,
relu) + Dropout(0.1), Dense(10), softmax), the same optimizer (Adam, 3e-3), loss and metric, on
the same TFDS dataset and validation slice (the last 20% of `train`), with the same batch, and
the usual tf.data idioms (map, cache, shuffle, batch, prefetch). No strategy, no checkpoints,
no TensorBoard, no reporting: only a callback that notes when each epoch ends.
`--callbacks=stock` adds the stock Keras callbacks the trainer uses (BackupAndRestore, two
ModelCheckpoints, TensorBoard) to tell their cost from the trainer's own code; `--cpu_replicas=N`
trains under MirroredStrategy over N logical CPUs (--batch_size stays the global batch).
It reads a dataset the trainer has prepared (by its files: no builder code needed).
"""
import argparse
import json
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_datasets as tfds  # noqa: E402
import tf_keras as keras  # noqa: E402


class EpochClock(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times, self.logs = [], []

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.time())
        self.logs.append({k: float(v) for k, v in (logs or {}).items()})


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="uci_digits")
    p.add_argument("--data_dir", required=True)
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--validation_split", type=float, default=0.2)
    p.add_argument("--learning_rate", type=float, default=3e-3)
    p.add_argument("--units", type=int, default=128)
    p.add_argument("--num_layers", type=int, default=2)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--callbacks", choices=("none", "stock"), default="none")
    p.add_argument("--cpu_replicas", type=int, default=1)
    p.add_argument("--work_dir", help="where --callbacks=stock writes")
    p.add_argument("--times", required=True, help="JSON file for the epoch end times")
    args = p.parse_args()

    strategy = tf.distribute.get_strategy()
    if args.cpu_replicas > 1:  # before any other TensorFlow op
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * args.cpu_replicas)
        strategy = tf.distribute.MirroredStrategy([f"/cpu:{i}" for i in range(args.cpu_replicas)])
    keras.utils.set_random_seed(args.seed)
    builder = tfds.builder(args.dataset, data_dir=args.data_dir)
    total = builder.info.splits["train"].num_examples
    n_train = total - max(1, round(total * args.validation_split))
    train, val = builder.as_dataset(split=[f"train[:{n_train}]", f"train[{n_train}:]"],
                                    as_supervised=True)
    num_classes = builder.info.features["label"].num_classes
    pixels = np.concatenate([x for x, _ in tfds.as_numpy(train.take(10_000).batch(1024))])
    mean, std = float(pixels.mean()), float(pixels.std())

    def one_hot(x, y):
        return x, tf.one_hot(y, num_classes)

    train = (train.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE).cache()
             .shuffle(n_train, seed=args.seed).batch(args.batch_size).prefetch(tf.data.AUTOTUNE))
    val = (val.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE).cache()
           .batch(args.batch_size).prefetch(tf.data.AUTOTUNE))

    with strategy.scope():
        layers = [keras.Input(shape=pixels.shape[1:], dtype=pixels.dtype),
                  keras.layers.Rescaling(1.0 / std, offset=-mean / std), keras.layers.Flatten()]
        for _ in range(args.num_layers):
            layers += [keras.layers.Dense(args.units, activation="relu"), keras.layers.Dropout(args.dropout)]
        layers += [keras.layers.Dense(num_classes), keras.layers.Activation("softmax")]
        model = keras.Sequential(layers)
        model.compile(optimizer=keras.optimizers.Adam(args.learning_rate),
                      loss=keras.losses.CategoricalCrossentropy(),
                      metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")])

    clock = EpochClock()
    callbacks = [clock]
    if args.callbacks == "stock":
        w = args.work_dir
        callbacks += [
            keras.callbacks.BackupAndRestore(os.path.join(w, "backup"), save_freq="epoch"),
            keras.callbacks.ModelCheckpoint(os.path.join(w, "last", "ckpt"), save_weights_only=True),
            keras.callbacks.ModelCheckpoint(os.path.join(w, "best", "ckpt"), save_weights_only=True,
                                            save_best_only=True, monitor="val_accuracy", mode="max"),
            keras.callbacks.TensorBoard(os.path.join(w, "logs"), profile_batch=0),
        ]
    model.fit(train, validation_data=val, epochs=args.epochs, callbacks=callbacks, verbose=2)
    with open(args.times, "w") as f:
        json.dump({"epoch_end_times": clock.times, "train_examples": n_train, "logs": clock.logs}, f)


if __name__ == "__main__":
    main()
