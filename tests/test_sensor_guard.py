"""edgectl/runtime/sensor_guard.py: a non-finite or frozen channel is told and estimated from the others."""
import numpy as np

from edgectl.runtime.sensor_guard import STUCK_SAMPLES, STUCK_SECONDS, SensorGuard


def _hover(k, rng):
    return (np.array([0.0, 0.0, 1.0]) + rng.normal(0, 0.001, 3), np.array([1.0, 0, 0, 0]),
            np.array([0.0, 0.0, 0.1]) + rng.normal(0, 0.002, 3), rng.normal(0, 0.002, 3))


def test_noisy_flight_never_stuck_and_state_passes_through():
    g, rng = SensorGuard(0.01), np.random.default_rng(0)
    for k in range(5000):
        s = _hover(k, rng)
        out, why = g.update(*s)
        assert why is None and all(a is b for a, b in zip(out, s))


def test_repeated_reads_and_a_vehicle_at_rest_are_not_stuck():
    g = SensorGuard(0.01)
    s = (np.array([0.3, 0.2, 0.0]), np.array([1.0, 0, 0, 0]), np.zeros(3), np.zeros(3))
    for _ in range(50):
        assert g.update(*s)[1] is None


def test_frozen_z_is_told_after_stuck_samples_and_dead_reckoned():
    g, rng = SensorGuard(0.01), np.random.default_rng(1)
    frozen = None
    for k in range(200):
        p, q, v, w = _hover(k, rng)
        p[2] = 1.0 + 0.1 * 0.01 * k
        if k >= 100:
            frozen = p[2] if frozen is None else frozen
            p[2] = frozen
        out, why = g.update(p, q, v, w)
        if k < 100 + g.n - 1:
            assert why is None, k
        else:
            assert "pos[2] stuck" in why
    # z from the velocity, not the frozen value; what it climbed before the freeze was told (g.n samples) is lost
    assert abs(out[0][2] - (1.0 + 0.1 * 0.01 * 199)) < 0.005 + 0.1 * 0.01 * g.n


def test_nan_channel_holds_the_rest_and_propagates():
    g = SensorGuard(0.01)
    g.update(np.array([1.0, 2.0, 1.0]), np.array([1.0, 0, 0, 0]), np.array([0.5, 0, 0]), np.zeros(3))
    (p, q, v, w), why = g.update(np.array([1.0, 2.0, np.nan]), np.array([np.nan] * 4), np.array([0.5, 0, 0]),
                                 np.array([0.0, 0.0, 1.0]))
    assert "not finite" in why and np.all(np.isfinite(np.concatenate([p, q, v, w])))
    assert p[2] == 1.0 and p[0] == 1.0 and abs(np.linalg.norm(q) - 1.0) < 1e-12 and q[3] > 0.0  # yawing


def test_a_channel_refreshed_slower_than_the_loop_is_not_stuck():
    """A MAVLink position stream at 5 Hz under a 100 Hz loop repeats each value 20 ticks: not a stuck sensor."""
    g, rng = SensorGuard(0.01), np.random.default_rng(2)
    assert g.n == max(STUCK_SAMPLES, round(STUCK_SECONDS / 0.01)) == 30
    held = None
    for k in range(500):
        p, q, v, w = _hover(k, rng)
        if k % 20 == 0:
            held = p.copy()
        out, why = g.update(held, q, v, w)
        assert why is None, k
