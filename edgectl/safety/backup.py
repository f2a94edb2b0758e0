"""Quadrotor backup controller, no learning: level, hold, descend, land.

The controller the shield hands the vehicle to when the learned policy is predicted to break a
spec, and what flies when the state estimate is NaN. It has to be simple enough to trust and to
port (``c_backup.py`` writes the same law in C), so it is a cascade of PIDs on a model:

- outer loop: a desired world acceleration from a position/velocity PID (z and x/y), which sets
  the desired thrust direction and the collective thrust;
- inner loop: a reduced-attitude PD (tilt only: yaw is not a safety quantity, its rate is damped)
  giving body torques;
- observers: the angular (body) and linear (world) acceleration the model does not explain (a weak
  rotor, a mass or thrust error, a constant wind) estimated from the gyro and the velocity and
  cancelled; they also run while the policy flies (``observe``), so they are current at a switch;
- mixing: thrust + torques -> per-rotor thrusts through the inverse of the allocation matrix of the
  platform's rotor geometry, spin and torque coefficient, with roll/pitch given priority when a
  rotor saturates, then collective over yaw unless the vehicle spins;
- motor lag: rotors follow their command with a 0.15 s lag, which would cap the attitude loop near
  2 rad/s. The command is over-driven so the rotor speed reaches its target with ``motor_tf``
  instead, using a model of the rotor speeds (``motor_update``) fed with every action sent, the
  policy's included: rotor speeds are not measured.

Phases (``PHASES``), each with its timer ``t_phase``:
  level   -> hold     when tilt < level_tilt and |omega| < level_rate (vertical speed damped);
  hold    -> descend  after hold_s, holding ``hold`` (the target given at engagement, else the
                      position where leveling ended);
  descend -> landed   when z <= ground_z + touchdown_z, at descent_rate;
  landed: motors at minimum. Any airborne phase goes back to level above relevel_tilt.

The law is written once over an array module ``xp`` (numpy or jax.numpy) with per-element
arithmetic on arrays of any leading batch shape, so the numpy, JAX and C versions are the same
operations in the same order. NaN in the state -> hover thrust, level command, no integration.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from edgectl.platforms import motor_for_fraction, rotor_model, thrust_fraction

PHASES = ("level", "hold", "descend", "landed")
LEVEL, HOLD, DESCEND, LANDED = range(4)


@dataclass(frozen=True)
class BackupGains:
    # Inner loop: angular acceleration = att_kp * tilt error - att_kd * rate - disturbance estimate.
    att_kp: float = 400.0  # rad/s^2 per rad
    att_kd: float = 40.0  # 1/s
    yaw_kd: float = 8.0  # 1/s on yaw rate
    yaw_guard: float = 4.0  # rad/s: above it yaw takes priority over collective, fully at twice it
    # Disturbance observer: the angular acceleration the model does not explain (a weak rotor,
    # a torque disturbance, an inertia error), from the gyro. An integrator on the tilt error
    # was too slow for a 30 % weak rotor (145 rad/s^2): the vehicle drifted 0.5 m before it caught up.
    dob_gain: float = 0.3  # per period, fraction of the innovation taken
    dob_max: float = 600.0  # rad/s^2 per axis
    # The same for the linear acceleration (world): a force disturbance, a mass or thrust error.
    fdob_gain: float = 0.1
    fdob_max: float = 0.5  # fraction of g per axis
    motor_tf: float = 0.02  # s, rotor time constant after over-driving the command (0.03 before the rise/fall lags: 97 % against 94 % recovered from 90 deg starts on the nominal Crazyflie 2.1, 256 starts)
    # Outer loop: acceleration = kp * position error + ki * integral + kd * velocity error.
    xy_kp: float = 10.0  # 1/s^2
    xy_kd: float = 6.0  # 1/s
    xy_ki: float = 4.0  # 1/s^3
    z_kp: float = 10.0
    z_kd: float = 6.0
    z_ki: float = 4.0
    pos_i_max: float = 3.0  # m/s^2 per axis, clamp on the integral's contribution
    level_z_kd: float = 5.0  # 1/s, vertical speed damping while leveling
    max_tilt: float = 0.8  # rad, tilt the outer loop may ask for
    min_thrust: float = 0.3  # fraction of the weight kept while flipping back, for torque authority
    max_accel_down: float = 0.6  # fraction of g the outer loop may ask downward
    # Phases.
    level_tilt: float = 0.8  # rad; below it hold at once (levelling first wasted the braking tilt the policy had)
    level_rate: float = 6.0  # rad/s, norm
    relevel_tilt: float = 0.9  # rad
    hold_s: float = 5.0  # s
    descent_rate: float = 0.3  # m/s
    ground_z: float = 0.0  # m, world z of the ground (the Crazyflie's frame: z = 0 on the floor)
    touchdown_z: float = 0.05  # m above the ground at which the motors stop


    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            if not (isinstance(v, (int, float)) and math.isfinite(v)):
                raise ValueError(f"backup gains: {f.name} = {v!r}: expected a finite number")
        for name in ("motor_tf", "yaw_guard", "xy_ki", "z_ki", "max_tilt"):
            if getattr(self, name) <= 0:
                raise ValueError(f"backup gains: {name} = {getattr(self, name)!r}: expected a positive number")


@dataclass(frozen=True)
class BackupModel:
    """Platform constants the law needs (nominal values: the backup does not know the randomization)."""
    mass: float
    inertia: tuple[float, float, float]
    gravity: float
    thrust_max: float  # N per rotor at full command
    motor_min: float  # lowest motor command (0)
    motor_tau: float  # s, rising
    dt: float  # s, control period
    alloc: tuple[tuple[float, float, float, float], ...]  # (T, tx, ty, tz) x (4 rotors)
    alloc_inv: tuple[tuple[float, float, float, float], ...]  # (4 rotors) x (T, tx, ty, tz)
    thrust_shape: tuple[float, float] = (0.0, 0.0)  # b0, b1: thrust = thrust_max (b0 + b1 u + (1 - b0 - b1) u^2)
    motor_tau_down: float = 0.0  # s, falling (0: same as motor_tau)

    @property
    def hover_motor(self) -> float:
        return float(motor_for_fraction(self.mass * self.gravity / (4.0 * self.thrust_max), *self.thrust_shape))

    def thrust(self, u):
        """Per-rotor thrust (N) at motor state u (numpy or JAX)."""
        return self.thrust_max * thrust_fraction(u, *self.thrust_shape)

    def motor_for(self, t, xp=np):
        """Motor state giving per-rotor thrust t (N)."""
        return motor_for_fraction(t / self.thrust_max, *self.thrust_shape, xp=xp)

    @property
    def motor_k_up(self) -> float:
        h = self.dt / self.motor_tau
        return h * (1.0 - h * (0.5 - h * (1.0 / 6.0 - h / 24.0)))

    @property
    def motor_k_down(self) -> float:
        h = self.dt / (self.motor_tau_down or self.motor_tau)
        return h * (1.0 - h * (0.5 - h * (1.0 / 6.0 - h / 24.0)))

    @property
    def fall_ratio(self) -> float:
        """Fall over rise time constant of the rotors (1 for a symmetric lag)."""
        return (self.motor_tau_down or self.motor_tau) / self.motor_tau

    @property
    def hover_action(self) -> float:
        return 2.0 * (self.hover_motor - self.motor_min) / (1.0 - self.motor_min) - 1.0


def allocation_matrix(rotor_x, rotor_y, spin, torque_coefficient) -> np.ndarray:
    """(T, tau_x, tau_y, tau_z) = A @ per-rotor thrusts, the simulator's torque equations."""
    rx, ry, s = (np.asarray(v, np.float64) for v in (rotor_x, rotor_y, spin))
    return np.stack([np.ones(4), ry, -rx, torque_coefficient * s])


