"""What Vertex AI tells the container: TF_CONFIG and CLUSTER_SPEC, read into a small Cluster.

Vertex sets TF_CONFIG only for multi-replica jobs (pool 0 = `chief`, pool 1 = `worker`);
CLUSTER_SPEC, set on every replica, uses `workerpoolN` names that TensorFlow rejects, so it
never decides the strategy.
"""
import dataclasses
import json
import os

from trainer.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Cluster:
    role: str  # "chief" or "worker"
    index: int
    num_workers: int  # training tasks: chief + workers (the chief is itself a worker)
    is_chief: bool
    tf_config: dict | None = None

    @property
    def is_multi_worker(self) -> bool:
        return self.num_workers > 1

    @property
    def task_name(self) -> str:
        return f"{self.role}:{self.index}"

    def peers(self) -> dict[str, str]:
        """The other training tasks, name -> address, from TF_CONFIG."""
        cluster = (self.tf_config or {}).get("cluster", {})
        return {f"{role}:{i}": address
                for role in ("chief", "worker") for i, address in enumerate(cluster.get(role, []))
                if (role, i) != (self.role, self.index)}


SINGLE = Cluster(role="chief", index=0, num_workers=1, is_chief=True)


def _load_json(env, name):
    raw = env.get(name, "").strip()
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{name} is not valid JSON ({e.msg} at char {e.pos}); fix or unset it") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{name} must be a JSON object, got {type(value).__name__}")
    return value


def cluster_from_env(env=os.environ) -> Cluster:
    """Reads TF_CONFIG (the only source of the multi-worker role); CLUSTER_SPEC is checked, not used."""
    _load_json(env, "CLUSTER_SPEC")  # a malformed CLUSTER_SPEC is worth a clear error, nothing more
    tf_config = _load_json(env, "TF_CONFIG")
    if not tf_config:
        return SINGLE
    cluster = tf_config.get("cluster") or {}
    task = tf_config.get("task") or {}
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise ConfigError("TF_CONFIG: 'cluster' and 'task' must be JSON objects")
    unsupported = sorted(set(cluster) - {"chief", "worker"})
    if unsupported:
        raise ConfigError(
            f"TF_CONFIG: cluster roles {unsupported} are not supported; this trainer runs "
            "MultiWorkerMirroredStrategy with pool 0 (chief) and pool 1 (workers) only")
    chiefs, workers = cluster.get("chief", []), cluster.get("worker", [])
    if len(chiefs) > 1:
        raise ConfigError(f"TF_CONFIG: at most one chief, got {len(chiefs)}")
    role = task.get("type")
    try:
        index = int(task.get("index", 0))
    except (TypeError, ValueError):
        raise ConfigError(f"TF_CONFIG: task.index must be an integer, got {task.get('index')!r}") from None
    members = {"chief": chiefs, "worker": workers}.get(role)
    if members is None:
        raise ConfigError(f"TF_CONFIG: task.type must be 'chief' or 'worker', got {role!r}")
    if not 0 <= index < len(members):
        raise ConfigError(f"TF_CONFIG: task {role}:{index} is not in the cluster ({len(members)} {role})")
    # Without a chief, worker 0 is the chief (TensorFlow's rule).
    is_chief = role == "chief" or (not chiefs and index == 0)
    return Cluster(role=role, index=index, num_workers=len(chiefs) + len(workers), is_chief=is_chief,
                   tf_config=tf_config)
