"""Trials as Vertex AI custom jobs: the local study, each trial a `CustomJob` of its own.

Each trial's job is the config's `trialJobSpec` with the trial's `--<parameterId>=<value>`
appended to pool 0's args, `baseOutputDirectory` `<bucket>/<study>/<trial id>/` (so Vertex
sets the AIP_* dirs as it does for a tuning trial), labels naming the study and the trial, and
`CLOUD_ML_TRIAL_ID`/`CLOUD_ML_HP_METRIC_FILE` in pool 0's env. The metric file is on the
job's Cloud Storage FUSE mount (`/gcs/<bucket>/...`, reference/vertex.md section 9):
cloudml-hypertune rewrites the whole file on each report and gcsfuse uploads a file when it is
closed or synced (its default write path stages the file on local disk: gcsfuse
docs/semantics.md, release notes of v2.9.1), so each object version read through
google-cloud-storage is one whole report (a cut line is skipped, as for a local file). Reads
and job states are polled every POLL_S (TUNER_VERTEX_POLL_S overrides it).

A job that ends FAILED because its Spot VM was preempted is created again under the same trial
id and output dir (the trainer resumes from its checkpoints), up to a retry budget. What a
preemption looks like in the API is not documented in the v1 reference: it is taken here to be
JOB_STATE_FAILED with an error of code UNAVAILABLE or ABORTED, or one whose message says
"preempt" (UNVERIFIED; README: how to check it on a first small run).

A tuner killed at any moment finds its jobs again by their labels (ListCustomJobs): a trial's
newest job that has not been cancelled is followed, never created twice.

The API is reached through google-cloud-aiplatform's JobServiceClient (the tuner's optional
`vertex` extra), over REST; VERTEX_API_ENDPOINT overrides the endpoint (an http:// one is a
local emulator and gets anonymous credentials, as STORAGE_EMULATOR_HOST does for storage).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import select
import signal
import sys
import time
from dataclasses import dataclass

from tuner import spec as S
from tuner.backends import StartFailed
from tuner.runner import METRIC_FILE, parse_hypertune, trial_argv
from tuner.trial import Exit, Measurement, TrialRecord

POLL_S = 15.0
POLL_VAR = "TUNER_VERTEX_POLL_S"
ENDPOINT_VAR = "VERTEX_API_ENDPOINT"
STUDY_LABEL, TRIAL_LABEL = "tuner_study", "tuner_trial"
PREEMPTION_RETRIES = 3
_PREEMPTION_CODES = (10, 14)  # google.rpc.Code ABORTED, UNAVAILABLE
_ENDED = ("JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLED",
          "JOB_STATE_EXPIRED", "JOB_STATE_PARTIALLY_SUCCEEDED")
_REGION = re.compile(r"[a-z]+(-[a-z0-9]+)+$")
_PROJECT = re.compile(r"[a-z][a-z0-9-]{4,28}[a-z0-9]$|[a-z0-9.-]+:[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_BUCKET = re.compile(r"gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/[^\s]*)?$")


class SettingError(ValueError):
    """A --region/--project/--bucket that cannot be right, or a missing library; one line."""


def label_value(text: str) -> str:
    """`text` as a label value (at most 63 of a-z 0-9 _ -): as it is where it already is one,
    else its legal characters and a hash of it, so two names never share a label."""
    if re.fullmatch(r"[a-z0-9_-]{1,63}", text):
        return text
    plain = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-")[:54]
    return f"{plain}-{hashlib.sha256(text.encode()).hexdigest()[:8]}".lstrip("-")


@dataclass(frozen=True)
class Target:
    """Where the study's jobs run and write."""

    project: str
    region: str
    bucket: str  # gs://B or gs://B/prefix, no trailing slash
    study: str  # the study's name as a label value and a folder

    @classmethod
    def from_flags(cls, project: str | None, region: str | None, bucket: str | None,
                   study: str) -> Target:
        project = project or os.environ.get("PROJECT_ID")
        region = region or os.environ.get("REGION")
        bucket = bucket or os.environ.get("BUCKET")
        if not project:
            raise SettingError("--backend=vertex needs a project: pass --project or set "
                               "PROJECT_ID")
        if not region:
            raise SettingError("--backend=vertex needs a region: pass --region or set REGION "
                               "(e.g. us-central1)")
        if not bucket:
            raise SettingError("--backend=vertex needs a bucket: pass --bucket or set BUCKET "
                               "(gs://my-bucket)")
        if not _PROJECT.match(project):
            raise SettingError(f"--project/PROJECT_ID {project!r} is not a project id (6-30 "
                               "lowercase letters, digits and dashes)")
        if not _REGION.match(region):
            raise SettingError(f"--region/REGION {region!r} is not a region (e.g. us-central1)")
        if not _BUCKET.match(bucket):
            raise SettingError(f"--bucket/BUCKET {bucket!r} is not a bucket: give "
                               "gs://BUCKET[/PREFIX]")
        return cls(project, region, bucket.rstrip("/"), label_value(study))

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.region}"

    def trial_dir(self, trial_id: str) -> str:
        return f"{self.bucket}/{self.study}/{trial_id}/"

    @property
    def bucket_name(self) -> str:
        return self.bucket[len("gs://"):].split("/", 1)[0]

    def metric_object(self, trial_id: str) -> str:
        """The object name of a trial's metric file in the bucket."""
        return (self.trial_dir(trial_id) + METRIC_FILE)[len("gs://" + self.bucket_name + "/"):]

    def cancel_command(self, job_name: str) -> str:
        return (f"gcloud ai custom-jobs cancel {job_name.rsplit('/', 1)[-1]} "
                f"--region={self.region} --project={self.project}")

    def trial_filter(self, trial_id: str) -> str:
        return f'labels.{STUDY_LABEL}="{self.study}" AND labels.{TRIAL_LABEL}="{trial_id}"'


