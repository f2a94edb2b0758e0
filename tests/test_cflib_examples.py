"""cflib's deck-free example flows, with stock cflib, against the simulated Crazyflie.

Each test runs the flow of one example script of crazyflie-lib-python (the path is named; the
examples were read at commit 6d06115, the tree before they moved to bitcraze/crazyflie-demos, and
at 0417fba, master) in its own words: the same cflib calls, in the same order, with the same
numbers where the flight allows, and checks that the vehicle did what the script is for. What the
simulation cannot do is checked to answer as crazyflie-firmware 2026.08 answers a missing deck.
docs/cflib_examples.md has the table.

Time: the vehicle runs faster than real time (SPEED); the flows wait in vehicle seconds
(VehicleClock), so a loaded machine slows the flight down instead of changing it. Links are
in-process (sim://) except one flow over UDP, the way `edgectl sim-vehicle crazyflie` serves it.
"""
from __future__ import annotations

import itertools
import math
import struct
import time

import numpy as np
import pytest

from firmware_bridge.crazyflie import crtp
from firmware_bridge.sim.crazyflie.sim_vehicle import CrazyflieSim

cflib = pytest.importorskip("cflib", reason="cflib is the Crazyflie host library whose examples these are")

from cflib.crazyflie import Crazyflie  # noqa: E402
from cflib.crazyflie.log import LogConfig  # noqa: E402
from cflib.crazyflie.mem import MemoryElement, Poly4D  # noqa: E402
from cflib.crazyflie.syncCrazyflie import SyncCrazyflie  # noqa: E402
from cflib.crazyflie.syncLogger import SyncLogger  # noqa: E402
from cflib.utils.reset_estimator import reset_estimator  # noqa: E402

SPEED = 5.0
# The simulated controller (control.py, not the firmware's PID) trails a high-level plan of ~1 m/s by up to
# ~9 cm and overshoots its end by up to ~8 cm; it is within 1 cm 1.5 s after the plan ends.
TRACKING, SETTLE = 0.12, 1.5
_names = itertools.count()


class VehicleClock:
    """``time`` for a flow: sleep() and time() in vehicle seconds."""

    def __init__(self, sim: CrazyflieSim):
        self.sim = sim

    def time(self) -> float:
        return self.sim.t

    def sleep(self, seconds: float) -> None:
        end = self.sim.t + seconds
        wall_limit = time.monotonic() + 30.0 + 4.0 * seconds
        while self.sim.t < end:
            if time.monotonic() > wall_limit:
                raise TimeoutError(f"the simulated vehicle did not advance {seconds} s")
            time.sleep(0.001)


def fly_uploaded_trajectory(cf, sim, clock, traj_id: int, height: float, takeoff_s: float) -> None:
    """Take off, fly uploaded trajectory `traj_id` relative to the take-off point (it ends 0.5 m along x and y), land
    and stop, as crazyflie-lib-python's examples/autonomy/autonomous_sequence_high_level*.py do."""
    hl = cf.high_level_commander
    hl.takeoff(height, takeoff_s)
    clock.sleep(takeoff_s + 0.5)
    hl.start_trajectory(traj_id, 1.0, relative_position=True)
    clock.sleep(4.0 + SETTLE)
    assert near(sim, (0.5, 0.5, height), 0.03), position(sim)
    hl.land(0.0, takeoff_s)
    clock.sleep(2.0)
    hl.stop()
    clock.sleep(0.3)
    assert position(sim)[2] < 0.03


@pytest.fixture
def vehicle():
    sim = CrazyflieSim(speed=SPEED)
    uri = sim.serve_inprocess(f"examples/{next(_names)}")
    sim.start()
    yield sim, uri, VehicleClock(sim)
    sim.close()


def connect(uri: str) -> SyncCrazyflie:
    from firmware_bridge.crazyflie.transports import ensure_drivers

    ensure_drivers(uri)
    return SyncCrazyflie(uri, cf=Crazyflie(rw_cache=None))


def position(sim) -> np.ndarray:
    return sim.state()[0:3]


def near(sim, target, tol=0.06) -> bool:
    return float(np.linalg.norm(position(sim) - np.asarray(target, float))) < tol


# ------------------------------------------------------------------------------------------------
# A trajectory of our own for the trajectory-memory flows: two smooth steps, +0.5 m in x then +0.5 m
# in y, 2 s each (x(t) = 0.5 (3 s^2 - 2 s^3), s = t / T: at rest at both ends), yaw 0.
# ------------------------------------------------------------------------------------------------
def _smooth_step(length: float, duration: float) -> list[float]:
    return [0.0, 0.0, 3.0 * length / duration ** 2, -2.0 * length / duration ** 3, 0.0, 0.0, 0.0, 0.0]


def _constant(value: float) -> list[float]:
    return [value] + [0.0] * 7


