"""The results of a study: `python -m tuner results gs://...` (a cloud tuning job's table, from its
trials' files) and the plots, drawn by optuna.visualization from a local study or a cloud job's
files through one in-memory Optuna study.

The bucket is the session's GCS emulator (tests/support/gcs.py); the tuner reaches it through
google-cloud-storage and STORAGE_EMULATOR_HOST, as it would reach GCS with real credentials.
"""
import json
import os

import pytest

from tests.tuner.support import assert_png, config, local_study, read_csv, run_tuner, tuner_env
from tuner import results
from tuner import study as study_mod
from tuner.trial import TrialState

PLOTS = ("history.png", "parallel_coordinates.png", "curves.png", "param_importances.png")


def _metrics(final, best, learning_rate, optimizer, epochs=5):
    return {"metric": "val_accuracy", "final": final, "best": best, "best_epoch": 3,
            "val_loss_final": 0.3, "val_loss_best": 0.25, "epochs_run": epochs,
            "wall_time_s": 12.5, "strategy": "DefaultStrategy", "num_replicas": 1,
            "hyperparameters": {"learning_rate": learning_rate, "batch_size": 64,
                                "optimizer": optimizer, "epochs": epochs},
            "versions": {"tensorflow": "2.21.0"}}


def _history(*values):
    """The trainer's checkpoints/history.json: one record per epoch."""
    return json.dumps([{"epoch": i + 1, "time": 1.0e9 + i, "val_accuracy": v, "loss": 1.0}
                       for i, v in enumerate(values)])


CURVES = {"1": (0.5, 0.93, 0.91), "2": (0.6, 0.95), "3": (0.7, 0.96)}  # trial 10 has none


def _upload(gcs_emulator, bucket, trials):
    target = gcs_emulator.client().bucket(bucket)
    for name, content in trials.items():
        target.blob(name).upload_from_string(content)


def _upload_cloud_job(gcs_emulator, bucket):
    _upload(gcs_emulator, bucket, {
        "hpt-1/1/model/metrics.json": json.dumps(_metrics(0.91, 0.93, 0.01, "adam")),
        "hpt-1/2/model/metrics.json": json.dumps(_metrics(0.95, 0.95, 0.003, "sgd")),
        "hpt-1/3/model/metrics.json": json.dumps(_metrics(0.80, 0.96, 0.1, "adam", epochs=2)),
        "hpt-1/4/checkpoints/ckpt-1.index": "x",  # a trial that never wrote its metrics
        "hpt-1/10/model/metrics.json": json.dumps(_metrics(0.90, 0.92, 0.02, "sgd")),
        "other/1/model/metrics.json": json.dumps(_metrics(0.99, 0.99, 0.5, "adam")),
        **{f"hpt-1/{t}/checkpoints/history.json": _history(*v) for t, v in CURVES.items()},
    })


def _history_points(axes, metric):
    """The (trial number, value) points of optuna's optimization history plot."""
    [points] = [c for c in axes.collections if c.get_label() == metric]
    return [tuple(xy) for xy in points.get_offsets().tolist()]


def test_results_of_a_cloud_job(gcs_emulator, gcs_bucket, tmp_path, write_config):
    _upload_cloud_job(gcs_emulator, gcs_bucket)
    env = tuner_env(**gcs_emulator.client_env())
    out = tmp_path / "table"
    result = run_tuner("results", f"gs://{gcs_bucket}/hpt-1", "--output-dir", out, env=env)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "MAXIMIZE with the last measurement" in lines[0]
    header = lines[1].split()
    assert header == ["trial", "state", "val_accuracy", "steps", "elapsed_s", "learning_rate",
                      "optimizer", "epochs", "reason"]  # only the flags that differ
    assert [line.split()[0] for line in lines[2:7]] == ["2", "1", "10", "3", "4"]
    assert "best trial 2: val_accuracy=0.95" in result.stdout
    rows = read_csv(out / "trials.csv")
    assert [(r["trial_id"], r["state"], r["value"]) for r in rows] == [
        ("1", "SUCCEEDED", "0.91"), ("2", "SUCCEEDED", "0.95"), ("3", "SUCCEEDED", "0.8"),
        ("4", "INFEASIBLE", ""), ("10", "SUCCEEDED", "0.9")]
    assert rows[2]["steps"] == "2" and rows[2]["elapsed_s"] == "12.5"
    best = json.loads((out / "best_trial.json").read_text())
    assert best["trial_id"] == "2"
    assert best["command"] == ("python -m trainer.task --learning_rate=0.003 --batch_size=64 "
                               "--optimizer=sgd --epochs=5")
    for name in PLOTS:
        assert_png(out / name)

    # with the job's config: its metric goal, measurement selection and parameter columns
    job = config(study={"metrics": [{"metricId": "val_accuracy", "goal": "MAXIMIZE"}],
                        "measurementSelectionType": "BEST_MEASUREMENT",
                        "parameters": [{"parameterId": "learning_rate",
                                        "doubleValueSpec": {"minValue": 0.001,
                                                            "maxValue": 0.1}}]})
    with_config = run_tuner("results", f"gs://{gcs_bucket}/hpt-1", "--config",
                            write_config(job), env=env)
    assert with_config.returncode == 0, with_config.stderr
    assert with_config.stdout.splitlines()[0].split() == [
        "trial", "state", "val_accuracy", "steps", "elapsed_s", "learning_rate", "reason"]
    assert "best trial 3: val_accuracy=0.96" in with_config.stdout


