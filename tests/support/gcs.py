"""A local GCS for tests: gcp-storage-emulator plus a TLS proxy that TensorFlow can reach.

    with GcsEmulator() as gcs:
        gcs.create_bucket("bkt")
        env = {**os.environ, **gcs.tf_env()}   # for a subprocess that uses tf.io.gfile
        subprocess.run([...], env=env, timeout=...)
        assert gcs.list("bkt") == [...]

Two subprocesses on free loopback ports, both chosen by the kernel at bind time:

- ``gcs_emulator_server.py``: the emulator, in memory, with the fixes TensorFlow needs;
- ``gcs_tls_proxy.py``: the proxy through which TensorFlow's hard-wired googleapis.com
  endpoints reach the emulator, with a certificate made here by ``openssl`` for this run.

The google-cloud-storage client needs only ``client_env()`` (STORAGE_EMULATOR_HOST).
TensorFlow's ``tf.io.gfile`` needs all of ``tf_env()``, which routes every https request of that
process through the proxy: give it to a subprocess, never to the test process itself.
"""
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 5
OPENSSL_TIMEOUT_S = 30
CERT_NAMES = ("www.googleapis.com", "storage.googleapis.com", "*.googleapis.com")


class GcsEmulator:
    """Starts on ``start()`` or ``with``; ``stop()`` kills both processes and removes temp files.

    ``answer_expect_continue=False`` runs the emulator's stock HTTP/1.0 handler, whose missing
    ``100 Continue`` costs TensorFlow about a second per upload; only for measuring that.
    """

    def __init__(self, *, answer_expect_continue=True):
        self._answer_expect_continue = answer_expect_continue
        self._dir = None
        self._processes = []
        self._logs = []
        self.endpoint = None
        self.proxy = None
        self.ca_file = None

    # -- life cycle -------------------------------------------------------------------------

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def start(self):
        if self._dir is not None:
            raise RuntimeError("GcsEmulator already started")
        self._dir = tempfile.mkdtemp(prefix="gcs-emulator-")
        try:
            cert, key = self._make_certificate()
            server_args = [] if self._answer_expect_continue else ["--http10"]
            port = self._spawn("emulator", "gcs_emulator_server.py", server_args)
            self.endpoint = f"http://127.0.0.1:{port}"
            proxy_args = ["--upstream", f"127.0.0.1:{port}", "--cert", cert, "--key", key]
            proxy_port = self._spawn("proxy", "gcs_tls_proxy.py", proxy_args)
            self.proxy = f"http://127.0.0.1:{proxy_port}"
            self.ca_file = cert
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self):
        for process in self._processes:
            if process.poll() is None:
                process.kill()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                pass  # unkillable (e.g. stuck in the kernel); nothing more to do
            for pipe in (process.stdin, process.stdout):
                if pipe:
                    pipe.close()
        for log in self._logs:
            log.close()
        self._processes, self._logs = [], []
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _make_certificate(self):
        cert, key = os.path.join(self._dir, "cert.pem"), os.path.join(self._dir, "key.pem")
        san = ",".join(f"DNS:{name}" for name in CERT_NAMES)
        command = [
            "openssl", "req", "-x509", "-nodes", "-days", "2",
            "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-subj", f"/CN={CERT_NAMES[0]}", "-addext", f"subjectAltName={san}",
            "-keyout", key, "-out", cert,
        ]
        try:
            subprocess.run(command, check=True, capture_output=True, timeout=OPENSSL_TIMEOUT_S)
        except FileNotFoundError:
            raise RuntimeError("the GCS test fixture needs the openssl command") from None
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"openssl failed: {exc.stderr.decode(errors='replace')}") from None
        return cert, key

    def _spawn(self, name, script, args):
        """Starts a support script and returns the port it prints as ``PORT <n>``."""
        log_path = os.path.join(self._dir, f"{name}.log")
        log = open(log_path, "wb")
        self._logs.append(log)
        process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, script), *args],
            stdin=subprocess.PIPE,  # the child exits when this pipe closes, i.e. when we die
            stdout=subprocess.PIPE,
            stderr=log,
        )
        self._processes.append(process)
        deadline = time.monotonic() + START_TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            while time.monotonic() < deadline:
                if selector.select(timeout=deadline - time.monotonic()):
                    line = process.stdout.readline().decode(errors="replace").strip()
                    if line.startswith("PORT "):
                        return int(line.split()[1])
                    if not line and process.poll() is not None:
                        break
                elif process.poll() is not None:
                    break
        log.flush()
        with open(log_path, errors="replace") as f:
            tail = f.read()[-3000:]
        state = "exited" if process.poll() is not None else f"no port within {START_TIMEOUT_S} s"
        raise RuntimeError(f"GCS test {name} did not start ({state}); its log:\n{tail}")

    # -- environments -----------------------------------------------------------------------

    def client_env(self):
        """What google-cloud-storage needs to use the emulator (anonymous credentials)."""
        self._check_started()
        return {"STORAGE_EMULATOR_HOST": self.endpoint}

    def tf_env(self):
        """What TensorFlow's GCS filesystem needs, plus client_env(). For subprocesses only."""
        self._check_started()
        return {
            **self.client_env(),
            "https_proxy": self.proxy,
            "http_proxy": self.proxy,  # the emulator's resumable-upload URLs are http://
            "no_proxy": "127.0.0.1,localhost",  # the storage client goes to the emulator directly
            "CURL_CA_BUNDLE": self.ca_file,
            "GOOGLE_AUTH_TOKEN_FOR_TESTING": "dummy",  # skips TF's OAuth flow
            "NO_GCE_CHECK": "true",  # skips TF's metadata-server probe
            "GCS_RETRY_CONFIG_MAX_RETRIES": "2",  # a failure surfaces in seconds, not minutes
        }

    def _check_started(self):
        if self.endpoint is None or self.proxy is None:
            raise RuntimeError("GcsEmulator is not started")

    # -- the storage client -----------------------------------------------------------------

    def client(self):
        """A google.cloud.storage.Client bound to this emulator, whatever the environment says."""
        self._check_started()
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(
            project="test-project",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.endpoint},
        )

    def create_bucket(self, name):
        """Creates the bucket unless it exists; returns it."""
        from google.api_core.exceptions import Conflict

        client = self.client()
        try:
            return client.create_bucket(name)
        except Conflict:
            return client.bucket(name)

    def list(self, bucket, prefix=""):
        """The names of the objects in the bucket under prefix, sorted."""
        return sorted(blob.name for blob in self.client().list_blobs(bucket, prefix=prefix))
