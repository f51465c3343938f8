"""Suggestions: the study's parameter tree as an Optuna search space, and the three algorithms.

GRID_SEARCH enumerates the tree's feasible points in a fixed order (trial n gets point n),
RANDOM_SEARCH samples uniformly in each parameter's scale, and ALGORITHM_UNSPECIFIED is
Bayesian optimisation with `GPSampler`: a Gaussian process with priors on its hyperparameters
(tuner/gp.py), log expected improvement maximised over random candidates, perturbations of the
best trials and a trust region around the best, then L-BFGS over the numeric parameters,
rounded to their domain inside the acquisition. Why, measured by bench/search_quality.py
(in-process simple regret after 20 trials, medians of 15 studies a problem; bench/RESULTS.md
sections 5 and 7): against the earlier scikit-learn GP, 2-2.6x lower regret on a smooth 2-D,
a 6-D multimodal and a mixed space at a fifth of the time. Then, one change at a time on the
five problems: 3 start-up trials instead of 5 (hartmann6 0.66 -> 0.56, noisy 1.69 -> 0.86,
mixed and branin within noise), the trust region (perturbations of sd 0.02, 0.05, 0.2 around
the best; hartmann6 0.56 -> 0.35, mixed 0.025 -> 0.020, but noisy 0.86 -> 1.41: its median
moves that much with any small change, e.g. 0.97 with 2 polished candidates) and one
hyperparameter start instead of two (no worse anywhere, half the fit's time). Measured and
not taken: a wider noise prior (noisy 1.69 -> 1.21 but hartmann6 0.66 -> 0.84), 128
candidates (hartmann6 0.35 -> 0.60), 2 polished instead of 4 (hartmann6 0.29 -> 0.59), and for
pending trials, instead of believing them at the GP's mean: at mean - sd, at mean + sd,
without raising the incumbent, excluding a radius around them, and Thompson sampling; none
better on hartmann6, branin and mixed at once (e.g. hartmann6 with 4 pending: 1.65 believed at
the mean, 2.0 excluded within 0.1, 2.04 by Thompson sampling). Later, regret as the true loss of
the trial the study reports: the GP's noise level learned (tuner/gp.py; noisy 1.42 -> 0.98,
hartmann6 0.29 -> 0.27) and no uniform candidates while trials run (branin with 4 pending
0.13 -> 0.056, mixed 0.036 -> 0.029). Optuna's TPE was no better
than the old GP; Optuna's GPSampler needs PyTorch.

Optuna sees one distribution per node of the tree. Its name is the parameterId, made unique
with `#k` when disjoint siblings share an id. Reverse-log parameters are sampled as their
reflection on a log scale (dense near the top of the range, as Vertex defines it), and DISCRETE
parameters as an index into their values, so every sampler keeps their order.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from tuner import gp
from tuner import spec as S

INACTIVE = -0.5  # feature of a parameter that is inactive in a trial: outside the unit box
LOCAL_SCALES = (0.02, 0.05, 0.2)  # sd of the perturbations around the best, in unit scale
POLISHED = 4  # candidates polished by L-BFGS


@dataclass(frozen=True)
class Node:
    """One parameter of the tree as Optuna samples it."""

    name: str
    parameter: S.Parameter
    distribution: BaseDistribution

    def to_value(self, internal):
        """Optuna's value -> the value the trial receives."""
        p = self.parameter
        if p.type == S.DISCRETE:
            return p.values[int(internal)]
        if p.scale == S.REVERSE_LOG:  # clipped: min + max - min can round past max
            reflected = min(max(p.min + p.max - internal, p.min), p.max)
            return int(round(reflected)) if p.type == S.INTEGER else reflected
        return internal

    def unit(self, internal) -> float:
        """Position in [0, 1] along the parameter's own scale (numeric nodes only)."""
        p = self.parameter
        if p.type == S.DISCRETE:
            low, high, x = p.values[0], p.values[-1], p.values[int(internal)]
            log = p.scale in (S.LOG, S.REVERSE_LOG)
        else:
            low, high, x = p.min, p.max, internal
            log = p.scale in (S.LOG, S.REVERSE_LOG)  # reverse-log is sampled as a log reflection
        if high == low:
            return 0.5
        if log:
            return (math.log(x) - math.log(low)) / (math.log(high) - math.log(low))
        return (x - low) / (high - low)

    def from_unit(self, u: float):
        """Inverse of `unit`, rounded to the node's domain."""
        p, u = self.parameter, min(max(u, 0.0), 1.0)
        if p.type == S.DISCRETE:
            units = [self.unit(i) for i in range(len(p.values))]
            return int(np.argmin([abs(v - u) for v in units]))
        d = self.distribution
        if d.log:
            x = math.exp(math.log(d.low) + u * (math.log(d.high) - math.log(d.low)))
        else:
            x = d.low + u * (d.high - d.low)
        if isinstance(d, IntDistribution):
            return int(min(max(round(x), d.low), d.high))
        return min(max(x, d.low), d.high)