def two_steps() -> list[Poly4D]:
    zero = Poly4D.Poly(_constant(0.0))
    return [Poly4D(2.0, Poly4D.Poly(_smooth_step(0.5, 2.0)), zero, zero, zero),
            Poly4D(2.0, Poly4D.Poly(_constant(0.5)), Poly4D.Poly(_smooth_step(0.5, 2.0)), zero, zero)]


def upload(cf, trajectory_id: int, pieces) -> float:
    """examples/autonomy/autonomous_sequence_high_level.py upload_trajectory: into the trajectory
    memory, then define it for the high-level commander; returns the duration."""
    mem = cf.mem.get_mems(MemoryElement.TYPE_TRAJ)[0]
    mem.trajectory = list(pieces)
    assert mem.write_data_sync(), "trajectory upload failed"
    cf.high_level_commander.define_trajectory(trajectory_id, 0, len(mem.trajectory))
    return sum(p.duration for p in pieces)


# ------------------------------------------------------------------------------------------------
# autonomy/
# ------------------------------------------------------------------------------------------------
def test_autonomous_sequence_high_level(vehicle):
    """examples/autonomy/autonomous_sequence_high_level.py: upload a trajectory to memory, reset the
    estimator (kalman.resetEstimation, kalman.varP*), arm, take off to 1 m in 2 s, fly the trajectory
    relative to the take-off point, land in 2 s, stop."""
    sim, uri, clock = vehicle
    with connect(uri) as scf:
        cf = scf.cf
        duration = upload(cf, 1, two_steps())
        assert duration == pytest.approx(4.0)
        reset_estimator(cf)
        cf.supervisor.send_arming_request(True)
        clock.sleep(1.0)
        hl = cf.high_level_commander
        hl.takeoff(1.0, 2.0, yaw=0.0)
        clock.sleep(3.0)
        assert near(sim, (0.0, 0.0, 1.0)), position(sim)
        hl.start_trajectory(1, 1.0, relative_position=True, relative_yaw=False)
        clock.sleep(2.0)  # the end of the first piece: on the way, within the controller's tracking error
        assert near(sim, (0.5, 0.0, 1.0), TRACKING), position(sim)
        clock.sleep(duration - 2.0 + SETTLE)
        assert near(sim, (0.5, 0.5, 1.0), 0.03), position(sim)
        hl.land(0.0, 2.0)
        clock.sleep(2.0)
        hl.stop()
        clock.sleep(0.5)
        assert position(sim)[2] < 0.03 and max(sim.motors) <= sim._pdict["motor_min"]
        assert sim.supervisor_state not in ("Locked", "Crashed")


def test_autonomous_sequence_high_level_compressed(vehicle):
    """examples/autonomy/autonomous_sequence_high_level_compressed.py: a compressed trajectory (start
    point, then Bezier segments) uploaded and defined as type POLY4D_COMPRESSED, flown relative to the
    hover point. Our own segments: 2 s linear +0.5 m in x, then 2 s cubic +0.5 m in y."""
    from cflib.crazyflie.high_level_commander import HighLevelCommander
    from cflib.crazyflie.mem import CompressedSegment, CompressedStart

    sim, uri, clock = vehicle
    trajectory = [CompressedStart(0.0, 0.0, 0.0, 0.0),
                  CompressedSegment(2.0, [0.5], [], [], []),
                  CompressedSegment(2.0, [], [0.0, 0.5, 0.5], [], [])]
    with connect(uri) as scf:
        cf = scf.cf
        mem = cf.mem.get_mems(MemoryElement.TYPE_TRAJ)[0]
        mem.trajectory = trajectory
        assert mem.write_data_sync()
        cf.high_level_commander.define_trajectory(1, 0, len(trajectory),
                                                  type=HighLevelCommander.TRAJECTORY_TYPE_POLY4D_COMPRESSED)
        reset_estimator(cf)
        cf.supervisor.send_arming_request(True)
        clock.sleep(1.0)
        fly_uploaded_trajectory(cf, sim, clock, 1, 1.0, 2.0)


