"""Suggestions: the grid, scales, conditionals, pending trials, and resumable randomness."""
import math
import subprocess
import sys

import numpy as np
import optuna
import pytest
import yaml

from tests.tuner.support import ROOT, TIMEOUT_S, config, tuner_env
from tuner import search
from tuner import spec as S

optuna.logging.set_verbosity(optuna.logging.WARNING)

TREE = yaml.safe_load("""
- parameterId: optimizer
  categoricalValueSpec: {values: [adam, sgd, rmsprop]}
  conditionalParameterSpecs:
  - parentCategoricalValues: {values: [sgd, rmsprop]}
    parameterSpec:
      parameterId: momentum
      discreteValueSpec: {values: [0.5, 0.9]}
- parameterId: layers
  integerValueSpec: {minValue: 1, maxValue: 3}
  conditionalParameterSpecs:
  - parentIntValues: {values: [2, 3]}
    parameterSpec:
      parameterId: width
      discreteValueSpec: {values: [16, 64]}
""")


def _job(parameters, **changes):
    return S.parse(config(study={"parameters": parameters}, **changes))


def _ask(space, sampler, n, *, direction="maximize", objective=None, pending=0):
    """n suggestions; all but the last `pending` are told objective(values) (default 0)."""
    study = optuna.create_study(direction=direction, sampler=sampler)
    suggestions = []
    for i in range(n):
        trial = study.ask()
        values = space.suggest(trial)
        suggestions.append(values)
        if i < n - pending:
            study.tell(trial, objective(values) if objective else 0.0)
    return suggestions


def test_grid_enumerates_the_conditional_tree_once():
    space = search.Space(_job(TREE).parameters)
    points = list(space.grid())
    # optimizer: adam (1) + sgd, rmsprop (2 momentum each) = 5; layers: 1 + 2 * 2 widths = 5
    assert space.grid_size() == len(points) == 25
    decoded = {tuple(sorted(p.items())) for p in points}
    assert len(decoded) == 25
    adam = [p for p in points if p["optimizer"] == "adam"]
    assert all("momentum" not in p for p in adam)
    assert all(("width" in p) == (p["layers"] > 1) for p in points)


def test_grid_sampler_hands_out_points_in_order():
    space = search.Space(_job(TREE).parameters)
    sampler = search.GridPointSampler(space)
    study = optuna.create_study(sampler=sampler)
    seen = []
    for index in range(space.grid_size()):
        sampler.index = index
        seen.append(space.suggest(study.ask()))
    expected = [{space.by_name[k].parameter.id: space.by_name[k].to_value(v)
                 for k, v in p.items()} for p in space.grid()]
    assert seen == expected


def test_random_search_respects_scales():
    parameters = yaml.safe_load("""
    - {parameterId: lr, doubleValueSpec: {minValue: 1.0e-6, maxValue: 1.0}, scaleType: UNIT_LOG_SCALE}
    - {parameterId: beta, doubleValueSpec: {minValue: 0.1, maxValue: 0.999},
       scaleType: UNIT_REVERSE_LOG_SCALE}
    - {parameterId: units, integerValueSpec: {minValue: 1, maxValue: 1000}, scaleType: UNIT_LOG_SCALE}
    - {parameterId: batch, discreteValueSpec: {values: [8, 16, 32, 64]}}
    """)
    space = search.Space(_job(parameters).parameters)
    values = _ask(space, search.RandomTreeSampler(space, seed=0), 400)
    lr = np.array([v["lr"] for v in values])
    beta = np.array([v["beta"] for v in values])
    units = np.array([v["units"] for v in values])
    assert lr.min() >= 1e-6 and lr.max() <= 1.0
    assert 0.4 < np.mean(lr < 1e-3) < 0.6  # log-uniform: half the mass below the geometric middle
    assert beta.min() >= 0.1 and beta.max() <= 0.999
    # reverse log: the reflection 1.099 - beta is log-uniform, so P(beta > 0.9) =
    # log(0.199 / 0.1) / log(0.999 / 0.1) = 0.30, where a uniform draw gives 0.11
    assert 0.22 < np.mean(beta > 0.9) < 0.38
    assert units.dtype.kind == "i" and units.min() >= 1 and units.max() <= 1000
    assert 0.35 < np.mean(units <= 31) < 0.65
    assert set(v["batch"] for v in values) == {8.0, 16.0, 32.0, 64.0}


