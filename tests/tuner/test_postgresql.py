"""Tuners on several machines share one study in a real PostgreSQL server (`--storage
postgresql://...`). Each tuner runs in a UTS namespace of its own hostname, so each takes the
other for a tuner on another machine: one that is gone is known by its silent heartbeat only."""
import shutil
import signal
import subprocess
import sys
from collections import defaultdict

import pytest

from tests.support.postgresql import PostgresServer, find_bin, free_port
from tests.tuner.support import ROOT, config, read_csv, reported_steps, run_tuner, trial_runs, tuner_env, wait_for

HEARTBEAT_TIMEOUT_S = 15  # the least the tuner takes: tuners beat every 5 s
TIMEOUT_S = 180


@pytest.fixture(scope="module")
def postgres():
    if find_bin("initdb") is None:
        pytest.skip("PostgreSQL's initdb is not installed (Debian: apt-get install postgresql)")
    with PostgresServer() as server:
        yield server


def _on_machine(hostname, *args, out, err):
    """`python -m tuner ARGS` as if on another machine: a hostname of its own (needs root)."""
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "--uts", "true"], capture_output=True).returncode != 0:
        pytest.skip("cannot make a UTS namespace here (unshare --uts needs root)")
    return subprocess.Popen(["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"',
                             hostname, sys.executable, "-m", "tuner", *map(str, args)],
                            cwd=ROOT, env=tuner_env(), stdout=out, stderr=err, text=True)


def test_two_machines_share_a_study_and_one_adopts_the_others_trial(postgres, write_config,
                                                                    tmp_path):
    url = postgres.create_database()
    path = write_config(config(maxTrialCount=8, parallelTrialCount=1,
                               args=["--steps=4", "--sleep=0.5"],
                               study={"algorithm": "RANDOM_SEARCH"}))
    outs = {name: tmp_path / name for name in ("machine-a", "machine-b")}
    logs = {name: tmp_path / f"{name}.log" for name in outs}  # stdout and stderr
    tuners = {}
    try:
        for name, out in outs.items():
            with open(logs[name], "w") as log:
                tuners[name] = _on_machine(name, "run", path, "--output-dir", out, "--storage",
                                           url, "--heartbeat-timeout", HEARTBEAT_TIMEOUT_S,
                                           out=log, err=subprocess.STDOUT)
        a_out = outs["machine-a"]

        def a_trial_reported():
            assert tuners["machine-a"].poll() is None, logs["machine-a"].read_text()
            return a_out.exists() and any(reported_steps(a_out, p.name) >= 1
                                          for p in a_out.iterdir() if p.name.isdigit())

        wait_for(a_trial_reported, timeout=TIMEOUT_S, what="machine-a's trial to report")
        tuners["machine-a"].send_signal(signal.SIGKILL)
        tuners["machine-a"].wait(timeout=TIMEOUT_S)
        assert tuners["machine-b"].wait(timeout=TIMEOUT_S) == 0, logs["machine-b"].read_text()
    finally:
        for tuner in tuners.values():
            tuner.kill()
            tuner.wait()
    assert tuners["machine-a"].returncode == -signal.SIGKILL

    result = run_tuner("results", outs["machine-b"])
    assert result.returncode == 0, result.stderr
    rows = read_csv(outs["machine-b"] / "trials.csv")
    # the budget counted across both machines: 8 trials, each run to the end once
    assert [r["trial_id"] for r in rows] == [str(i) for i in range(1, 9)]
    assert all(r["state"] == "SUCCEEDED" for r in rows), rows
    # no trial id ran with two parameter sets, on either machine
    argvs = defaultdict(set)
    for out in outs.values():
        for trial in out.iterdir():
            if trial.name.isdigit():
                argvs[trial.name] |= {tuple(run["argv"]) for run in trial_runs(out, trial.name)}
    assert sorted(argvs, key=int) == [r["trial_id"] for r in rows]
    assert all(len(seen) == 1 for seen in argvs.values()), argvs
    ran = {name: {p.name for p in out.iterdir() if p.name.isdigit()}
           for name, out in outs.items()}
    # the trial machine-a was running when it was killed, and only that one, ran on both
    (orphan,) = ran["machine-a"] & ran["machine-b"]
    assert f"trial {orphan} restarted (run 2)" in logs["machine-b"].read_text()


def test_a_missing_driver_or_server_is_one_line_before_anything_is_written(postgres,
                                                                           write_config,
                                                                           tmp_path):
    path = write_config(config())
    out = tmp_path / "study"
    url = postgres.url().replace("tuner@", "tuner:secret@")
    code = ("import sys; sys.modules['psycopg'] = None  # as where it is not installed\n"
            "from tuner.cli import main; sys.exit(main(sys.argv[1:]))")
    blocked = subprocess.run([sys.executable, "-c", code, "run", str(path), "--output-dir",
                              str(out), "--storage", url], cwd=ROOT, env=tuner_env(),
                             capture_output=True, text=True, timeout=TIMEOUT_S)
    assert blocked.returncode == 2
    assert blocked.stderr.strip().splitlines() == [
        f"error: --storage {url.replace('secret', '***')}: the postgresql driver psycopg is "
        "not installed: pip install 'psycopg[binary]==3.3.9' (or the tuner's extra: pip "
        "install '.[postgresql]')"]
    no_server = run_tuner("run", path, "--output-dir", out, "--storage",
                          url.replace(str(postgres.port), str(free_port())))  # nothing listens
    assert no_server.returncode == 2
    (line,) = no_server.stderr.strip().splitlines()
    assert "cannot use the database" in line and "secret" not in line
    assert not out.exists()