def test_autonomous_sequence_with_position_setpoints_ends_unlocked(vehicle):
    """examples/autonomy/autonomous_sequence.py: velocity take-off, position setpoints at 10 Hz, then
    send_stop_setpoint + send_notify_setpoint_stop. The notify hands the vehicle back to the
    high-level commander (commander.c commanderRelaxPriority): motors off, no watchdog lock, and the
    next flight flies (the simulation used to lock itself here). Waypoints held 3 s, not 5."""
    sim, uri, clock = vehicle
    sequence = [(0.0, 0.0, 0.4, 0), (0.0, 0.0, 1.2, 0), (0.5, -0.5, 1.2, 0), (0.0, 0.0, 0.4, 0), (0.0, 0.0, 0.0, 0)]
    with connect(uri) as scf:
        cf = scf.cf
        reset_estimator(cf)
        samples = []
        log_conf = LogConfig(name="Position", period_in_ms=500)
        for name in ("kalman.stateX", "kalman.stateY", "kalman.stateZ"):
            log_conf.add_variable(name, "float")
        cf.log.add_config(log_conf)
        log_conf.data_received_cb.add_callback(lambda ts, data, conf: samples.append(data))
        log_conf.start()
        cf.supervisor.send_arming_request(True)
        clock.sleep(1.0)
        for _ in range(10):  # take_off: 1 s of world-velocity setpoints
            cf.commander.send_velocity_world_setpoint(0, 0, sequence[0][2] / 1.0, 0)
            clock.sleep(0.1)
        clock.sleep(1.0)  # as the script: past 0.5 s the watchdog levels out, the setpoints resume
        for x, y, z, yaw in sequence:
            for _ in range(30):
                cf.commander.send_position_setpoint(x, y, z, yaw)
                clock.sleep(0.1)
            if z > 0:
                assert near(sim, (x, y, z), 0.08), (position(sim), (x, y, z))
        cf.commander.send_stop_setpoint()
        cf.commander.send_notify_setpoint_stop()
        clock.sleep(3.0)  # past the 2 s watchdog
        assert sim.supervisor_state != "Locked", "notify-setpoint-stop must hand over, not lock"
        assert max(sim.motors) <= sim._pdict["motor_min"]
        log_conf.stop()
        assert samples and abs(samples[-1]["kalman.stateZ"] - position(sim)[2]) < 0.05
        # the next flight of the same session flies
        cf.high_level_commander.takeoff(0.5, 1.5)
        clock.sleep(2.5)
        assert near(sim, (0.0, 0.0, 0.5), 0.1), position(sim)
        cf.high_level_commander.land(0.0, 1.5)
        clock.sleep(2.0)


def test_position_commander_demo(vehicle, monkeypatch):
    """examples/autonomy/position_commander_demo.py simple_sequence: PositionHlCommander (PID
    controller) takes off to its 0.5 m default, forward 1 m, left 1 m, back 1 m, go to (0, 0, 1),
    lands on leaving the context. The script 'exits 0 with the vehicle still on the ground' when the
    high-level commander is ignored; here each leg is checked."""
    from cflib.positioning import position_hl_commander
    from cflib.positioning.position_hl_commander import PositionHlCommander

    sim, uri, clock = vehicle
    monkeypatch.setattr(position_hl_commander, "time", clock)  # its sleeps in vehicle seconds
    with connect(uri) as scf:
        with PositionHlCommander(scf, controller=PositionHlCommander.CONTROLLER_PID) as pc:
            clock.sleep(SETTLE)
            assert near(sim, (0.0, 0.0, 0.5), 0.03), position(sim)
            for move, target in ((pc.forward, (1.0, 0.0, 0.5)), (pc.left, (1.0, 1.0, 0.5)),
                                 (pc.back, (0.0, 1.0, 0.5))):
                move(1.0)  # returns when the move's planned duration is over
                assert near(sim, target, TRACKING), (move.__name__, position(sim))
                clock.sleep(SETTLE)
                assert near(sim, target, 0.03), (move.__name__, position(sim))
            pc.go_to(0.0, 0.0, 1.0)
            clock.sleep(SETTLE)
            assert near(sim, (0.0, 0.0, 1.0), 0.03), position(sim)
        assert sim.param("stabilizer.controller") == PositionHlCommander.CONTROLLER_PID
        clock.sleep(0.5)
        assert position(sim)[2] < 0.03 and max(sim.motors) <= sim._pdict["motor_min"]


@pytest.mark.filterwarnings("ignore:platform.send_arming_request is deprecated")  # the script's own call
def test_full_state_setpoint_demo(vehicle):
    """examples/autonomy/full_state_setpoint_demo.py: full-state setpoints (position, velocity,
    acceleration, a compressed quaternion) every 0.2 s: up to 1 m, turn to yaw 0.7 rad, down to
    0.2 m, then stop + notify. kalman.stateX/Y/Z logged as the script prints them."""
    sim, uri, clock = vehicle

    def hold(cf, seconds, pos, yaw):
        quat = [0.0, 0.0, math.sin(yaw / 2.0), math.cos(yaw / 2.0)]  # the script's scipy from_euler("xyz", (0, 0, yaw))
        for _ in range(round(seconds / 0.2)):
            cf.commander.send_full_state_setpoint(pos, [0, 0, 0], [0, 0, 0], quat, 0.0, 0.0, 0.0)
            clock.sleep(0.2)

    with connect(uri) as scf:
        cf = scf.cf
        reset_estimator(cf)
        cf.platform.send_arming_request(True)
        clock.sleep(1.0)
        hold(cf, 4.0, [0.0, 0.0, 1.0], 0.0)
        assert near(sim, (0.0, 0.0, 1.0))
        hold(cf, 2.0, [0.0, 0.0, 1.0], 0.7)
        assert sim.variables()["stateEstimate.yaw"] == pytest.approx(math.degrees(0.7), abs=3.0)
        hold(cf, 2.0, [0.0, 0.0, 0.2], 0.0)
        assert near(sim, (0.0, 0.0, 0.2))
        cf.commander.send_stop_setpoint()
        cf.commander.send_notify_setpoint_stop()
        clock.sleep(3.0)
        assert sim.supervisor_state != "Locked"


