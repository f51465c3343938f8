"""What `tuner run` announces must be true of the study it runs (issue 14, point 12)."""
from tests.tuner.support import config, run_tuner

GRID = {"parameters": [{"parameterId": "x", "discreteValueSpec": {"values": [0.2, 0.7]}}],
        "algorithm": "GRID_SEARCH"}


def test_a_grid_smaller_than_the_budget_is_announced_with_its_size(write_config, tmp_path):
    result = run_tuner("run", write_config(config(maxTrialCount=10, study=GRID)),
                       "--output-dir", tmp_path / "study")
    assert result.returncode == 0, result.stderr
    assert "up to 2 trials" in result.stdout.splitlines()[0]


def test_resuming_a_finished_study_mentions_no_active_trials(write_config, tmp_path):
    path, out = write_config(config(maxTrialCount=2, study=GRID)), tmp_path / "study"
    assert run_tuner("run", path, "--output-dir", out).returncode == 0
    again = run_tuner("run", path, "--output-dir", out)
    assert again.returncode == 0, again.stderr
    line = next(entry for entry in again.stdout.splitlines() if entry.startswith("resuming:"))
    assert line == "resuming: 2 trial(s) finished"
