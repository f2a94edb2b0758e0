"""Quadrotor rigid-body dynamics in JAX, gymnax style: pure functions over State and Params.

Conventions (the bundle contract and the firmware app rely on them):
- world frame z up; body frame x forward, y left, z up (the Crazyflie firmware's frames);
- quaternion (w, x, y, z), rotating body vectors into the world frame;
- angular velocity in the body frame, rad/s;
- motor state u = the normalized motor command after the motor's lag, in [0, 1]; thrust per rotor =
  thrust_max * (b0 + b1 u + (1 - b0 - b1) u^2), the platform's thrust curve (edgectl.platforms.rotor_model);
- the lag is first order with one time constant while u rises and another while it falls (Eschmann et al.
  2024, "Data-driven system identification of quadrotors subject to motor delays");
- linear rotor drag on the body x/y velocity (optional, drag coefficient 0 turns it off);
- action a in [-1, 1] per motor, firmware order M1..M4: u command = motor_min + (a + 1) / 2 * (1 - motor_min)
  (motor_min is 0 for every platform form the loader knows; kept for the twins' layout).

The derivative is written component by component rather than with 3x3 matrices and cross
products: under vmap that measured 4-6x faster here (../shared/FIELD_NOTES.md, section 1).
One step is one RK4 stage set at dt with the action held, then the quaternion is renormalized.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from edgectl.platforms import Platform, motor_for_fraction, rotor_model
from train_fast.pytree import pytree


@pytree
@dataclass(frozen=True)
class State:
    pos: jax.Array  # (3,) m, world
    quat: jax.Array  # (4,) w, x, y, z
    vel: jax.Array  # (3,) m/s, world
    omega: jax.Array  # (3,) rad/s, body
    motor: jax.Array  # (4,) rotor speed / max_rpm


@pytree
@dataclass(frozen=True)
class Params:
    mass: jax.Array  # kg
    inertia: jax.Array  # (3,) kg m^2, diagonal
    gravity: jax.Array  # m/s^2
    rotor_x: jax.Array  # (4,) m
    rotor_y: jax.Array  # (4,) m
    spin: jax.Array  # (4,) +1 / -1
    thrust_max: jax.Array  # N per rotor at full command
    thrust_shape: jax.Array  # (2,) b0, b1 of the thrust curve, fractions of thrust_max
    torque_coefficient: jax.Array  # N m of yaw torque per N of thrust
    motor_tau: jax.Array  # s, while the motor speeds up
    motor_tau_down: jax.Array  # s, while it slows down
    drag: jax.Array  # N s/m, body x/y rotor drag
    motor_min: jax.Array  # lowest motor command (0)
    dt: jax.Array  # s
    force: jax.Array  # (3,) N, world, constant disturbance for the episode
    torque: jax.Array  # (3,) N m, body, constant disturbance for the episode


# Names of the per-episode randomized factors, in the order the critic sees them.
RANDOMIZED = ("mass", "inertia", "thrust_curve", "torque_coefficient", "motor_time_constant", "drag_coefficient")


def nominal_params(platform: Platform, dtype=jnp.float32) -> Params:
    g = platform.get
    pos = np.asarray(g("rotors.positions"), dtype=np.float64)
    rm = rotor_model(platform)
    f = lambda x: jnp.asarray(x, dtype=dtype)  # noqa: E731
    return Params(
        mass=f(g("body.mass")),
        inertia=f(g("body.inertia")),
        gravity=f(g("body.gravity")),
        rotor_x=f(pos[:, 0]),
        rotor_y=f(pos[:, 1]),
        spin=f(g("rotors.spin")),
        thrust_max=f(rm["thrust_max"]),
        thrust_shape=f(rm["thrust_shape"]),
        torque_coefficient=f(g("rotors.torque_coefficient")),
        motor_tau=f(rm["motor_tau"]),
        motor_tau_down=f(rm["motor_tau_down"]),
        drag=f(rm["drag"]),
        motor_min=f(rm["motor_min"]),
        dt=f(1.0 / g("control.sim_rate")),
        force=jnp.zeros(3, dtype),
        torque=jnp.zeros(3, dtype),
    )


def randomization_ranges(platform: Platform) -> np.ndarray:
    """(len(RANDOMIZED), 2) factor ranges [lo, hi]."""
    return np.array([platform.get(f"randomization.{k}") for k in RANDOMIZED], dtype=np.float32)


def sample_params(key, nominal: Params, ranges, force_std, torque_std):
    """Domain randomization: scale each physical parameter by a factor drawn log-uniform in its
    [lo, hi] (x0.5-2 is then as likely halved as doubled), draw the disturbance."""
    k1, k2, k3 = jax.random.split(key, 3)
    ranges = jnp.asarray(ranges)
    lo, hi = jnp.log(ranges[:, 0]), jnp.log(ranges[:, 1])
    factors = jnp.exp(lo + (hi - lo) * jax.random.uniform(k1, (len(RANDOMIZED),)))
    params = Params(
        mass=nominal.mass * factors[0],
        inertia=nominal.inertia * factors[1],
        gravity=nominal.gravity,
        rotor_x=nominal.rotor_x,
        rotor_y=nominal.rotor_y,
        spin=nominal.spin,
        thrust_max=nominal.thrust_max * factors[2],
        thrust_shape=nominal.thrust_shape,
        torque_coefficient=nominal.torque_coefficient * factors[3],
        motor_tau=nominal.motor_tau * factors[4],
        motor_tau_down=nominal.motor_tau_down * factors[4],
        drag=nominal.drag * factors[5],
        motor_min=nominal.motor_min,
        dt=nominal.dt,
        force=force_std * jax.random.normal(k2, (3,)),
        torque=torque_std * jax.random.normal(k3, (3,)),
    )
    return params, factors


def hover_motor(params: Params) -> jax.Array:
    """Motor state at which the four rotors carry the weight."""
    return motor_for_fraction(params.mass * params.gravity / (4.0 * params.thrust_max),
                              params.thrust_shape[0], params.thrust_shape[1], xp=jnp)


def action_to_motor(action, params: Params):
    return params.motor_min + (jnp.clip(action, -1.0, 1.0) + 1.0) * 0.5 * (1.0 - params.motor_min)


def motor_to_action(motor, params: Params):
    return 2.0 * (motor - params.motor_min) / (1.0 - params.motor_min) - 1.0


def _deriv(x, u, p: Params):
    px, py, pz, qw, qx, qy, qz, vx, vy, vz, wx, wy, wz, m0, m1, m2, m3 = x
    del px, py, pz
    b0, b1 = p.thrust_shape[0], p.thrust_shape[1]
    b2 = 1.0 - b0 - b1
    t0, t1, t2, t3 = (p.thrust_max * (b0 + m * (b1 + m * b2)) for m in (m0, m1, m2, m3))
    thrust = t0 + t1 + t2 + t3
    # Body-to-world rotation; its third column is where the rotors push.
    r00 = 1.0 - 2.0 * (qy * qy + qz * qz)
    r01 = 2.0 * (qx * qy - qw * qz)
    r02 = 2.0 * (qx * qz + qw * qy)
    r10 = 2.0 * (qx * qy + qw * qz)
    r11 = 1.0 - 2.0 * (qx * qx + qz * qz)
    r12 = 2.0 * (qy * qz - qw * qx)
    r20 = 2.0 * (qx * qz - qw * qy)
    r21 = 2.0 * (qy * qz + qw * qx)
    r22 = 1.0 - 2.0 * (qx * qx + qy * qy)
    # Rotor drag: -drag * (body x, body y velocity), back in the world frame.
    dbx = -p.drag * (r00 * vx + r10 * vy + r20 * vz)
    dby = -p.drag * (r01 * vx + r11 * vy + r21 * vz)
    ax = (r02 * thrust + r00 * dbx + r01 * dby + p.force[0]) / p.mass
    ay = (r12 * thrust + r10 * dbx + r11 * dby + p.force[1]) / p.mass
    az = (r22 * thrust + r20 * dbx + r21 * dby + p.force[2]) / p.mass - p.gravity
    rx, ry, s = p.rotor_x, p.rotor_y, p.spin
    tx = ry[0] * t0 + ry[1] * t1 + ry[2] * t2 + ry[3] * t3 + p.torque[0]
    ty = -(rx[0] * t0 + rx[1] * t1 + rx[2] * t2 + rx[3] * t3) + p.torque[1]
    tz = p.torque_coefficient * (s[0] * t0 + s[1] * t1 + s[2] * t2 + s[3] * t3) + p.torque[2]
    ixx, iyy, izz = p.inertia[0], p.inertia[1], p.inertia[2]
    dwx = (tx - (izz - iyy) * wy * wz) / ixx
    dwy = (ty - (ixx - izz) * wz * wx) / iyy
    dwz = (tz - (iyy - ixx) * wx * wy) / izz
    dqw = 0.5 * (-qx * wx - qy * wy - qz * wz)
    dqx = 0.5 * (qw * wx + qy * wz - qz * wy)
    dqy = 0.5 * (qw * wy + qz * wx - qx * wz)
    dqz = 0.5 * (qw * wz + qx * wy - qy * wx)
    up, down = 1.0 / p.motor_tau, 1.0 / p.motor_tau_down
    lag = lambda c, m: (c - m) * jnp.where(c > m, up, down)  # noqa: E731
    return (vx, vy, vz, dqw, dqx, dqy, dqz, ax, ay, az, dwx, dwy, dwz,
            lag(u[0], m0), lag(u[1], m1), lag(u[2], m2), lag(u[3], m3))


def _unpack(s: State):
    return (*(s.pos[i] for i in range(3)), *(s.quat[i] for i in range(4)), *(s.vel[i] for i in range(3)),
            *(s.omega[i] for i in range(3)), *(s.motor[i] for i in range(4)))


def _pack(x) -> State:
    qn = jax.lax.rsqrt(x[3] * x[3] + x[4] * x[4] + x[5] * x[5] + x[6] * x[6])
    return State(pos=jnp.stack(x[0:3]), quat=jnp.stack(x[3:7]) * qn, vel=jnp.stack(x[7:10]),
                 omega=jnp.stack(x[10:13]), motor=jnp.stack(x[13:17]))


def dynamics_step(state: State, action, params: Params) -> State:
    """Advance one dt with RK4; `action` in [-1, 1], held constant over the step."""
    u = action_to_motor(action, params)
    u = (u[0], u[1], u[2], u[3])
    x = _unpack(state)
    h = params.dt
    k1 = _deriv(x, u, params)
    k2 = _deriv(tuple(a + 0.5 * h * b for a, b in zip(x, k1)), u, params)
    k3 = _deriv(tuple(a + 0.5 * h * b for a, b in zip(x, k2)), u, params)
    k4 = _deriv(tuple(a + h * b for a, b in zip(x, k3)), u, params)
    x = tuple(a + (h / 6.0) * (b1 + 2.0 * b2 + 2.0 * b3 + b4) for a, b1, b2, b3, b4 in zip(x, k1, k2, k3, k4))
    return _pack(x)


def rotation_matrix(quat) -> jax.Array:
    """Body-to-world rotation, row-major (9,), from a (w, x, y, z) unit quaternion."""
    w, x, y, z = quat[0], quat[1], quat[2], quat[3]
    return jnp.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ])


def random_quaternion_within(key, max_angle, exponent=1.0):
    """Uniform axis, angle = max_angle * u**exponent with u uniform in [0, 1]: exponent 1 is the
    RLtools-style tilt start; exponent < 1 draws large angles more often."""
    k1, k2 = jax.random.split(key)
    axis = jax.random.normal(k1, (3,))
    axis = axis / jnp.linalg.norm(axis)
    angle = max_angle * jax.random.uniform(k2, ()) ** exponent
    return jnp.concatenate([jnp.cos(angle / 2)[None], jnp.sin(angle / 2) * axis])
