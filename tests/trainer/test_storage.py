"""trainer.storage on local paths and on gs:// (the emulator, through the real client).

The TensorFlow tests below check the GCS fixture itself: TF's own GCS filesystem, reached
through the fixture's proxy, in a subprocess so the proxy variables stay out of this process.
"""
import hashlib
import http.server
import json
import os
import socket
import subprocess
import sys
import threading

import pytest

from trainer import storage

TF_TIMEOUT_S = 240


# -- local paths ------------------------------------------------------------------------------


def test_is_gcs_and_join():
    assert storage.is_gcs("gs://b/x") and not storage.is_gcs("/tmp/gs://b")
    assert storage.join("gs://b/run/", "model", "m.json") == "gs://b/run/model/m.json"
    assert storage.join("/tmp/run", "m.json") == os.path.join("/tmp/run", "m.json")


def test_local_write_then_read_creates_dirs_and_leaves_no_temp_files(tmp_path):
    path = str(tmp_path / "a" / "b" / "metrics.json")
    storage.write_text(path, '{"loss": 1}')
    storage.write_text(path, '{"loss": 0.5}')
    assert storage.read_text(path) == '{"loss": 0.5}'
    assert os.listdir(tmp_path / "a" / "b") == ["metrics.json"]


def test_local_read_of_missing_file_is_none(tmp_path):
    assert storage.read_text(str(tmp_path / "missing.json")) is None


def test_local_check_writable_creates_nothing(tmp_path):
    storage.check_writable(str(tmp_path / "new" / "dir"))  # probed at tmp_path, the nearest existing dir
    storage.check_writable(str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_local_check_writable_fails_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OSError):
        storage.check_writable(str(tmp_path / "file" / "dir"))


# -- gs:// through google-cloud-storage ---------------------------------------------------------


@pytest.fixture
def emulator_env(gcs_emulator, monkeypatch):
    for name, value in gcs_emulator.client_env().items():
        monkeypatch.setenv(name, value)


def test_gcs_write_then_read(gcs_emulator, gcs_bucket, emulator_env):
    path = f"gs://{gcs_bucket}/run/metrics.json"
    storage.write_text(path, '{"accuracy": 0.5}')
    storage.write_text(path, '{"accuracy": 0.9, "name": "ünïcode"}')
    assert storage.read_text(path) == '{"accuracy": 0.9, "name": "ünïcode"}'
    assert gcs_emulator.list(gcs_bucket) == ["run/metrics.json"]
    blob = gcs_emulator.client().bucket(gcs_bucket).get_blob("run/metrics.json")
    assert blob.content_type == "application/json"


def test_gcs_read_of_missing_object_or_bucket_is_none(gcs_bucket, emulator_env):
    assert storage.read_text(f"gs://{gcs_bucket}/missing.json") is None
    assert storage.read_text("gs://no-such-bucket-here/missing.json") is None


def test_gcs_write_to_missing_bucket_names_the_bucket(emulator_env):
    with pytest.raises(FileNotFoundError, match="bucket gs://no-such-bucket-here does not exist"):
        storage.write_text("gs://no-such-bucket-here/run/config.json", "{}")


def test_gcs_check_writable_leaves_no_probe(gcs_emulator, gcs_bucket, emulator_env):
    storage.check_writable(f"gs://{gcs_bucket}/run/checkpoints")
    storage.check_writable(f"gs://{gcs_bucket}")
    assert gcs_emulator.list(gcs_bucket) == []


def test_gcs_check_writable_fails_on_missing_bucket(emulator_env):
    with pytest.raises(OSError, match="bucket gs://no-such-bucket-here does not exist"):
        storage.check_writable("gs://no-such-bucket-here/run")


class _Forbidding(http.server.BaseHTTPRequestHandler):
    """A storage server that denies every request, as GCS does without IAM permission."""

    def _deny(self):
        body = json.dumps({"error": {"code": 403, "message": "caller lacks storage.objects.create"}})
        self.send_response(403)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    do_GET = do_POST = do_PUT = do_DELETE = _deny

    def log_message(self, *args):
        pass


def test_gcs_check_writable_reports_permission_denied(monkeypatch):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Forbidding)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(PermissionError, match="permission denied.*storage.objects.create"):
            storage.check_writable("gs://bucket/run")
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_gcs_without_credentials_is_a_permission_error(tmp_path, monkeypatch):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))
    with pytest.raises(PermissionError, match="no Google Cloud credentials"):
        storage.write_text("gs://bucket/run/config.json", "{}")


