"""Automated stopping rules: should a running trial stop, given the curves of completed ones?

Both rules compare a running trial with the trials that ran to completion (SUCCEEDED), on the
x axis the spec asks for: the reported step (`global_step`), or seconds since the trial
started when `useElapsedDuration` is true. Neither acts before `MIN_COMPLETED` trials have
completed, so the first trials always run to the end, nor on a trial with fewer than
`MIN_MEASUREMENTS` measurements, since first epochs are noisy. Each returns None (keep going)
or the reason to stop, in words for the results table.

- median (`medianAutomatedStoppingSpec`): stop when the trial's best value so far is worse
  than the median, over completed trials, of their running averages up to the same x
  (the rule as Google Vizier describes it).
- decay curve (`decayCurveStoppingSpec`): a Gaussian process, fitted on completed trials,
  predicts from "best value by this x" what a trial still gains by its end; stop when even the
  optimistic end of the prediction for this trial (mean + 2 sd) cannot beat the best completed
  trial. Vertex's own model is not published; this keeps its stated idea, a GP regressor
  predicting the final value from the curve so far.

`convexAutomatedStoppingSpec` is not implemented; spec.local_problem rejects it before a run.
"""
from __future__ import annotations

import math
import statistics

import numpy as np

from tuner.trial import Measurement

MIN_COMPLETED = 3
MIN_MEASUREMENTS = 2
OPTIMISM_SD = 2.0


def _curve(measurements: list[Measurement], use_elapsed: bool) -> list[tuple[float, float]]:
    return [(m.elapsed_s if use_elapsed else m.step, m.value) for m in measurements
            if math.isfinite(m.value)]


def _best(values, maximize: bool) -> float:
    return max(values) if maximize else min(values)


def _worse(a: float, b: float, maximize: bool) -> bool:
    return a < b if maximize else a > b


def median_rule(trial: list[Measurement], completed: list[list[Measurement]], maximize: bool,
                use_elapsed: bool) -> str | None:
    curve = _curve(trial, use_elapsed)
    if len(curve) < MIN_MEASUREMENTS:
        return None
    x = curve[-1][0]
    best = _best([v for _, v in curve], maximize)
    averages = []
    for other in completed:
        upto = [v for ox, v in _curve(other, use_elapsed) if ox <= x]
        if upto:
            averages.append(statistics.fmean(upto))
    if len(averages) < MIN_COMPLETED:
        return None
    median = statistics.median(averages)
    if _worse(best, median, maximize):
        unit = "s" if use_elapsed else ""
        return (f"median rule: best {best:.4g} by {'t=' if use_elapsed else 'step '}{x:g}{unit} "
                f"is worse than the median running average {median:.4g} of "
                f"{len(averages)} completed trials")
    return None


def decay_curve_rule(trial: list[Measurement], completed: list[list[Measurement]],
                     finals: list[float], maximize: bool, use_elapsed: bool) -> str | None:
    """`finals[i]` is the final value (after LAST/BEST selection) of `completed[i]`."""
    curve = _curve(trial, use_elapsed)
    if len(curve) < MIN_MEASUREMENTS:
        return None
    x = curve[-1][0]
    sign = 1.0 if maximize else -1.0
    pairs = []
    for other, final in zip(completed, finals):
        other_curve = _curve(other, use_elapsed)
        upto = [v for ox, v in other_curve if ox <= x]
        if upto and math.isfinite(final) and other_curve[-1][0] > x:
            pairs.append((sign * _best(upto, maximize), sign * final))
    if len(pairs) < MIN_COMPLETED:
        return None  # too few completed trials ran longer than this one has so far
    incumbent = max(sign * f for f in finals if math.isfinite(f))
    now = sign * _best([v for _, v in curve], maximize)
    mean, sd = _predict_final(np.array(pairs), now)
    if mean + OPTIMISM_SD * sd < incumbent:
        return (f"decay-curve rule: predicted final {sign * mean:.4g} "
                f"(+/- {OPTIMISM_SD * sd:.2g}) at {'t=' if use_elapsed else 'step '}{x:g} "
                f"cannot beat the best completed trial ({sign * incumbent:.4g})")
    return None


def _predict_final(pairs: np.ndarray, now: float) -> tuple[float, float]:
    """Mean and sd of the final value of a trial whose best so far is `now`, from the
    completed trials' (best by then, final) pairs. What is modelled is the gain still to come
    (final - best by then) as a function of the best by then: a GP (squared exponential plus
    noise, its length scale and noise chosen by marginal likelihood on a small grid, as a
    handful of points supports no more). Far from every completed trial it predicts their
    typical gain, not an extrapolated trend. numpy alone: this runs while trials run and must
    not pull in a library at the first verdict."""
    x, gain = pairs[:, 0], pairs[:, 1] - pairs[:, 0]
    x_center, x_scale = float(np.mean(x)), float(np.std(x)) or 1.0
    g_center, g_scale = float(np.mean(gain)), float(np.std(gain)) or 1e-3
    u, z = (x - x_center) / x_scale, (gain - g_center) / g_scale

    def kernel(a, b, length):
        return np.exp(-0.5 * np.subtract.outer(a, b) ** 2 / length ** 2)

    best = None
    for length in (0.3, 1.0, 3.0):
        for noise in (1e-3, 1e-2, 1e-1, 1.0):
            factor = np.linalg.cholesky(kernel(u, u, length) + noise * np.eye(len(u)))
            alpha = np.linalg.solve(factor.T, np.linalg.solve(factor, z))
            evidence = -0.5 * z @ alpha - np.sum(np.log(np.diag(factor)))
            if best is None or evidence > best[0]:
                best = (evidence, length, noise, factor, alpha)
    _, length, noise, factor, alpha = best
    k_star = kernel(np.array([(now - x_center) / x_scale]), u, length)[0]
    v = np.linalg.solve(factor, k_star)
    variance = max(1.0 + noise - float(v @ v), 1e-12)
    return now + g_center + g_scale * float(k_star @ alpha), g_scale * math.sqrt(variance)
