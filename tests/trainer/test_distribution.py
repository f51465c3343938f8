"""The strategy choice rules of DESIGN.md section 4."""
import json

import pytest

from trainer import distribution, environment
from tests.trainer.test_environment import vertex_cluster_spec, vertex_tf_config


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
