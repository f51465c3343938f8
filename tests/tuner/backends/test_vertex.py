"""Trials as Vertex AI custom jobs, for real: the tuner a subprocess with the real
google-cloud-aiplatform client, a fake JobService on loopback that runs each job's command as a
process, the GCS emulator behind the real google-cloud-storage client."""
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time

import pytest
import yaml

from tests.support.fake_vertex_jobs import FakeVertexJobs, State
from tests.support.gcs import GcsEmulator
from tests.tuner.support import (
    ROOT,
    TRIAL_SCRIPT,
    config,
    last_line,
    read_csv,
    run_tuner,
    start_tuner,
    tuner_env,
    write_yaml,
)

BUCKET = "trials-bkt"
FLAGS = ("--backend=vertex", "--region=us-central1", "--project=test-project",
         f"--bucket=gs://{BUCKET}")


@pytest.fixture(scope="module")
def gcs():
    with GcsEmulator() as emulator:
        emulator.create_bucket(BUCKET)
        yield emulator


@pytest.fixture
def vertex(gcs, tmp_path):
    with FakeVertexJobs(gcs, tmp_path / "vertex", env=tuner_env()) as fake:
        yield fake


def _env(gcs, fake):
    return tuner_env(VERTEX_API_ENDPOINT=fake.url, TUNER_VERTEX_POLL_S="0.2",
                     **gcs.client_env())


def _study(name, values, args, **changes):
    doc = config(displayName=name, study={"parameters": [
        {"parameterId": "x", "discreteValueSpec": {"values": values}}],
        "algorithm": "GRID_SEARCH"}, args=args, **changes)
    doc["trialJobSpec"]["workerPoolSpecs"][0]["containerSpec"]["command"] = [
        sys.executable, str(TRIAL_SCRIPT)]
    return doc


def _jobs_of(fake, trial):
    return [j for j in fake.created() if j.labels["tuner_trial"] == str(trial)]


def test_a_study_of_cloud_jobs_preempted_stopped_and_failed(vertex, gcs, tmp_path,
                                                            write_config):
    """Trial 2's Spot job is preempted and rerun (same output dir: it resumes); trial 4's job
    is failed by the service; trial 5 (slow and poor) is stopped by the median rule."""
    doc = _study("cloud-study", [0.5, 0.6, 0.7, 0.8, 0.99],
                 ["--steps=4", "--sleep=0.3", "--mode=slowbad"], maxTrialCount=5,
                 maxFailedTrialCount=2)
    doc["studySpec"]["medianAutomatedStoppingSpec"] = {"useElapsedDuration": False}
    doc["trialJobSpec"]["scheduling"] = {"strategy": "SPOT"}
    vertex.preempt(2)
    vertex.fail(4, "Internal error: the worker's disk failed")
    out = tmp_path / "out"
    done = run_tuner("run", write_config(doc), *FLAGS, "--output-dir", out,
                     env=_env(gcs, vertex))
    assert done.returncode == 0, done.stderr
    rows = {r["trial_id"]: r for r in read_csv(out / "trials.csv")}
    assert {t: rows[t]["state"] for t in rows} == {
        "1": "SUCCEEDED", "2": "SUCCEEDED", "3": "SUCCEEDED", "4": "FAILED", "5": "STOPPED"}
    assert rows["4"]["reason"].startswith("Vertex AI job ")
    assert "Internal error: the worker's disk failed" in rows["4"]["reason"]

    assert [len(_jobs_of(vertex, t)) for t in range(1, 6)] == [1, 2, 1, 1, 1]
    first, again = _jobs_of(vertex, 2)
    for job in (first, again):
        spec = job.job_spec
        assert spec.base_output_directory.output_uri_prefix == f"gs://{BUCKET}/cloud-study/2/"
        assert spec.scheduling.restart_job_on_worker_restart
        container = spec.worker_pool_specs[0].container_spec
        assert list(container.args)[-1] == "--x=0.6"
        assert {e.name: e.value for e in container.env} == {
            "CLOUD_ML_TRIAL_ID": "2",
            "CLOUD_ML_HP_METRIC_FILE": f"/gcs/{BUCKET}/cloud-study/2/hypertune/output.metrics"}
    runs = (vertex.fuse_root + f"/{BUCKET}/cloud-study/2/model/runs.jsonl")
    with open(runs) as f:
        seen = [json.loads(line) for line in f]
    assert len(seen) == 2 and seen[1]["env"]["AIP_CHECKPOINT_DIR"] == \
        f"gs://{BUCKET}/cloud-study/2/checkpoints/"
    assert "preempted" in done.stderr and "running it again (1 of 3 retries)" in done.stderr

    stopped = _jobs_of(vertex, 5)[0]
    assert [c.name for c in vertex.calls("CancelCustomJob")] == [stopped.name]
    assert vertex.state(stopped.name) == State.JOB_STATE_CANCELLED
    assert rows["5"]["reason"].startswith("median")

    shown = run_tuner("results", out, env=_env(gcs, vertex))
    assert shown.returncode == 0, shown.stderr
    job_id = again.name.rsplit("/", 1)[1]
    line = next(t for t in shown.stdout.splitlines() if t.startswith("  trial 2 "))
    assert line.startswith(f"  trial 2 SUCCEEDED: job {job_id} (n1-standard-4, ")
    assert line.endswith(", preempted 1x) https://console.cloud.google.com/agent-platform/"
                         f"locations/us-central1/training/{job_id}?project=test-project")