def job_body(job: S.TuningJob, target: Target, record: TrialRecord) -> dict:
    """The CustomJob (its JSON form) that runs one trial."""
    spec = copy.deepcopy(job.document["trialJobSpec"])
    pool = spec["workerPoolSpecs"][0]
    code = pool.get("containerSpec") or pool["pythonPackageSpec"]
    code["args"] = trial_argv(code.get("args", []), record.parameters, job.parameters)
    trial = record.trial_id
    contract = {"CLOUD_ML_TRIAL_ID": trial, "CLOUD_ML_HP_METRIC_FILE":
                f"/gcs/{target.bucket_name}/{target.metric_object(trial)}"}
    code["env"] = [e for e in code.get("env", []) if e.get("name") not in contract] + [
        {"name": name, "value": value} for name, value in contract.items()]
    spec["baseOutputDirectory"] = {"outputUriPrefix": target.trial_dir(trial)}
    if spec.get("scheduling", {}).get("strategy") == "SPOT":
        spec["scheduling"]["restartJobOnWorkerRestart"] = True
    return {"displayName": f"{target.study}-trial-{trial}"[:128],
            "jobSpec": spec,
            "labels": {STUDY_LABEL: target.study, TRIAL_LABEL: trial}}


def trial_command(body: dict) -> list[str]:
    """What pool 0 runs, as the trial's `reproduce:` words (an image's ENTRYPOINT first)."""
    pool = body["jobSpec"]["workerPoolSpecs"][0]
    if "containerSpec" in pool:
        code = pool["containerSpec"]
        return list(code.get("command") or [f"<{code['imageUri']} ENTRYPOINT>"]) + code["args"]
    code = pool["pythonPackageSpec"]
    return ["python", "-m", code["pythonModule"], *code["args"]]


def base_command(job: S.TuningJob, target: Target) -> list[str]:
    """What every trial's job runs, before the trial's own arguments."""
    from tuner.trial import TrialState

    return trial_command(job_body(job, target, TrialRecord(-1, TrialState.ACTIVE, {})))


def describe(target: Target) -> str:
    return (f"Vertex AI custom jobs in {target.project}/{target.region}, outputs under "
            f"{target.bucket}/{target.study}/")


def _poll_s() -> float:
    try:
        return max(0.05, float(os.environ.get(POLL_VAR, POLL_S)))
    except ValueError:
        raise SettingError(f"{POLL_VAR}={os.environ[POLL_VAR]!r} is not a number of seconds"
                           ) from None