def test_motion_commander_demo(vehicle, monkeypatch):
    """examples/autonomy/motion_commander_demo.py (written for the Flow deck, which it does not check):
    MotionCommander's hover setpoints (body velocities, absolute height): take off to 0.3 m, forward
    0.8 m and back, up 0.5 m and down, turn left 90 degrees, land. The simulation's estimate is the
    truth, so it flies as a Crazyflie with a positioning deck would."""
    from cflib.positioning import motion_commander
    from cflib.positioning.motion_commander import MotionCommander, _SetPointThread

    sim, uri, clock = vehicle
    monkeypatch.setattr(motion_commander, "time", clock)
    # its setpoint thread waits on a queue (wall clock): keep its 0.2 s period in vehicle seconds
    monkeypatch.setattr(_SetPointThread.__init__, "__defaults__", (_SetPointThread.UPDATE_PERIOD / SPEED,))
    with connect(uri) as scf:
        scf.cf.supervisor.send_arming_request(True)
        clock.sleep(1.0)
        with MotionCommander(scf) as mc:
            clock.sleep(1.0)
            assert near(sim, (0.0, 0.0, 0.3), 0.05), position(sim)
            # velocity moves: start, sleep distance / velocity, stop; the vehicle's velocity lag (about
            # 0.3 s) shortens the start and lengthens the stop, so positions are checked once it has stopped
            mc.forward(0.8)
            clock.sleep(1.0)
            assert near(sim, (0.8, 0.0, 0.3), 0.1), position(sim)
            mc.back(0.8)
            mc.up(0.5)
            clock.sleep(1.0)
            assert near(sim, (0.0, 0.0, 0.8), 0.1), position(sim)
            mc.down(0.5)
            mc.turn_left(90)
            clock.sleep(0.5)
            assert sim.variables()["stateEstimate.yaw"] == pytest.approx(90.0, abs=5.0)
            assert sim.supervisor_state == "Flying"
        clock.sleep(0.5)
        assert position(sim)[2] < 0.03 and sim.supervisor_state not in ("Locked", "Crashed")


def test_sbs_motion_commander_refuses_without_the_flow_deck(vehicle):
    """examples/step-by-step/sbs_motion_commander.py needs a Flow deck: it waits up to 5 s for
    deck.bcFlow2 to read 1, else prints 'No flow deck detected!' and exits 1. The simulation answers as
    a deck-free Crazyflie: the parameter exists, read-only, and reads 0, as every deck.bc* does."""
    sim, uri, _ = vehicle
    with connect(uri) as scf:
        values = []
        scf.cf.param.add_update_callback(group="deck", name="bcFlow2", cb=lambda name, value: values.append(value))
        scf.wait_for_params()
        assert scf.cf.param.get_value("deck.bcFlow2") == "0"
        for deck in ("bcFlow", "bcLighthouse4", "bcLoco", "bcMultiranger", "bcLedRing", "bcAI", "bcZRanger2"):
            assert scf.cf.param.get_value(f"deck.{deck}") == "0", deck
        assert scf.cf.param.toc.get_element_by_complete_name("deck.bcFlow2").access == 1  # read-only
    assert values and all(int(v) == 0 for v in values)


# ------------------------------------------------------------------------------------------------
# positioning/, supervisor/, motors/, console/
# ------------------------------------------------------------------------------------------------
def test_initial_position(vehicle):
    """examples/positioning/initial_position.py: write kalman.initialX/Y/Z/Yaw, reset the estimator,
    fly position setpoints relative to that base. The estimate is the simulated truth (as with a
    positioning system), so the vehicle is put down at the initial position first."""
    sim, uri, clock = vehicle
    base = (1.0, 1.0, 0.0)
    sim.place(base)
    with connect(uri) as scf:
        cf = scf.cf
        for axis, value in zip("XYZ", base):
            cf.param.set_value(f"kalman.initial{axis}", value)
        cf.param.set_value("kalman.initialYaw", math.radians(90))
        scf.wait_for_params()
        reset_estimator(cf)
        assert sim.param("kalman.initialX") == pytest.approx(1.0)
        cf.supervisor.send_arming_request(True)
        clock.sleep(1.0)
        for dx, dy, z in ((0.0, 0.0, 0.4), (0.0, 0.0, 1.2), (0.5, -0.5, 1.2), (0.0, 0.0, 0.4)):
            for _ in range(30):
                cf.commander.send_position_setpoint(base[0] + dx, base[1] + dy, z, 90)
                clock.sleep(0.1)
            assert near(sim, (base[0] + dx, base[1] + dy, z), 0.08), position(sim)
        cf.commander.send_stop_setpoint()
        cf.commander.send_notify_setpoint_stop()


