"""The strategy choice rules of DESIGN.md section 4."""
import json

import pytest

from tests.trainer.test_environment import vertex_cluster_spec, vertex_tf_config
from trainer import distribution, environment


@pytest.mark.parametrize("env, gpus, cpu_replicas, expected", [
    ({}, 0, 0, distribution.DEFAULT),
    ({}, 1, 0, distribution.DEFAULT),
    ({}, 4, 0, distribution.MIRRORED),
    ({}, 0, 2, distribution.MIRRORED),
    ({"CLUSTER_SPEC": vertex_cluster_spec("workerpool0", 0)}, 2, 0, distribution.MIRRORED),
    ({"TF_CONFIG": vertex_tf_config("chief", 0), "CLUSTER_SPEC": vertex_cluster_spec("workerpool0", 0)}, 0, 0,
     distribution.MULTI_WORKER),
    ({"TF_CONFIG": vertex_tf_config("worker", 1)}, 4, 0, distribution.MULTI_WORKER),
    ({"TF_CONFIG": json.dumps({"cluster": {"chief": ["h:1"]}, "task": {"type": "chief", "index": 0}})}, 0, 0,
     distribution.DEFAULT),
])
def test_strategy_choice(env, gpus, cpu_replicas, expected):
    assert distribution.choose(environment.cluster_from_env(env), gpus, cpu_replicas) == expected


def _cluster(task_type, index):
    tf_config = {"cluster": {"chief": ["127.0.0.1:40001"], "worker": ["127.0.0.1:40002", "127.0.0.1:40003"]},
                 "task": {"type": task_type, "index": index}}
    return environment.cluster_from_env({"TF_CONFIG": json.dumps(tf_config)})


# First lines of the errors TensorFlow 2.21 raised in real runs (worker 1 stopped, the chief killed,
# the chief stopped); each starts with the node name of the task that raised it.
HEARTBEAT = ("{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:chief/replica:0/task:0/"
             "device:CPU:0}} Collective ops is aborted by: Error reported from /job:worker/task:1: The following "
             "tasks are unhealthy (stopped sending heartbeats):\n/job:worker/replica:0/task:1\nThe tasks have crashed.")
REFUSED = ("{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/replica:0/task:1/"
           "device:CPU:0}} Collective ops is aborted by: failed to connect to all addresses; last error: UNKNOWN: "
           "ipv4:127.0.0.1:40001: Failed to connect to remote host: Connection refused\nAdditional GRPC error "
           "information from remote target /job:chief/replica:0/task:0 while calling "
           "/tensorflow.WorkerService/CompleteInstance:")
SILENT = ("{{function_node __wrapped__CollectiveReduceV2_Nordering_token_1_device_/job:worker/replica:0/task:0/"
          "device:CPU:0}} Collective ops is aborted by: Deadline Exceeded\n\nRPC: /tensorflow.CoordinationService/"
          "Heartbeat")


@pytest.mark.parametrize("me, message, expected", [
    (("chief", 0), HEARTBEAT, "worker:1 (127.0.0.1:40003)"),
    (("worker", 0), HEARTBEAT, "worker:1 (127.0.0.1:40003)"),
    (("worker", 1), REFUSED, "chief:0 (127.0.0.1:40001)"),
    (("worker", 0), SILENT,
     "another worker (TensorFlow's error does not say which: Collective ops is aborted by: Deadline Exceeded)"),
])
def test_the_lost_peer_is_named_as_the_cluster_names_it(me, message, expected):
    assert distribution.lost_peer(_cluster(*me), message) == expected