def model_from_platform(platform) -> BackupModel:
    g = platform.get
    if platform.kind != "quadrotor":
        raise ValueError(f"{platform.path.name}: platform.kind: the backup controller flies a quadrotor, got {platform.kind!r}")
    pos = np.asarray(g("rotors.positions"), np.float64)
    rm = rotor_model(platform)
    return _model(mass=g("body.mass"), inertia=g("body.inertia"), gravity=g("body.gravity"),
                  rotor_x=pos[:, 0], rotor_y=pos[:, 1], spin=g("rotors.spin"),
                  thrust_max=rm["thrust_max"], thrust_shape=rm["thrust_shape"],
                  torque_coefficient=g("rotors.torque_coefficient"),
                  motor_tau=rm["motor_tau"], motor_tau_down=rm["motor_tau_down"], motor_min=rm["motor_min"],
                  dt=1.0 / g("control.policy_rate"))


def model_from_params(params, dt: float | None = None) -> BackupModel:
    """From a (single, unbatched) ``train_fast.sims.quadrotor.Params`` or a dict of its fields."""
    get = params.__getitem__ if isinstance(params, dict) else lambda k: getattr(params, k)
    f = lambda k: np.asarray(get(k), np.float64)  # noqa: E731
    if f("mass").ndim:
        raise ValueError(f"model_from_params: mass has shape {f('mass').shape}: pass one vehicle's (nominal) Params")
    return _model(mass=f("mass"), inertia=f("inertia"), gravity=f("gravity"), rotor_x=f("rotor_x"),
                  rotor_y=f("rotor_y"), spin=f("spin"), thrust_max=f("thrust_max"),
                  thrust_shape=f("thrust_shape") if _has(params, "thrust_shape") else (0.0, 0.0),
                  torque_coefficient=f("torque_coefficient"), motor_tau=f("motor_tau"),
                  motor_tau_down=f("motor_tau_down") if _has(params, "motor_tau_down") else f("motor_tau"),
                  motor_min=f("motor_min"), dt=float(f("dt")) if dt is None else dt)