def _distribution(p: S.Parameter) -> BaseDistribution:
    log = p.scale in (S.LOG, S.REVERSE_LOG)
    if p.type == S.DOUBLE:
        return FloatDistribution(p.min, p.max, log=log)
    if p.type == S.INTEGER:
        return IntDistribution(p.min, p.max, log=log)
    if p.type == S.DISCRETE:
        return IntDistribution(0, len(p.values) - 1)
    return CategoricalDistribution(p.values)


class Space:
    """The parameter tree of a study, walked the same way by suggestion and by replay."""

    def __init__(self, parameters: tuple[S.Parameter, ...]):
        self.parameters = parameters
        counts: dict[str, int] = {}
        self._nodes: dict[int, Node] = {}  # keyed by id() of the spec's Parameter object
        for p in S.walk_parameters(parameters):
            counts[p.id] = counts.get(p.id, 0) + 1
        seen: dict[str, int] = {}
        for p in S.walk_parameters(parameters):
            seen[p.id] = seen.get(p.id, 0) + 1
            name = p.id if counts[p.id] == 1 else f"{p.id}#{seen[p.id]}"
            self._nodes[id(p)] = Node(name, p, _distribution(p))
        self.nodes = list(self._nodes.values())
        self.by_name = {n.name: n for n in self.nodes}
        self.distributions = {n.name: n.distribution for n in self.nodes}

    def node(self, p: S.Parameter) -> Node:
        return self._nodes[id(p)]

    def suggest(self, trial: optuna.Trial) -> dict:
        """Asks Optuna for every active parameter; returns {parameterId: value} for the trial."""
        values: dict = {}

        def visit(p: S.Parameter):
            node = self.node(p)
            d = node.distribution
            if isinstance(d, CategoricalDistribution):
                internal = trial.suggest_categorical(node.name, d.choices)
            elif isinstance(d, IntDistribution):
                internal = trial.suggest_int(node.name, d.low, d.high, log=d.log)
            else:
                internal = trial.suggest_float(node.name, d.low, d.high, log=d.log)
            value = node.to_value(internal)
            values[p.id] = value
            for child in p.active_children(value):
                visit(child)

        for p in self.parameters:
            visit(p)
        return values

    def complete(self, internal: dict, rng: np.random.RandomState) -> dict:
        """Keeps the given values of active nodes, samples missing ones, drops inactive ones."""
        out: dict = {}

        def visit(p: S.Parameter):
            node = self.node(p)
            if node.name in internal:
                out[node.name] = internal[node.name]
            else:
                out[node.name] = _random_internal(node.distribution, rng)
            for child in p.active_children(node.to_value(out[node.name])):
                visit(child)

        for p in self.parameters:
            visit(p)
        return out

    def grid(self) -> Iterator[dict]:
        """Every feasible point of the tree once, as {node name: internal value}."""
        def points(p: S.Parameter) -> Iterator[dict]:
            node = self.node(p)
            d = node.distribution
            domain = d.choices if isinstance(d, CategoricalDistribution) else range(d.low,
                                                                                     d.high + 1)
            for internal in domain:
                children = p.active_children(node.to_value(internal))
                for rest in _product([points(c) for c in children]):
                    yield {node.name: internal, **rest}

        return _product([points(p) for p in self.parameters])

    def grid_size(self) -> int:
        def size(p: S.Parameter) -> int:
            node = self.node(p)
            d = node.distribution
            domain = d.choices if isinstance(d, CategoricalDistribution) else range(d.low,
                                                                                     d.high + 1)
            return sum(math.prod(size(c) for c in p.active_children(node.to_value(v)))
                       for v in domain)

        return math.prod(size(p) for p in self.parameters)

    def features(self, internal: dict) -> np.ndarray:
        """A trial's point in the GP's input space: unit scales, one-hot categories."""
        out: list[float] = []
        for node in self.nodes:
            d, value = node.distribution, internal.get(node.name)
            if isinstance(d, CategoricalDistribution):
                out.extend(float(value == c) for c in d.choices)
            else:
                out.append(INACTIVE if value is None else node.unit(value))
        return np.asarray(out)