def test_a_tuner_killed_with_jobs_running_follows_them_when_run_again(vertex, gcs, tmp_path,
                                                                       write_config):
    # 6 s jobs: under load the second job can start seconds after the first
    doc = _study("resumed", [0.5, 0.6, 0.7], ["--steps=12", "--sleep=0.5"], maxTrialCount=3)
    path, out, env = write_config(doc), tmp_path / "out", _env(gcs, vertex)
    tuner = start_tuner("run", path, *FLAGS, "--output-dir", out, env=env)
    deadline = time.monotonic() + 120
    # both jobs started (a job is PENDING until the fake has started its process)
    while len(vertex.created()) < 2 or not os.path.exists(
            vertex.fuse_root + f"/{BUCKET}/resumed/1/hypertune/output.metrics") or any(
            vertex.state(j.name) != State.JOB_STATE_RUNNING for j in vertex.created()):
        assert tuner.poll() is None and time.monotonic() < deadline, tuner.communicate()
        time.sleep(0.1)
    tuner.send_signal(signal.SIGKILL)
    tuner.communicate()
    running = [j.name for j in vertex.created()]
    assert all(vertex.state(n) == State.JOB_STATE_RUNNING for n in running)

    done = run_tuner("run", path, *FLAGS, "--output-dir", out, env=env)
    assert done.returncode == 0, done.stderr
    assert [len(_jobs_of(vertex, t)) for t in (1, 2, 3)] == [1, 1, 1]
    assert [r["state"] for r in read_csv(out / "trials.csv")] == ["SUCCEEDED"] * 3
    assert done.stderr.count("which its earlier tuner started") == 2
    assert not vertex.calls("CancelCustomJob")


