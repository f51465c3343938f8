"""`python -m tuner dashboard`: the real optuna-dashboard over a real study, in a real browser.

One study is run by a real tuner (3 SUCCEEDED trials, one STOPPED by the median rule, one
FAILED); the dashboard is started while it runs and read through its JSON API, then rendered
by headless Chromium (Debian's `chromium`, installed by .ci/run).
"""
import importlib.util
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.tuner.support import (
    ROOT,
    TIMEOUT_S,
    config,
    last_line,
    run_tuner,
    start_tuner,
    tuner_env,
    wait_for,
    write_yaml,
)

MODE = {"parameterId": "mode", "categoricalValueSpec": {"values": ["slowbad", "fail"]},
        "conditionalParameterSpecs": [{
            "parentCategoricalValues": {"values": ["slowbad"]},
            "parameterSpec": {"parameterId": "x",
                              "discreteValueSpec": {"values": [0.6, 0.7, 0.8, 0.99]}}}]}
# grid order, one at a time: x = 0.6, 0.7, 0.8 succeed; x = 0.99 reports poorly and is stopped;
# mode=fail fails after one report
STUDY = config(displayName="dashboard-test", maxTrialCount=5, parallelTrialCount=1,
               args=["--steps=6", "--sleep=0.1"],
               study={"parameters": [MODE], "algorithm": "GRID_SEARCH",
                      "medianAutomatedStoppingSpec": {"useElapsedDuration": False}})
STATES = ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "STOPPED", "FAILED"]


