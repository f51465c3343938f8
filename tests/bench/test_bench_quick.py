"""Each benchmark in bench/ runs in its --quick mode and writes its JSON (timings are not asserted:
this machine is shared and noisy; bench/RESULTS.md holds the figures of a full run)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# script -> (a key its JSON must hold, seconds it may take)
BENCHMARKS = {
    "trainer_overhead.py": ("cases", 300),
    "strategy_scaling.py": ("cases", 300),
    "tuner_overhead.py": ("suggestion_cost", 300),
    "parallel_efficiency.py": ("cases", 300),
    "search_quality.py": ("default_vs_random", 300),
    "resume_cost.py": ("runs", 300),
}


@pytest.mark.parametrize("script", list(BENCHMARKS))
def test_quick_mode_runs_and_writes_its_json(script, tmp_path):
    key, timeout = BENCHMARKS[script]
    done = subprocess.run([sys.executable, str(REPO / "bench" / script), "--quick", "--out", str(tmp_path)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    name = script.removesuffix(".py")
    record = json.loads((tmp_path / f"{name}_quick.json").read_text())
    assert record["benchmark"] == name and record["mode"] == "quick"
    assert record[key], f"{name}: no {key!r} in its JSON"
    assert record["machine"]["cores"] >= 1
    assert f"wrote {tmp_path / f'{name}_quick.json'}" in done.stdout