def test_flying_with_supervisor(vehicle):
    """examples/supervisor/flying_with_supervisor.py and reading_supervisor.py: read the supervisor
    (can be armed / can fly / is flying / tumbled / locked / crashed), arm, take off, land."""
    sim, uri, clock = vehicle
    with connect(uri) as scf:
        clock.sleep(1.0)
        sup = scf.cf.supervisor
        assert not (sup.is_crashed or sup.is_locked or sup.is_tumbled)
        if sup.can_be_armed:  # auto-arming (the Crazyflie 2.1 default) has armed it already
            sup.send_arming_request(True)
            clock.sleep(1.0)
        assert sup.can_fly and "Can fly" in sup.read_state_list()
        scf.cf.high_level_commander.takeoff(1.0, 2.0)
        clock.sleep(3.0)
        assert sup.is_flying and near(sim, (0.0, 0.0, 1.0))
        scf.cf.high_level_commander.land(0.0, 2.0)
        clock.sleep(3.0)
        assert not (sup.is_crashed or sup.is_locked or sup.is_tumbled)
        assert position(sim)[2] < 0.03


@pytest.mark.filterwarnings("ignore:platform.send_arming_request is deprecated")  # the script's own call
def test_motor_ramp(vehicle):
    """examples/motors/ramp.py: arm, unlock the thrust with a zero setpoint, ramp the thrust up and
    down in steps, stop; the motors follow (no propeller lift-off at these thrusts)."""
    sim, uri, clock = vehicle
    seen = []
    with connect(uri) as scf:
        cf = scf.cf
        cf.platform.send_arming_request(True)
        clock.sleep(1.0)
        cf.commander.send_setpoint(0, 0, 0, 0)  # unlock the thrust protection
        for thrust in list(range(20000, 25000, 500)) + list(range(25000, 20000, -500)):
            cf.commander.send_setpoint(0, 0, 0, thrust)
            clock.sleep(0.1)
            seen.append(sim.variables()["motor.m1"])
        cf.commander.send_setpoint(0, 0, 0, 0)
        clock.sleep(0.1)
        assert max(seen) > 15000 and max(sim.motors) <= sim._pdict["motor_min"]


def test_console_and_link_latency(vehicle):
    """examples/console/console.py (console text arrives) and examples/link_quality/latency.py
    (cflib's latency estimate from link-control echo packets)."""
    sim, uri, clock = vehicle
    cf = Crazyflie(rw_cache=None)
    text, latencies = [], []
    cf.console.receivedChar.add_callback(text.append)
    cf.link_statistics.latency.latency_updated.add_callback(latencies.append)
    from firmware_bridge.crazyflie.transports import ensure_drivers

    ensure_drivers(uri)
    with SyncCrazyflie(uri, cf=cf):
        deadline = time.monotonic() + 5.0
        while (not latencies or not text) and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "is up and running" in "".join(text)
    assert latencies and all(0.0 <= v < 1000.0 for v in latencies)


# ------------------------------------------------------------------------------------------------
# logging/, parameters/
# ------------------------------------------------------------------------------------------------
def test_basiclog_and_kalman_names(vehicle):
    """examples/logging/basiclog.py and basiclog_sync.py: stabilizer.roll/pitch/yaw, pm.vbat and
    stateEstimate.x/y/z at 10 ms; plus the Kalman estimator's names the other examples log."""
    sim, uri, clock = vehicle
    with connect(uri) as scf:
        conf = LogConfig(name="Stabilizer", period_in_ms=10)
        for name in ("stabilizer.roll", "stabilizer.pitch", "stabilizer.yaw", "pm.vbat"):
            conf.add_variable(name, "float")
        with SyncLogger(scf, conf) as logger:
            rows = [data for _, data, _ in itertools.islice(logger, 5)]
        assert 3.0 < rows[-1]["pm.vbat"] <= 4.2
        conf = LogConfig(name="Kalman", period_in_ms=50)
        for name in ("kalman.stateX", "kalman.stateZ", "kalman.varPX", "kalman.varX", "kalman.q0",
                     "stateEstimate.z"):
            conf.add_variable(name, "float")
        with SyncLogger(scf, conf) as logger:
            row = next(iter(logger))[1]
        assert row["kalman.q0"] == pytest.approx(1.0) and row["kalman.stateZ"] == pytest.approx(row["stateEstimate.z"])
        toc = scf.cf.log.toc
        for name in ("kalman.varPY", "kalman.varPZ", "kalman.statePX", "kalman.stateD0", "ctrltarget.x",
                     "controller.roll", "stateEstimate.qw"):
            assert toc.get_element_by_complete_name(name) is not None, name