def _has(params, k) -> bool:
    return k in params if isinstance(params, dict) else hasattr(params, k)


def _model(*, mass, inertia, gravity, rotor_x, rotor_y, spin, thrust_max, torque_coefficient, motor_tau,
           motor_min, dt, thrust_shape=(0.0, 0.0), motor_tau_down=None) -> BackupModel:
    a = allocation_matrix(rotor_x, rotor_y, spin, float(torque_coefficient))
    if not np.isfinite(np.linalg.cond(a)) or np.linalg.cond(a) > 1e12:
        raise ValueError(f"rotors.positions/spin: the allocation matrix is singular ({a.tolist()}): "
                         "these four rotors cannot set thrust and three torques independently")
    inv = np.linalg.inv(a)
    return BackupModel(mass=float(mass), inertia=tuple(float(v) for v in np.asarray(inertia)), gravity=float(gravity),
                       thrust_max=float(thrust_max), motor_min=float(motor_min), motor_tau=float(motor_tau),
                       thrust_shape=tuple(float(v) for v in np.asarray(thrust_shape)),
                       motor_tau_down=float(motor_tau if motor_tau_down is None else motor_tau_down),
                       dt=float(dt), alloc=tuple(tuple(float(v) for v in row) for row in a),
                       alloc_inv=tuple(tuple(float(v) for v in row) for row in inv))


def gains_from_dict(d: dict | None) -> BackupGains:
    """BackupGains with the keys of ``d`` replaced; an unknown key is refused by name."""
    known = {f.name for f in fields(BackupGains)}
    bad = sorted(set(d or {}) - known)
    if bad:
        raise ValueError(f"backup gains: unknown field(s) {bad}; known: {sorted(known)}")
    return replace(BackupGains(), **{k: float(v) for k, v in (d or {}).items()})


# --- controller state: a dict of arrays, so numpy, JAX (a pytree) and C share one layout ----------
# phase, t_phase: the phase machine; hold: position held; i_pos: position integral; motor: rotor
# speeds / max_rpm (model of the commands sent); w_prev, v_prev: last rates and velocity (NaN: none);
# am, lm: angular (body) and linear (world) acceleration the model predicted over the last period;
# dist, fdist: the observers' estimates of what the model misses (rad/s^2 body, m/s^2 world).
STATE_FIELDS = (("phase", 0), ("t_phase", 0), ("hold", 3), ("i_pos", 3), ("motor", 4), ("w_prev", 3),
                ("v_prev", 3), ("am", 3), ("lm", 3), ("dist", 3), ("fdist", 3))


