"""The default search's model: a Gaussian process in numpy, and log expected improvement.

Matern 5/2 with one length scale per input and a noise level, fitted by maximum a posteriori
(log-normal priors on every hyperparameter), on outputs standardised to mean 0 and variance 1. Why our own and not
scikit-learn's: a handful of trials cannot pin down one length scale per parameter, and
likelihood alone (scikit-learn's) then fits them to the bounds; priors keep them sensible. And a
prediction costs microseconds rather than scikit-learn's ~0.2 ms of input checks, which makes
optimising the acquisition point by point with L-BFGS affordable. scipy is imported inside the
functions that need it, so nothing heavy loads before the first trial.
"""
from __future__ import annotations

import math

import numpy as np

SQRT5 = math.sqrt(5.0)
JITTER = 1e-8
# (median, sd of the log, bounds) of each hyperparameter's prior, for standardised outputs on
# inputs in the unit box
AMPLITUDE = (1.0, 1.0, (1e-2, 1e2))
LENGTH_SCALE = (0.5, 1.0, (1e-2, 3e1))
# sd 2.5, not 1.5: with 1.5 a noise of 0.1 is 4 sd out, and the fit never learns one
NOISE = (1e-4, 2.5, (1e-6, 1.0))
NOISY_START = 0.1  # the noise level of the fit's second start


def load() -> None:
    """Imports what a fit needs (scipy: ~0.3-0.5 s, once per process), so that the tuner can pay
    it off its controller's thread while the first trials run."""
    import scipy.linalg  # noqa: F401
    import scipy.optimize  # noqa: F401
    import scipy.special  # noqa: F401
    import scipy.stats  # noqa: F401


def _matern52(r: np.ndarray) -> np.ndarray:
    return (1.0 + SQRT5 * r + 5.0 / 3.0 * r * r) * np.exp(-SQRT5 * r)