def _product(iterators: list[Iterator[dict]]) -> Iterator[dict]:
    """The product of the children's point sets, merged into single dicts (lazily)."""
    if not iterators:
        yield {}
        return
    first, rest = iterators[0], iterators[1:]
    rest_points = [list(it) for it in rest]  # reused for every point of `first`
    for head in first:
        for tail in itertools.product(*rest_points):
            merged = dict(head)
            for part in tail:
                merged.update(part)
            yield merged


def _random_internal(d: BaseDistribution, rng: np.random.RandomState):
    if isinstance(d, CategoricalDistribution):
        return d.choices[rng.randint(len(d.choices))]
    if isinstance(d, IntDistribution):
        if d.log:  # low >= 1 here: log scales need a positive range
            x = math.exp(rng.uniform(math.log(d.low - 0.5), math.log(d.high + 0.5)))
            return int(min(max(round(x), d.low), d.high))
        return int(rng.randint(d.low, d.high + 1))
    if d.log:
        return math.exp(rng.uniform(math.log(d.low), math.log(d.high)))
    return float(rng.uniform(d.low, d.high))


class GridPointSampler(BaseSampler):
    """Hands out grid points in order; the caller sets `index` before each suggestion.

    The index is the trial's place among the study's kept trials, not its Optuna number, so
    trials discarded by racing tuners leave no hole in the grid.
    """

    def __init__(self, space: Space):
        self._points = space.grid()
        self._cache: list[dict] = []
        self.index = 0

    def _point(self, index: int) -> dict:
        while len(self._cache) <= index:
            self._cache.append(next(self._points))
        return self._cache[index]

    def infer_relative_search_space(self, study, trial):
        return {}

    def sample_relative(self, study, trial, search_space):
        return {}

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._point(self.index)[param_name]


def _trial_rng(seed: int | None, number: int) -> np.random.RandomState:
    """Randomness of one suggestion: repeatable per trial with a seed, and never the same
    sequence for two trials, even across a resume or several tuners."""
    return np.random.RandomState(None if seed is None else [seed, number])


class RandomTreeSampler(BaseSampler):
    """RANDOM_SEARCH: every active parameter uniform on its own scale."""

    def __init__(self, space: Space, *, seed: int | None = None):
        self._space = space
        self._seed = seed

    def infer_relative_search_space(self, study, trial):
        return dict(self._space.distributions)

    def sample_relative(self, study, trial: FrozenTrial, search_space):
        return self._space.complete({}, _trial_rng(self._seed, trial.number))

    def sample_independent(self, study, trial, param_name, param_distribution):
        rng = _trial_rng(self._seed, trial.number)
        return _random_internal(param_distribution, rng)