def test_basicparam(vehicle):
    """examples/parameters/basicparam.py: every parameter's value arrives (the script hangs until
    all do), cpu.flash answers, pid_attitude.pitch_kd is written and read back. The parameter
    groups the examples touch exist with the firmware's types."""
    sim, uri, clock = vehicle
    with connect(uri) as scf:
        cf = scf.cf
        scf.wait_for_params()
        names = [f"{g}.{n}" for g, group in cf.param.toc.toc.items() for n in group]
        assert all(cf.param.get_value(n) is not None for n in names)
        assert cf.param.get_value("cpu.flash") == "1024"
        readback = []
        cf.param.add_update_callback(group="pid_attitude", name="pitch_kd", cb=lambda n, v: readback.append(v))
        cf.param.set_value("pid_attitude.pitch_kd", "0.42")
        deadline = time.monotonic() + 5.0
        while not readback and time.monotonic() < deadline:
            time.sleep(0.01)
        assert readback and float(readback[-1]) == pytest.approx(0.42)
        for name in ("commander.enHighLevel", "stabilizer.estimator", "stabilizer.controller",
                     "kalman.resetEstimation", "kalman.initialYaw", "hlCommander.vtoff", "ring.effect"):
            assert name in names, name
        cf.param.set_value("hlCommander.vtoff", 0.3)
        scf.wait_for_params()
        time.sleep(0.1)
        assert sim.hl.v_takeoff == pytest.approx(0.3)


def test_persistent_params(vehicle):
    """examples/parameters/persistent_params.py: the persistent-parameter calls on ring.effect (the
    LED-ring driver's parameter is in the TOC without the deck, as in the default firmware build):
    state, store, state again, clear."""
    from threading import Event

    sim, uri, clock = vehicle
    with connect(uri) as scf:
        cf = scf.cf
        scf.wait_for_params()
        states = []

        def get_state():
            got = Event()
            cf.param.persistent_get_state("ring.effect", lambda name, state: (states.append(state), got.set()))
            assert got.wait(5.0)
            return states[-1]

        assert not get_state().is_stored and get_state().default_value == 6
        cf.param.set_value("ring.effect", 10)
        stored = Event()
        cf.param.persistent_store("ring.effect", callback=lambda name, ok: ok and stored.set())
        assert stored.wait(5.0)
        assert get_state().is_stored and get_state().stored_value == 10
        cleared = Event()
        cf.param.persistent_clear("ring.effect", callback=lambda name, ok: ok and cleared.set())
        assert cleared.wait(5.0) and not get_state().is_stored
        assert cf.param.get_value("ring.neffect") == "0"  # set by the driver's init only: no deck


# ------------------------------------------------------------------------------------------------
# memory/
# ------------------------------------------------------------------------------------------------
def test_memory_listing_and_eeprom(vehicle):
    """The memories of a deck-free Crazyflie 2.1, and examples/memory/read_eeprom.py /
    write_eeprom.py: the config block reads back valid, a write is read back."""
    sim, uri, clock = vehicle
    with connect(uri) as scf:
        mems = scf.cf.mem
        assert [m.type for m in mems.mems] == [MemoryElement.TYPE_I2C, MemoryElement.TYPE_TRAJ,
                                              MemoryElement.TYPE_MEMORY_TESTER, MemoryElement.TYPE_DECK_MEMORY, 0x20]
        eeprom = mems.get_mems(MemoryElement.TYPE_I2C)[0]
        eeprom.update(lambda mem: None)
        deadline = time.monotonic() + 5.0
        while not eeprom.valid and time.monotonic() < deadline:
            time.sleep(0.01)
        assert eeprom.valid and eeprom.elements["radio_channel"] == 80 and eeprom.elements["radio_speed"] == 2
        assert eeprom.elements["radio_address"] == 0xE7E7E7E7E7
        # write_eeprom.py: new values, written, then read back
        eeprom.elements.update(version=1, radio_channel=100, radio_speed=0, pitch_trim=0.5, roll_trim=-0.5,
                               radio_address=0xE7E7E7E7E8)
        done = []
        eeprom.write_data(lambda mem, addr: done.append(addr))
        while not done and time.monotonic() < deadline + 5.0:
            time.sleep(0.01)
        eeprom.valid = False
        eeprom.update(lambda mem: None)
        while not eeprom.valid and time.monotonic() < deadline + 10.0:
            time.sleep(0.01)
        assert eeprom.elements["radio_channel"] == 100 and eeprom.elements["radio_address"] == 0xE7E7E7E7E8