# -- TensorFlow's own GCS filesystem, through the fixture's proxy ----------------------------------


def _proxy_status(gcs_emulator, request):
    host, port = gcs_emulator.proxy.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(4096).split(b"\r\n", 1)[0]


def test_proxy_serves_only_googleapis(gcs_emulator):
    connect = b"CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n"
    for target, status in ((b"example.com:443", b" 403 "), (b"www.googleapis.com:443", b" 200 ")):
        assert status in _proxy_status(gcs_emulator, connect % (target, target))
    get = b"GET %s HTTP/1.1\r\nHost: x\r\n\r\n"
    assert b" 403 " in _proxy_status(gcs_emulator, get % b"http://example.com/storage/v1/b")
    assert b" 200 " in _proxy_status(gcs_emulator, get % b"http://www.googleapis.com/storage/v1/b?project=p")


def _run_tf(gcs_emulator, script, *args):
    """Runs a TensorFlow script in a subprocess with tf_env(); returns its last stdout line, parsed."""
    env = {**os.environ, **gcs_emulator.tf_env(), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env=env, capture_output=True, text=True, timeout=TF_TIMEOUT_S,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


GFILE_SCRIPT = """
import hashlib, json, os, sys
import tensorflow as tf
gfile, root = tf.io.gfile, sys.argv[1]
data = os.urandom(3 * 2**19 + 13)  # 1.5 MiB and a bit: several curl buffers, odd length
gfile.makedirs(root + "/a/b")
with gfile.GFile(root + "/a/b/big.bin", "wb") as f:
    f.write(data)
with gfile.GFile(root + "/a/b/big.bin", "rb") as f:
    same = f.read() == data
print(json.dumps({
    "same": same,
    "sha256": hashlib.sha256(data).hexdigest(),
    "size": gfile.stat(root + "/a/b/big.bin").length,
    "listdir": gfile.listdir(root + "/a/b"),
    "isdir": gfile.isdir(root + "/a"),
    "exists": [gfile.exists(root + "/a/b/big.bin"), gfile.exists(root + "/a/b/none.bin")],
}))
"""


def test_tf_gfile_works_through_the_proxy(gcs_emulator, gcs_bucket):
    seen = _run_tf(gcs_emulator, GFILE_SCRIPT, f"gs://{gcs_bucket}/t")
    assert seen["same"] and seen["size"] == 3 * 2**19 + 13
    assert seen["listdir"] == ["big.bin"] and seen["isdir"]
    assert seen["exists"] == [True, False]
    assert gcs_emulator.list(gcs_bucket, "t/a/b/") == ["t/a/b/", "t/a/b/big.bin"]
    stored = gcs_emulator.client().bucket(gcs_bucket).blob("t/a/b/big.bin").download_as_bytes()
    assert hashlib.sha256(stored).hexdigest() == seen["sha256"]  # no chunk framing stored


KERAS_SCRIPT = """
import glob, json, sys
import numpy as np
import tensorflow as tf
import tf_keras as keras
root = sys.argv[1]
x = np.random.RandomState(0).rand(32, 3).astype("float32")
y = x.sum(axis=1, keepdims=True)

def fit(epochs):
    model = keras.Sequential([keras.layers.Dense(4, activation="relu", input_shape=(3,)),
                              keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    callbacks = [keras.callbacks.BackupAndRestore(root + "/backup", delete_checkpoint=False),
                 keras.callbacks.TensorBoard(root + "/logs")]
    return model.fit(x, y, batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks).epoch

first = fit(2)
second = fit(3)  # resumes from the backup written after epoch 2
losses = 0
for path in tf.io.gfile.glob(root + "/logs/train/events.out.tfevents.*"):
    for event in tf.compat.v1.train.summary_iterator(path):
        losses += sum(value.tag == "epoch_loss" for value in event.summary.value)
print(json.dumps({"first": first, "second": second, "epoch_losses": losses}))
"""


def test_tf_keras_backup_and_tensorboard_on_gcs(gcs_emulator, gcs_bucket):
    seen = _run_tf(gcs_emulator, KERAS_SCRIPT, f"gs://{gcs_bucket}/run")
    assert seen == {"first": [0, 1], "second": [2], "epoch_losses": 3}
    names = gcs_emulator.list(gcs_bucket, "run/")
    assert any(n.startswith("run/backup/") and n.endswith(".index") for n in names), names
    assert sum(n.startswith("run/logs/train/events.out.tfevents.") for n in names) == 2, names
