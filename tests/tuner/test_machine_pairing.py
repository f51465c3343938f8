"""`tuner validate` refuses a GPU on a machine series the service would not give it."""
import copy

import pytest

from tests.tuner.support import BASE, last_line, run_tuner, write_yaml

VALID = [("n1-standard-8", "NVIDIA_TESLA_T4"), ("n1-highmem-16", "NVIDIA_TESLA_V100"),
         ("g2-standard-8", "NVIDIA_L4"), ("a2-highgpu-1g", "NVIDIA_TESLA_A100"),
         ("a2-ultragpu-1g", "NVIDIA_A100_80GB"), ("a3-highgpu-8g", "NVIDIA_H100_80GB"),
         ("a3-megagpu-8g", "NVIDIA_H100_MEGA_80GB"), ("a3-ultragpu-8g", "NVIDIA_H200_141GB"),
         ("a4-highgpu-8g", "NVIDIA_B200"), ("a4x-highgpu-4g", "NVIDIA_GB200"),
         ("g4-standard-48", "NVIDIA_RTX_PRO_6000")]
REFUSED = [("n1-standard-4", "NVIDIA_L4", "g2-*"), ("n1-standard-8", "NVIDIA_TESLA_A100", "a2-*"),
           ("a2-highgpu-8g", "NVIDIA_H100_80GB", "a3-*"), ("g2-standard-8", "NVIDIA_TESLA_T4", "n1-*"),
           ("e2-standard-4", "NVIDIA_TESLA_T4", "n1-*"), ("a4x-highgpu-4g", "NVIDIA_B200", "a4-*")]


def job(tmp_path, machine_type, accelerator, pool=0):
    doc = copy.deepcopy(BASE)
    pools = doc["trialJobSpec"]["workerPoolSpecs"]
    pools.append(copy.deepcopy(pools[0]))
    pools[pool]["machineSpec"] = {"machineType": machine_type, "acceleratorType": accelerator,
                                  "acceleratorCount": 1}
    return write_yaml(tmp_path / "job.yaml", doc)


@pytest.mark.parametrize("machine_type,accelerator", VALID)
def test_a_documented_pairing_is_accepted(tmp_path, machine_type, accelerator):
    result = run_tuner("validate", job(tmp_path, machine_type, accelerator))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("pool", [0, 1])
@pytest.mark.parametrize("machine_type,accelerator,series", REFUSED)
def test_a_pairing_the_service_refuses_is_refused_with_the_fix(tmp_path, machine_type, accelerator,
                                                               series, pool):
    result = run_tuner("validate", job(tmp_path, machine_type, accelerator, pool))
    assert result.returncode == 2
    line = last_line(result.stderr)
    assert f"workerPoolSpecs[{pool}].machineSpec.machineType" in line, line
    assert f"{accelerator} needs machine type {series}; got {machine_type}" in line, line


def test_more_gpus_than_an_accelerator_optimized_machine_has_are_refused(tmp_path):
    path = job(tmp_path, "a3-highgpu-2g", "NVIDIA_H100_80GB")
    doc = path.read_text().replace("acceleratorCount: 1", "acceleratorCount: 4")
    path.write_text(doc)
    result = run_tuner("validate", path)
    assert result.returncode == 2
    assert "a3-highgpu-2g has 2 NVIDIA_H100_80GB: acceleratorCount must be 1 to 2; got 4" in last_line(result.stderr)
    path.write_text(doc.replace("acceleratorCount: 4", "acceleratorCount: 2"))
    assert run_tuner("validate", path).returncode == 0
