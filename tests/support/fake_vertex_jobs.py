"""A fake Vertex AI JobService on a loopback port that runs each custom job for real.

The real google-cloud-aiplatform client (REST transport, VERTEX_API_ENDPOINT=fake.url) talks
to it; requests are parsed with the v1 message types and recorded. It implements
CreateCustomJob, GetCustomJob, ListCustomJobs (filters `labels.K="V" AND ...`) and
CancelCustomJob, and runs pool 0's container command (containerSpec command + args; an image
without a command runs `entrypoint`, the trainer image's ENTRYPOINT) as a local process with the
environment Vertex gives a job: AIP_MODEL_DIR/AIP_CHECKPOINT_DIR/AIP_TENSORBOARD_LOG_DIR under
baseOutputDirectory, CLOUD_ML_JOB_ID, CLUSTER_SPEC, and the job's own env.

Stand-in (gcsfuse cannot run here): the job's Cloud Storage FUSE mount `/gcs/` is a local folder
(`fuse_root`), named in the job's environment and arguments wherever they say `/gcs/`, and in
GCS_FUSE_MOUNT (which the real service does not set) for code that maps gs:// paths itself.
Each file written there is uploaded whole to the GCS emulator once it changes and once the job's
process ends (before the job's state says so), as gcsfuse uploads a file when it is closed.

On demand it preempts a trial's job (SIGTERM, then JOB_STATE_FAILED with an UNAVAILABLE error
saying so) or fails one (JOB_STATE_FAILED with the given message), once the job has reported.
"""
import http.server
import json
import os
import re
import signal
import subprocess
import sys
import threading
import urllib.parse

from google.cloud import aiplatform_v1
from google.protobuf import timestamp_pb2
from google.rpc import status_pb2

SYNC_S = 0.1
GRACE_S = 10
State = aiplatform_v1.JobState


class _Job:
    def __init__(self, message):
        self.message = message
        self.process = None
        self.fate = None  # (state, code, message) decided by the fake, not by the process
        self.lock = threading.Lock()