def clients(target: Target):
    """(JobServiceClient, storage Client); SettingError when the `vertex` extra is missing."""
    try:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import aiplatform_v1, storage
    except ImportError as exc:
        raise SettingError(f"--backend=vertex needs google-cloud-aiplatform ({exc.name} is "
                           "missing): pip install '.[tuner,vertex]' in a clone of this "
                           "repository") from None
    endpoint = os.environ.get(ENDPOINT_VAR) or f"{target.region}-aiplatform.googleapis.com"
    credentials = AnonymousCredentials() if endpoint.startswith("http://") else None
    jobs = aiplatform_v1.JobServiceClient(credentials=credentials, transport="rest",
                                          client_options={"api_endpoint": endpoint})
    return jobs, storage.Client(project=target.project)


def _state(job) -> str:
    return job.state.name


def _seconds(job, name: str) -> float | None:
    """A timestamp of the job (create_time, start_time, end_time) in seconds; None if unset."""
    stamp = getattr(job, name)
    return None if stamp is None else stamp.timestamp()


def preempted(job) -> bool:
    """Whether a job ended because its VM was reclaimed (see the module docstring)."""
    return _state(job) == "JOB_STATE_FAILED" and (
        job.error.code in _PREEMPTION_CODES or "preempt" in job.error.message.lower())


class VertexRun:
    """One trial as its newest Vertex AI job (a preempted one is followed by the next)."""

    def __init__(self, backend: VertexBackend, record: TrialRecord, announce, job,
                 preemptions: int, before_s: float):
        self._backend, self._record, self._announce = backend, record, announce
        self.job, self.preemptions, self._before_s = job, preemptions, before_s
        self.measurements = list(record.measurements)
        self._seen = {(m.step, m.timestamp, m.metric) for m in self.measurements}
        self._new: list[Measurement] = []
        self._tags: set[str] = set()
        self._stop_reason: str | None = None
        self._exit: Exit | None = None

    @property
    def where(self) -> str:
        return f"Vertex AI job {self.job.name.rsplit('/', 1)[-1]}"

    @property
    def trial_id(self) -> str:
        return self._record.trial_id

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    @property
    def ended(self) -> bool:
        return self._exit is not None

    def _job_s(self) -> float:
        begun = _seconds(self.job, "start_time")
        if begun is None:
            return 0.0
        return max(0.0, (_seconds(self.job, "end_time") or time.time()) - begun)

    def elapsed_s(self) -> float:
        return self._before_s + self._job_s()

    def refresh(self) -> None:
        """The job's state, then what it reported by then (read after the state: a job's final
        report is in place before it ends). An API error is retried at the next poll."""
        from google.api_core import exceptions

        try:
            try:
                self.job = self._backend.jobs.get_custom_job(name=self.job.name)
            except exceptions.NotFound:
                self._end(1, f"{self.where} is gone (deleted while it ran?)")
                return
            blob = self._backend.storage.bucket(self._backend.target.bucket_name).blob(
                self._backend.target.metric_object(self.trial_id))
            data = blob.download_as_bytes()
        except exceptions.NotFound:
            return  # no report yet
        except exceptions.GoogleAPICallError as exc:
            print(f"note: Vertex AI or Cloud Storage did not answer ({exc}); asking again in "
                  f"{self._backend.poll_s:g} s", file=sys.stderr)
            return
        begun = _seconds(self.job, "start_time") or time.time()
        fresh = []
        for tag in self._backend.tags:
            records, tags = parse_hypertune(data, tag)
            self._tags |= tags
            metric = None if tag == self._backend.tags[0] else tag
            for step, value, stamp in records:
                if (step, stamp, metric) in self._seen:
                    continue
                self._seen.add((step, stamp, metric))
                elapsed = self._before_s + max(0.0, stamp - begun)
                fresh.append(Measurement(step, round(elapsed, 3), value, stamp, metric))
        if fresh:
            self._new += fresh
            self.measurements = sorted(self.measurements + fresh,
                                       key=lambda m: (m.step, m.elapsed_s))

    def read(self) -> list[Measurement]:
        new, self._new = self._new, []
        return new

    def poll(self) -> Exit | None:
        if self._exit is not None:
            return self._exit
        state = _state(self.job)
        if state not in _ENDED:
            return None
        if (not self.stopping and preempted(self.job)
                and self.preemptions < self._backend.preemption_retries):
            self.preemptions += 1
            self._before_s = self.elapsed_s()
            print(f"note: trial {self.trial_id}: {self.where} was preempted "
                  f"({self.job.error.message}); running it again ({self.preemptions} of "
                  f"{self._backend.preemption_retries} retries)", file=sys.stderr)
            try:
                self.job = self._backend.create(self._record, self._announce, self.preemptions,
                                                self._before_s)
                return None
            except StartFailed as exc:
                return self._end(1, f"preempted, and cannot run again: {exc}")
        if self.stopping:
            return self._end(-signal.SIGTERM)
        if state == "JOB_STATE_SUCCEEDED":
            return self._end(0)
        words = f"{self.where} ended {state[len('JOB_STATE_'):]}: " \
                f"{self.job.error.message.strip() or 'no error message'}"
        if preempted(self.job):
            words += f" (preempted {self.preemptions + 1} times; --preemption-retries is " \
                     f"{self._backend.preemption_retries})"
        return self._end(1, words)

    def _end(self, code: int, failure: str | None = None) -> Exit:
        self._exit = Exit(code, self.elapsed_s(), self._stop_reason,
                          (failure,) if failure else (), frozenset(self._tags), failure)
        return self._exit

    def stop(self, reason: str) -> None:
        self._stop_reason = reason
        self._backend.cancel(self.job)

    def kill_now(self) -> None:
        self._stop_reason = self._stop_reason or "tuner ended"
        self._backend.cancel(self.job)


