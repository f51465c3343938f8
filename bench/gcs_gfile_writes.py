"""Time of tf.io.gfile writes to gs:// through the test fixture, with and without the fix.

    python bench/gcs_gfile_writes.py [--writes 5]

Baseline: the emulator's stock HTTP/1.0 handler, which never answers ``Expect: 100-continue``,
so TensorFlow's libcurl waits for its timeout before sending each upload body. Fixed: the
fixture's default handler, which answers at once. Both run here, in this run, on this machine.
"""
import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from tests.support.gcs import GcsEmulator  # noqa: E402

SCRIPT = """
import json, os, statistics, sys, time
import tensorflow as tf
import tf_keras as keras
import numpy as np
root, n = sys.argv[1], int(sys.argv[2])

def timed(fn):
    start = time.perf_counter(); fn(); return time.perf_counter() - start

def write(path, data):
    with tf.io.gfile.GFile(path, "wb") as f:
        f.write(data)

small, big = b"x" * 100, os.urandom(2 * 2**20)
result = {
    "makedirs": [timed(lambda i=i: tf.io.gfile.makedirs(f"{root}/d{i}")) for i in range(n)],
    "write 100 B": [timed(lambda i=i: write(f"{root}/s{i}", small)) for i in range(n)],
    "write 2 MiB": [timed(lambda i=i: write(f"{root}/b{i}", big)) for i in range(n)],
    "read 2 MiB": [timed(lambda i=i: tf.io.gfile.GFile(f"{root}/b{i}", "rb").read()) for i in range(n)],
}
x = np.random.RandomState(0).rand(64, 3).astype("float32")
model = keras.Sequential([keras.layers.Dense(1, input_shape=(3,))])
model.compile(optimizer="sgd", loss="mse")
callbacks = [keras.callbacks.BackupAndRestore(root + "/backup"),
             keras.callbacks.TensorBoard(root + "/logs")]
result["fit 2 epochs"] = [timed(lambda: model.fit(x, x[:, :1], epochs=2, verbose=0,
                                                   callbacks=callbacks))]
print(json.dumps({k: statistics.median(v) for k, v in result.items()}))
"""


def measure(answer_expect_continue, writes):
    with GcsEmulator(answer_expect_continue=answer_expect_continue) as gcs:
        gcs.create_bucket("bench")
        env = {**os.environ, **gcs.tf_env(), "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, "gs://bench/run", str(writes)],
            env=env, capture_output=True, text=True, timeout=600,
        )
        if done.returncode:
            sys.exit(done.stderr[-3000:])
        return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writes", type=int, default=5, help="operations of each kind")
    args = parser.parse_args()
    baseline = measure(False, args.writes)
    fixed = measure(True, args.writes)
    print(f"median seconds per operation, {args.writes} of each (fit: one run)")
    print(f"{'operation':<14}{'stock HTTP/1.0':>16}{'100-continue':>14}{'ratio':>8}")
    for name in baseline:
        ratio = baseline[name] / fixed[name] if fixed[name] else float("inf")
        print(f"{name:<14}{baseline[name]:>16.3f}{fixed[name]:>14.3f}{ratio:>7.1f}x")


if __name__ == "__main__":
    main()
