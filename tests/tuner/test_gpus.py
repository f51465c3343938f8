"""GPU slots on real NVIDIA GPUs: what each trial process sees, asked of the CUDA driver.

Skipped where `nvidia-smi -L` lists no GPU. The trial asks libcuda (through ctypes, so no
PyTorch or TensorFlow is needed) how many devices it can use and their UUIDs. The slot logic
itself is tested everywhere in test_runner.py and by the dry run in test_studies.py.
"""
import json
import sys

import pytest

from tests.tuner.support import config, read_csv, run_tuner, tuner_env
from tuner.runner import visible_gpus

GPUS = visible_gpus({})  # what nvidia-smi lists, whatever this shell's CUDA_VISIBLE_DEVICES

pytestmark = pytest.mark.skipif(not GPUS, reason="no NVIDIA GPU (nvidia-smi -L) on this machine")

SEES = r"""
import ctypes, json, os, sys
import hypertune
cuda = ctypes.CDLL("libcuda.so.1")
assert cuda.cuInit(0) == 0
count = ctypes.c_int()
assert cuda.cuDeviceGetCount(ctypes.byref(count)) == 0
uuids = []
for i in range(count.value):
    device, uuid = ctypes.c_int(), ctypes.create_string_buffer(16)
    cuda.cuDeviceGet(ctypes.byref(device), i)
    cuda.cuDeviceGetUuid(uuid, device)
    uuids.append(uuid.raw.hex())
with open(os.path.join(os.environ["AIP_MODEL_DIR"], "sees.json"), "w") as f:
    json.dump({"uuids": uuids, "cuda_visible_devices": os.environ["CUDA_VISIBLE_DEVICES"],
               "growth": os.environ.get("TF_FORCE_GPU_ALLOW_GROWTH")}, f)
hypertune.HyperTune().report_hyperparameter_tuning_metric(
    hyperparameter_metric_tag="score", metric_value=count.value, global_step=1)
"""


def test_each_trial_sees_its_own_gpu(write_config, tmp_path):
    per_gpu = 2
    parallel = len(GPUS) * per_gpu
    doc = config(maxTrialCount=parallel, parallelTrialCount=parallel,
                 study={"algorithm": "RANDOM_SEARCH"})
    out = tmp_path / "study"
    env = tuner_env()
    env.pop("CUDA_VISIBLE_DEVICES", None)
    result = run_tuner("run", write_config(doc), "--output-dir", out, "--gpus", "all",
                       "--trials-per-gpu", per_gpu, "--", sys.executable, "-c", SEES, env=env)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    rows = read_csv(out / "trials.csv")
    assert [float(r["value"]) for r in rows] == [1.0] * parallel  # one device each
    seen = [json.loads((out / r["trial_id"] / "model" / "sees.json").read_text()) for r in rows]
    by_gpu = {}
    for s in seen:
        by_gpu.setdefault(s["cuda_visible_devices"], set()).update(s["uuids"])
        assert s["growth"] == "true"  # two trials per GPU
    assert sorted(by_gpu) == sorted(GPUS)
    assert all(len(uuids) == 1 for uuids in by_gpu.values())  # same GPU, same device
    assert len({u for uuids in by_gpu.values() for u in uuids}) == len(GPUS)