def test_deck_memory_and_one_wire_without_decks(vehicle):
    """examples/memory/read_deck_mem.py ('No memories to read'), read_ow.py ('Found 0 1-wire
    memories'); and the deck-bound examples' memories (led-ring/led_mem_set.py, led_timing.py,
    lighthouse/read_lighthouse_mem.py, memory/read_l5.py, read_paa3905.py) are absent, as on a
    Crazyflie without those decks."""
    from threading import Event

    sim, uri, clock = vehicle
    with connect(uri) as scf:
        mems = scf.cf.mem
        deck_mems = mems.get_mems(MemoryElement.TYPE_DECK_MEMORY)
        assert len(deck_mems) == 1
        got = Event()
        deck_mems[0].query_decks(lambda memories: got.set())
        assert got.wait(5.0) and deck_mems[0].deck_memories == {}
        assert len(mems.get_mems(MemoryElement.TYPE_1W)) == 0
        for kind in (MemoryElement.TYPE_DRIVER_LED, MemoryElement.TYPE_DRIVER_LEDTIMING, MemoryElement.TYPE_LH,
                     MemoryElement.TYPE_LOCO2, MemoryElement.TYPE_DECK_MULTIRANGER, MemoryElement.TYPE_DECK_PAA3905):
            assert len(mems.get_mems(kind)) == 0, kind


def test_memory_tester_and_raw_answers():
    """The memory tester (mem.c) and the raw answers of crtp_mem.c: read data, a failed read (a deck
    section, no deck) answers EIO with no data, a write past the trajectory memory answers EIO."""
    sim = CrazyflieSim(realtime=False)
    replies: list[bytes] = []
    link = sim.open_link(lambda raw: replies.append(raw) if raw[0] >> 4 == crtp.MEM else None)
    try:
        link.send(crtp.packet(crtp.MEM, crtp.MEM_INFO_CH, bytes((crtp.MEM_CMD_GET_NBR,))))
        assert replies[-1][1:] == bytes((1, 5))
        link.send(crtp.packet(crtp.MEM, crtp.MEM_INFO_CH, bytes((crtp.MEM_CMD_GET_INFO, 1))))
        assert replies[-1][1:8] == bytes((2, 1, 0x12)) + struct.pack("<I", 4096) and len(replies[-1]) == 1 + 15
        link.send(crtp.packet(crtp.MEM, crtp.MEM_READ_CH, bytes((2,)) + struct.pack("<I", 0x1FE) + bytes((4,))))
        assert replies[-1][1:] == bytes((2,)) + struct.pack("<I", 0x1FE) + bytes((0, 0xFE, 0xFF, 0x00, 0x01))
        link.send(crtp.packet(crtp.MEM, crtp.MEM_READ_CH, bytes((3,)) + struct.pack("<I", 0x10000000) + bytes((8,))))
        assert replies[-1][1:] == bytes((3,)) + struct.pack("<I", 0x10000000) + bytes((crtp.EIO,))
        link.send(crtp.packet(crtp.MEM, crtp.MEM_WRITE_CH, bytes((1,)) + struct.pack("<I", 4090) + bytes(8)))
        assert replies[-1][1:] == bytes((1,)) + struct.pack("<I", 4090) + bytes((crtp.EIO,))
        link.send(crtp.packet(crtp.MEM, crtp.MEM_WRITE_CH, bytes((2,)) + struct.pack("<I", 16) + bytes((16, 99))))
        assert replies[-1][-1] == 0 and sim.variables()["memTst.errCntW"] == 1
    finally:
        sim.close()


