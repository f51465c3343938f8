"""`python -m tuner results gs://...`: the table of a cloud tuning job, from its trials' files.

The bucket is the session's GCS emulator (tests/support/gcs.py); the tuner reaches it through
google-cloud-storage and STORAGE_EMULATOR_HOST, as it would reach GCS with real credentials.
"""
import json

from tests.tuner.support import config, read_csv, run_tuner, tuner_env


def _metrics(final, best, learning_rate, optimizer, epochs=5):
    return {"metric": "val_accuracy", "final": final, "best": best, "best_epoch": 3,
            "val_loss_final": 0.3, "val_loss_best": 0.25, "epochs_run": epochs,
            "wall_time_s": 12.5, "strategy": "DefaultStrategy", "num_replicas": 1,
            "hyperparameters": {"learning_rate": learning_rate, "batch_size": 64,
                                "optimizer": optimizer, "epochs": epochs},
            "versions": {"tensorflow": "2.21.0"}}


def _upload(gcs_emulator, bucket, trials):
    target = gcs_emulator.client().bucket(bucket)
    for name, content in trials.items():
        target.blob(name).upload_from_string(content)


def test_results_of_a_cloud_job(gcs_emulator, gcs_bucket, tmp_path, write_config):
    _upload(gcs_emulator, gcs_bucket, {
        "hpt-1/1/model/metrics.json": json.dumps(_metrics(0.91, 0.93, 0.01, "adam")),
        "hpt-1/2/model/metrics.json": json.dumps(_metrics(0.95, 0.95, 0.003, "sgd")),
        "hpt-1/3/model/metrics.json": json.dumps(_metrics(0.80, 0.96, 0.1, "adam", epochs=2)),
        "hpt-1/4/checkpoints/ckpt-1.index": "x",  # a trial that never wrote its metrics
        "hpt-1/10/model/metrics.json": json.dumps(_metrics(0.90, 0.92, 0.02, "sgd")),
        "other/1/model/metrics.json": json.dumps(_metrics(0.99, 0.99, 0.5, "adam")),
    })
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
    assert (out / "history.png").exists()

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


def test_the_pareto_front_and_its_plot_with_three_metrics(tmp_path):
    from tuner import results
    from tuner.trial import TrialState

    objectives = (("acc", True), ("latency", False), ("size", False))
    points = {"1": (0.9, 10.0, 5.0), "2": (0.9, 10.0, 5.0),  # equal: neither beats the other
              "3": (0.8, 10.0, 5.0),  # beaten by 1 on acc alone
              "4": (0.7, 5.0, 9.0), "5": (0.95, 20.0, 1.0)}
    rows = [results.Row(t, TrialState.SUCCEEDED, v[0], 2, 1.0, {}, values=v)
            for t, v in points.items()]
    rows.append(results.Row("6", TrialState.INFEASIBLE, None, 0, 1.0, {}))
    front = results.pareto_front(rows, objectives)
    assert [r.trial_id for r in front] == ["5", "1", "2", "4"]
    assert results.write_pareto_plot(str(tmp_path), rows, front, objectives) == \
        "pareto_front.png"
    assert (tmp_path / "pareto_front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
