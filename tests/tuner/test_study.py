"""The study in-process: budgets under racing tuners, orphans, storages, and the oracle's
verdicts (stopping, final values, budgets) without trial processes."""
import math
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
from tuner.trial import Exit, Measurement
from tuner.trial import TrialState as State


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
    study.finish(record, State.INFEASIBLE, None, "final score is NaN", 1.5)
    again = study_mod.Study(study_mod.existing_storage(str(tmp_path / "study.journal")), "s",
                            _job(), create=False)
    (kept,) = again.records()
    assert (kept.state, kept.value, kept.reason, kept.elapsed_s, kept.runs) == (
        State.INFEASIBLE, None, "final score is NaN", 1.5, 1)
    assert kept.command == ["python", "train.py", "--x=0.5"]
    assert kept.run == run  # a rerun ends what is left of this run first


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


# -- the oracle, without processes -------------------------------------------------------------

def _m(*values):
    return [Measurement(i + 1, float(i), v, float(i)) for i, v in enumerate(values)]


def _oracle(**changes):
    doc = config(**changes)
    doc["studySpec"].setdefault("algorithm", "RANDOM_SEARCH")
    return study_mod.Study(optuna.storages.InMemoryStorage(), "s", S.parse(doc), seed=0)


def test_final_measurement_selection():
    select = study_mod.select_final
    assert select(_m(0.5, 0.9, 0.7), maximize=True, best=False) == 0.7
    assert select(_m(0.5, 0.9, 0.7), maximize=True, best=True) == 0.9
    assert select(_m(0.5, 0.9, 0.7), maximize=False, best=True) == 0.5
    assert select(_m(0.5, math.nan), maximize=True, best=True) == 0.5
    assert math.isnan(select(_m(0.5, math.nan), maximize=True, best=False))
    assert select([], maximize=True, best=True) is None


@pytest.mark.parametrize("measurement,final", [("LAST_MEASUREMENT", 0.7),
                                               ("BEST_MEASUREMENT", 0.9)])
def test_complete_takes_the_final_value_the_spec_asks_for(measurement, final):
    oracle = _oracle(study={"measurementSelectionType": measurement})
    record = oracle.suggest()
    oracle.report(record, _m(0.5, 0.9, 0.7), 3.0)
    done = oracle.complete(record, Exit(0, 3.5))
    assert (done.state, done.value, done.reason, done.elapsed_s) == (
        State.SUCCEEDED, final, "", 3.5)
    (kept,) = oracle.records()
    assert (kept.state, kept.value) == (State.SUCCEEDED, final)
    assert oracle.optuna.trials[0].value == final  # what the sampler learns from


@pytest.mark.parametrize("values,end,state,reason", [
    ((0.5,), Exit(3, 1.0, tail=("ValueError: bad",)), State.FAILED, "exit code 3: ValueError: bad"),
    ((), Exit(-9, 1.0), State.FAILED, "killed by SIGKILL"),
    ((), Exit(None, 0.0, tail=("Permission denied: /x",)), State.FAILED,
     "cannot start the trial: Permission denied: /x"),
    ((), Exit(0, 1.0, reported=frozenset({"accuracy"})), State.INFEASIBLE,
     "reported no value for 'score' (it reported accuracy)"),
    ((math.nan,), Exit(0, 1.0), State.INFEASIBLE, "final score is NaN"),
    ((0.4,), Exit(-15, 1.0, stopped="median rule: ..."), State.STOPPED, "median rule: ..."),
])
def test_complete_judges_how_a_run_ended(values, end, state, reason):
    oracle = _oracle()
    record = oracle.suggest()
    oracle.report(record, _m(*values), 1.0)
    done = oracle.complete(record, end)
    assert (done.state, done.reason) == (state, reason)
    assert done.value == (0.4 if state is State.STOPPED else None)
    assert oracle.optuna.trials[0].state == (TrialState.COMPLETE if state is State.STOPPED
                                             else TrialState.FAIL)


def test_report_records_intermediate_values_and_says_when_the_median_rule_stops():
    oracle = _oracle(maxTrialCount=5, study={"medianAutomatedStoppingSpec": {}})
    for values in ((0.5, 0.7, 0.8), (0.6, 0.75, 0.82), (0.55, 0.72, 0.9)):
        record = oracle.suggest()
        assert oracle.report(record, _m(*values), 3.0) is None  # too few completed trials
        oracle.complete(record, Exit(0, 3.0))
    good, bad = oracle.suggest(), oracle.suggest()
    assert oracle.report(good, _m(0.6), 1.0) is None  # one measurement: too early to judge
    assert oracle.report(good, _m(0.6, 0.8), 2.0) is None
    reason = oracle.report(bad, _m(0.1, 0.2), 2.0)
    assert reason.startswith("median rule: best 0.2 by step 2")
    trials = oracle.optuna.get_trials()
    assert trials[3].intermediate_values == {1: 0.6, 2: 0.8}
    assert trials[0].intermediate_values == {1: 0.5, 2: 0.7, 3: 0.8}


