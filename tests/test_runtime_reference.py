"""The host loop flies what a bundle was trained on (issue 16): a trajectory bundle gets its moving reference
(edgectl.reference, equal to the training task's formula), and a contract whose units or frames the host does not
build is refused, naming the field and the unit."""
from __future__ import annotations

import copy
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from edgectl.bundle import load_bundle
from edgectl.observation import check_contract
from edgectl.platforms import load_platform
from edgectl.reference import trajectory
from train_fast.tasks import quadrotor_tasks as qt

DATA = Path(__file__).parent / "data"
CF = load_platform("crazyflie_2_1")


def test_host_reference_equals_the_training_tasks():
    cfg = qt.TASKS["figure8"]()
    c = qt.contract(cfg, CF)
    ref = trajectory(c)
    assert ref is not None and trajectory(qt.contract(qt.TASKS["hover"](), CF)) is None
    for t in (0.0, 0.37, 1.0, 4.2, 8.9, 23.5):
        p, v, a = ref(t)
        pj, vj, aj = (np.asarray(x) for x in qt.reference(cfg, jnp.asarray(t)))
        np.testing.assert_allclose(p, pj, atol=1e-6)
        np.testing.assert_allclose(v, vj, atol=1e-6)
        np.testing.assert_allclose(a, aj, atol=1e-6)


def test_unknown_reference_kind_is_refused():
    c = copy.deepcopy(qt.contract(qt.TASKS["figure8"](), CF))
    c["reference"]["kind"] = "lemniscate3d"
    with pytest.raises(ValueError, match="contract.reference.kind 'lemniscate3d'"):
        trajectory(c)


@pytest.mark.parametrize("field,key,value,needle", [
    ("angular_velocity", "unit", "deg/s", "'angular_velocity': unit 'deg/s'.*'rad/s'"),
    ("velocity_error", "frame", "body", "'velocity_error': unit 'm/s', frame 'body'.*frame 'world'"),
    ("position_error", "unit", "cm", "'position_error': unit 'cm'"),
])
def test_a_field_in_units_or_frames_the_host_does_not_build_is_refused(field, key, value, needle):
    c = copy.deepcopy(load_bundle(DATA / "hover_bundle").contract)
    check_contract(c)  # the shipped contract is built as declared
    next(f for f in c["observation"]["fields"] if f["name"] == field)[key] = value
    with pytest.raises(ValueError, match=needle):
        check_contract(c)


class _Recording:
    """A link that remembers every state the loop read."""

    def __init__(self, link):
        self.link, self.positions = link, []

    def __getattr__(self, name):
        return getattr(self.link, name)

    def read_state(self):
        s = self.link.read_state()
        if s is not None:
            self.positions.append(np.asarray(s.pos, np.float64).copy())
        return s


def test_a_figure8_bundle_flies_a_figure_eight_on_the_host():
    from edgectl.runtime.links import SimLink
    from edgectl.runtime.loop import ControlLoop, LoopConfig
    from edgectl.safety.backup import BackupController
    b = load_bundle(DATA / "figure8_bundle")
    ref = trajectory(b.contract)
    assert ref is not None, "tests/data/figure8_bundle: python3 tests/data/regenerate.py figure8_bundle"
    centre = np.array([0.0, 0.0, 1.0])
    link = _Recording(SimLink(CF, start_pos=tuple(centre)))
    period = 2 * np.pi / b.contract["reference"]["omega_rad_s"]
    loop = ControlLoop(link, b.act, b.contract, BackupController(CF),
                       LoopConfig(rate_hz=b.contract["rate_hz"], seconds=float(period), realtime=False), ref=centre)
    rep = loop.run()
    assert rep.final_mode == "nominal" and rep.nominal_ticks == rep.ticks
    xy = np.array(link.positions)[:, :2] - centre[:2]
    amp = b.contract["reference"]["amplitude_m"]
    # one full figure eight: x spans the amplitude both ways, y half of it both ways (a hover would span ~0)
    assert xy[:, 0].max() > 0.8 * amp and xy[:, 0].min() < -0.8 * amp
    assert xy[:, 1].max() > 0.4 * amp and xy[:, 1].min() < -0.4 * amp
    err = np.array(rep.position_error_m)
    assert np.median(err[len(err) // 4:]) < 0.05, f"tracking error median {np.median(err):.3f} m"


def test_a_realtime_flight_freezes_the_heap_and_thaws_it_after():
    """A real-time host flight collects once and freezes the heap before it waits for the first state (frozen_heap),
    so no full collection (60-75 ms with JAX imported) stops it mid-flight; back-to-back runs leave the GC alone,
    and a heap a caller froze stays frozen."""
    import gc

    from edgectl.runtime.links import SimLink
    from edgectl.runtime.loop import ControlLoop, LoopConfig, frozen_heap
    from edgectl.safety.backup import BackupController
    gc.unfreeze()
    b = load_bundle(DATA / "figure8_bundle")
    seen = []

    def policy(obs):
        seen.append(gc.get_freeze_count())
        return b.act(obs)
    for realtime in (True, False):
        seen.clear()
        ControlLoop(SimLink(CF, start_pos=(0.0, 0.0, 1.0)), policy, b.contract, BackupController(CF),
                    LoopConfig(rate_hz=b.contract["rate_hz"], seconds=0.05, realtime=realtime), ref=(0, 0, 1)).run()
        assert seen and all((n > 0) == realtime for n in seen), (realtime, seen)
        assert gc.get_freeze_count() == 0
    gc.freeze()
    with frozen_heap():
        pass
    assert gc.get_freeze_count() > 0
    gc.unfreeze()
