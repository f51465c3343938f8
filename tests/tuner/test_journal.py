"""The study journal under real faults: a record torn by a killed tuner, a disk that fills.

Every study here is a real `python -m tuner run` with trial processes; the full disk is a real
3 MB tmpfs (we mount it; skipped where mounting is not allowed).
"""
import errno
import json
import sys
import threading

import optuna
import pytest

from tests.tuner.support import (
    TRIAL_SCRIPT,
    config,
    last_line,
    mounted_tmpfs,
    read_csv,
    run_tuner,
    start_tuner,
    write_yaml,
)
from tuner.journal import JournalFile

STUDY = config(maxTrialCount=2, parallelTrialCount=1, args=["--steps=2", "--sleep=0"],
               study={"algorithm": "RANDOM_SEARCH"})


def records(journal):
    """Every line of the journal, parsed: fails if any line is not a whole record."""
    data = journal.read_bytes()
    assert data.endswith(b"\n"), data[-200:]
    return [json.loads(line) for line in data.splitlines()]


def values(out):
    return {r["trial_id"]: (r["state"], r["value"], r["x"]) for r in read_csv(out / "trials.csv")}


def test_a_torn_last_record_is_set_aside_and_the_study_goes_on(tmp_path):
    path = write_yaml(tmp_path / "study.yaml", STUDY)
    out = tmp_path / "study"
    assert run_tuner("run", path, "--output-dir", out, "--seed", "1").returncode == 0
    before = values(out)
    journal = out / "study.journal"
    data = journal.read_bytes()
    last = data.rstrip(b"\n").rfind(b"\n") + 1
    cut = last + (len(data) - last) // 2  # the middle of the last record, as a kill -9 leaves it
    journal.write_bytes(data[:cut])

    shown = run_tuner("results", out)  # reads what is whole, writes nothing into the journal
    assert shown.returncode == 0, shown.stderr
    assert "trials: 2 SUCCEEDED" in shown.stdout
    assert journal.read_bytes() == data[:cut]

    more = run_tuner("run", path, "--output-dir", out, "--seed", "1", "--max-trial-count", "3")
    assert more.returncode == 0, more.stderr
    (aside,) = out.glob("study.journal.torn-*")
    assert aside.read_bytes() == data[last:cut]
    notes = [line for line in more.stderr.splitlines() if "torn record" in line]
    assert notes == [f"note: {journal} ended in a torn record ({cut - last} bytes, left by a "
                     f"tuner that stopped mid-write); kept every whole record, moved the torn "
                     f"bytes to {aside}"]
    assert records(journal)[:data.count(b"\n") - 1] == [json.loads(line) for line in
                                                         data[:last].splitlines()]
    after = values(out)
    assert {k: after[k] for k in before} == before
    assert after["3"][0] == "SUCCEEDED"
    again = run_tuner("results", out)
    assert again.returncode == 0 and "trials: 3 SUCCEEDED" in again.stdout, again.stderr


