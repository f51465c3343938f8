"""tensorflow-datasets -> tf.data pipelines for training and validation.

The validation set is a deterministic slice of the training split (the same examples on
every run and every worker), so trials are comparable and a resumed run sees the same data.
Each epoch's shuffle is seeded by the seed and the epoch number, so a run resumed at epoch k
sees the batches that an uninterrupted run sees from epoch k on.
"""
import contextlib
import dataclasses
import fcntl
import math
import os
import socket

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from trainer.config import BUILTIN_DATASET, Config
from trainer.errors import ConfigError, RunError

_STATS_SAMPLE = 10_000  # examples used to compute the input normalisation
_SEED_STRIDE = 1_000_000  # epochs per seed in the shuffle seeds: seed * stride + epoch


@dataclasses.dataclass(frozen=True)
class Datasets:
    examples: tf.data.Dataset  # the training examples, cached, in their stored order
    validation: tf.data.Dataset
    num_classes: int
    image_shape: tuple
    image_dtype: tf.DType
    train_examples: int
    steps_per_epoch: int
    pixel_mean: float
    pixel_std: float
    global_batch: int
    seed: int

    def epochs(self, first: int, end: int) -> tf.data.Dataset:
        """The batches of epochs first..end-1 as one dataset (`fit` with steps_per_epoch).

        Not one shuffle with reshuffle_each_iteration: its order depends on how many epochs
        this process ran, so a resumed run would see epoch 1's order again.
        """
        def epoch(number):
            return (self.examples.shuffle(self.train_examples, seed=self.seed * _SEED_STRIDE + number,
                                          reshuffle_each_iteration=False)
                    .batch(self.global_batch))

        return (tf.data.Dataset.range(first, end).flat_map(epoch)
                .prefetch(tf.data.AUTOTUNE)
                .with_options(_options()))


DOWNLOAD_HOST = ("storage.googleapis.com", 443)  # TFDS's own mirror, tried first for every dataset
PROBE_TIMEOUT_S = 5.0


def _offline_hint(config: Config) -> str:
    return (f"prepare it where there is network (python -c \"import tensorflow_datasets as tfds; "
            f"tfds.builder('{config.dataset}', data_dir='DIR').download_and_prepare()\"), copy DIR here "
            "and pass --data_dir=DIR")


def _check_download_possible(config: Config) -> None:
    """TFDS retries a download that cannot work for minutes, with a page of stderr each time: one
    connection attempt says at once whether it can (before anything is written: a usage error, exit 2).
    Behind a proxy, TFDS is left to find out."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return
    try:
        socket.create_connection(DOWNLOAD_HOST, timeout=PROBE_TIMEOUT_S).close()
    except OSError as e:
        raise ConfigError(f"--dataset={config.dataset} is not prepared in {config.data_dir or 'the TFDS default dir'} "
                          f"and cannot be downloaded: {DOWNLOAD_HOST[0]} is not reachable ({e.strerror or e}); "
                          + _offline_hint(config)) from None


def _builder(config: Config):
    if config.dataset == BUILTIN_DATASET:
        from trainer.datasets import uci_digits  # noqa: F401,PLC0415  (registers the builder)
    try:
        with _prepare_lock(config.data_dir):  # the builder reads what is prepared when it is made
            builder = tfds.builder(config.dataset, data_dir=config.data_dir)
            if config.dataset != BUILTIN_DATASET and not tf.io.gfile.exists(
                    os.path.join(builder.data_dir, "dataset_info.json")):
                _check_download_possible(config)
            builder.download_and_prepare()
    except ConfigError:
        raise
    except Exception as e:  # TFDS raises many types here: network, checksum, permissions
        raise RunError(
            f"could not prepare dataset {config.dataset!r} in {config.data_dir or 'the TFDS default dir'}: "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
            f"(offline? {_offline_hint(config)})") from e
    return builder


@contextlib.contextmanager
def _prepare_lock(data_dir):
    """Workers on one machine share a data dir: one prepares while the others wait, then reuse it."""
    if data_dir and data_dir.startswith("gs://"):
        yield  # prepared data on GCS is read, not written, by the trainer
        return
    directory = os.path.expanduser(data_dir or os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, ".trainer-prepare.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _split_names(builder, validation_split: float):
    total = builder.info.splits["train"].num_examples
    num_val = max(1, round(total * validation_split))
    num_train = total - num_val
    if num_train < 1:  # known only now, from TFDS; nothing is written to the output dirs yet
        raise ConfigError(f"--validation_split={validation_split} leaves no training example of the {total} in "
                          "the dataset; try --validation_split=0.2")
    return f"train[:{num_train}]", f"train[{num_train}:]", num_train


def _pixel_stats(dataset: tf.data.Dataset):
    """Mean and std of the raw pixels, so the exported model takes raw images."""
    images = np.concatenate([batch for batch, _ in tfds.as_numpy(dataset.take(_STATS_SAMPLE).batch(1024))])
    images = images.astype(np.float64)
    return float(images.mean()), float(images.std() or 1.0)


def load(config: Config, num_replicas: int) -> Datasets:
    builder = _builder(config)
    train_split, val_split, num_train = _split_names(builder, config.validation_split)
    read_config = tfds.ReadConfig(shuffle_seed=config.seed)
    train_raw, val_raw = builder.as_dataset(
        split=[train_split, val_split], as_supervised=True, shuffle_files=False, read_config=read_config)
    num_classes = builder.info.features[builder.info.supervised_keys[1]].num_classes
    image_feature = builder.info.features[builder.info.supervised_keys[0]]
    mean, std = _pixel_stats(train_raw)

    global_batch = config.batch_size * num_replicas

    def one_hot(image, label):
        return image, tf.one_hot(label, num_classes)

    examples = train_raw.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE).cache()
    validation = (val_raw.map(one_hot, num_parallel_calls=tf.data.AUTOTUNE)
                  .cache()
                  .batch(global_batch)
                  .prefetch(tf.data.AUTOTUNE)
                  .with_options(_options()))
    return Datasets(
        examples=examples, validation=validation, num_classes=num_classes,
        image_shape=tuple(image_feature.shape), image_dtype=image_feature.tf_dtype,
        train_examples=num_train, steps_per_epoch=math.ceil(num_train / global_batch),
        pixel_mean=mean, pixel_std=std, global_batch=global_batch, seed=config.seed)


def _options() -> tf.data.Options:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return options