def test_inactive_parameters_are_never_suggested():
    space = search.Space(_job(TREE).parameters)
    for sampler in (search.RandomTreeSampler(space, seed=1), search.GPSampler(space, seed=1)):
        values = _ask(space, sampler, 12, objective=lambda v: v["layers"])
        for v in values:
            assert ("momentum" in v) == (v["optimizer"] != "adam")
            assert ("width" in v) == (v["layers"] > 1)


def test_the_gp_finds_a_log_scale_optimum():
    """lr's best value sits at 1e-3 on a 1e-6..1 log range: after 5 random trials, the GP
    has to put suggestions near it; random search mostly does not."""
    parameters = [{"parameterId": "lr", "doubleValueSpec": {"minValue": 1e-6, "maxValue": 1.0},
                   "scaleType": "UNIT_LOG_SCALE"}]
    space = search.Space(_job(parameters).parameters)

    def objective(v):
        return -(math.log10(v["lr"]) + 3) ** 2

    gp = _ask(space, search.GPSampler(space, seed=3), 14, objective=objective)
    best = max(objective(v) for v in gp[5:])
    assert best > -0.05, [v["lr"] for v in gp]


def test_pending_trials_spread_the_suggestions():
    """Four suggestions asked while the earlier ones still run (a 2-D Branin surface, 6
    trials done): the GP counts them as observed, so they do not pile up on one point."""
    parameters = [{"parameterId": n, "doubleValueSpec": {"minValue": 0.0, "maxValue": 1.0}}
                  for n in ("a", "b")]
    space = search.Space(_job(parameters).parameters)

    def branin(v):
        a, b = 15 * v["a"] - 5, 15 * v["b"]
        return -((b - 5.1 / (4 * math.pi ** 2) * a * a + 5 / math.pi * a - 6) ** 2
                 + 10 * (1 - 1 / (8 * math.pi)) * math.cos(a) + 10)

    values = _ask(space, search.GPSampler(space, seed=0), 10, pending=4, objective=branin)
    points = np.array([[v["a"], v["b"]] for v in values[-4:]])
    gaps = [np.linalg.norm(points[i] - points[j]) for i in range(4) for j in range(i)]
    assert min(gaps) > 0.05, points


def test_suggestions_depend_on_the_trial_not_on_the_process():
    """With a seed, trial n gets the same suggestion in any process, and trials differ:
    a resumed tuner does not repeat the trials made before it started."""
    space = search.Space(_job(TREE).parameters)
    first = _ask(space, search.RandomTreeSampler(space, seed=7), 6)
    again = _ask(space, search.RandomTreeSampler(space, seed=7), 6)
    assert first == again
    assert len({tuple(sorted(v.items())) for v in first}) > 3


def test_make_sampler_per_algorithm():
    space = search.Space(_job(TREE).parameters)
    assert isinstance(search.make_sampler(S.GRID, space), search.GridPointSampler)
    assert type(search.make_sampler(S.RANDOM, space)) is search.RandomTreeSampler
    assert isinstance(search.make_sampler(S.BAYESIAN, space), search.GPSampler)


@pytest.mark.parametrize("values,scale", [([1, 2, 4, 8, 1024], S.LOG), ([0.0, 0.5, 1.0], None)])
def test_discrete_units_follow_the_scale(values, scale):
    parameters = [{"parameterId": "d", "discreteValueSpec": {"values": values},
                   **({"scaleType": scale} if scale else {})}]
    node = search.Space(_job(parameters).parameters).nodes[0]
    units = [node.unit(i) for i in range(len(values))]
    assert units[0] == 0.0 and units[-1] == 1.0
    if scale:
        assert units[1] == pytest.approx(0.1)  # log2(2)/log2(1024)
    assert [node.from_unit(u) for u in units] == list(range(len(values)))