def test_a_damaged_record_before_the_end_is_named_in_one_line(tmp_path):
    path = write_yaml(tmp_path / "study.yaml", STUDY)
    out = tmp_path / "study"
    assert run_tuner("run", path, "--output-dir", out).returncode == 0
    journal = out / "study.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    # what the old tuner wrote after a torn record: the next record right behind it
    damaged = b"".join(lines[:3] + [lines[3][:len(lines[3]) // 2] + lines[4]] + lines[5:])
    journal.write_bytes(damaged)
    for command in (["run", path, "--output-dir", out], ["results", out]):
        result = run_tuner(*command)
        assert result.returncode == 2, result.stderr
        assert result.stderr.splitlines() == [
            f"error: {journal} line 4 is not a whole record (two records run together by an "
            "older tuner, or a disk fault), so the study cannot be read: restore the file from "
            "a backup, or start a new study with another --output-dir"]
    assert journal.read_bytes() == damaged


def test_a_record_being_written_under_the_lock_is_not_taken_for_a_torn_one(tmp_path):
    """While another writer holds Optuna's journal lock mid-record, a starting tuner waits for
    the lock (Optuna warns after 10 s) instead of setting that record aside."""
    path = write_yaml(tmp_path / "study.yaml", STUDY)
    out = tmp_path / "study"
    assert run_tuner("run", path, "--output-dir", out, "--max-trial-count", "1").returncode == 0
    journal = out / "study.journal"
    record = journal.read_bytes().splitlines(keepends=True)[-1]  # a record replaying it repeats
    lock = JournalFile(str(journal)).lock
    lock.acquire()
    released = False
    try:
        with open(journal, "ab") as f:
            f.write(record[:len(record) // 2])
        tuner = start_tuner("run", path, "--output-dir", out)
        waiting = threading.Event()
        lines = []

        def watch():
            for line in tuner.stderr:
                lines.append(line)
                if "taking longer than" in line:
                    waiting.set()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        assert waiting.wait(timeout=120), "".join(lines)
        with open(journal, "ab") as f:
            f.write(record[len(record) // 2:])
        lock.release()
        released = True
        tuner.wait(timeout=120)
        watcher.join(timeout=30)
    finally:
        if not released:
            lock.release()
        tuner.kill()
        tuner.communicate()
    assert tuner.returncode == 0, "".join(lines)
    assert not list(out.glob("study.journal.torn-*"))
    assert not any("torn record" in line for line in lines)
    records(journal)
    assert [r["state"] for r in read_csv(out / "trials.csv")] == ["SUCCEEDED"] * 2


def test_an_append_that_meets_a_full_disk_leaves_no_partial_record(tmp_path):
    with mounted_tmpfs(tmp_path / "disk", "1m") as disk:
        path = disk / "study.journal"
        storage = optuna.storages.JournalStorage(JournalFile(str(path)))
        study = optuna.create_study(storage=storage, study_name="s")
        created = len(records(path))
        with open(disk / "filler", "wb", buffering=0) as filler:  # all but the journal's last
            try:                                                 # page is full
                while True:
                    filler.write(b"\0" * 65536)
            except OSError:
                pass
        kept = 0
        with pytest.raises(OSError) as raised:
            for kept in range(100000):
                study.set_user_attr(f"a{kept}", "x" * 300)
        assert raised.value.errno == errno.ENOSPC
        assert len(records(path)) == created + kept  # every attribute that fit, whole
        assert raised.value.filename == str(path)  # for the one line that says what is full
        (disk / "filler").unlink()
        study.set_user_attr("after", "space")
        again = optuna.load_study(storage=optuna.storages.JournalStorage(JournalFile(str(path))),
                                  study_name="s")
        assert len(again.user_attrs) == kept + 1 and again.user_attrs["after"] == "space"


FLOOD = """\
import os, runpy, sys
if os.environ["CLOUD_ML_TRIAL_ID"] == "3" and os.path.exists({marker!r}):
    try:
        while True:  # a trial that floods its stdout log until the disk is full
            os.write(1, b"x" * 65536)
    except OSError as exc:
        os.write(2, f"flood: {{exc}}\\n".encode())
        os._exit(1)
sys.argv = [{script!r}] + sys.argv[1:]
runpy.run_path({script!r}, run_name="__main__")
"""


def test_a_disk_filled_by_a_trial_stops_the_study_and_a_rerun_resumes_it(tmp_path):
    marker = tmp_path / "flood"
    marker.touch()
    flood = tmp_path / "flood.py"
    flood.write_text(FLOOD.format(marker=str(marker), script=str(TRIAL_SCRIPT)))
    path = write_yaml(tmp_path / "study.yaml", config(
        maxTrialCount=4, parallelTrialCount=1, study={"algorithm": "RANDOM_SEARCH"}))
    with mounted_tmpfs(tmp_path / "disk", "3m") as disk:
        out = disk / "study"
        args = ("run", path, "--output-dir", out, "--seed", "2", "--",
                sys.executable, flood, "--steps=2", "--sleep=0")
        full = run_tuner(*args)
        assert full.returncode == 1, full.stdout[-2000:] + full.stderr[-2000:]
        assert "Traceback" not in full.stderr
        assert last_line(full.stderr) == (
            f"error: no space left on the disk of {out / '3'}: the study stopped; every "
            f"finished trial is kept in {out / 'study.journal'}; free space there and run the "
            "same command again to resume")
        records(out / "study.journal")
        before = values(out)
        assert [before[i][0] for i in ("1", "2")] == ["SUCCEEDED"] * 2

        marker.unlink()
        (out / "3" / "stdout").unlink()  # what a user does: delete what filled the disk
        resumed = run_tuner(*args)
        assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
        assert "trial 3 restarted (run 2)" in resumed.stdout
        after = values(out)
        assert {k: after[k] for k in ("1", "2")} == {k: before[k] for k in ("1", "2")}
        assert [after[i][0] for i in ("1", "2", "3", "4")] == ["SUCCEEDED"] * 4
        records(out / "study.journal")