def start_dashboard(*args):
    return subprocess.Popen([sys.executable, "-m", "tuner", "dashboard", *map(str, args)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=tuner_env())


def read_until(process, pattern, timeout=TIMEOUT_S):
    """The first match of `pattern` in the process's stdout so far, waiting for it."""
    seen = b""
    deadline = time.monotonic() + timeout
    while not (found := re.search(pattern, seen.decode(), re.S)):
        ready, _, _ = select.select([process.stdout], [], [], max(0, deadline - time.monotonic()))
        chunk = os.read(process.stdout.fileno(), 65536) if ready else b""
        if not chunk:
            raise AssertionError(f"no {pattern!r} in the dashboard's output: {seen.decode()}"
                                 f"{process.stderr.read().decode() if ready else ''}")
        seen += chunk
    return found


def get(url, method="GET", body=None):
    request = urllib.request.Request(url, method=method, data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def end(process):
    if process.poll() is None:
        process.kill()
    process.communicate(timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(output dir, dashboard root URL, study id): the dashboard was started while the tuner
    ran, and the tuner then finished its study undisturbed."""
    folder = tmp_path_factory.mktemp("dashboard")
    out = folder / "study"
    tuner = start_tuner("run", write_yaml(folder / "study.yaml", STUDY), "--output-dir", out)
    dashboard = None
    try:
        wait_for(lambda: (out / "tuner.json").exists() or tuner.poll() is not None,
                 timeout=TIMEOUT_S, what="the tuner to record its study")
        dashboard = start_dashboard(out, "--port", 0, "--no-tensorboard")
        url = read_until(dashboard, r"dashboard: (http://127\.0\.0\.1:\d+)/dashboard/studies/"
                                    r"(\d+) ")
        stdout, stderr = tuner.communicate(timeout=TIMEOUT_S)
        assert tuner.returncode == 0, stderr  # reading the journal held nothing up
        yield out, url.group(1), int(url.group(2))
    finally:
        if tuner.poll() is None:
            tuner.kill()
            tuner.communicate()
        if dashboard is not None:
            end(dashboard)


def test_the_api_shows_states_intermediate_values_reasons_and_commands(served):
    _, url, study_id = served
    status, body = get(f"{url}/api/studies/{study_id}")
    assert status == 200
    study = json.loads(body)
    assert study["name"] == "dashboard-test"
    trials = study["trials"]
    attrs = [{a["key"]: a["value"] for a in t["user_attrs"]} for t in trials]
    assert [a["state"] for a in attrs] == STATES
    assert [t["state"] for t in trials] == ["Complete"] * 4 + ["Fail"]  # Optuna's own
    assert [len(t["intermediate_values"]) for t in trials[:3]] == [6, 6, 6]
    assert trials[3]["intermediate_values"][-1]["value"] == pytest.approx(
        0.01 * len(trials[3]["intermediate_values"]))
    assert attrs[3]["reason"].startswith("median rule: best ")
    assert attrs[4]["reason"] == "exit code 3: ValueError: the trial broke on purpose"
    assert json.loads(attrs[4]["command"])[-3:] == ["--steps=6", "--sleep=0.1", "--mode=fail"]
    assert [json.loads(a["parameters"]) for a in attrs] == [
        {"mode": "slowbad", "x": x} for x in (0.6, 0.7, 0.8, 0.99)] + [{"mode": "fail"}]
    assert [p["param_external_value"] for p in trials[4]["params"]] == ["fail"]


def test_writes_are_refused_and_nothing_changes(served):
    out, url, study_id = served
    journal = (out / "study.journal").read_bytes()
    for method, path, body in [("POST", "/api/studies", {"study_name": "new",
                                                          "directions": ["maximize"]}),
                               ("PUT", f"/api/studies/{study_id}/note",
                                {"version": 1, "body": "hello"}),
                               ("DELETE", f"/api/studies/{study_id}", None)]:
        status, reply = get(url + path, method, json.dumps(body).encode() if body else None)
        assert status == 405, (method, path)
        assert "--allow-writes" in json.loads(reply)["reason"]
    assert (out / "study.journal").read_bytes() == journal
    status, body = get(f"{url}/api/studies")
    assert [s["study_name"] for s in json.loads(body)["study_summaries"]] == ["dashboard-test"]


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="Debian's chromium is not installed (apt-get install -y chromium; "
                           ".ci/run installs it)")
def test_chromium_renders_the_trials(served, tmp_path):
    _, url, study_id = served
    page = f"{url}/dashboard/studies/{study_id}/trials?numbers=3,4"  # the STOPPED and FAILED
    shot = tmp_path / "dashboard.png"
    browser = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000",
         "--virtual-time-budget=5000", "--dump-dom", f"--screenshot={shot}", page],
        capture_output=True, text=True, timeout=TIMEOUT_S)
    assert browser.returncode == 0, browser.stderr
    text = " ".join(re.sub(r"<[^>]+>", " ", re.sub(r"<style.*?</style>", "", browser.stdout,
                                                   flags=re.S)).split())
    assert "dashboard-test" in text and "5 Trials" in text
    assert all(f"Trial {n} Complete" in text for n in range(4)) and "Trial 4 Fail" in text
    assert "state STOPPED reason median rule: best" in text
    assert "state FAILED reason exit code 3: ValueError: the trial broke on purpose" in text
    assert '"--mode=fail"]' in text  # the trial's command
    assert "Intermediate Values 1 0.01 2 0.02" in text  # the STOPPED trial's curve
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def children(pid):
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def tensorboard_of(pid):
    """The dashboard's TensorBoard: its keeper's pid and TensorBoard's argv (the keeper forks,
    then execs it: until then the child's argv is the keeper's)."""
    (keeper,) = children(pid)
    wait_for(lambda: children(keeper), timeout=TIMEOUT_S, what="the keeper to start TensorBoard")
    cmdline = Path(f"/proc/{children(keeper)[0]}/cmdline")

    def argv():
        return cmdline.read_bytes().decode().split("\0")[:-1]

    wait_for(lambda: argv()[1:3] == ["-m", "tensorboard.main"], timeout=TIMEOUT_S,
             what="TensorBoard's argv")
    return keeper, argv()


def session_members(sid):
    """The live (not zombie) processes of a session."""
    members = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                state, _, _, session = f.read().rsplit(")", 1)[1].split()[:4]
        except FileNotFoundError:
            continue
        if int(session) == sid and state != "Z":
            members.append(int(pid))
    return members


@pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                    reason="tensorboard is not installed here")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL])
def test_the_end_of_the_dashboard_ends_tensorboard(served, signum):
    """Ctrl-C stops both servers (exit 130); kill -9 leaves no TensorBoard behind either."""
    out, _, _ = served
    dashboard = start_dashboard(out, "--port", 0)
    keeper = None
    try:
        url = read_until(dashboard, r"dashboard: (http://\S+)/dashboard.*\n"
                                    r"tensorboard: http://127\.0\.0\.1:\d+/ .*its messages: "
                                    r"(\S+)/stderr\)")
        keeper, argv = tensorboard_of(dashboard.pid)
        assert argv[3:5] == ["--logdir", str(out)]
        dashboard.send_signal(signum)
        dashboard.wait(timeout=TIMEOUT_S)  # not its pipes: a TensorBoard left behind holds them
        assert dashboard.returncode == (128 + signum if signum != signal.SIGKILL else -signum)
        wait_for(lambda: not session_members(keeper), timeout=TIMEOUT_S,
                 what="TensorBoard and its data server to end")
        assert os.path.isdir(url.group(2)) == (signum == signal.SIGKILL)  # removed on a stop
    finally:
        for pid in session_members(keeper) if keeper else []:
            os.kill(pid, signal.SIGKILL)  # the test failed: leave nothing behind
        end(dashboard)
        if keeper:
            shutil.rmtree(url.group(2), ignore_errors=True)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url.group(1), timeout=TIMEOUT_S)


@pytest.fixture
def busy_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def test_bad_input_exits_2_and_writes_nothing(served, tmp_path, busy_port):
    out, _, _ = served
    (tmp_path / "empty").mkdir()
    before = sorted(os.listdir(out))
    cases = [
        ([tmp_path / "nowhere"], "no such folder"),
        ([tmp_path / "empty"], "no tuner.json; is this a study's --output-dir?"),
        (["--storage", tmp_path / "gone.journal"], "gone.journal does not exist"),
        (["--storage", f"sqlite:///{tmp_path / 'gone.db'}"], "gone.db does not exist"),
        ([out, "--port", busy_port, "--no-tensorboard"],
         f"port {busy_port} on 127.0.0.1 is in use: give --port another one"),
    ]
    for args, message in cases:
        result = run_tuner("dashboard", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert last_line(result.stderr).startswith("error: ") and message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(os.listdir(tmp_path)) == ["empty"] and not os.listdir(tmp_path / "empty")
    assert sorted(os.listdir(out)) == before