# ------------------------------------------------------------------------------------------------
# The high-level commander's answers (raw CRTP, hand-stepped)
# ------------------------------------------------------------------------------------------------
def test_high_level_commander_answers_like_the_firmware():
    """crtp_commander_high_level.c: every command is answered (first three bytes echoed, byte 3 the
    return code): 0, 1 for a take-off while flying (plan_takeoff), EBUSY while the supervisor
    forbids flight, ENOEXEC for an unknown command, a compressed trajectory at another time scale or
    reversed (as the firmware) and a spiral (not simulated: said so, with a console line)."""
    sim = CrazyflieSim(realtime=False)
    replies: list[bytes] = []
    link = sim.open_link(replies.append)

    def hl(*fields, fmt):
        link.send(crtp.packet(crtp.HIGH_LEVEL, 0, struct.pack(fmt, *fields)))
        return next(r for r in reversed(replies) if r[0] == crtp.header(crtp.HIGH_LEVEL, 0))

    try:
        sim.advance(0.5)
        assert sim.supervisor_state == "Ready to fly"
        r = hl(7, 0, 1.0, 0.0, True, 2.0, fmt="<BBff?f")  # take-off 2
        assert len(r) == 5 and r[1:4] == bytes((7, 0, 0)) and r[4] == 0
        sim.advance(0.2)
        assert hl(7, 0, 1.0, 0.0, True, 2.0, fmt="<BBff?f")[4] == 1
        assert hl(11, 0, 0, 0, 1.0, 0.5, 0.5, 0.0, 2.0, fmt="<BBBBfffff")[4] == crtp.ENOEXEC  # spiral
        assert hl(6, 2, 1, 1, 0, 1, fmt="<BBBBIB")[4] == 0  # define trajectory 2 as compressed
        assert hl(13, 0, 1, 0, 0, 2, 2.0, fmt="<BBBBBBf")[4] == crtp.ENOEXEC  # compressed: time scale 1 only
        assert hl(13, 0, 1, 0, 1, 2, 1.0, fmt="<BBBBBBf")[4] == crtp.ENOEXEC  # ... and forwards only
        assert hl(99, 0, 0, fmt="<BBB")[4] == crtp.ENOEXEC
        assert sim.supervisor.bitfield & 0x100  # high-level control active
        sim.advance(2.5)
        assert abs(sim.state()[2] - 1.0) < 0.05
        link.send(crtp.packet(crtp.SUPERVISOR, crtp.SUPERVISOR_COMMAND_CH, bytes((crtp.SUP_EMERGENCY_STOP,))))
        sim.advance(0.1)
        assert sim.supervisor_state == "Locked"
        assert hl(7, 0, 1.0, 0.0, True, 2.0, fmt="<BBff?f")[4] == 16  # EBUSY
        text = b"".join(r[1:] for r in replies if r[0] == crtp.header(crtp.CONSOLE, 0)).decode()
        assert "spiral is not simulated" in text
    finally:
        sim.close()


def test_supervisor_rules_from_the_state_machine():
    """supervisor_state_machine.c / supervisor.c: armed but not flying for supervisor.prefltTimeout (30 s)
    falls back to pre-flight checks, disarmed; landed has no emergency-stop transition (the latched
    request locks the vehicle once the landed timeout has reset it); a vehicle stopped by the
    high-level commander after landing is not locked."""
    sim = CrazyflieSim(realtime=False, auto_arm=False)
    link = sim.open_link(lambda raw: None)
    arm = crtp.packet(crtp.SUPERVISOR, crtp.SUPERVISOR_COMMAND_CH, bytes((crtp.SUP_ARM, 1)))
    try:
        sim.advance(0.1)
        assert sim.supervisor_state == "Pre-flight checks passed"
        link.send(arm)
        sim.advance(0.1)
        assert sim.supervisor_state == "Ready to fly"
        sim.advance(29.5)
        assert sim.supervisor_state == "Ready to fly"
        sim.advance(1.0)
        assert sim.supervisor_state == "Pre-flight checks passed" and not sim.supervisor.armed
        link.send(arm)
        sim.advance(0.1)
        link.send(crtp.packet(crtp.HIGH_LEVEL, 0, struct.pack("<BBff?f", 7, 0, 0.5, 0.0, True, 1.0)))
        sim.advance(2.0)
        link.send(crtp.packet(crtp.HIGH_LEVEL, 0, struct.pack("<BBff?f", 8, 0, 0.0, 0.0, True, 1.0)))
        sim.advance(3.5)  # landed: the landing plan ended, motors off, the is-flying hysteresis (2 s) over
        assert sim.supervisor_state == "Landed" and max(sim.motors) <= sim._pdict["motor_min"]
        link.send(crtp.packet(crtp.SUPERVISOR, crtp.SUPERVISOR_COMMAND_CH, bytes((crtp.SUP_EMERGENCY_STOP,))))
        sim.advance(0.5)
        assert sim.supervisor_state == "Landed"
        sim.advance(3.0)
        assert sim.supervisor_state == "Locked"
    finally:
        sim.close()


# ------------------------------------------------------------------------------------------------
# Over UDP, as `edgectl sim-vehicle crazyflie --uri udp://...` serves it
# ------------------------------------------------------------------------------------------------
def test_trajectory_flow_over_udp():
    """The autonomous_sequence_high_level flow once over the UDP server (cflib's own UdpDriver)."""
    from firmware_bridge.crazyflie.transports import ensure_drivers

    ensure_drivers()
    with CrazyflieSim(speed=SPEED) as sim:
        clock = VehicleClock(sim)
        server = sim.serve_udp("127.0.0.1", 0)
        with SyncCrazyflie(server.uri, cf=Crazyflie(rw_cache=None)) as scf:
            cf = scf.cf
            upload(cf, 3, two_steps())
            cf.supervisor.send_arming_request(True)
            clock.sleep(0.5)
            fly_uploaded_trajectory(cf, sim, clock, 3, 0.8, 1.5)
