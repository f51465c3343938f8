"""Multi-metric studies: `python -m tuner run` with trial processes that report two metrics.

The trial script reports score = 1 - (x - 0.7)^2 (MAXIMIZE) and, with --metric2=latency,
latency = 100 x (MINIMIZE) at each step: below x = 0.7 they trade off, so the Pareto front is
known from the trials' own values, which the test reads back from trials.csv.
"""
import json

import pytest

from tests.tuner.support import config, last_line, read_csv, run_tuner

METRICS = [{"metricId": "score", "goal": "MAXIMIZE"}, {"metricId": "latency", "goal": "MINIMIZE"}]
MODES = {"parameterId": "mode", "categoricalValueSpec": {"values": ["ok", "one"]}}


def two_metrics(**changes):
    study = {"metrics": METRICS, **changes.pop("study", {})}
    return config(study=study, args=["--steps=2", "--sleep=0.05", "--metric2=latency"],
                  **changes)


def non_dominated(rows):
    """The trial ids of the SUCCEEDED rows no other row beats on both metrics."""
    done = [(r["trial_id"], float(r["score"]), -float(r["latency"])) for r in rows
            if r["state"] == "SUCCEEDED"]
    return {t for t, s, lat in done
            if not any(s2 >= s and lat2 >= lat and (s2, lat2) != (s, lat) for _, s2, lat2 in done)}


def test_a_two_metric_study_gives_its_pareto_front(write_config, tmp_path):
    path = write_config(two_metrics(maxTrialCount=8))  # the default search: multi-objective TPE
    out = tmp_path / "study"
    result = run_tuner("run", path, "--output-dir", out, "--seed", "4")
    assert result.returncode == 0, result.stderr
    rows = read_csv(out / "trials.csv")
    assert list(rows[0]) == ["trial_id", "state", "score", "latency", "steps", "elapsed_s", "x",
                             "reason"]
    assert len(rows) == 8
    for row in rows:
        x = float(row["x"])
        assert row["state"] == "SUCCEEDED" and row["reason"] == ""
        assert float(row["score"]) == pytest.approx(1 - (x - 0.7) ** 2)
        assert float(row["latency"]) == pytest.approx(100 * x)
    front = non_dominated(rows)
    document = json.loads((out / "best_trial.json").read_text())
    assert document["metrics"] == {"score": "MAXIMIZE", "latency": "MINIMIZE"}
    listed = document["pareto_front"]
    assert {t["trial_id"] for t in listed} == front and len(listed) == len(front)
    by_id = {r["trial_id"]: r for r in rows}
    for trial in listed:
        row = by_id[trial["trial_id"]]
        assert trial["values"] == {"score": float(row["score"]),
                                   "latency": float(row["latency"])}
        assert trial["parameters"] == {"x": row["x"]}
        assert trial["command"].endswith(f"--metric2=latency --x={row['x']}")
    scores = [t["values"]["score"] for t in listed]
    assert scores == sorted(scores, reverse=True)  # best first metric first
    for name in ("pareto_front.png", "history.png", "curves.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stdout = result.stdout
    assert "score MAXIMIZE, latency MINIMIZE, multi-objective TPE" in stdout
    assert "trial 1 step 2: score=" in stdout and "trial 1 step 2: latency=" in stdout
    header = next(line for line in stdout.splitlines() if line.startswith("trial  state"))
    assert header.split()[:4] == ["trial", "state", "score", "latency"]
    assert (f"Pareto front (score MAXIMIZE, latency MINIMIZE): {len(front)} trial(s)"
            in stdout)
    for trial in listed:
        assert f"  trial {trial['trial_id']}: score=" in stdout
    assert "best trial" not in stdout
    # `results` shows the same front again from the journal
    (out / "best_trial.json").unlink()
    again = run_tuner("results", out)
    assert again.returncode == 0, again.stderr
    assert json.loads((out / "best_trial.json").read_text()) == document
    assert f"Pareto front (score MAXIMIZE, latency MINIMIZE): {len(front)} trial(s)" in (
        again.stdout)


def test_a_trial_missing_a_metric_is_infeasible(write_config, tmp_path):
    path = write_config(two_metrics(maxTrialCount=2, maxFailedTrialCount=2,
                                    study={"algorithm": "GRID_SEARCH", "parameters": [MODES]}))
    out = tmp_path / "study"
    result = run_tuner("run", path, "--output-dir", out)
    assert result.returncode == 0, result.stderr
    rows = {r["mode"]: r for r in read_csv(out / "trials.csv")}
    assert rows["ok"]["state"] == "SUCCEEDED"
    assert (rows["one"]["state"], rows["one"]["score"], rows["one"]["latency"]) == (
        "INFEASIBLE", "", "")
    assert rows["one"]["reason"] == "reported no value for 'latency' (it reported score)"
    document = json.loads((out / "best_trial.json").read_text())
    assert [t["trial_id"] for t in document["pareto_front"]] == [rows["ok"]["trial_id"]]


@pytest.mark.parametrize("change,field,words", [
    ({"measurementSelectionType": "BEST_MEASUREMENT"}, "studySpec.measurementSelectionType",
     "BEST_MEASUREMENT with 2 metrics is not run locally: Vertex does not document which "
     "measurement is best over several metrics; use LAST_MEASUREMENT (or one metric)"),
    ({"medianAutomatedStoppingSpec": {}}, "studySpec.medianAutomatedStoppingSpec",
     "with 2 metrics is not run locally: Vertex documents its rule for one objective value "
     "only; remove it (or keep one metric) to run it here"),
    ({"decayCurveStoppingSpec": {"useElapsedDuration": True}},
     "studySpec.decayCurveStoppingSpec", "with 2 metrics is not run locally"),
])
def test_run_refuses_what_vertex_leaves_undocumented_for_several_metrics(
        write_config, tmp_path, change, field, words):
    path = write_config(two_metrics(study=change))
    validated = run_tuner("validate", path)
    assert validated.returncode == 0, validated.stderr
    assert validated.stdout.startswith(f"OK: {path} is a valid Vertex AI")
    assert "metrics score MAXIMIZE, latency MINIMIZE" in validated.stdout
    assert validated.stderr.startswith(f"note: `python -m tuner run` will refuse it: {field}: ")
    out = tmp_path / "study"
    result = run_tuner("run", path, "--output-dir", out)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert last_line(result.stderr).startswith(f"error: {path}: {field}: ")
    assert words in result.stderr
    assert not out.exists() and result.stdout == ""


def test_validate_lists_every_metric_and_its_goal(write_config):
    result = run_tuner("validate", write_config(two_metrics()))
    assert result.returncode == 0 and result.stderr == ""
    assert "metrics score MAXIMIZE, latency MINIMIZE, 1 parameters)" in result.stdout
