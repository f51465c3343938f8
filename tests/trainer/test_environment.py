"""TF_CONFIG and CLUSTER_SPEC, in the shapes Vertex AI sets (reference/vertex.md section 4)."""
import json

import pytest

from trainer import environment
from trainer.errors import ConfigError

CHIEF = "cmle-training-workerpool0-ab12-0:2222"
WORKERS = ["cmle-training-workerpool1-ab12-0:2222", "cmle-training-workerpool1-ab12-1:2222"]


def vertex_tf_config(task_type, index, trial=None):
    task = {"type": task_type, "index": index}
    if trial:
        task["trial"] = trial
    return json.dumps({"cluster": {"chief": [CHIEF], "worker": WORKERS}, "task": task,
                       "environment": "cloud", "job": {"worker_pool_specs": []}})


def vertex_cluster_spec(pool, index):
    return json.dumps({"cluster": {"workerpool0": [CHIEF], "workerpool1": WORKERS}, "environment": "cloud",
                       "task": {"type": pool, "index": index, "trial": "3"}})


def test_no_tf_config_is_a_single_chief():
    cluster = environment.cluster_from_env({})
    assert (cluster.role, cluster.num_workers, cluster.is_chief, cluster.is_multi_worker) == ("chief", 1, True, False)


def test_single_replica_vertex_job_sets_only_cluster_spec():
    spec = json.dumps({"cluster": {"workerpool0": [CHIEF]}, "environment": "cloud",
                       "task": {"type": "workerpool0", "index": 0}})
    assert environment.cluster_from_env({"CLUSTER_SPEC": spec}) == environment.SINGLE


@pytest.mark.parametrize("task_type, index, is_chief", [("chief", 0, True), ("worker", 0, False), ("worker", 1, False)])
def test_vertex_multi_worker_roles(task_type, index, is_chief):
    env = {"TF_CONFIG": vertex_tf_config(task_type, index, trial="3"),
           "CLUSTER_SPEC": vertex_cluster_spec("workerpool0" if is_chief else "workerpool1", index)}
    cluster = environment.cluster_from_env(env)
    assert cluster.num_workers == 3  # the chief is a worker too
    assert ((cluster.role, cluster.index, cluster.is_chief, cluster.is_multi_worker)
            == (task_type, index, is_chief, True))


def test_without_a_chief_worker_zero_is_chief():
    tf_config = json.dumps({"cluster": {"worker": WORKERS}, "task": {"type": "worker", "index": 0}})
    assert environment.cluster_from_env({"TF_CONFIG": tf_config}).is_chief


def test_chief_only_tf_config_is_single_worker():
    tf_config = json.dumps({"cluster": {"chief": [CHIEF]}, "task": {"type": "chief", "index": 0}})
    cluster = environment.cluster_from_env({"TF_CONFIG": tf_config})
    assert cluster.is_chief and not cluster.is_multi_worker


@pytest.mark.parametrize("env, message", [
    ({"TF_CONFIG": "{not json"}, "TF_CONFIG is not valid JSON"),
    ({"TF_CONFIG": "[1]"}, "TF_CONFIG must be a JSON object"),
    ({"CLUSTER_SPEC": "{oops"}, "CLUSTER_SPEC is not valid JSON"),
    ({"TF_CONFIG": json.dumps({"cluster": {"workerpool0": [CHIEF]}, "task": {"type": "workerpool0", "index": 0}})},
     "cluster roles ['workerpool0'] are not supported"),
    ({"TF_CONFIG": json.dumps({"cluster": {"chief": [CHIEF], "ps": ["p:1"]}, "task": {"type": "chief", "index": 0}})},
     "cluster roles ['ps'] are not supported"),
    ({"TF_CONFIG": json.dumps({"cluster": {"chief": [CHIEF], "worker": WORKERS},
                               "task": {"type": "worker", "index": 5}})},
     "task worker:5 is not in the cluster"),
    ({"TF_CONFIG": json.dumps({"cluster": {"chief": [CHIEF]}, "task": {"type": "evaluator", "index": 0}})},
     "task.type must be 'chief' or 'worker'"),
])
def test_unusable_environment_is_a_clear_error(env, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        environment.cluster_from_env(env)