def test_an_empty_prefix_is_an_error(gcs_emulator, gcs_bucket):
    env = tuner_env(**gcs_emulator.client_env())
    result = run_tuner("results", f"gs://{gcs_bucket}/nothing-here", env=env)
    assert result.returncode == 2
    assert "no trial folders" in result.stderr


def test_a_cloud_jobs_plots_come_from_its_trials(gcs_emulator, gcs_bucket, monkeypatch):
    """The same in-memory study as a local one: its values, its parameters, and the curves of
    the trainer's history.json as intermediate values."""
    _upload_cloud_job(gcs_emulator, gcs_bucket)
    for key, value in gcs_emulator.client_env().items():
        monkeypatch.setenv(key, value)
    rows, parameter_ids, metric = results.rows_from_gcs(f"gs://{gcs_bucket}/hpt-1", None)
    objectives = ((metric, True),)
    study = results.plotted_study(rows, parameter_ids, objectives)
    drawn = results.figures(study, objectives)
    # trials 1, 2, 3, 4, 10 are numbers 0-4 in the in-memory study; trial 4 has no value
    assert _history_points(drawn["history.png"], metric) == [(0, 0.91), (1, 0.95), (2, 0.8),
                                                             (4, 0.9)]
    curves = {tuple(line.get_ydata()) for line in drawn["curves.png"].lines}
    assert curves == set(CURVES.values())
    importances = drawn["param_importances.png"]
    assert sorted(t.get_text() for t in importances.get_yticklabels()) == sorted(parameter_ids)
    lines = drawn["parallel_coordinates.png"].collections[0].get_segments()
    assert len(lines) == 4  # one line per trial with a value


def test_a_local_studys_plots_come_from_its_trials(tmp_path):
    scores = [(0.2, 0.4), (0.5, 0.3, 0.6), None, (0.1, 0.9)]
    job, study = local_study(tmp_path, scores)
    rows = results.rows_from_records(job, study.records())
    objectives = ((job.metric, True),)
    drawn = results.figures(results.plotted_study(rows, job.parameter_ids(), objectives),
                            objectives)
    assert _history_points(drawn["history.png"], job.metric) == [(0, 0.4), (1, 0.6), (3, 0.9)]
    assert {tuple(line.get_ydata()) for line in drawn["curves.png"].lines} == {
        s for s in scores if s}
    # the values the trials received (16, 64, 256), not Optuna's index of them (0, 1, 2)
    received = {float(r.parameters["batch_size"]) for r in rows}
    assert received <= {16.0, 64.0, 256.0}
    assert {t.params["batch_size"] for t in results.plotted_study(
        rows, job.parameter_ids(), objectives).get_trials()} == received

    written = results.write_files(str(tmp_path), rows, job.parameter_ids(), True, job.metric,
                                  plots=True)
    assert written == ["trials.csv", "best_trial.json", *PLOTS]
    for name in PLOTS:
        assert_png(tmp_path / name)


@pytest.mark.parametrize("scores, parameters, missing", [
    ([None, None], ["x", "batch_size"], {"history.png": "no trial has a value",
                                         "parallel_coordinates.png": "no trial has a value",
                                         "curves.png": "no trial reported intermediate",
                                         "param_importances.png": "no trial has a value"}),
    ([(0.3,)], ["x", "batch_size"], {"parallel_coordinates.png": "one trial has a value",
                                     "param_importances.png": "one trial has a value"}),
    ([(0.3,), (0.5,)], ["x"], {"param_importances.png": "one parameter"}),
], ids=["all-failed", "one-trial", "one-parameter"])
def test_a_plot_a_study_cannot_show_is_not_drawn_and_says_why(tmp_path, capsys, scores,
                                                              parameters, missing):
    job, study = local_study(tmp_path, scores)
    rows = results.rows_from_records(job, study.records())
    stale = tmp_path / "param_importances.png"
    stale.write_bytes(b"an earlier run's plot")
    written = results.write_plots(str(tmp_path), rows, parameters, ((job.metric, True),))
    assert written == [name for name in PLOTS if name not in missing]
    out = capsys.readouterr().out
    for name, why in missing.items():
        assert f"{name} not drawn: {why}" in out
        assert not (tmp_path / name).exists()
    for name in written:
        assert_png(tmp_path / name)