@pytest.mark.parametrize("limit,outcomes,failed", [
    (None, ["FAILED"], "a trial failed before any succeeded"),
    (None, ["SUCCEEDED", "INFEASIBLE"], None),
    (None, ["SUCCEEDED", "FAILED", "FAILED"], "2 trials failed against 1 succeeded"),
    (2, ["FAILED"], None),
    (2, ["FAILED", "INFEASIBLE"], "2 trials failed (maxFailedTrialCount is 2)"),
])
def test_the_failure_budget(limit, outcomes, failed):
    oracle = _oracle(maxTrialCount=9, **({"maxFailedTrialCount": limit} if limit else {}))
    for outcome in outcomes:
        record = oracle.suggest()
        if outcome == "SUCCEEDED":
            oracle.report(record, _m(0.5), 1.0)
        oracle.complete(record, Exit(0 if outcome != "FAILED" else 1, 1.0))
    verdict = oracle.budget_exhausted()
    if failed is None:
        assert verdict is None
    else:
        assert verdict.failed and verdict.message.startswith(failed)


def test_the_trial_budget_and_the_grid_end_suggestions():
    oracle = _oracle(maxTrialCount=2)
    oracle.suggest()
    oracle.suggest()  # the budget's two trials
    assert oracle.suggest() is None
    verdict = oracle.budget_exhausted()
    assert verdict is not None and not verdict.failed  # the running trials finish first
    grid = _oracle(maxTrialCount=9, study={"algorithm": "GRID_SEARCH", "parameters": [
        {"parameterId": "x", "discreteValueSpec": {"values": [0.1, 0.2, 0.3]}}]})
    assert [grid.suggest().parameters["x"] for _ in range(3)] == [0.1, 0.2, 0.3]
    assert grid.suggest() is None and not grid.budget_exhausted().failed


def test_a_suggestion_withdrawn_before_it_ran_leaves_no_trial():
    oracle = _oracle(maxTrialCount=2)
    ran, ahead = oracle.suggest(), oracle.suggest()
    oracle.started(ran, ["python", "t.py"], None)
    oracle.withdraw(ran)  # it ran: it stays
    oracle.withdraw(ahead)
    assert [r.trial_id for r in oracle.records()] == ["1"]


def test_optuna_visualization_draws_the_curves_from_the_storage(tmp_path):
    storage, _ = study_mod.storage_for(str(tmp_path), None)
    oracle = study_mod.Study(storage, "s", _job(maxTrialCount=2))
    for values in ((0.2, 0.5), (0.3, 0.4, 0.6)):
        record = oracle.suggest()
        oracle.report(record, _m(*values), 1.0)
        oracle.complete(record, Exit(0, 1.0))
    loaded = optuna.load_study(study_name="s", storage=study_mod.existing_storage(
        str(tmp_path / "study.journal")))
    figure = optuna.visualization.plot_intermediate_values(loaded)
    curves = sorted((list(t.x), list(t.y)) for t in figure.data)
    assert curves == [([1, 2], [0.2, 0.5]), ([1, 2, 3], [0.3, 0.4, 0.6])]


# -- several metrics ---------------------------------------------------------------------------

TWO = [{"metricId": "score", "goal": "MAXIMIZE"}, {"metricId": "latency", "goal": "MINIMIZE"}]


def _two(score, latency):
    """score at steps 1.., latency at steps 1.. (None: not reported at that step)."""
    out = [Measurement(i + 1, float(i), v, float(i)) for i, v in enumerate(score)
           if v is not None]
    out += [Measurement(i + 1, i + 0.5, v, i + 0.5, "latency") for i, v in enumerate(latency)
            if v is not None]
    return sorted(out, key=lambda m: (m.step, m.elapsed_s))


def test_several_metrics_are_told_at_the_last_step_that_has_every_metric():
    oracle = _oracle(study={"metrics": TWO})
    assert oracle.optuna.directions == [optuna.study.StudyDirection.MAXIMIZE,
                                        optuna.study.StudyDirection.MINIMIZE]
    record = oracle.suggest()
    oracle.report(record, _two((0.5, 0.7, 0.9), (30.0, 20.0)), 3.0)
    done = oracle.complete(record, Exit(0, 3.5))
    assert (done.state, done.values, done.value, done.reason) == (
        State.SUCCEEDED, (0.7, 20.0), 0.7, "")
    (kept,) = oracle.records()
    assert (kept.state, kept.values, kept.value) == (State.SUCCEEDED, (0.7, 20.0), 0.7)
    assert kept.measurements == record.measurements  # each with its metric
    trial = oracle.optuna.trials[0]
    assert trial.values == [0.7, 20.0]  # what the sampler learns from
    assert trial.intermediate_values == {1: 0.5, 2: 0.7, 3: 0.9}  # the first metric's


def test_a_later_report_of_a_step_wins():
    oracle = _oracle(study={"metrics": TWO})
    record = oracle.suggest()
    again = Measurement(1, 0.9, 0.6, 0.9)  # score at step 1 once more, after latency
    oracle.report(record, _two((0.5,), (30.0,)) + [again], 1.0)
    assert oracle.complete(record, Exit(0, 1.0)).values == (0.6, 30.0)


