"""The simulated MAVLink vehicle's two-stage motor-stream watchdog and the host's keep-alive.

A cut link: the vehicle's backup flies within one 10 ms control period of the cut, and after
``actuator_latch`` the failsafe latches (AUTO.LAND, said so). A short gap: the backup flies through it,
then the host's commands fly again, nothing latched, the episode counted. MavlinkMotorLink repeats its
newest command every 2 ms for 20 ms, and never after stop(). (bench/link_cut.py: 100 random cuts.)
"""
from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("pymavlink")

from firmware_bridge.mavlink._mav import mavlink, mavutil  # noqa: E402
from firmware_bridge.sim.mavlink.sim_vehicle import MAIN_OFFBOARD, SimVehicle  # noqa: E402
from edgectl.plant import quadrotor as qd  # noqa: E402

PERIOD = 0.01  # the host's control period


class RecordingVehicle(SimVehicle):
    """Remembers what flew each tick: (sim t, action, backup flying), and when actuator messages arrived."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.flown, self.actuator_rx = [], []

    def _control(self):
        a = np.array(super()._control(), dtype=np.float64)
        self.flown.append((self.phys.t, a, self.backup_active))
        return a

    def _handle(self, m):
        if m.get_type() == "SET_ACTUATOR_CONTROL_TARGET":
            self.actuator_rx.append(time.monotonic())
        super()._handle(m)


class LockstepHost:
    """A host in step with the vehicle over its UDP port: a motor command at every 2 ms physics tick (its
    10 ms command and the keep-alive's repeats in between; the vehicle's injected cut drops what it must)."""

    def __init__(self, v: RecordingVehicle):
        host, port = v.address
        self.v = v
        self.conn = mavutil.mavlink_connection(f"udpout:{host}:{port}", source_system=255, source_component=190)
        m = v.backup.model
        self.hover_motor = m.hover_motor
        self.hover = (m.hover_motor - m.motor_min) / (1.0 - m.motor_min)  # fraction of full speed that hovers
        assert v.phys.dt == pytest.approx(0.002), "the vehicle's physics must tick at 500 Hz (the keep-alive's 2 ms)"

    def fly(self, seconds: float, controls: float) -> None:
        for _ in range(round(seconds / self.v.phys.dt)):
            self.conn.mav.set_actuator_control_target_send(0, 0, 1, 1, [controls] * 4 + [0.0] * 4)
            self.v.tick()

    def take_off(self) -> None:
        self.fly(5 * PERIOD, self.hover)  # a stream first, then offboard and arm (as MavlinkMotorLink)
        self.conn.mav.command_long_send(1, 1, mavlink.MAV_CMD_DO_SET_MODE, 0, mavlink.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED,
                                        MAIN_OFFBOARD, 0, 0, 0, 0, 0)
        self.conn.mav.command_long_send(1, 1, mavlink.MAV_CMD_COMPONENT_ARM_DISARM, 0, 1, 0, 0, 0, 0, 0, 0)
        self.fly(PERIOD, self.hover)
        assert self.v.mode_name == "OFFBOARD" and self.v.armed
        state = self.v.phys.state  # in the air at 1 m, hovering (a take-off is not what these tests are about)
        state[qd.POS], state[qd.VEL], state[qd.OMEGA], state[qd.MOTOR] = (0.0, 0.0, 1.0), 0.0, 0.0, self.hover_motor

    def close(self) -> None:
        self.conn.close()
        self.v.conn.close()


def test_cut_backup_flies_within_a_period_then_latches_and_says_so():
    v = RecordingVehicle("udpin:127.0.0.1:0", speed=0, seed=0)
    host = LockstepHost(v)
    try:
        host.take_off()
        host.fly(0.2, host.hover)
        assert not any(b for _, _, b in v.flown) and v.counters["link_drops"] == 0
        cut = v.phys.t + 0.0437  # between two 2 ms ticks, mid control period
        v.cut_at, v.cut_for = cut, 0.3
        host.fly(0.2, host.hover)  # the host streams on, unaware; nothing arrives
        assert v.counters["dropped_in"] > 0
        took = min(t for t, _, b in v.flown if b)
        assert cut < took <= cut + PERIOD + 1e-9, f"backup's first command {1e3 * (took - cut):.1f} ms after the cut"
        assert took - v.last_setpoint_t == pytest.approx(v.actuator_timeout + v.phys.dt)  # the first tick past 6 ms
        assert all(b for t, _, b in v.flown if t >= took)  # and it flies on
        # latched after actuator_latch of silence: AUTO.LAND, the takeover instant kept, said once
        assert v.mode_name == "LAND" and v.failsafe_reason == "offboard setpoints lost"
        assert v.failsafe_at == took == v.link_drop_at
        assert v.counters["failsafes"] == 1 and v.counters["link_drops"] == 1 and v.counters["statustext"] == 1
        assert abs(v.phys.pos[2] - 1.0) < 0.1  # levelled and holding
        host.fly(0.2, host.hover)  # the link is back: the failsafe stays latched
        assert v.counters["setpoints"] > v.counters["dropped_in"] and v.mode_name == "LAND"
        assert v.backup_active and all(b for t, _, b in v.flown if t >= took) and v.counters["failsafes"] == 1
    finally:
        host.close()


def test_short_gap_backup_bridges_it_then_the_host_flies_again():
    v = RecordingVehicle("udpin:127.0.0.1:0", speed=0, seed=0)
    host = LockstepHost(v)
    try:
        host.take_off()
        host.fly(0.1, host.hover)
        gap = v.phys.t + 0.0051
        v.cut_at, v.cut_for = gap, 0.02  # 20 ms without a message, then the stream resumes
        host.fly(0.1, host.hover)
        on_backup = [t for t, _, b in v.flown if b]
        assert on_backup and gap < on_backup[0] <= gap + PERIOD + 1e-9
        assert on_backup[-1] < gap + 0.02 + 1e-9  # handed back at the first message after the gap
        assert v.counters["link_drops"] == 1 and v.counters["link_drop_ticks"] == len(on_backup)
        assert v.link_drop_at == on_backup[0]
        # the host's command flies again, untouched; nothing latched
        after = [(a, b) for t, a, b in v.flown if t > gap + 0.02 + 1e-9]
        assert after and not any(b for _, b in after)
        np.testing.assert_allclose([a for a, _ in after], 2.0 * host.hover - 1.0, atol=1e-6)  # float32 on the wire
        assert v.mode_name == "OFFBOARD" and v.failsafe_reason is None and v.counters["failsafes"] == 0
        assert abs(v.phys.pos[2] - 1.0) < 0.05
    finally:
        host.close()


@pytest.mark.flaky(reruns=2, reruns_delay=1)  # real time on a shared VM: a descheduled thread fails it (conftest.REALTIME)
def test_motor_link_repeats_the_newest_command_for_20_ms_and_never_after_stop():
    from edgectl.runtime.keepalive import MAX_AGE_S, PERIOD_S
    from edgectl.runtime.links import MavlinkMotorLink
    v = RecordingVehicle("udpin:127.0.0.1:0", seed=0).start()  # real time, 500 Hz
    link = None
    try:
        host, port = v.address
        link = MavlinkMotorLink(f"udpout:{host}:{port}", connect_timeout=3.0)
        time.sleep(0.1)
        assert not v.actuator_rx
        link.send_action(np.zeros(4))  # one command: it goes out, then its repeats until it is 20 ms old
        time.sleep(0.15)
        rx = np.array(v.actuator_rx)
        repeats = link.keepalive.repeats
        # 10 on an idle host; a descheduled keep-alive repeats at once when it wakes (one more, or fewer)
        assert MAX_AGE_S / PERIOD_S - 4 <= repeats <= MAX_AGE_S / PERIOD_S + 1, repeats
        assert rx.size == repeats + 1  # loopback: each one arrives
        assert rx[-1] - rx[0] < MAX_AGE_S + 0.01, f"repeats for {1e3 * (rx[-1] - rx[0]):.1f} ms"
        assert (rx[-1] - rx[0]) / (rx.size - 1) == pytest.approx(PERIOD_S, abs=0.001)  # ~500 Hz
        assert v.counters["setpoints"] == rx.size
        link.send_action(np.zeros(4))
        time.sleep(0.005)
        link.stop()  # a stopped link repeats nothing more
        time.sleep(0.01)  # what was in flight arrives
        n = len(v.actuator_rx)
        link.send_action(np.zeros(4))
        time.sleep(0.1)
        assert len(v.actuator_rx) == n and link.keepalive.error is None
    finally:
        if link is not None:
            link.close()
        v.stop()