def test_ctrl_c_without_a_terminal_leaves_the_jobs_running(vertex, gcs, tmp_path,
                                                           write_config):
    doc = _study("left", [0.5, 0.6], ["--steps=4", "--sleep=0.5"], maxTrialCount=2)
    path, out, env = write_config(doc), tmp_path / "out", _env(gcs, vertex)
    tuner = start_tuner("run", path, *FLAGS, "--output-dir", out, env=env,
                        stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while len(vertex.created()) < 2:
        assert tuner.poll() is None and time.monotonic() < deadline, tuner.communicate()
        time.sleep(0.1)
    tuner.send_signal(signal.SIGINT)
    _, stderr = tuner.communicate(timeout=120)
    assert tuner.returncode == 128 + signal.SIGINT, stderr
    assert "stdin is not a terminal: the running jobs are left running" in stderr
    assert "gcloud ai custom-jobs cancel JOB_ID --region=us-central1" in stderr
    assert not vertex.calls("CancelCustomJob")
    assert State.JOB_STATE_CANCELLED not in [vertex.state(j.name) for j in vertex.created()]


def test_ctrl_c_at_a_terminal_asks_and_cancels_the_jobs_when_told(vertex, gcs, tmp_path,
                                                                   write_config):
    doc = _study("asked", [0.5, 0.6], ["--steps=20", "--sleep=0.5"], maxTrialCount=2)
    path, out, env = write_config(doc), tmp_path / "out", _env(gcs, vertex)
    terminal, tty = pty.openpty()
    tuner = start_tuner("run", path, *FLAGS, "--output-dir", out, env=env, stdin=tty)
    os.close(tty)
    deadline = time.monotonic() + 120
    while len(vertex.created()) < 2:
        assert tuner.poll() is None and time.monotonic() < deadline, tuner.communicate()
        time.sleep(0.1)
    tuner.send_signal(signal.SIGINT)
    asked = ""
    while "[y/N]" not in asked:
        assert time.monotonic() < deadline, asked
        if select.select([tuner.stderr], [], [], 1)[0]:
            asked += os.read(tuner.stderr.fileno(), 4096).decode()
    os.write(terminal, b"y\n")
    _, stderr = tuner.communicate(timeout=120)
    os.close(terminal)
    assert tuner.returncode == 128 + signal.SIGINT, asked + stderr
    assert "cancel the 2 running Vertex AI job(s)? [y/N]" in asked
    jobs = [j.name for j in vertex.created()]
    assert sorted(c.name for c in vertex.calls("CancelCustomJob")) == sorted(jobs)
    assert [vertex.state(n) for n in jobs] == [State.JOB_STATE_CANCELLED] * 2


def test_dry_run_prints_each_create_request_as_the_v1_api_takes_it(tmp_path, write_config):
    from google.cloud import aiplatform_v1

    doc = _study("dry", [0.5, 0.6], ["--steps=1"], maxTrialCount=2)
    shown = run_tuner("run", write_config(doc), *FLAGS, "--dry-run",
                      "--output-dir", tmp_path / "out")
    assert shown.returncode == 0, shown.stderr
    bodies = shown.stdout.split("else CreateCustomJob")[1:]
    jobs = [aiplatform_v1.CustomJob.from_json(b[b.index("{"):b.rindex("}") + 1])
            for b in bodies]
    assert [list(j.job_spec.worker_pool_specs[0].container_spec.args)[-1] for j in jobs] == [
        "--x=0.5", "--x=0.6"]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flag, words", [
    ("--bucket=trials-bkt", "--bucket/BUCKET 'trials-bkt' is not a bucket"),
    ("--region=us central", "--region/REGION 'us central' is not a region"),
])
def test_a_bad_setting_is_one_line_and_exit_2_before_anything_is_written(tmp_path, write_config,
                                                                         flag, words):
    doc = _study("bad", [0.5], ["--steps=1"], maxTrialCount=1)
    done = run_tuner("run", write_config(doc), *FLAGS, flag, "--output-dir", tmp_path / "out")
    assert done.returncode == 2
    assert last_line(done.stderr).startswith(f"error: {words}")
    assert not (tmp_path / "out").exists()


