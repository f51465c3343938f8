"""The distribution strategy, from the Cluster and the visible devices.

It must be created before any other TensorFlow op: MultiWorkerMirroredStrategy raises
"Collective ops must be configured at program startup" otherwise, and logical CPU devices
can only be configured before the runtime starts.
"""
import logging
import re

import tensorflow as tf

from trainer.config import Config
from trainer.environment import Cluster
from trainer.watchdog import StartupWatchdog

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


def _multi_worker(config: Config) -> tf.distribute.MultiWorkerMirroredStrategy:
    """MWMS, with its start-up bounded by a watchdog process.

    Its collectives get no timeout: TensorFlow keeps one thread asleep for the whole timeout per
    timed collective (a dozen a step), so a long run exhausts the thread limit and aborts. A dead
    or frozen peer is found without it, by the coordination service's heartbeat (about 10 s).
    """
    log.info("Waiting up to %d s for %d workers to join (this is %s)", config.startup_timeout,
             config.cluster.num_workers, config.cluster.task_name)
    watchdog = StartupWatchdog(config.startup_timeout, config.cluster.task_name, config.cluster.peers())
    try:
        return tf.distribute.MultiWorkerMirroredStrategy()
    finally:
        watchdog.cancel()


def create(config: Config) -> tf.distribute.Strategy:
    gpus = tf.config.list_physical_devices("GPU")
    kind = choose(config.cluster, len(gpus), config.cpu_replicas)
    if kind == MULTI_WORKER:
        strategy = _multi_worker(config)
    elif kind == MIRRORED:
        devices = None if len(gpus) > 1 else _split_cpu(config.cpu_replicas)
        strategy = tf.distribute.MirroredStrategy(devices=devices)
    else:
        strategy = tf.distribute.get_strategy()
    log.info("Strategy: %s with %d replica(s)%s", name(strategy), strategy.num_replicas_in_sync,
             f" ({config.cluster.num_workers} workers, this is {config.cluster.task_name})"
             if config.cluster.is_multi_worker else "")
    return strategy


def name(strategy: tf.distribute.Strategy) -> str:
    """The public name (MWMS's class is CollectiveAllReduceStrategy; the default one is private)."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return "DefaultStrategy" if strategy is tf.distribute.get_strategy() else type(strategy).__name__


# A task as TensorFlow names it in errors: /job:worker/replica:0/task:1 or /job:worker/task:1.
_TF_TASK = re.compile(r"/job:(chief|worker)(?:/replica:\d+)?/task:(\d+)")


def lost_peer(cluster: Cluster, message: str) -> str:
    """Who a collective error is about, as the user knows them: `worker:1 (host:port)`.

    An address is the surest sign (a connection to it failed); else TensorFlow's task names.
    The `{{function_node ...}}` prefix names this task's own device, not the peer. When the
    message names no peer, it says so rather than guessing.
    """
    message = re.sub(r"\{\{.*?\}\}\s*", "", message).strip()
    peers = cluster.peers()
    by_address = [name for name, address in peers.items()
                  if re.search(r"(?<![\w.])" + re.escape(address) + r"(?!\d)", message)]
    named = by_address or [f"{job}:{task}" for job, task in _TF_TASK.findall(message)]
    lost = [f"{name} ({peers[name]})" for name in dict.fromkeys(named) if name in peers]
    if lost:
        return " and ".join(lost)
    first_line = message.splitlines()[0] if message else "no message"
    return f"another worker (TensorFlow's error does not say which: {first_line})"
