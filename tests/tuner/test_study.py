"""Durable study state in-process: budgets under racing tuners, orphans, storages."""
import os
import subprocess
import sys

import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from tests.tuner.support import config
from tuner import spec as S
from tuner import study as study_mod


def _job(**changes):
    return S.parse(config(study={"algorithm": "RANDOM_SEARCH"}, **changes))


@pytest.fixture(params=["journal", "sqlite"])
def storage_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'study.db'}"
    return str(tmp_path / "shared" / "study.journal")


def test_racing_tuners_never_exceed_the_budget(storage_url, tmp_path):
    job = _job(maxTrialCount=3)
    tuners = [study_mod.Study(study_mod.storage_for(str(tmp_path), storage_url)[0], "s", job,
                              seed=i) for i in range(2)]
    first = tuners[0].new_trial()
    second = tuners[1].new_trial()
    assert (first.trial_id, second.trial_id) == ("1", "2")
    # Both see 2 trials and one place left. The timing cannot be forced between processes,
    # so tuner 1 is made to read the study as it was just before tuner 0's third trial landed.
    stale = tuners[1].records()
    last = tuners[0].new_trial()
    assert last.trial_id == "3"
    real_records = tuners[1].records
    calls = iter([stale])
    tuners[1].records = lambda: next(calls, None) or real_records()
    assert tuners[1].new_trial() is None  # it created trial number 3 (id 4), then discarded it
    assert len(tuners[1].optuna.get_trials()) == 4
    assert tuners[1].optuna.get_trials()[3].user_attrs["discarded"] is True
    for tuner in tuners:
        assert [r.trial_id for r in tuner.records()] == ["1", "2", "3"]
    assert first.parameters != second.parameters != last.parameters


def test_a_finished_trial_keeps_its_record(tmp_path):
    storage, _ = study_mod.storage_for(str(tmp_path), None)
    study = study_mod.Study(storage, "s", _job())
    record = study.new_trial()
    run = {"host": "h", "boot": "b", "pid": 123, "start": 456}
    study.started(record, ["python", "train.py", "--x=0.5"], run)
    study.finish(record, study_mod.INFEASIBLE, None, "final score is NaN", 1.5)
    again = study_mod.Study(study_mod.existing_storage(str(tmp_path / "study.journal")), "s",
                            _job(), create=False)
    (kept,) = again.records()
    assert (kept.state, kept.value, kept.reason, kept.elapsed_s, kept.runs) == (
        study_mod.INFEASIBLE, None, "final score is NaN", 1.5, 1)
    assert kept.command == ["python", "train.py", "--x=0.5"]
    assert kept.keeper == run  # a rerun ends what is left of this run first


def test_a_dead_tuners_trials_are_orphans_and_a_live_ones_are_not(tmp_path):
    storage, _ = study_mod.storage_for(str(tmp_path), None)
    job = _job()
    # a tuner in another process claims a trial, then dies without a word
    code = ("import sys; sys.path.insert(0, %r)\n"
            "from tests.tuner.support import config\n"
            "from tuner import spec as S, study as m\n"
            "job = S.parse(config(study={'algorithm': 'RANDOM_SEARCH'}))\n"
            "s = m.Study(m.storage_for(%r, None)[0], 's', job)\n"
            "s.heartbeat(force=True); s.new_trial(); print('claimed', flush=True)\n"
            "sys.stdin.read()\n") % (os.getcwd(), str(tmp_path))
    other = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    assert other.stdout.readline() == "claimed\n"
    me = study_mod.Study(storage, "s", job)
    assert me.orphans() == []  # its tuner is alive
    other.kill()
    other.wait()
    (orphan,) = me.orphans()
    adopted = me.adopt(orphan)
    assert adopted.owner == me.token and adopted.parameters == orphan.parameters
    assert me.orphans() == []


def test_an_orphan_whose_tuner_died_suggesting_gets_the_rest_of_its_parameters(tmp_path):
    storage, _ = study_mod.storage_for(str(tmp_path), None)
    job = S.parse(config(study={"algorithm": "RANDOM_SEARCH", "parameters": [
        {"parameterId": "opt", "categoricalValueSpec": {"values": ["adam", "sgd"]}},
        {"parameterId": "x", "doubleValueSpec": {"minValue": 0.0, "maxValue": 1.0}}]}))
    me = study_mod.Study(storage, "s", job, seed=0)  # its own suggestion would be opt=sgd
    # what a tuner leaves that died suggesting: its trial, owned, with its first parameter only
    dead = optuna.trial.create_trial(state=TrialState.RUNNING, user_attrs={"owner": "h:1:gone"})
    trial_id = storage.create_new_trial(storage.get_study_id_from_name("s"), template_trial=dead)
    opt = CategoricalDistribution(["adam", "sgd"])
    storage.set_trial_param(trial_id, "opt", opt.to_internal_repr("adam"), opt)
    (orphan,) = me.orphans()
    adopted = me.adopt(orphan)
    assert adopted.trial_id == "1" and adopted.owner == me.token
    assert adopted.parameters["opt"] == "adam" and 0.0 <= adopted.parameters["x"] <= 1.0
    assert me.records() == [adopted]
    assert storage.get_trial(trial_id).params == adopted.parameters


def test_a_study_remembers_its_search_space(tmp_path):
    storage, _ = study_mod.storage_for(str(tmp_path), None)
    study_mod.Study(storage, "s", _job())
    changed = S.parse(config(study={"algorithm": "GRID_SEARCH", "parameters": [
        {"parameterId": "x", "discreteValueSpec": {"values": [0.1, 0.2]}}]}))
    with pytest.raises(study_mod.StudyMismatch, match="algorithm is 'RANDOM_SEARCH' there"):
        study_mod.Study(storage, "s", changed)
    study_mod.Study(storage, "s", _job(maxTrialCount=9))  # budgets may change between runs