def init_state(model: BackupModel, pos, target=None, motor=None, dist=None, fdist=None, xp=np) -> dict:
    """A controller engaging now at ``pos`` (..., 3). ``target``: position to hold (..., 3), else
    the position where leveling ends. ``motor``: rotor-speed estimate, else hover; ``dist``,
    ``fdist``: disturbance estimates to start from, else zero."""
    pos = xp.asarray(pos)
    dtype = pos.dtype if xp.issubdtype(pos.dtype, xp.floating) else xp.float64
    batch = pos.shape[:-1]
    nan3 = xp.full(batch + (3,), xp.nan, dtype=dtype)
    z, z3 = xp.zeros(batch, dtype=dtype), xp.zeros(batch + (3,), dtype=dtype)
    b = lambda v, n: xp.broadcast_to(xp.asarray(v, dtype=dtype), batch + (n,))  # noqa: E731
    return {"phase": xp.zeros(batch, dtype=xp.int32), "t_phase": z,
            "hold": nan3 if target is None else b(target, 3), "i_pos": z3,
            "motor": xp.full(batch + (4,), model.hover_motor, dtype=dtype) if motor is None else b(motor, 4),
            "w_prev": nan3, "v_prev": nan3, "am": z3, "lm": z3,
            "dist": z3 if dist is None else b(dist, 3), "fdist": z3 if fdist is None else b(fdist, 3)}


def engage(model: BackupModel, cs: dict, pos, target=None, xp=np) -> dict:
    """Restart the phases at level, keeping the rotor-speed model and the observers (kept current
    by ``observe`` while the policy flew, so a weak rotor is known at the first backup command)."""
    new = init_state(model, pos, target=target, motor=cs["motor"], dist=cs["dist"], fdist=cs["fdist"], xp=xp)
    for k in ("w_prev", "v_prev", "am", "lm"):
        new[k] = xp.broadcast_to(cs[k], new[k].shape)
    return new


