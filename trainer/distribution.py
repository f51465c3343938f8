"""The distribution strategy, from the Cluster and the visible devices.

It must be created before any other TensorFlow op: MultiWorkerMirroredStrategy raises
"Collective ops must be configured at program startup" otherwise, and logical CPU devices
can only be configured before the runtime starts.
"""
import logging

import tensorflow as tf

from trainer.config import Config
from trainer.environment import Cluster

log = logging.getLogger(__name__)

MULTI_WORKER, MIRRORED, DEFAULT = "multi_worker", "mirrored", "default"


def choose(cluster: Cluster, num_gpus: int, cpu_replicas: int) -> str:
    """MWMS only when TF_CONFIG lists more than one training task; else mirror over several
    local devices; else the default strategy (DESIGN.md section 4)."""
    if cluster.is_multi_worker:
        return MULTI_WORKER
    if num_gpus > 1 or cpu_replicas > 1:
        return MIRRORED
    return DEFAULT


def _split_cpu(n: int) -> list[str]:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    return [f"/cpu:{i}" for i in range(n)]


def create(config: Config) -> tf.distribute.Strategy:
    gpus = tf.config.list_physical_devices("GPU")
    kind = choose(config.cluster, len(gpus), config.cpu_replicas)
    if kind == MULTI_WORKER:
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    elif kind == MIRRORED:
        devices = None if len(gpus) > 1 else _split_cpu(config.cpu_replicas)
        strategy = tf.distribute.MirroredStrategy(devices=devices)
    else:
        strategy = tf.distribute.get_strategy()
    log.info("Strategy: %s with %d replica(s)%s", type(strategy).__name__, strategy.num_replicas_in_sync,
             f" ({config.cluster.num_workers} workers, this is {config.cluster.task_name})"
             if config.cluster.is_multi_worker else "")
    return strategy
