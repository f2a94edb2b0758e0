"""A host-flown link (MAVLink actuator controls) puts a few ms between the state and the motors.

In lockstep with a fixed delay (the old command flies for `delay`, then the new one, on the Numba
dynamics the simulated vehicles run): the fixture (tests/data/hover_bundle, trained across the platform's
0-1 period of actuation delay, as every policy since issue 13) holds within 10 cm at every delay up to a
full period.
"""
from pathlib import Path

import numpy as np
import pytest

from edgectl.bundle import load_bundle
from edgectl.platforms import parse_platform
from edgectl.observation import observation
from edgectl.plant import quadrotor as nq

DATA = Path(__file__).parent / "data"


def fly_with_delay(bundle_dir: Path, delay_ms: float, seconds: float = 15.0, start=(0.1, -0.1, 0.1)) -> np.ndarray:
    """Distance to the reference at each control period (stops early once beyond 3 m or non-finite)."""
    b = load_bundle(bundle_dir)
    plat = parse_platform((b.path / "platform.toml").read_bytes(), b.path / "platform.toml")
    p = nq.params_from_platform(plat)
    period = 1.0 / b.contract["rate_hz"]
    before, after = p.copy(), p.copy()
    before[nq._DT], after[nq._DT] = delay_ms / 1e3, period - delay_ms / 1e3
    history = sum(f["size"] for f in b.contract["observation"]["fields"] if f["name"] == "previous_actions")
    prev = np.full(history, b.contract["action"]["hover_action"])
    last = np.full(4, b.contract["action"]["hover_action"])
    x = nq.hover_state(p)
    x[0:3] = start
    dist = []
    for _ in range(int(round(seconds / period))):
        obs = observation(b.contract, x[0:3], x[3:7], x[7:10], x[10:13], prev, np.zeros(3))
        a = np.clip(np.asarray(b.act(obs[None]), np.float64)[0], -1.0, 1.0)
        if delay_ms > 0:
            x = nq.step(x, last, before)
        if delay_ms < 1e3 * period:
            x = nq.step(x, a, after)
        last, prev = a, np.concatenate([a, prev[:-4]])
        dist.append(float(np.linalg.norm(x[0:3])))
        if not np.isfinite(dist[-1]) or dist[-1] > 3.0:
            break
    return np.asarray(dist)


@pytest.mark.parametrize("delay_ms", [0.0, 4.0, 7.0, 10.0])
def test_link_bundle_holds_within_10_cm_at_any_delay_up_to_a_period(delay_ms):
    d = fly_with_delay(DATA / "hover_bundle", delay_ms)
    assert d.size == 1500 and np.all(np.isfinite(d))
    assert d[100:].max() < 0.10, f"{delay_ms} ms: max distance after 1 s {d[100:].max():.3f} m"


def test_bundles_train_across_a_period_of_delay():
    """Before issue 13 an on-board fixture trained without delay diverged at 7 ms (the delay reached the
    dynamics); every policy now trains across the platform's 0-1 period of actuation delay, so the same bundle
    serves a host link and the on-board app, and records the range it was trained on."""
    b = load_bundle(DATA / "hover_bundle")
    assert b.manifest["task"]["action_delay"] == 0.0  # nothing beyond the platform's own range
    from edgectl.platforms import parse_platform
    plat = parse_platform((DATA / "hover_bundle" / "platform.toml").read_bytes(), DATA / "hover_bundle" / "platform.toml")
    assert plat.get("randomization.action_delay") == [0.0, 1.0]
    # and the delay does reach the dynamics: the flights at 0 and 10 ms differ
    d0, d10 = fly_with_delay(DATA / "hover_bundle", 0.0), fly_with_delay(DATA / "hover_bundle", 10.0)
    assert np.abs(d0 - d10).max() > 1e-3