def motor_update(model: BackupModel, motor, action, xp=np):
    """Advance the rotor-speed estimate one period under ``action`` (..., 4): the simulator's
    first-order lag with its RK4 step, so the model and the simulator agree exactly."""
    u = model.motor_min + (xp.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (1.0 - model.motor_min)
    # RK4 of m' = (u - m) / tau over dt with u held: m + (u - m) * (h - h^2/2 + h^3/6 - h^4/24), h = dt / tau;
    # tau is the rise or the fall constant as in the simulator (m never crosses u within a step, so every
    # RK4 stage picks the same one).
    return motor + (u - motor) * xp.where(u > motor, model.motor_k_up, model.motor_k_down)


def _c(v, i):
    return v[..., i]


def _inputs(pos, quat, vel, omega, xp):
    """ok, and the state as scalar arrays with a NaN-free placeholder where not ok (a NaN must not
    reach the integrators, the observers or the rotor model)."""
    px, py, pz = _c(pos, 0), _c(pos, 1), _c(pos, 2)
    vx, vy, vz = _c(vel, 0), _c(vel, 1), _c(vel, 2)
    wx, wy, wz = _c(omega, 0), _c(omega, 1), _c(omega, 2)
    qn = xp.sqrt(_c(quat, 0) ** 2 + _c(quat, 1) ** 2 + _c(quat, 2) ** 2 + _c(quat, 3) ** 2)
    ok = xp.isfinite(px + py + pz + vx + vy + vz + wx + wy + wz + qn) & (qn > 1e-6)
    zero = xp.zeros_like(px)
    px, py, pz, vx, vy, vz, wx, wy, wz = (xp.where(ok, v, zero) for v in (px, py, pz, vx, vy, vz, wx, wy, wz))
    qs = xp.where(ok, qn, 1.0)
    q = (xp.where(ok, _c(quat, 0) / qs, 1.0),) + tuple(xp.where(ok, _c(quat, i) / qs, zero) for i in (1, 2, 3))
    return ok, (px, py, pz), q, (vx, vy, vz), (wx, wy, wz)


def _rotation(q):
    qw, qx, qy, qz = q
    return (1.0 - 2.0 * (qy * qy + qz * qz), 2.0 * (qx * qy - qw * qz), 2.0 * (qx * qz + qw * qy),
            2.0 * (qx * qy + qw * qz), 1.0 - 2.0 * (qx * qx + qz * qz), 2.0 * (qy * qz - qw * qx),
            2.0 * (qx * qz - qw * qy), 2.0 * (qy * qz + qw * qx), 1.0 - 2.0 * (qx * qx + qy * qy))


def _gyro(M: BackupModel, w):
    """omega x J omega, body frame."""
    jx, jy, jz = M.inertia
    wx, wy, wz = w
    return (jz - jy) * wy * wz, (jx - jz) * wz * wx, (jy - jx) * wx * wy


def _observers(M: BackupModel, G: BackupGains, cs: dict, ok, v, w, xp):
    """Update dist / fdist from the change in measured rates / velocity over the last period
    against what the model predicted for it (am / lm)."""
    upd = ok & xp.isfinite(_c(cs["w_prev"], 0)) & xp.isfinite(_c(cs["v_prev"], 0))
    dist, fdist = [], []
    for i in range(3):
        wp = xp.where(upd, _c(cs["w_prev"], i), w[i])
        innov = (w[i] - wp) / M.dt - _c(cs["am"], i) - _c(cs["dist"], i)
        dist.append(xp.where(upd, xp.clip(_c(cs["dist"], i) + G.dob_gain * innov, -G.dob_max, G.dob_max), _c(cs["dist"], i)))
        vp = xp.where(upd, _c(cs["v_prev"], i), v[i])
        innov = (v[i] - vp) / M.dt - _c(cs["lm"], i) - _c(cs["fdist"], i)
        lim = G.fdob_max * M.gravity
        fdist.append(xp.where(upd, xp.clip(_c(cs["fdist"], i) + G.fdob_gain * innov, -lim, lim), _c(cs["fdist"], i)))
    return dist, fdist


def _model_accel(M: BackupModel, motor, motor_next, r, w):
    """Angular (body) and linear (world) acceleration the model expects over the period in which
    the rotors go from ``motor`` to ``motor_next``: forces of the mean of the thrusts before and after."""
    F = M.alloc
    tm = [0.5 * (M.thrust(_c(motor, i)) + M.thrust(_c(motor_next, i))) for i in range(4)]
    gx, gy, gz = _gyro(M, w)
    jx, jy, jz = M.inertia
    am = (((F[1][0] * tm[0] + F[1][1] * tm[1] + F[1][2] * tm[2] + F[1][3] * tm[3]) - gx) / jx,
          ((F[2][0] * tm[0] + F[2][1] * tm[1] + F[2][2] * tm[2] + F[2][3] * tm[3]) - gy) / jy,
          ((F[3][0] * tm[0] + F[3][1] * tm[1] + F[3][2] * tm[2] + F[3][3] * tm[3]) - gz) / jz)
    thrust = (tm[0] + tm[1] + tm[2] + tm[3]) / M.mass
    lm = (r[2] * thrust, r[5] * thrust, r[8] * thrust - M.gravity)
    return am, lm


def _finish(M: BackupModel, cs: dict, ok, motor_next, r, v, w, dist, fdist, xp, **changes) -> dict:
    am, lm = _model_accel(M, cs["motor"], motor_next, r, w)
    nan = xp.full_like(v[0], xp.nan)
    zero = 0.0 * v[0]
    keep = lambda new, old: xp.where(ok, new, old)  # noqa: E731
    new = dict(cs)
    new.update({
        "motor": motor_next,
        "w_prev": xp.stack([keep(x, nan) for x in w], axis=-1),
        "v_prev": xp.stack([keep(x, nan) for x in v], axis=-1),
        "am": xp.stack([keep(x, zero) for x in am], axis=-1),
        "lm": xp.stack([keep(x, zero) for x in lm], axis=-1),
        "dist": xp.stack(dist, axis=-1),
        "fdist": xp.stack(fdist, axis=-1),
    })
    new.update(changes)
    return new


def observe(model: BackupModel, gains: BackupGains, cs: dict, quat, vel, omega, action, xp=np) -> dict:
    """While another controller flies: advance the rotor-speed model with the ``action`` it sent
    and the observers with the measured state, so the backup takes over with current estimates."""
    ok, _, q, v, w = _inputs(xp.zeros_like(vel), quat, vel, omega, xp)
    r = _rotation(q)
    dist, fdist = _observers(model, gains, cs, ok, v, w, xp)
    return _finish(model, cs, ok, motor_update(model, cs["motor"], action, xp=xp), r, v, w, dist, fdist, xp)


def step(model: BackupModel, gains: BackupGains, cs: dict, pos, quat, vel, omega, xp=np):
    """One control period. Returns (new controller state, action (..., 4) in [-1, 1]).

    ``quat`` is (w, x, y, z) body-to-world; ``omega`` body rates; all SI. The rotor-speed model in
    the returned state already includes this action.
    """
    G, M = gains, model
    g, dt = M.gravity, M.dt
    ok, (px, py, pz), q, v, w = _inputs(pos, quat, vel, omega, xp)
    vx, vy, vz = v
    wx, wy, wz = w
    r = _rotation(q)
    r00, r01, r02, r10, r11, r12, r20, r21, r22 = r
    tilt = xp.arccos(xp.clip(r22, -1.0, 1.0))
    rate = xp.sqrt(wx * wx + wy * wy + wz * wz)
    dist, fdist = _observers(M, G, cs, ok, v, w, xp)

    # --- phase transitions, on the state before this period's command --------------------------
    phase, t_phase = cs["phase"], cs["t_phase"]
    hx, hy, hz = _c(cs["hold"], 0), _c(cs["hold"], 1), _c(cs["hold"], 2)
    leveled = ok & (phase == LEVEL) & (tilt < G.level_tilt) & (rate < G.level_rate)
    hx = xp.where(leveled & xp.isnan(hx), px, hx)
    hy = xp.where(leveled & xp.isnan(hy), py, hy)
    hz = xp.where(leveled & xp.isnan(hz), pz, hz)
    nxt = xp.where(leveled, HOLD, phase)
    nxt = xp.where((phase == HOLD) & (t_phase >= G.hold_s), DESCEND, nxt)
    nxt = xp.where((phase == DESCEND) & (pz <= G.ground_z + G.touchdown_z), LANDED, nxt)
    nxt = xp.where((nxt == HOLD) | (nxt == DESCEND), xp.where(tilt > G.relevel_tilt, LEVEL, nxt), nxt)
    nxt = xp.where(ok, nxt, phase)
    t_phase = xp.where(nxt == phase, t_phase, 0.0)
    phase = nxt.astype(cs["phase"].dtype)
    flying = (phase == HOLD) | (phase == DESCEND)

    # --- outer loop: desired acceleration (world), the estimated disturbance cancelled ------------
    descending = phase == DESCEND
    zt = xp.where(descending, xp.maximum(hz - G.descent_rate * t_phase, G.ground_z), hz)
    vzt = xp.where(descending, -G.descent_rate, 0.0)
    ex, ey, ez = hx - px, hy - py, zt - pz
    ix, iy, iz = _c(cs["i_pos"], 0), _c(cs["i_pos"], 1), _c(cs["i_pos"], 2)
    lim_xy, lim_z = G.pos_i_max / max(G.xy_ki, 1e-12), G.pos_i_max / max(G.z_ki, 1e-12)
    integ = flying & ok
    ix = xp.where(integ, xp.clip(ix + ex * dt, -lim_xy, lim_xy), ix)
    iy = xp.where(integ, xp.clip(iy + ey * dt, -lim_xy, lim_xy), iy)
    iz = xp.where(integ, xp.clip(iz + ez * dt, -lim_z, lim_z), iz)
    ax = xp.where(flying, G.xy_kp * ex + G.xy_ki * ix - G.xy_kd * vx - fdist[0], 0.0)
    ay = xp.where(flying, G.xy_kp * ey + G.xy_ki * iy - G.xy_kd * vy - fdist[1], 0.0)
    az = xp.where(flying, G.z_kp * ez + G.z_ki * iz + G.z_kd * (vzt - vz), -G.level_z_kd * vz) - fdist[2]
    a_xy_max = g * math.tan(G.max_tilt)
    a_xy = xp.sqrt(ax * ax + ay * ay)
    s = xp.where(a_xy > a_xy_max, a_xy_max / xp.maximum(a_xy, 1e-12), 1.0)
    ax, ay = ax * s, ay * s
    az = xp.clip(az, -G.max_accel_down * g, 2.0 * g)
    fx, fy, fz = M.mass * ax, M.mass * ay, M.mass * (az + g)  # desired force, world

    # --- inner loop: tilt error in the body frame -----------------------------------------------
    fn = xp.sqrt(fx * fx + fy * fy + fz * fz)
    dx = (r00 * fx + r10 * fy + r20 * fz) / fn  # desired thrust direction, body frame
    dy = (r01 * fx + r11 * fy + r21 * fz) / fn
    dz = (r02 * fx + r12 * fy + r22 * fz) / fn
    sin_e = xp.sqrt(dx * dx + dy * dy)
    ang = xp.arctan2(sin_e, dz)
    k = xp.where(sin_e > 1e-6, ang / xp.maximum(sin_e, 1e-6), 1.0)
    ex_b, ey_b = -dy * k, dx * k  # rotation vector from body z to the desired direction
    flip = (sin_e <= 1e-6) & (dz < 0.0)  # upside down with no preferred axis: roll over
    ex_b = xp.where(flip, math.pi, ex_b)
    alx = G.att_kp * ex_b - G.att_kd * wx - dist[0]
    aly = G.att_kp * ey_b - G.att_kd * wy - dist[1]
    alz = -G.yaw_kd * wz - dist[2]
    jx, jy, jz = M.inertia
    gx, gy, gz = _gyro(M, w)
    tx, ty, tz = jx * alx + gx, jy * aly + gy, jz * alz + gz
    weight = M.mass * g
    thrust = xp.clip(fx * r02 + fy * r12 + fz * r22, G.min_thrust * weight, 4.0 * M.thrust_max)

    # --- rotor lag: over-drive thrust and torques from the rotor-speed model ---------------------
    # The rotors reach a command with motor_tau; asking for hat + (tau / tf) (desired - hat) makes
    # the (linearized) response motor_tf. Done on thrust/torques, before mixing, so the saturation
    # priorities below hold for the over-driven part too.
    motor = cs["motor"]
    over = M.motor_tau / G.motor_tf
    F = M.alloc
    th = [M.thrust(_c(motor, i)) for i in range(4)]
    w_hat = [F[j][0] * th[0] + F[j][1] * th[1] + F[j][2] * th[2] + F[j][3] * th[3] for j in range(4)]
    thrust = w_hat[0] + over * (thrust - w_hat[0])
    tx = w_hat[1] + over * (tx - w_hat[1])
    ty = w_hat[2] + over * (ty - w_hat[2])
    tz = w_hat[3] + over * (tz - w_hat[3])

    # --- mixing with priorities: roll/pitch first; then collective before yaw, unless the vehicle
    # spins. Yaw is no safety quantity, and with a weak rotor at full command its balance costs
    # the collective a falling vehicle needs (one episode in 1,000 sank out of the box); but with
    # no yaw authority at all a weak rotor spun the vehicle past 30 rad/s, where the tilt loop no
    # longer holds. So the two orders are blended by the yaw rate, between yaw_guard and 2 x it.
    A = M.alloc_inv
    t_lo = M.thrust(M.motor_min)
    t_hi = M.thrust_max
    rng = t_hi - t_lo

    def vmax(v):
        return xp.maximum(xp.maximum(v[0], v[1]), xp.maximum(v[2], v[3]))

    def vmin(v):
        return xp.minimum(xp.minimum(v[0], v[1]), xp.minimum(v[2], v[3]))

    def fit(v):  # shift all four into [t_lo, t_hi] (their spread fits)
        hi, lo = vmax(v), vmin(v)
        sh = xp.where(hi > t_hi, t_hi - hi, xp.where(lo < t_lo, t_lo - lo, 0.0))
        return [x + sh for x in v]

    d = [A[i][1] * tx + A[i][2] * ty for i in range(4)]
    span = vmax(d) - vmin(d)
    sc = xp.where(span > rng, rng / xp.maximum(span, 1e-12), 1.0)
    d = [v * sc for v in d]
    y = [A[i][3] * tz for i in range(4)]
    # yaw before collective: as much yaw as the room left by roll/pitch allows, then shift
    room = xp.maximum(rng - span * sc, 0.0)
    yspan = vmax(y) - vmin(y)
    ys = xp.where(yspan > room, room / xp.maximum(yspan, 1e-12), 1.0)
    first = fit([A[i][0] * thrust + d[i] + ys * y[i] for i in range(4)])
    # collective before yaw: place roll/pitch + collective, then as much yaw as fits around it
    base = fit([A[i][0] * thrust + d[i] for i in range(4)])
    yc = xp.ones_like(tz)
    for i in range(4):
        up = (t_hi - base[i]) / xp.where(y[i] > 0.0, y[i], 1.0)
        down = (t_lo - base[i]) / xp.where(y[i] < 0.0, y[i], -1.0)
        yc = xp.minimum(yc, xp.maximum(xp.where(y[i] > 0.0, up, xp.where(y[i] < 0.0, down, 1.0)), 0.0))
    last = [base[i] + yc * y[i] for i in range(4)]
    wy = xp.clip((xp.abs(wz) - G.yaw_guard) / G.yaw_guard, 0.0, 1.0)
    mixed = [wy * first[i] + (1.0 - wy) * last[i] for i in range(4)]
    landed = phase == LANDED
    acts = []
    # The over-drive above used the rise constant; a rotor that must slow down follows the fall constant
    # (4.5x slower on a brushed Crazyflie), so its decrease is over-driven by their ratio as well.
    fall = M.fall_ratio
    for i in range(4):
        t_i = xp.where(mixed[i] < th[i], th[i] + fall * (mixed[i] - th[i]), mixed[i])
        t_i = xp.clip(t_i, t_lo, t_hi)
        u = M.motor_for(t_i, xp=xp)
        a = 2.0 * (u - M.motor_min) / (1.0 - M.motor_min) - 1.0
        a = xp.where(landed, -1.0, a)
        acts.append(xp.where(ok, a, M.hover_action))
    action = xp.stack(acts, axis=-1)

    new = _finish(M, cs, ok, motor_update(M, motor, action, xp=xp), r, v, w, dist, fdist, xp,
                  phase=phase, t_phase=t_phase + dt, hold=xp.stack([hx, hy, hz], axis=-1),
                  i_pos=xp.stack([ix, iy, iz], axis=-1))
    return new, action


class BackupController:
    """Stateful host-side wrapper (numpy) for one vehicle or a batch (leading dims of ``pos``)."""

    def __init__(self, platform_or_model: Any, gains: BackupGains | None = None):
        self.model = platform_or_model if isinstance(platform_or_model, BackupModel) else model_from_platform(platform_or_model)
        self.gains = gains or BackupGains()
        self.state: dict | None = None

    def engage(self, pos, target=None) -> None:
        pos = np.asarray(pos, np.float64)
        self.state = init_state(self.model, pos, target=target) if self.state is None else \
            engage(self.model, self.state, pos, target=target)

    def observe(self, quat, vel, omega, action) -> None:
        """Keep the rotor-speed model and the observers current while another controller flies."""
        if self.state is None:
            self.state = init_state(self.model, np.zeros(np.shape(action)[:-1] + (3,)))
        self.state = observe(self.model, self.gains, self.state, *(np.asarray(v, np.float64) for v in (quat, vel, omega, action)))

    def __call__(self, pos, quat, vel, omega) -> np.ndarray:
        if self.state is None:
            self.engage(pos)
        self.state, action = step(self.model, self.gains, self.state, *(np.asarray(v, np.float64) for v in (pos, quat, vel, omega)))
        return action

    @property
    def phase(self):
        p = np.asarray(self.state["phase"])
        return PHASES[int(p)] if p.ndim == 0 else [PHASES[int(v)] for v in p.ravel()]