class GaussianProcess:
    """The posterior given observations (x, standardised y) and fixed hyperparameters."""

    def __init__(self, x: np.ndarray, y: np.ndarray, theta: np.ndarray):
        from scipy.linalg import cho_factor, cho_solve

        self.x, self.y, self.theta = x, y, theta
        self.amplitude, self.noise = math.exp(theta[0]), math.exp(theta[-1])
        self.length_scales = np.exp(theta[1:-1])
        k = self.amplitude * _matern52(self._distance(x, x))
        k[np.diag_indices_from(k)] += self.noise + JITTER
        self._factor = cho_factor(k, lower=True)
        self._alpha = cho_solve(self._factor, y)

    def _distance(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d = (a[:, None, :] - b[None, :, :]) / self.length_scales
        return np.sqrt(np.sum(d * d, axis=-1))

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and standard deviation of the noise-free function at x."""
        from scipy.linalg import solve_triangular

        k = self.amplitude * _matern52(self._distance(x, self.x))
        mean = k @ self._alpha
        v = solve_triangular(self._factor[0], k.T, lower=True)
        var = np.maximum(self.amplitude - np.sum(v * v, axis=0), 1e-18)
        return mean, np.sqrt(var)

    def believing(self, x: np.ndarray, y: np.ndarray) -> GaussianProcess:
        """The same model with more observations (e.g. pending trials at a believed value)."""
        return GaussianProcess(np.vstack([self.x, x]), np.concatenate([self.y, y]), self.theta)


def fit(x: np.ndarray, y: np.ndarray) -> GaussianProcess:
    """The MAP Gaussian process at x of y, warped (`warp`).

    Raises np.linalg.LinAlgError when no hyperparameters give a usable covariance.
    """
    from scipy.optimize import minimize

    z = warp(y)
    priors = [AMPLITUDE] + [LENGTH_SCALE] * x.shape[1] + [NOISE]
    mu = np.log([p[0] for p in priors])
    sd = np.array([p[1] for p in priors])
    bounds = [(math.log(p[2][0]), math.log(p[2][1])) for p in priors]
    squared = (x[:, None, :] - x[None, :, :]) ** 2  # per input, reused by every evaluation

    def objective(theta):
        try:
            value, gradient = _negative_log_likelihood(theta, squared, z)
        except np.linalg.LinAlgError:
            return 1e25, np.zeros_like(theta)
        return (value + 0.5 * np.sum(((theta - mu) / sd) ** 2),
                gradient + (theta - mu) / sd ** 2)

    # Two starts, kept the better: the priors' medians, and the same at a high noise level. In
    # log noise the likelihood is flat near a small noise (the model then interpolates), so a
    # start there never learns the noise: measured, noise 0.3 on a smooth 2-D function, 40
    # trials, fitted as 1e-4 with length scales of 0.03. (A second start at length scales 0.4x
    # instead was no better: bench/search_quality.py, 15 studies a problem.)
    noisy = mu.copy()
    noisy[-1] = math.log(NOISY_START)
    best = min((minimize(objective, start, jac=True, method="L-BFGS-B", bounds=bounds,
                         options={"maxiter": 200}) for start in (mu, noisy)),
               key=lambda result: result.fun)
    return GaussianProcess(x, z, best.x)


def warp(y: np.ndarray) -> np.ndarray:
    """y standardised, its worse half first replaced by normal quantiles of its ranks.

    Losses are heavy-tailed (a diverged run next to good ones): on raw values a GP spends its
    variance on the tail and cannot tell the good trials apart. The better half keeps its
    values, whose differences the search needs; the worse half keeps only its order, spread
    as a normal tail of the better half's spread (Vizier's "half-rank" output warping).
    """
    from scipy.special import ndtri
    from scipy.stats import rankdata

    middle = float(np.median(y))
    good = y >= middle
    spread = math.sqrt(float(np.mean((y[good] - middle) ** 2))) or 1.0
    warped = np.where(good, y, middle + spread * ndtri((rankdata(y) - 0.5) / len(y)))
    return (warped - np.mean(warped)) / (float(np.std(warped)) or 1.0)


def _negative_log_likelihood(theta, squared, y):
    from scipy.linalg import cho_factor, cho_solve

    amplitude, noise = math.exp(theta[0]), math.exp(theta[-1])
    scaled = squared / np.exp(2.0 * theta[1:-1])  # (n, n, d): (x_i - x_j)^2 / l^2
    r = np.sqrt(np.sum(scaled, axis=-1))
    decay = np.exp(-SQRT5 * r)
    k_signal = amplitude * (1.0 + SQRT5 * r + 5.0 / 3.0 * r * r) * decay
    k = k_signal.copy()
    k[np.diag_indices_from(k)] += noise + JITTER
    factor = cho_factor(k, lower=True)
    alpha = cho_solve(factor, y)
    value = (0.5 * y @ alpha + np.sum(np.log(np.diag(factor[0])))
             + 0.5 * len(y) * math.log(2 * math.pi))
    w = cho_solve(factor, np.eye(len(y))) - np.outer(alpha, alpha)  # dNLL/dK = w / 2
    # dK/dlog(l_d) = amplitude * 5/3 * (1 + sqrt5 r) exp(-sqrt5 r) * (x_d - x'_d)^2 / l_d^2
    radial = amplitude * 5.0 / 3.0 * (1.0 + SQRT5 * r) * decay
    gradient = np.concatenate([
        [0.5 * np.sum(w * k_signal)],
        0.5 * np.einsum("ij,ijd->d", w * radial, scaled),
        [0.5 * noise * np.trace(w)]])
    return value, gradient


def log_expected_improvement(mean: np.ndarray, std: np.ndarray, incumbent: float) -> np.ndarray:
    """log E[max(f - incumbent, 0)], finite far below the incumbent where EI underflows to 0
    (a flat 0 gives the optimiser no direction)."""
    from scipy.special import erfcx, ndtr

    z = (mean - incumbent) / std
    out = np.empty_like(z)
    near = z > -1.0
    zn = z[near]
    out[near] = np.log(np.exp(-0.5 * zn * zn) / math.sqrt(2 * math.pi) + zn * ndtr(zn))
    zf = z[~near]  # phi(z) + z Phi(z) = phi(z) (1 + z Phi(z) / phi(z)), with Mills' ratio
    ratio = zf * math.sqrt(math.pi / 2) * erfcx(-zf / math.sqrt(2))
    out[~near] = (-0.5 * zf * zf - 0.5 * math.log(2 * math.pi)
                  + np.log(np.maximum(1.0 + ratio, 1e-300)))
    return out + np.log(std)