@pytest.mark.real_trainer
def test_the_real_trainer_as_cloud_jobs_resumes_a_preempted_trial_and_stops_a_poor_one(gcs, tmp_path):
    """The project's hptuning_config.yaml (its median rule), 4 trials of `python -m trainer.task`
    (the image's ENTRYPOINT) one at a time on the built-in dataset, a grid of learning rates
    whose last is too small to learn: outputs on gs:// through TensorFlow's GCS filesystem,
    reports through the FUSE stand-in; trial 1's job is preempted (SIGTERM) and its rerun
    resumes from the checkpoints the first job left in the bucket; trial 4's job is cancelled
    by the median rule."""
    doc = yaml.safe_load((ROOT / "hptuning_config.yaml").read_text())
    doc["parallelTrialCount"] = 1
    doc["studySpec"]["algorithm"] = "GRID_SEARCH"
    doc["studySpec"]["parameters"] = [{"parameterId": "learning_rate", "categoricalValueSpec": {
        "values": ["0.003", "0.01", "0.02", "0.0000001"]}}]  # in this order
    doc["trialJobSpec"]["workerPoolSpecs"][0]["containerSpec"]["args"] = ["--epochs=6",
                                                                          "--model=mlp"]
    job_env = tuner_env(TFDS_DATA_DIR=str(tmp_path / "tfds"), **gcs.tf_env())
    with FakeVertexJobs(gcs, tmp_path / "vertex", env=job_env) as fake:
        fake.preempt(1)
        out = tmp_path / "out"
        done = run_tuner("run", write_yaml(tmp_path / "study.yaml", doc), *FLAGS,
                         "--output-dir", out, "--max-trial-count", "4", env=_env(gcs, fake),
                         timeout=900)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        rows = {r["trial_id"]: r for r in read_csv(out / "trials.csv")}
        assert [rows[t]["state"] for t in "1234"] == ["SUCCEEDED"] * 3 + ["STOPPED"], rows
        assert rows["4"]["reason"].startswith("median rule") and int(rows["4"]["steps"]) < 6
        (poor,) = _jobs_of(fake, 4)
        assert fake.state(poor.name) == State.JOB_STATE_CANCELLED
        first, again = _jobs_of(fake, 1)
        with open(os.path.join(fake.workdir, f"job-{again.name.rsplit('/', 1)[1]}.log")) as f:
            assert "(resumed after epoch " in f.read()
        for trial in ("1", "2", "3"):
            blob = gcs.client().bucket(BUCKET).blob(f"trainer-hptuning/{trial}/model/metrics.json")
            metrics = json.loads(blob.download_as_bytes())
            assert float(rows[trial]["value"]) == pytest.approx(metrics["final"])


def test_reports_polled_twice_before_a_read_are_measurements_once(vertex, gcs, monkeypatch):
    """In-process: the backend polls (start, then each wait) whether or not the controller
    read what the last poll brought."""
    from tuner import spec as S
    from tuner.backends.vertex import ENDPOINT_VAR, Target, VertexBackend
    from tuner.trial import TrialRecord, TrialState

    monkeypatch.setenv(ENDPOINT_VAR, vertex.url)
    for name, value in gcs.client_env().items():
        monkeypatch.setenv(name, value)
    job = S.parse(_study("twice", [0.5], ["--steps=3", "--sleep=0.2"], maxTrialCount=1))
    backend = VertexBackend(job, Target.from_flags("test-project", "us-central1",
                                                   f"gs://{BUCKET}", "twice"))
    run = backend.start(TrialRecord(0, TrialState.ACTIVE, {"x": 0.5}), lambda *_: None)
    deadline = time.monotonic() + 120
    while run.poll() is None:
        assert time.monotonic() < deadline
        run.refresh()
        time.sleep(0.05)
    assert [m.step for m in run.measurements] == [1, 2, 3]
    assert [m.step for m in run.read()] == [1, 2, 3] and run.read() == []
    assert run.poll().code == 0


def test_without_the_vertex_extra_it_says_what_to_install_and_exits_2(tmp_path, write_config):
    """google-cloud-aiplatform made unimportable the way Python itself marks a module absent."""
    doc = _study("absent", [0.5], ["--steps=1"], maxTrialCount=1)
    code = ("import sys; sys.modules['google.cloud.aiplatform_v1'] = None; "
            "from tuner.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "run", str(write_config(doc)), *FLAGS,
                           "--output-dir", str(tmp_path / "out")], cwd=ROOT, env=tuner_env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert last_line(done.stderr) == (
        "error: --backend=vertex needs google-cloud-aiplatform (google.cloud.aiplatform_v1 is "
        "missing): pip install '.[tuner,vertex]' in a clone of this repository")
    assert not (tmp_path / "out").exists()


def test_a_trial_last_run_as_a_cloud_job_can_run_again_locally():
    """The local backend ends what a trial's last run left on this machine: a job left nothing."""
    from tuner.runner import end_leftovers

    end_leftovers({"job": "projects/p/locations/us-central1/customJobs/1", "preemptions": 0})