class GPSampler(RandomTreeSampler):
    """Bayesian optimisation: a GP (tuner/gp.py) on unit-scaled features, log expected improvement.

    The first `n_startup_trials` trials (pending ones included) are spread out: each is the
    random point farthest from the trials so far. Trials still running count as observed at
    the GP's own prediction (a "kriging believer"), which collapses the uncertainty around
    them so parallel suggestions spread out. Conditional parameters that are inactive in a
    trial get a constant feature outside the unit box. The acquisition is maximised over
    random points of the tree (none while trials run), perturbations of the three best trials
    (best by the GP's mean, not by their noisy values) and a trust region of several sizes
    around the best one; the
    best few are polished by L-BFGS over their numeric parameters, rounded to the domain and
    scored again.
    """

    def __init__(self, space: Space, *, seed: int | None = None, n_startup_trials: int = 3,
                 n_candidates: int = 256):
        super().__init__(space, seed=seed)
        self._n_startup = n_startup_trials
        self._n_candidates = n_candidates
        self._columns = _feature_columns(space)

    def sample_relative(self, study, trial: FrozenTrial, search_space):
        rng = _trial_rng(self._seed, trial.number)
        done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if t.value is not None and math.isfinite(t.value)]
        pending = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                   if t.number != trial.number and t.params]
        if len(done) + len(pending) < self._n_startup or len(done) < 2:
            return self._spread([t.params for t in done + pending], rng)
        # One BLAS thread: on matrices this small more threads only spin (4x the CPU time,
        # measured), taken from the running trials.
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return self._suggest(study, done, pending, rng)

    def _suggest(self, study, done: list[FrozenTrial], pending: list[FrozenTrial], rng) -> dict:
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
        x = np.array([self._space.features(t.params) for t in done])
        try:
            model = gp.fit(x, np.array([sign * t.value for t in done]))
            mean = model.predict(x)[0]
            incumbent = float(np.max(mean))
            if pending:  # believed at the GP's mean: no improvement expected where they run
                xp = np.array([self._space.features(t.params) for t in pending])
                believed = model.predict(xp)[0]
                model = model.believing(xp, believed)
                incumbent = max(incumbent, float(np.max(believed)))
        except np.linalg.LinAlgError:
            return self._spread([t.params for t in done + pending], rng)
        # best by the model, not by the observed value, which under noise is the luckiest trial
        best = [done[i].params for i in np.argsort(-mean, kind="stable")[:3]]
        taken = {tuple(self._space.features(t.params)) for t in done + pending}
        return self._maximise(model, incumbent, best, taken, rng, local=bool(pending))

    def _spread(self, existing: list[dict], rng) -> dict:
        """A start-up point: of a few random ones, the farthest from every existing trial."""
        candidates = [self._space.complete({}, rng) for _ in range(32 if existing else 1)]
        if not existing:
            return candidates[0]
        xc = np.array([self._space.features(c) for c in candidates])
        xe = np.array([self._space.features(p) for p in existing])
        gaps = np.min(np.linalg.norm(xc[:, None, :] - xe[None, :, :], axis=-1), axis=1)
        return candidates[int(np.argmax(gaps))]

    def _maximise(self, model, incumbent: float, best: list[dict], taken: set, rng, *,
                  local: bool) -> dict:
        """The best candidate that is not a trial already (integers and discrete values
        make repeats likely), unless every candidate is.

        `local`: only candidates near the best trials, none uniform over the space. Trials
        believed where they run leave the highest uncertainty, so the highest expected
        improvement, in far corners: uniform candidates there took slots of a batch
        (branin, 4 pending: median regret 0.130 -> 0.096 without them, 15 studies).
        """
        candidates = [] if local else [self._space.complete({}, rng)
                                       for _ in range(self._n_candidates)]
        for params in best:
            candidates += [self._perturb(params, 0.1, rng)
                           for _ in range(self._n_candidates // 8)]
        for scale in LOCAL_SCALES:  # a trust region of several sizes around the best
            candidates += [self._perturb(best[0], scale, rng)
                           for _ in range(self._n_candidates // 8)]
        scores = self._score(model, candidates, incumbent)
        order = np.argsort(-scores)
        for i in order[:POLISHED]:
            polished = self._polish(model, candidates[i], incumbent)
            candidates.append(polished)
            scores = np.append(scores, self._score(model, [polished], incumbent))
        for i in np.argsort(-scores):
            if tuple(self._space.features(candidates[i])) not in taken:
                return candidates[i]
        return candidates[int(np.argmax(scores))]

    def _score(self, model, candidates: list[dict], incumbent: float) -> np.ndarray:
        mean, std = model.predict(np.array([self._space.features(c) for c in candidates]))
        return gp.log_expected_improvement(mean, std, incumbent)

    def _polish(self, model, candidate: dict, incumbent: float) -> dict:
        """L-BFGS on the candidate's numeric leaves (parents stay: they decide the tree),
        relaxed to the continuum, then rounded to their domain."""
        from scipy.optimize import minimize

        nodes = [n for n in self._space.nodes if n.name in candidate and not n.parameter.children
                 and not isinstance(n.distribution, CategoricalDistribution)]
        if not nodes:
            return candidate
        columns = [self._columns[n.name] for n in nodes]
        base = self._space.features(candidate)
        step = 1e-6 * np.eye(len(columns))

        def negative(u):  # the value and its forward-difference gradient, in one prediction
            points = np.repeat(base[None, :], len(columns) + 1, axis=0)
            points[:, columns] = np.vstack([u, u + step])
            scores = gp.log_expected_improvement(*model.predict(points), incumbent)
            return -scores[0], -(scores[1:] - scores[0]) / 1e-6

        result = minimize(negative, base[columns], jac=True, method="L-BFGS-B",
                          bounds=[(0.0, 1.0)] * len(columns), options={"maxiter": 50})
        polished = dict(candidate)
        for node, u in zip(nodes, result.x):
            polished[node.name] = node.from_unit(float(u))
        return polished

    def _perturb(self, params: dict, scale: float, rng) -> dict:
        """A nearby point: numeric values moved along their scale, now and then a category."""
        moved = {}
        for name, value in params.items():
            node = self._space.by_name[name]
            if isinstance(node.distribution, CategoricalDistribution):
                if rng.rand() >= 1.0 / len(params):
                    moved[name] = value  # else dropped: `complete` draws it again
            else:
                moved[name] = node.from_unit(node.unit(value) + rng.normal(0, scale))
        return self._space.complete(moved, rng)


def _feature_columns(space: Space) -> dict[str, int]:
    """The column of each numeric node in `Space.features`."""
    columns, at = {}, 0
    for node in space.nodes:
        if isinstance(node.distribution, CategoricalDistribution):
            at += len(node.distribution.choices)
        else:
            columns[node.name] = at
            at += 1
    return columns


def make_sampler(algorithm: str, space: Space, seed: int | None = None) -> BaseSampler:
    if algorithm == S.GRID:
        return GridPointSampler(space)
    if algorithm == S.RANDOM:
        return RandomTreeSampler(space, seed=seed)
    return GPSampler(space, seed=seed)


class _SeededPerTrial(BaseSampler):
    """Optuna's TPE for several metrics, made anew for each trial with the seed [seed, trial
    number] (as `_trial_rng` does): one sampler seeded once would replay its random start-up
    points after a resume, or in a second tuner of the same study."""

    def __init__(self, seed: int | None, **options):
        self._seed, self._options = seed, options
        self._tpe = optuna.samplers.TPESampler(seed=seed, **options)

    def before_trial(self, study, trial):
        seed = None if self._seed is None else int(
            np.random.SeedSequence([self._seed, trial.number]).generate_state(1)[0])
        self._tpe = optuna.samplers.TPESampler(seed=seed, **self._options)
        self._tpe.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._tpe.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._tpe.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._tpe.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values):
        self._tpe.after_trial(study, trial, state, values)


def make_multi_objective_sampler(algorithm: str, space: Space,
                                 seed: int | None = None) -> BaseSampler:
    """The sampler of a study with several metrics: grid and random search as with one (they
    never look at values); the default search is Optuna's multi-objective TPE, since the GP
    above models one objective. 5 random start-up trials (Optuna's default is 10): local
    studies are small, and fewer would leave too few trials to split into a front and the
    rest. `constant_liar` spreads trials suggested while others still run."""
    if algorithm in (S.GRID, S.RANDOM):
        return make_sampler(algorithm, space, seed)
    return _SeededPerTrial(seed, n_startup_trials=5, constant_liar=True)