class VertexBackend:
    """Runs each trial as a Vertex AI custom job; as many at once as the study asks."""

    def __init__(self, job: S.TuningJob, target: Target, *,
                 preemption_retries: int = PREEMPTION_RETRIES):
        self.job, self.target = job, target
        self.capacity = job.parallel_trial_count
        self.preemption_retries = preemption_retries
        self.command, self.description = base_command(job, target), describe(target)
        self.poll_s = _poll_s()
        self.jobs, self.storage = clients(target)
        self.tags = (job.metric, *(m.id for m in job.metrics[1:]))
        self._runs: list[VertexRun] = []
        self._next_poll = 0.0

    def _newest_job(self, record: TrialRecord):
        from google.cloud import aiplatform_v1

        found = list(self.jobs.list_custom_jobs(request=aiplatform_v1.ListCustomJobsRequest(
            parent=self.target.parent, filter=self.target.trial_filter(record.trial_id))))
        return max(found, key=lambda j: (_seconds(j, "create_time") or 0.0, j.name),
                   default=None)

    def start(self, record: TrialRecord, announce) -> VertexRun:
        """Follows the trial's newest job if one is running or ended without a cancel (its
        tuner was killed), else creates one."""
        from google.api_core import exceptions

        try:
            found = self._newest_job(record)
        except exceptions.GoogleAPICallError as exc:
            raise StartFailed(f"ListCustomJobs: {exc}") from None
        run_record = record.run or {}
        preemptions = run_record.get("preemptions", 0)
        if found is not None and _state(found) != "JOB_STATE_CANCELLED":
            known = run_record.get("job") == found.name
            before_s = run_record.get("before_s", 0.0) if known else record.elapsed_s
            run = VertexRun(self, record, announce, found, preemptions, before_s)
            if not known:  # created by a tuner killed before it could record it
                announce(trial_command(job_body(self.job, self.target, record)),
                         self._run_record(found, preemptions, before_s))
            print(f"note: trial {record.trial_id}: following {run.where}, which its earlier "
                  "tuner started", file=sys.stderr)
        else:
            created = self.create(record, announce, preemptions, record.elapsed_s)
            run = VertexRun(self, record, announce, created, preemptions, record.elapsed_s)
        self._runs = [r for r in self._runs if not r.ended] + [run]
        run.refresh()
        return run

    @staticmethod
    def _run_record(job, preemptions: int, before_s: float) -> dict:
        return {"job": job.name, "preemptions": preemptions, "before_s": round(before_s, 3)}

    def create(self, record: TrialRecord, announce, preemptions: int, before_s: float):
        """Creates the trial's job and records it (a job recorded nowhere is cancelled)."""
        from google.api_core import exceptions
        from google.cloud import aiplatform_v1

        body = job_body(self.job, self.target, record)
        try:
            created = self.jobs.create_custom_job(
                parent=self.target.parent,
                custom_job=aiplatform_v1.CustomJob.from_json(json.dumps(body)))
        except exceptions.GoogleAPICallError as exc:
            raise StartFailed(f"CreateCustomJob: {exc}") from None
        try:
            announce(trial_command(body), self._run_record(created, preemptions, before_s))
        except BaseException:
            self.cancel(created)
            raise
        return created

    def cancel(self, job) -> None:
        """Asks Vertex to cancel a job (it then ends CANCELLED); one that ended stays as it is."""
        from google.api_core import exceptions

        if _state(job) in _ENDED:
            return
        try:
            self.jobs.cancel_custom_job(name=job.name)
        except exceptions.FailedPrecondition:
            pass  # it ended meanwhile
        except exceptions.GoogleAPICallError as exc:
            print(f"warning: cannot cancel {job.name}: {exc}; cancel it with: "
                  f"{self.target.cancel_command(job.name)}", file=sys.stderr)

    def wait(self, timeout_s: float, wake_fd: int) -> None:
        """Sleeps until the next poll is due (or `wake_fd`, or the timeout), then polls every
        running job: read() and poll() only give what the last poll saw."""
        due = self._next_poll - time.monotonic()
        if due > 0:
            ready, _, _ = select.select([wake_fd], [], [], min(timeout_s, due))
            if ready or timeout_s < due:
                return
        self._next_poll = time.monotonic() + self.poll_s
        for run in self._runs:
            if not run.ended:
                run.refresh()

    def on_interrupt(self, runs: list[VertexRun]) -> bool:
        """Ctrl-C: True leaves the jobs running (the default, and without a terminal); False
        has the controller cancel them."""
        if not runs:
            return False
        answer = ""
        if sys.stdin.isatty():  # asked on stderr: stdout may be a file or a pipe
            print(f"\ncancel the {len(runs)} running Vertex AI job(s)? [y/N] ", end="",
                  file=sys.stderr, flush=True)
            answer = sys.stdin.readline()
        else:
            print("\n(stdin is not a terminal: the running jobs are left running)",
                  file=sys.stderr)
        if answer.strip().lower() in ("y", "yes"):
            return False
        print("left running (run the same command again to follow them; to cancel one: "
              f"{self.target.cancel_command('JOB_ID')}):", file=sys.stderr)
        for run in runs:
            print(f"  trial {run.trial_id}: {run.job.name}", file=sys.stderr)
        return True

    def close(self) -> None:
        """Nothing is kept ready between jobs."""


