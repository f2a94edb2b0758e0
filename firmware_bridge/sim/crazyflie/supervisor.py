"""The firmware supervisor, reduced to what a host can observe (supervisor.c,
supervisor_state_machine.c): auto-arming, the commander watchdog, the emergency stop, tumble
detection and the info bitfield that cflib's Supervisor reads.

Watchdog, as in the firmware: while flying, a setpoint older than 0.5 s levels the vehicle out
(roll = pitch = 0, yaw rate 0, thrust kept); older than 2 s cuts the motors and locks the vehicle
until a reboot ("Locked, reboot required"). A vehicle that is not flying is not affected.

Transitions checked against crazyflie-firmware 2026.08 supervisor_state_machine.c (transitions* tables)
and supervisor.c (supervisorIsPreflightTimeout, supervisorIsLandingTimeout): ready to fly for longer
than supervisor.prefltTimeout (30 s) after arming falls back to pre-flight checks (disarmed; auto-arming
arms again); landed has no emergency-stop transition; an emergency stop while tumbled/crashed locks.
Not simulated: the motors-not-responding, spin-up-timeout and deck-fault conditions (no such faults
here), and arming waits for no RPM check (ARMING -> READY_TO_FLY on the next step).
"""
from __future__ import annotations

from dataclasses import dataclass

from .setpoints import MODE_ABS, MODE_DISABLE, MODE_VELOCITY, Setpoint

(NOT_INITIALIZED, PRE_FLIGHT_NOT_PASSED, PRE_FLIGHT_PASSED, ARMING, READY_TO_FLY, FLYING, LANDED, RESET,
 WARNING_LEVEL_OUT, EXCEPT_FREE_FALL, LOCKED, CRASHED) = range(12)
STATE_NAMES = ("Not initialized", "Pre-flight checks not passed", "Pre-flight checks passed", "Arming",
               "Ready to fly", "Flying", "Landed", "Reset", "Warning, level out", "Exception, free fall",
               "Locked", "Crashed")
MOTORS_ALLOWED = frozenset((ARMING, READY_TO_FLY, FLYING, WARNING_LEVEL_OUT, LANDED))
CAN_FLY = frozenset((READY_TO_FLY, FLYING, WARNING_LEVEL_OUT, LANDED))

WDT_STABILIZE_S, WDT_SHUTDOWN_S = 0.5, 2.0
IS_FLYING_HYSTERESIS_S = 2.0
LANDING_TIMEOUT_S = 3.0
PREFLIGHT_TIMEOUT_S = 30.0  # platform_defaults.h PREFLIGHT_TIMEOUT_MS
EMERGENCY_WATCHDOG_S = 1.0
TILT_ACC_Z, TILT_TIME_S = 0.5, 1.0
UPSIDE_DOWN_ACC_Z, UPSIDE_DOWN_TIME_S = -0.2, 0.1


@dataclass
class Conditions:
    armed: bool
    flying: bool
    tumbled: bool
    wdt_warning: bool
    wdt_timeout: bool
    emergency: bool