@pytest.mark.parametrize("score,latency,reported,reason", [
    ((0.5, 0.7), (), {"score"}, "reported no value for 'latency' (it reported score)"),
    ((), (), set(), "reported no value for 'score', 'latency' (nothing in CLOUD_ML_HP_METRIC_FILE"
                    ": does it report through cloudml-hypertune?)"),
    ((0.5, None), (None, 20.0), {"score", "latency"},
     "reported no step with every metric (last steps: score 1, latency 2): report them all "
     "with the same global_step (it reported latency, score)"),
    ((0.5,), (math.nan,), {"score", "latency"}, "final latency is NaN"),
])
def test_a_trial_without_a_final_value_for_every_metric_is_infeasible(score, latency,
                                                                       reported, reason):
    oracle = _oracle(study={"metrics": TWO})
    record = oracle.suggest()
    oracle.report(record, _two(score, latency), 1.0)
    done = oracle.complete(record, Exit(0, 1.0, reported=frozenset(reported)))
    assert (done.state, done.reason, done.value, done.values) == (
        State.INFEASIBLE, reason, None, None)
    assert oracle.optuna.trials[0].state == TrialState.FAIL


def test_a_stopped_multi_metric_trial_keeps_what_it_measured():
    oracle = _oracle(study={"metrics": TWO})
    record = oracle.suggest()
    oracle.report(record, _two((0.5,), (30.0,)), 1.0)
    done = oracle.complete(record, Exit(-15, 1.0, stopped="study failed: ..."))
    assert (done.state, done.values) == (State.STOPPED, (0.5, 30.0))
    assert oracle.optuna.trials[0].values == [0.5, 30.0]


def test_a_study_remembers_its_metrics(tmp_path):
    storage, _ = study_mod.storage_for(str(tmp_path), None)
    study_mod.Study(storage, "s", _job())
    with pytest.raises(study_mod.StudyMismatch, match="metrics is None there"):
        study_mod.Study(storage, "s", S.parse(config(study={"algorithm": "RANDOM_SEARCH",
                                                            "metrics": TWO})))


def test_a_seeded_multi_metric_search_repeats_itself_but_not_after_a_resume():
    job = S.parse(config(maxTrialCount=12, study={"metrics": TWO}))  # the default search: TPE
    storage = optuna.storages.InMemoryStorage()
    xs = []
    for _ in range(2):  # a second tuner process resumes the study: a new sampler, same seed
        oracle = study_mod.Study(storage, "s", job, seed=3)
        for _ in range(4):  # 5 start-up trials, then TPE's own
            record = oracle.suggest()
            x = record.parameters["x"]
            xs.append(x)
            oracle.report(record, _two((1 - (x - 0.7) ** 2,), (100 * x,)), 1.0)
            oracle.complete(record, Exit(0, 1.0))
    assert len(set(xs)) == 8
    again = study_mod.Study(optuna.storages.InMemoryStorage(), "s", job, seed=3)
    assert again.suggest().parameters["x"] == xs[0]
    assert len(oracle.optuna.best_trials) >= 1  # Optuna's own front of the told values


@pytest.mark.parametrize("line", [
    "train.py: error: argument --batch_size: invalid int value: '16.0'",
    "ValueError: invalid literal for int() with base 10: '16.0'",
])
def test_a_trial_that_parses_a_discrete_value_as_an_integer_is_told_why(line):
    oracle = _oracle()
    record = oracle.suggest()
    done = oracle.complete(record, Exit(2, 1.0, tail=("usage: train.py ...", line)))
    assert done.reason.startswith(f"exit code 2: {line} (the tuner passes DISCRETE values as "
                                  "floats, e.g. 16.0, as Vertex does: parse the flag as a float")
    other = _oracle()
    assert other.complete(other.suggest(), Exit(2, 1.0, tail=("error: bad flag",))).reason == \
        "exit code 2: error: bad flag"


def _failed_study():
    """Two trials: one succeeded, one failed (maxFailedTrialCount 1: the study failed)."""
    oracle = _oracle(maxTrialCount=4, maxFailedTrialCount=1)
    good, bad = oracle.suggest(), oracle.suggest()
    oracle.report(good, _m(0.5), 1.0)
    oracle.complete(good, Exit(0, 1.0))
    oracle.complete(bad, Exit(1, 1.0))
    assert oracle.budget_exhausted().failed
    return oracle, bad


def test_retrying_failed_trials_reruns_them_with_their_parameters_and_keeps_the_failure():
    oracle, bad = _failed_study()
    assert oracle.retry_failed() == [("2", "3")]
    assert oracle.budget_exhausted() is None  # the failure no longer counts, nor its place
    rerun = oracle.suggest()
    assert (rerun.trial_id, rerun.parameters) == ("3", bad.parameters)
    assert [r.trial_id for r in oracle.records()] == ["1", "3"]
    kept = oracle.optuna.trials[bad.number]
    assert kept.state is TrialState.FAIL and kept.params == oracle.optuna.trials[2].params
    assert oracle.retry_failed() == []  # asked again: nothing is run twice