class VertexDryRun:
    """Starts nothing: prints the request that would create each trial's job."""

    def __init__(self, job: S.TuningJob, target: Target, *, preemption_retries: int = 0):
        self.job, self.target = job, target
        self.command, self.description = base_command(job, target), describe(target)

    def start(self, record: TrialRecord, announce=None) -> None:
        print(f"\ntrial {record.trial_id}: ListCustomJobs parent={self.target.parent} "
              f"filter={self.target.trial_filter(record.trial_id)}  (a job found is followed)")
        print(f"  else CreateCustomJob parent={self.target.parent}:")
        body = json.dumps(job_body(self.job, self.target, record), indent=2)
        print("\n".join("  " + line for line in body.splitlines()))


def console_link(job_name: str) -> str:
    """The job's page in the console (as google-cloud-aiplatform's own jobs link theirs)."""
    _, project, _, region, _, job_id = job_name.split("/")
    return (f"https://console.cloud.google.com/agent-platform/locations/{region}/training/"
            f"{job_id}?project={project}")


def job_lines(job: S.TuningJob, records: list[TrialRecord]) -> list[str]:
    """The cloud side of each trial that ran as a job: its job, machine, wall time, console
    page (what the results add for a study run with --backend=vertex)."""
    machine = job.document["trialJobSpec"]["workerPoolSpecs"][0].get("machineSpec", {})
    kind = machine.get("machineType", "?")
    if machine.get("acceleratorCount"):
        kind += f" + {machine['acceleratorCount']} x {machine.get('acceleratorType', '?')}"
    lines = []
    for record in records:
        name = (record.run or {}).get("job")
        if not name:
            continue
        preemptions = record.run.get("preemptions", 0)
        again = f", preempted {preemptions}x" if preemptions else ""
        lines.append(f"  trial {record.trial_id} {record.state}: job {name.rsplit('/', 1)[-1]} "
                     f"({kind}, {record.elapsed_s:.0f} s{again}) {console_link(name)}")
    return ["Vertex AI jobs (the latest of each trial):", *lines] if lines else []