def test_the_pareto_front_and_its_plot_with_three_metrics(tmp_path):
    objectives = (("acc", True), ("latency", False), ("size", False))
    points = {"1": (0.9, 10.0, 5.0), "2": (0.9, 10.0, 5.0),  # equal: neither beats the other
              "3": (0.8, 10.0, 5.0),  # beaten by 1 on acc alone
              "4": (0.7, 5.0, 9.0), "5": (0.95, 20.0, 1.0)}
    rows = [results.Row(t, TrialState.SUCCEEDED, v[0], 2, 1.0, {"x": t, "y": str(v[2])},
                        values=v) for t, v in points.items()]
    rows.append(results.Row("6", TrialState.INFEASIBLE, None, 0, 1.0, {}))
    front = results.pareto_front(rows, objectives)
    assert [r.trial_id for r in front] == ["5", "1", "2", "4"]
    drawn = results.figures(results.plotted_study(rows, ["x", "y"], objectives), objectives)
    best = next(c for c in drawn["pareto_front.png"].collections
                if c.get_label() == "Best Trial")
    assert len(best.get_offsets()) == len(front)
    assert [t.get_text() for t in drawn["param_importances.png"].get_yticklabels()]  # acc's
    assert "pareto_front.png" in results.write_plots(str(tmp_path), rows, ["x"], objectives)
    assert_png(tmp_path / "pareto_front.png")


def test_results_files_get_the_umask_mode_and_a_storage_password_stays_private(tmp_path):
    old = os.umask(0o027)
    try:
        results.write_atomic(str(tmp_path / "trials.csv"), b"trial_id\n")
        results.write_atomic(str(tmp_path / "tuner.json"), b"{}", private=True)
    finally:
        os.umask(old)
    assert (tmp_path / "trials.csv").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "tuner.json").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["trials.csv", "tuner.json"]
    assert study_mod.shown("postgresql://me:s3cret@db:5432/s") == "postgresql://me:***@db:5432/s"
    assert not study_mod.has_password("postgresql://me@db/s")


def test_results_of_a_study_the_tuner_kept_in_the_bucket_read_its_own_journal(
        gcs_emulator, gcs_bucket, tmp_path, write_config):
    """A tuner run inside a Vertex AI job (scripts/submit_tuning_job.sh) keeps its study on the
    job's /gcs/ mount: `results gs://...` shows it from its journal, failed trials and their
    reasons included, as `results` of a local folder does (not from the trials' metrics.json,
    which a failed or stopped trial never writes)."""
    mode = {"parameterId": "mode", "categoricalValueSpec": {"values": ["ok", "fail"]}}
    path = write_config(config(maxTrialCount=2, maxFailedTrialCount=2,
                               study={"parameters": [mode], "algorithm": "GRID_SEARCH"}))
    local = tmp_path / "study"
    assert run_tuner("run", path, "--output-dir", local).returncode == 0
    state = json.loads((local / "tuner.json").read_text())
    state["storage"] = f"/gcs/{gcs_bucket}/study-1/study.journal"  # as the job's tuner wrote it
    _upload(gcs_emulator, gcs_bucket, {"study-1/tuner.json": json.dumps(state),
                                       "study-1/study.journal": (local / "study.journal").read_text()})
    env = tuner_env(**gcs_emulator.client_env())
    out = tmp_path / "copy"
    shown = run_tuner("results", f"gs://{gcs_bucket}/study-1", "--output-dir", out, env=env)
    assert shown.returncode == 0, shown.stderr
    assert read_csv(out / "trials.csv") == read_csv(local / "trials.csv")
    assert [r["state"] for r in read_csv(out / "trials.csv")] == ["SUCCEEDED", "FAILED"]
    assert "exit code 3: ValueError: the trial broke on purpose" in shown.stdout

    state["storage"] = f"/gcs/{gcs_bucket}/study-2/study.journal"
    _upload(gcs_emulator, gcs_bucket, {"study-2/tuner.json": json.dumps(state)})  # no journal
    broken = run_tuner("results", f"gs://{gcs_bucket}/study-2", env=env)
    assert broken.returncode == 2
    assert broken.stderr.strip() == (f"error: gs://{gcs_bucket}/study-2: its tuner.json names the "
                                     f"journal gs://{gcs_bucket}/study-2/study.journal, which is "
                                     "not there")