DOMAINS = yaml.safe_load("""
- parameterId: beta
  doubleValueSpec: {minValue: 0.5, maxValue: 0.999}
  scaleType: UNIT_REVERSE_LOG_SCALE
- parameterId: units
  integerValueSpec: {minValue: 8, maxValue: 300}
  scaleType: UNIT_LOG_SCALE
- parameterId: batch
  discreteValueSpec: {values: [16, 48, 512]}
  scaleType: UNIT_LOG_SCALE
- parameterId: optimizer
  categoricalValueSpec: {values: [adam, sgd]}
  conditionalParameterSpecs:
  - parentCategoricalValues: {values: [sgd]}
    parameterSpec:
      parameterId: layers
      integerValueSpec: {minValue: 1, maxValue: 3}
      conditionalParameterSpecs:
      - parentIntValues: {values: [3]}
        parameterSpec:
          parameterId: lr
          doubleValueSpec: {minValue: 1.0e-4, maxValue: 1.0e-1}
          scaleType: UNIT_LOG_SCALE
""")


def test_every_suggestion_is_inside_the_domain():
    """Polished by L-BFGS on a continuum, then rounded: what the trial receives must still be
    one of its parameter's values, on every branch of the tree, with trials pending too."""
    job = _job(DOMAINS)
    space = search.Space(job.parameters)

    def objective(v):  # best near the ends of the ranges, where clipping matters
        return (v["beta"] + math.log(v["units"]) + (v["batch"] == 512)
                + v.get("layers", 0) + v.get("lr", 0) * 10)

    values = _ask(space, search.GPSampler(space, seed=2), 16, objective=objective, pending=3)
    for v in values:
        assert 0.5 <= v["beta"] <= 0.999
        assert isinstance(v["units"], int) and 8 <= v["units"] <= 300
        assert v["batch"] in (16, 48, 512)
        assert ("layers" in v) == (v["optimizer"] == "sgd")
        if "layers" in v:
            assert isinstance(v["layers"], int) and 1 <= v["layers"] <= 3
        assert ("lr" in v) == (v.get("layers") == 3)
        if "lr" in v:
            assert 1e-4 <= v["lr"] <= 1e-1
    assert len({tuple(sorted(v.items())) for v in values}) == len(values)


def test_pending_trials_on_a_small_grid_get_points_of_their_own():
    """25 integer points, 6 done and 4 running: each new suggestion is a point no trial has,
    though rounding maps many continuous optima onto the same integers."""
    parameters = [{"parameterId": n, "integerValueSpec": {"minValue": 1, "maxValue": 5}}
                  for n in ("a", "b")]
    space = search.Space(_job(parameters).parameters)
    values = _ask(space, search.GPSampler(space, seed=4), 10, pending=4,
                  objective=lambda v: -(v["a"] - 3) ** 2 - (v["b"] - 2) ** 2)
    assert len({(v["a"], v["b"]) for v in values}) == 10, values


def test_the_gp_finds_the_optimum_where_random_search_does_not():
    """A log-scaled float and an integer, 12 trials (5 of them start-up), 3 seeds: the GP
    gets close to the optimum in every study, random search in none."""
    parameters = yaml.safe_load("""
    - {parameterId: lr, doubleValueSpec: {minValue: 1.0e-5, maxValue: 1.0}, scaleType: UNIT_LOG_SCALE}
    - {parameterId: units, integerValueSpec: {minValue: 1, maxValue: 100}}
    """)
    space = search.Space(_job(parameters).parameters)

    def regret(v):
        return (math.log10(v["lr"]) + 2.2) ** 2 + ((v["units"] - 70) / 30) ** 2

    def found(sampler):
        values = _ask(space, sampler, 12, direction="minimize", objective=regret)
        return min(regret(v) for v in values) < 0.05

    assert all(found(search.GPSampler(space, seed=seed)) for seed in range(3))
    assert not any(found(search.RandomTreeSampler(space, seed=seed)) for seed in range(3))


