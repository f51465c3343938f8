"""`python -m tuner results gs://...` when Cloud Storage cannot be read: one line, exit 2.

The real google-cloud-storage client runs in the tuner's process each time: with no
credentials (nothing reachable, no emulator), against the GCS emulator for a bucket that does
not exist, and against a real HTTP server that answers every request as GCS does when the
account may not read the bucket.
"""
import http.server
import json
import threading

import pytest

from tests.tuner.support import run_tuner, tuner_env

LOGIN = "gcloud auth application-default login"


def _one_line_error(result):
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: gs://"), lines[0]
    return lines[0]


def _without_google(tmp_path, **extra):
    """No emulator, no credentials anywhere a Google client looks (env, gcloud's config in
    HOME, the GCE metadata server)."""
    env = {k: v for k, v in tuner_env().items()
           if not k.startswith(("GOOGLE_", "CLOUDSDK_", "GCE_")) and k != "STORAGE_EMULATOR_HOST"}
    home = tmp_path / "home"
    home.mkdir()
    env.update(HOME=str(home), NO_GCE_CHECK="True", **extra)
    return env


def test_no_credentials_names_how_to_log_in(tmp_path):
    line = _one_line_error(run_tuner("results", "gs://some-bucket/hpt-1",
                                     env=_without_google(tmp_path)))
    assert LOGIN in line and "credentials" in line


def test_a_missing_credentials_file_is_named(tmp_path):
    key = tmp_path / "missing-key.json"
    env = _without_google(tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key))
    line = _one_line_error(run_tuner("results", "gs://some-bucket/hpt-1", env=env))
    assert str(key) in line and LOGIN in line


def test_a_bucket_that_does_not_exist(gcs_emulator):
    env = tuner_env(**gcs_emulator.client_env())
    line = _one_line_error(run_tuner("results", "gs://no-such-bucket-here/hpt-1", env=env))
    assert "bucket no-such-bucket-here does not exist" in line


class _Forbidding(http.server.BaseHTTPRequestHandler):
    """Answers as GCS does to an account without storage.objects.list on the bucket."""

    def do_GET(self):
        body = json.dumps({"error": {"code": 403, "message": "tester@example.com does not have "
                                     "storage.objects.list access to the Google Cloud Storage "
                                     "bucket.", "errors": [{"reason": "forbidden"}]}}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def forbidding_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Forbidding)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_permission_denied(forbidding_server, tmp_path):
    env = _without_google(tmp_path, STORAGE_EMULATOR_HOST=forbidding_server)
    line = _one_line_error(run_tuner("results", "gs://their-bucket/hpt-1", env=env))
    assert "permission denied on bucket their-bucket" in line
    assert "tester@example.com does not have storage.objects.list access" in line
    assert "roles/storage.objectViewer" in line


def test_no_bucket_named():
    line = _one_line_error(run_tuner("results", "gs://"))
    assert "gs://BUCKET/BASE" in line
