"""The submit scripts refuse a GPU on a machine series Vertex AI would not give it, before anything
is written or run, with the tuner's table (tuner/spec.py) and its message."""
import pytest

from tests.scripts.support import BUCKET, PROJECT, REGION, one_line_error

SETTINGS = {"PROJECT_ID": PROJECT, "REGION": REGION, "BUCKET": BUCKET, "DISPLAY_NAME": "job-1"}
SCRIPTS = ["submit_training.sh", "submit_hptuning.sh"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_the_help_example_l4_on_the_default_machine_is_refused(run_script, standins, tmp_path, script):
    out = tmp_path / "out"
    result = run_script(script, f"--out-dir={out}", "--accelerator-type=NVIDIA_L4", env=SETTINGS)
    line = one_line_error(result)
    assert "NVIDIA_L4 needs machine type g2-*; got n1-standard-8" in line, line
    assert standins.costly() == []
    if script == "submit_training.sh":
        assert not out.exists()  # nothing written


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("machine_type,accelerator,series", [
    ("a2-highgpu-1g", "NVIDIA_H100_80GB", "a3-*"), ("g2-standard-8", "NVIDIA_TESLA_T4", "n1-*")])
def test_a_refused_pairing_names_the_series(run_script, standins, tmp_path, script, machine_type,
                                            accelerator, series):
    result = run_script(script, f"--out-dir={tmp_path / 'out'}", f"--machine-type={machine_type}",
                        f"--accelerator-type={accelerator}", "--workers=1", env=SETTINGS)
    line = one_line_error(result)
    assert f"{accelerator} needs machine type {series}; got {machine_type}" in line, line
    assert standins.costly() == []


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("machine_type,accelerator", [
    ("g2-standard-8", "NVIDIA_L4"), ("n1-standard-8", "NVIDIA_TESLA_T4"), ("a3-highgpu-8g", "NVIDIA_H100_80GB")])
def test_a_documented_pairing_is_submitted(run_script, standins, tmp_path, script, machine_type, accelerator):
    result = run_script(script, f"--out-dir={tmp_path / 'out'}", f"--machine-type={machine_type}",
                        f"--accelerator-type={accelerator}", env=SETTINGS)
    assert result.returncode == 0, result.stderr
    (call,) = standins.costly()
    assert call[:3] == ["gcloud", "ai", "custom-jobs" if script == "submit_training.sh" else "hp-tuning-jobs"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_more_gpus_than_the_machine_has_are_refused(run_script, standins, tmp_path, script):
    result = run_script(script, f"--out-dir={tmp_path / 'out'}", "--machine-type=a2-highgpu-1g",
                        "--accelerator-type=NVIDIA_TESLA_A100", "--accelerator-count=2", env=SETTINGS)
    line = one_line_error(result)
    assert "a2-highgpu-1g has 1 NVIDIA_TESLA_A100: acceleratorCount must be 1 to 1; got 2" in line, line
    assert standins.costly() == []