def test_no_scipy_or_sklearn_before_the_gp_is_needed():
    """Importing the search and drawing the first (start-up) trial loads neither: they cost
    ~1 s, before the first trial process could start."""
    code = ("import sys, optuna\n"
            "from tests.tuner.test_search import _job, TREE, _ask\n"
            "from tuner import search, spec\n"
            "space = search.Space(_job(TREE).parameters)\n"
            "_ask(space, search.make_sampler(spec.BAYESIAN, space, seed=0), 1)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'sklearn'}))\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=tuner_env(),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_gp_starts_after_three_trials():
    """Three start-up trials, then the model: at 20 trials every start-up trial is one the
    model did not choose (5 start-up trials were worse on 3 of 5 benchmark problems)."""
    space = search.Space(_job([{"parameterId": n, "doubleValueSpec": {"minValue": 0.0,
                                                                     "maxValue": 1.0}}
                               for n in ("a", "b")]).parameters)
    up = _ask(space, search.GPSampler(space, seed=2), 4, objective=lambda v: v["a"])
    down = _ask(space, search.GPSampler(space, seed=2), 4, objective=lambda v: -v["a"])
    assert up[:3] == down[:3]
    assert up[3]["a"] > down[3]["a"]


def test_gp_suggestions_depend_only_on_the_seed_and_the_trials():
    """Two processes' worth of the same study (3 pending at the end) suggest the same points:
    nothing is carried from one suggestion to the next but the study."""
    space = search.Space(_job(TREE).parameters)

    def objective(v):
        return v["layers"] + (v["optimizer"] == "sgd")

    first = _ask(space, search.GPSampler(space, seed=5), 9, objective=objective, pending=3)
    again = _ask(space, search.GPSampler(space, seed=5), 9, objective=objective, pending=3)
    assert first == again


def _bowl(v):
    return -sum((v[f"x{i}"] - 0.3) ** 2 for i in range(3))


def _scored_by_the_last_suggestion(trials, pending=0):
    """The suggested values of `trials` trials on a 3-D bowl, and the candidates the default
    search scored for the last one."""
    parameters = [{"parameterId": f"x{i}", "doubleValueSpec": {"minValue": 0.0, "maxValue": 1.0}}
                  for i in range(3)]
    space = search.Space(_job(parameters).parameters)
    scored = []

    class Spy(search.GPSampler):
        def _score(self, model, candidates, incumbent):
            if len(candidates) > 1:  # the batch, not a polished candidate: the last suggestion's
                scored[:] = candidates
            return super()._score(model, candidates, incumbent)

    return _ask(space, Spy(space, seed=1), trials, objective=_bowl, pending=pending), scored


def test_the_acquisition_looks_closely_around_the_best_trial():
    """A trust region: among the candidates scored, dozens lie within 0.1 (unit scale) of the
    model's best trial, where a 6-D search with 20 trials refines (hartmann6 regret 0.66 ->
    0.35 with it, 15 studies)."""
    values, scored = _scored_by_the_last_suggestion(9)
    best = max(values[:8], key=_bowl)
    near = [c for c in scored
            if math.dist([c[f"x{i}"] for i in range(3)], [best[f"x{i}"] for i in range(3)]) < 0.1]
    assert len(near) >= 48, len(near)


def test_while_trials_run_the_acquisition_stays_near_the_best_trials():
    """With trials pending, no candidate is drawn uniformly over the space: pending trials
    believed where they run leave the most uncertainty, so the highest expected improvement,
    in far corners, and uniform candidates there took slots of a batch. Every candidate
    scored lies within 0.9 (unit scale; the widest perturbation has sd 0.2) of one of the
    three best trials, while the corners are up to 1.2 from them."""
    values, scored = _scored_by_the_last_suggestion(12, pending=3)
    best = np.array([[v[f"x{i}"] for i in range(3)]
                     for v in sorted(values[:9], key=_bowl)[-3:]])
    points = np.array([[c[f"x{i}"] for i in range(3)] for c in scored])
    nearest = np.min(np.linalg.norm(points[:, None, :] - best[None, :, :], axis=-1), axis=1)
    assert len(points) >= 100 and nearest.max() < 0.9, nearest.max()