class FakeVertexJobs:
    def __init__(self, gcs, workdir, env=None, entrypoint=(sys.executable, "-m", "trainer.task")):
        self.gcs, self.workdir = gcs, str(workdir)
        self.fuse_root = os.path.join(self.workdir, "gcs")
        os.makedirs(self.fuse_root, exist_ok=True)
        self.env = dict(os.environ if env is None else env)
        self.entrypoint = list(entrypoint)
        self.requests = []  # (method name, the parsed v1 request)
        self.jobs = {}  # name -> _Job
        self._plans = {}  # trial id -> ("preempt",) | ("fail", message)
        self._uploaded = {}
        self._lock = threading.RLock()
        self._stop = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, text):
                out = text.encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def _error(self, status, code, message):
                self._send(status, json.dumps({"error": {"code": status, "message": message,
                                                         "status": code}}))

            def do_GET(self):
                url = urllib.parse.urlsplit(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                name = url.path[len("/v1/"):]
                if name.endswith("/customJobs"):
                    request = aiplatform_v1.ListCustomJobsRequest(
                        parent=name[:-len("/customJobs")], filter=query.get("filter", ""))
                    fake.requests.append(("ListCustomJobs", request))
                    found = [j.message for j in fake.jobs.values()
                             if fake._matches(j.message, request)]
                    self._send(200, aiplatform_v1.ListCustomJobsResponse.to_json(
                        aiplatform_v1.ListCustomJobsResponse(custom_jobs=found)))
                    return
                fake.requests.append(("GetCustomJob", aiplatform_v1.GetCustomJobRequest(name=name)))
                job = fake.jobs.get(name)
                if job is None:
                    self._error(404, "NOT_FOUND", f"{name} not found")
                else:
                    with job.lock:
                        self._send(200, aiplatform_v1.CustomJob.to_json(job.message))

            def do_POST(self):
                url = urllib.parse.urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                path = url.path[len("/v1/"):]
                if path.endswith(":cancel"):
                    name = path[:-len(":cancel")]
                    fake.requests.append(("CancelCustomJob",
                                          aiplatform_v1.CancelCustomJobRequest(name=name)))
                    job = fake.jobs.get(name)
                    if job is None:
                        self._error(404, "NOT_FOUND", f"{name} not found")
                        return
                    fake._end(job, State.JOB_STATE_CANCELLED, 1, "CANCELED", signal.SIGTERM)
                    self._send(200, "{}")
                    return
                parent = path[:-len("/customJobs")]
                message = aiplatform_v1.CustomJob.from_json(body)
                request = aiplatform_v1.CreateCustomJobRequest(parent=parent, custom_job=message)
                fake.requests.append(("CreateCustomJob", request))
                self._send(200, aiplatform_v1.CustomJob.to_json(fake._create(parent, message)))

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._threads = [threading.Thread(target=self.server.serve_forever, daemon=True),
                         threading.Thread(target=self._sync_loop, daemon=True)]

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for job in list(self.jobs.values()):
            if job.process and job.process.poll() is None:
                job.process.kill()
                job.process.wait()
        self.server.shutdown()
        self.server.server_close()

    # -- what tests ask for -----------------------------------------------------------------

    def preempt(self, trial_id):
        """Preempts the trial's next job once it has reported a measurement."""
        self._plans[str(trial_id)] = ("preempt",)

    def fail(self, trial_id, message):
        """Fails the trial's next job, with this error message, once it has reported."""
        self._plans[str(trial_id)] = ("fail", message)

    def created(self):
        """Every job created, oldest first, as the service keeps it (name, state, ...)."""
        return [job.message for job in self.jobs.values()]

    def calls(self, method):
        return [r for m, r in self.requests if m == method]

    def state(self, name):
        return self.jobs[name].message.state

    # -- the service ------------------------------------------------------------------------

    def _create(self, parent, message):
        with self._lock:
            name = f"{parent}/customJobs/{1000 + len(self.jobs)}"
            job = _Job(message)
            message.name = name
            message.state = State.JOB_STATE_PENDING
            message.create_time = _now()
            self.jobs[name] = job
        threading.Thread(target=self._run, args=(job,), daemon=True).start()
        return message

    @staticmethod
    def _matches(message, request):
        if not message.name.startswith(request.parent + "/"):
            return False
        for key, value in re.findall(r'labels\.([a-z0-9_-]+)="?([^"\s]*)"?', request.filter):
            if message.labels.get(key) != value:
                return False
        return True

    def _fuse(self, text):
        return text.replace("/gcs/", self.fuse_root + "/")

    def _environment(self, message, code):
        base = message.job_spec.base_output_directory.output_uri_prefix
        env = dict(self.env)
        if base:
            base = base.rstrip("/")
            env.update(AIP_MODEL_DIR=f"{base}/model/", AIP_CHECKPOINT_DIR=f"{base}/checkpoints/",
                       AIP_TENSORBOARD_LOG_DIR=f"{base}/logs/")
        env.update({
            "CLOUD_ML_JOB_ID": message.name.rsplit("/", 1)[1],
            "CLUSTER_SPEC": json.dumps({"cluster": {"workerpool0": ["localhost:2222"]},
                                        "environment": "cloud",
                                        "task": {"type": "workerpool0", "index": 0}}),
            "GCS_FUSE_MOUNT": self.fuse_root,
        })
        env.update({e.name: self._fuse(e.value) for e in code.env})
        return env

    def _run(self, job):
        code = job.message.job_spec.worker_pool_specs[0].container_spec
        argv = [self._fuse(a) for a in (list(code.command) or self.entrypoint) + list(code.args)]
        job_id = job.message.name.rsplit("/", 1)[1]
        with job.lock:
            if job.fate:  # cancelled before it started
                self._finish(job, None)
                return
            with open(os.path.join(self.workdir, f"job-{job_id}.log"), "wb") as log:
                job.process = subprocess.Popen(argv, env=self._environment(job.message, code),
                                               stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True)
            job.message.state = State.JOB_STATE_RUNNING
            job.message.start_time = _now()
        returncode = job.process.wait()
        self._sync()  # a process's last writes are in the bucket before the job ends
        with job.lock:
            self._finish(job, returncode)

    def _finish(self, job, returncode):
        message = job.message
        message.end_time = _now()
        if job.fate:
            message.state, code, words = job.fate
            message.error = status_pb2.Status(code=code, message=words)
        elif returncode == 0:
            message.state = State.JOB_STATE_SUCCEEDED
        else:
            log = os.path.join(self.workdir, f"job-{message.name.rsplit('/', 1)[1]}.log")
            with open(log, errors="replace") as f:
                tail = "\n".join(f.read().strip().splitlines()[-3:])
            message.state = State.JOB_STATE_FAILED
            message.error = status_pb2.Status(
                code=3, message=f"The replica workerpool0-0 exited with a non-zero status of "
                                f"{returncode}. Termination reason: Error.\n{tail}")

    def _end(self, job, state, code, words, sig):
        """Ends a job as the service would (not as its process chose)."""
        with job.lock:
            if job.fate or job.message.state in (State.JOB_STATE_SUCCEEDED,
                                                 State.JOB_STATE_FAILED,
                                                 State.JOB_STATE_CANCELLED):
                return
            job.fate = (state, code, words)
            if job.message.state == State.JOB_STATE_RUNNING and state == \
                    State.JOB_STATE_CANCELLED:
                job.message.state = State.JOB_STATE_CANCELLING
            process = job.process
        if process is not None and process.poll() is None:
            os.killpg(process.pid, sig)
            threading.Timer(GRACE_S, self._kill, args=(process,)).start()

    @staticmethod
    def _kill(process):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)

    def _sync_loop(self):
        while not self._stop.wait(SYNC_S):
            self._sync()
            self._carry_out_plans()

    def _sync(self):
        """Uploads each file of the FUSE folder that changed, whole (gcsfuse: on close)."""
        with self._lock:
            for folder, _, files in os.walk(self.fuse_root):
                for file in files:
                    path = os.path.join(folder, file)
                    try:
                        stat = os.stat(path)
                        with open(path, "rb") as f:
                            data = f.read()
                    except OSError:
                        continue
                    if self._uploaded.get(path) == (stat.st_mtime_ns, stat.st_size):
                        continue
                    bucket, _, name = os.path.relpath(path, self.fuse_root).partition(os.sep)
                    self.gcs.client().bucket(bucket).blob(name).upload_from_string(data)
                    self._uploaded[path] = (stat.st_mtime_ns, stat.st_size)

    def _carry_out_plans(self):
        for job in list(self.jobs.values()):
            trial = job.message.labels.get("tuner_trial")
            plan = self._plans.get(trial)
            if not plan or job.message.state != State.JOB_STATE_RUNNING:
                continue
            env = {e.name: e.value for e in
                   job.message.job_spec.worker_pool_specs[0].container_spec.env}
            metric = self._fuse(env.get("CLOUD_ML_HP_METRIC_FILE", ""))
            if not (os.path.isfile(metric) and os.path.getsize(metric)):
                continue
            del self._plans[trial]
            if plan[0] == "preempt":
                self._end(job, State.JOB_STATE_FAILED, 14,
                          "The replica workerpool0-0 was preempted: its Spot VM was reclaimed.",
                          signal.SIGTERM)
            else:
                self._end(job, State.JOB_STATE_FAILED, 13, plan[1], signal.SIGKILL)


def _now():
    stamp = timestamp_pb2.Timestamp()
    stamp.GetCurrentTime()
    return stamp