class Supervisor:
    def __init__(self, auto_arm: bool = True):
        self.auto_arm = auto_arm
        self.state = NOT_INITIALIZED
        self.armed = False
        self.crashed = False
        self.tumbled = False
        self.emergency_requested = False  # supervisor command EMERGENCY_STOP
        self.param_stop = False  # stabilizer.stop
        self.watchdog_tick: float | None = None  # last EMERGENCY_STOP_WATCHDOG notification
        self.hl_bits = 0  # info bits 8-10, the high-level commander's state (set by the vehicle each tick)
        self.tumble_check = True  # supervisor.tmblChckEn
        self.landing_timeout_s = LANDING_TIMEOUT_S  # supervisor.landedTimeout
        self.preflight_timeout_s = PREFLIGHT_TIMEOUT_S  # supervisor.prefltTimeout
        self._armed_at = 0.0
        self._last_thrust: float | None = None
        self._tumble_since: float | None = None
        self._landed_at = 0.0
        self.on_transition = None  # callback(old, new, now), e.g. a console message

    # -- commands from the host ----------------------------------------------------------------
    def request_arming(self, do_arm: bool) -> bool:
        if do_arm == self.armed:
            return True
        if do_arm and self.state != PRE_FLIGHT_PASSED:
            return False
        self.armed = do_arm
        return True

    def request_crash_recovery(self) -> bool:
        if self.crashed and self.tumbled:
            return False
        self.crashed = False
        return True

    # -- state machine ---------------------------------------------------------------------------
    def _conditions(self, now: float, setpoint: Setpoint, motors_running: bool, acc_z: float,
                    free_fall: bool) -> Conditions:
        if motors_running:
            self._last_thrust = now
        flying = self._last_thrust is not None and now - self._last_thrust < IS_FLYING_HYSTERESIS_S
        if free_fall or acc_z >= TILT_ACC_Z:
            self._tumble_since = None
            tumbled = False
        else:
            if self._tumble_since is None:
                self._tumble_since = now
            held = now - self._tumble_since
            tumbled = held > TILT_TIME_S or (acc_z < UPSIDE_DOWN_ACC_Z and held > UPSIDE_DOWN_TIME_S)
        self.tumbled = tumbled = tumbled and self.tumble_check
        age = now - setpoint.timestamp
        watchdog_expired = self.watchdog_tick is not None and now > self.watchdog_tick + EMERGENCY_WATCHDOG_S
        return Conditions(self.armed, flying, tumbled, age > WDT_STABILIZE_S, age > WDT_SHUTDOWN_S,
                          self.emergency_requested or self.param_stop or watchdog_expired)

    def _next(self, c: Conditions, now: float) -> int:
        s = self.state
        if s == NOT_INITIALIZED or s == RESET:
            return PRE_FLIGHT_NOT_PASSED
        if s in (PRE_FLIGHT_NOT_PASSED, PRE_FLIGHT_PASSED, ARMING, READY_TO_FLY) and c.emergency:
            return EXCEPT_FREE_FALL
        if s == PRE_FLIGHT_NOT_PASSED:
            return s if c.tumbled else PRE_FLIGHT_PASSED
        if s == PRE_FLIGHT_PASSED:
            return PRE_FLIGHT_NOT_PASSED if c.tumbled else (ARMING if c.armed else s)
        if s == ARMING:
            return PRE_FLIGHT_NOT_PASSED if (c.tumbled or not c.armed) else READY_TO_FLY
        if s == READY_TO_FLY:
            if c.tumbled or not c.armed or now - self._armed_at > self.preflight_timeout_s:
                return PRE_FLIGHT_NOT_PASSED
            return FLYING if c.flying else s
        if s == FLYING:
            if c.wdt_timeout or c.emergency:
                return EXCEPT_FREE_FALL
            if c.tumbled:
                return CRASHED
            if not c.armed:
                return RESET
            if c.wdt_warning:
                return WARNING_LEVEL_OUT
            return s if c.flying else LANDED
        if s == WARNING_LEVEL_OUT:
            if c.wdt_timeout or c.tumbled or c.emergency:
                return EXCEPT_FREE_FALL
            return s if c.wdt_warning else FLYING
        if s == LANDED:
            if not c.armed or now - self._landed_at > self.landing_timeout_s:
                return RESET
            return FLYING if c.flying else s
        if s == EXCEPT_FREE_FALL:
            return LOCKED
        if s == CRASHED:
            if not self.crashed and not c.tumbled:
                return PRE_FLIGHT_NOT_PASSED
            return LOCKED if c.emergency else s
        return s  # LOCKED: until reboot

    def update(self, now: float, setpoint: Setpoint, motors_running: bool, acc_z: float = 1.0,
               free_fall: bool = False) -> int:
        """One supervisor step (the firmware runs at most one transition per step)."""
        c = self._conditions(now, setpoint, motors_running, acc_z, free_fall)
        new = self._next(c, now)
        if new != self.state:
            old, self.state = self.state, new
            if new == LANDED:
                self._landed_at = now
            if new == ARMING:
                self._armed_at = now
            if new == CRASHED:
                self.crashed = True
            if new not in MOTORS_ALLOWED:
                self.armed = False
            if new == PRE_FLIGHT_PASSED and self.auto_arm:
                self.request_arming(True)
            if self.on_transition:
                self.on_transition(old, new, now)
        return self.state

    # -- what the stabilizer and the host see ----------------------------------------------------
    @property
    def motors_allowed(self) -> bool:
        return self.state in MOTORS_ALLOWED

    @property
    def is_flying(self) -> bool:
        return self.state in (FLYING, WARNING_LEVEL_OUT)

    @property
    def locked(self) -> bool:
        return self.state == LOCKED

    def override(self, sp: Setpoint) -> Setpoint:
        """The setpoint the controller gets (supervisorOverrideSetpoint)."""
        if self.state in (ARMING, READY_TO_FLY, LANDED, FLYING):
            return sp
        if self.state == WARNING_LEVEL_OUT:
            return Setpoint(mode_x=MODE_DISABLE, mode_y=MODE_DISABLE, mode_z=sp.mode_z, z=sp.z, vz=sp.vz,
                            mode_roll=MODE_ABS, mode_pitch=MODE_ABS, mode_yaw=MODE_VELOCITY,
                            thrust=sp.thrust, timestamp=sp.timestamp)
        return Setpoint(timestamp=sp.timestamp)

    @property
    def bitfield(self) -> int:
        bits = 0
        for bit, on in enumerate((self.state == PRE_FLIGHT_PASSED, self.armed, self.auto_arm,
                                  self.state in CAN_FLY, self.is_flying, self.tumbled, self.locked,
                                  self.crashed)):
            bits |= int(bool(on)) << bit
        return bits | self.hl_bits
