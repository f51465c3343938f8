"""The automated stopping rules on hand-made curves."""
from tuner import stopping
from tuner.trial import Measurement


def curve(*values, seconds_per_step=1.0):
    return [Measurement(i + 1, (i + 1) * seconds_per_step, v, 0.0) for i, v in enumerate(values)]


GOOD = [curve(0.5, 0.7, 0.8, 0.85), curve(0.6, 0.75, 0.82, 0.86), curve(0.55, 0.72, 0.8, 0.9)]


def test_median_rule_stops_a_trial_below_the_median():
    reason = stopping.median_rule(curve(0.1, 0.2), GOOD, maximize=True, use_elapsed=False)
    # running averages at step 2: 0.6, 0.675, 0.635 -> median 0.635 > best 0.2
    assert reason.startswith("median rule: best 0.2 by step 2")
    assert "0.635" in reason and "3 completed trials" in reason


def test_median_rule_keeps_a_trial_at_the_median():
    assert stopping.median_rule(curve(0.5, 0.64), GOOD, maximize=True, use_elapsed=False) is None


def test_median_rule_waits_for_completed_trials_and_measurements():
    assert stopping.median_rule(curve(0.1, 0.2), GOOD[:2], maximize=True,
                                use_elapsed=False) is None
    assert stopping.median_rule(curve(0.1), GOOD, maximize=True, use_elapsed=False) is None


def test_median_rule_minimising():
    losses = [curve(2.0, 1.0, 0.5), curve(2.2, 1.1, 0.6), curve(1.8, 0.9, 0.4)]
    assert stopping.median_rule(curve(3.0, 2.9), losses, maximize=False, use_elapsed=False)
    assert stopping.median_rule(curve(1.5, 1.2), losses, maximize=False,
                                use_elapsed=False) is None


def test_median_rule_on_elapsed_time():
    """Slow trial: 2 steps took 8 s. By time, completed trials had averaged ~0.75 by 8 s."""
    slow = curve(0.5, 0.7, seconds_per_step=4.0)
    assert stopping.median_rule(slow, GOOD, maximize=True, use_elapsed=False) is None
    assert "t=8s" in stopping.median_rule(slow, GOOD, maximize=True, use_elapsed=True)


def test_decay_curve_rule_stops_a_hopeless_trial():
    completed = GOOD + [curve(0.4, 0.6, 0.7, 0.75)]
    finals = [0.85, 0.86, 0.9, 0.75]
    reason = stopping.decay_curve_rule(curve(0.05, 0.1), completed, finals, maximize=True,
                                       use_elapsed=False)
    assert reason and reason.startswith("decay-curve rule: predicted final")
    assert "0.9" in reason


def test_decay_curve_rule_keeps_a_promising_trial():
    completed = GOOD + [curve(0.4, 0.6, 0.7, 0.75)]
    finals = [0.85, 0.86, 0.9, 0.75]
    assert stopping.decay_curve_rule(curve(0.6, 0.78), completed, finals, maximize=True,
                                     use_elapsed=False) is None


def test_decay_curve_rule_needs_trials_that_ran_further():
    completed = [curve(0.5, 0.7), curve(0.6, 0.75), curve(0.55, 0.72)]
    assert stopping.decay_curve_rule(curve(0.05, 0.1), completed, [0.7, 0.75, 0.72],
                                     maximize=True, use_elapsed=False) is None
