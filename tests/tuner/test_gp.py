"""The default search's Gaussian process: the likelihood's gradient, log EI, the output warp."""
import math

import numpy as np
import pytest
from scipy.special import ndtr

from tuner import gp


def test_the_likelihood_gradient_is_the_likelihood_s_slope():
    """L-BFGS fits the hyperparameters on this analytic gradient: a wrong one fits badly
    without any error."""
    rng = np.random.RandomState(0)
    x = rng.rand(12, 3)
    y = gp.warp(np.sin(5 * x[:, 0]) + x[:, 1])
    squared = (x[:, None, :] - x[None, :, :]) ** 2
    theta = np.array([0.2, -0.5, 0.1, -1.0, -4.0])
    _, gradient = gp._negative_log_likelihood(theta, squared, y)
    step = 1e-6
    slopes = [(gp._negative_log_likelihood(theta + e, squared, y)[0]
               - gp._negative_log_likelihood(theta - e, squared, y)[0]) / (2 * step)
              for e in np.eye(len(theta)) * step]
    assert gradient == pytest.approx(slopes, rel=1e-4, abs=1e-6)


def test_the_fit_interpolates_a_smooth_function():
    rng = np.random.RandomState(1)
    x = rng.rand(20, 2)
    y = -np.sum((x - 0.3) ** 2, axis=1)
    model = gp.fit(x, y)
    mean, std = model.predict(x)
    assert np.corrcoef(mean, model.y)[0, 1] > 0.99
    assert np.all(std < 0.1)


def test_log_expected_improvement_is_finite_where_ei_underflows():
    z = np.array([-60.0, -30.0, -5.0, -1.5, -0.5, 0.0, 2.0])
    log_ei = gp.log_expected_improvement(z, np.ones_like(z), 0.0)
    phi = np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    ei = z * ndtr(z) + phi
    finite = ei > 1e-300
    assert log_ei[finite] == pytest.approx(np.log(ei[finite]), rel=1e-9)
    assert np.all(np.isfinite(log_ei)) and np.all(np.diff(log_ei) > 0)


def test_the_warp_keeps_the_order_and_tames_the_tail():
    y = np.array([-1e6, -3.0, -2.0, -1.0, 0.0, 0.5, 1.0])  # a diverged trial, then good ones
    warped = gp.warp(y)
    assert np.all(np.diff(warped) > 0)
    assert warped[0] - warped[1] > -5  # the outlier is one step down, not 1e6


@pytest.mark.parametrize("noise, low, high", [(0.0, 0.0, 0.01), (0.3, 0.05, 0.6)])
def test_the_noise_level_is_learned(noise, low, high):
    """A smooth 2-D function at 40 points, observed with and without N(0, 0.3) noise (a
    variance of ~0.2 in standardised units): a noise level fitted to the data, not a bound or
    the prior's median. A fit that interpolates the noise chases lucky trials."""
    rng = np.random.RandomState(0)
    x = rng.rand(40, 2)
    y = np.sin(3 * x[:, 0]) + np.cos(2 * x[:, 1]) + rng.normal(0.0, noise, 40) * (noise > 0)
    assert low <= gp.fit(x, y).noise <= high
