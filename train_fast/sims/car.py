"""RC-car dynamics in JAX, gymnax style: pure functions over State and Params.

Model (one 50 Hz control period):
1. actuators, exactly discretized and then held over the period: the steering servo is a
   first-order lag (steer_tau) with a rate limit, the speed controller a first-order lag on the
   normalized drive command (throttle_tau);
2. the body, a dynamic single-track (bicycle) model with tire slip, integrated with SUBSTEPS RK4
   substeps. Lateral tire force per axle: friction * Fz * tanh(cornering * slip_angle): linear
   (f1tenth_gym's model) at small slip, saturating at the friction limit when the demand is high.
   Drive force (Liniger et al. 2015, RC cars): throttle * max_force * (1 - vx / max_speed) for
   throttle > 0, capped by traction; throttle < 0 brakes with |throttle| * max_brake_force. Below
   walking speed (KIN_SPEED_LO..HI) the model blends into kinematic rolling, because slip angles
   are undefined at standstill (the blend of Kabzan et al., "AMZ Driverless", 2019, with the
   kinematic side slip and yaw rate reached by relaxation, see the Numba twin).

Conventions: world frame z up; body x forward, y left; yaw counter-clockwise from world x, not
wrapped; vx, vy in the body frame; steer + = left. `edgectl/plant/car.py` is the same math
(and owns the constants), for the host side; tests/test_car.py checks the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import jax
import jax.numpy as jnp
import numpy as np

from edgectl.platforms import Platform
from edgectl.plant.car import (BRAKE_SPEED, KIN_SPEED_HI, KIN_SPEED_LO, KIN_TAU, PARAM_NAMES,
                                       STATE_NAMES, SUBSTEPS)
from train_fast.pytree import pytree


@pytree
@dataclass(frozen=True)
class State:
    x: jax.Array  # m, world
    y: jax.Array  # m, world
    yaw: jax.Array  # rad
    vx: jax.Array  # m/s, body forward
    vy: jax.Array  # m/s, body left
    yaw_rate: jax.Array  # rad/s
    steer: jax.Array  # rad, actual front-wheel angle
    throttle: jax.Array  # 1, actual drive command


@pytree
@dataclass(frozen=True)
class Params:
    mass: jax.Array  # kg
    yaw_inertia: jax.Array  # kg m^2
    lf: jax.Array  # m, centre of gravity to front axle
    lr: jax.Array  # m, centre of gravity to rear axle
    gravity: jax.Array  # m/s^2
    friction: jax.Array  # 1
    cornering_front: jax.Array  # 1/rad, per unit of axle load
    cornering_rear: jax.Array  # 1/rad
    max_steer: jax.Array  # rad
    max_steer_rate: jax.Array  # rad/s
    steer_tau: jax.Array  # s
    max_force: jax.Array  # N
    max_speed: jax.Array  # m/s
    max_brake_force: jax.Array  # N
    rolling_resistance: jax.Array  # N
    throttle_tau: jax.Array  # s
    dt: jax.Array  # s


assert tuple(f.name for f in fields(State)) == STATE_NAMES
assert tuple(f.name for f in fields(Params)) == PARAM_NAMES

# Per-episode randomized factors, in the order the critic sees them (platform [randomization]).
RANDOMIZED = ("mass", "friction", "cornering_stiffness", "max_force", "steering_time_constant")


def nominal_params(platform: Platform, dtype=jnp.float32) -> Params:
    from edgectl.plant.car import params_from_platform

    arr = params_from_platform(platform)
    return Params(**{n: jnp.asarray(v, dtype) for n, v in zip(PARAM_NAMES, arr)})


def params_from_array(arr, dtype=jnp.float32) -> Params:
    arr = np.asarray(arr)
    return Params(**{n: jnp.asarray(arr[..., i], dtype) for i, n in enumerate(PARAM_NAMES)})


def randomization_ranges(platform: Platform) -> np.ndarray:
    return np.array([platform.get(f"randomization.{k}") for k in RANDOMIZED], dtype=np.float32)


def sample_params(key, nominal: Params, ranges):
    """Domain randomization: each factor of RANDOMIZED drawn from U[1 - r, 1 + r]."""
    ranges = jnp.asarray(ranges)
    f = 1.0 + ranges * jax.random.uniform(key, (len(RANDOMIZED),), minval=-1.0, maxval=1.0)
    p = nominal
    params = Params(
        mass=p.mass * f[0], yaw_inertia=p.yaw_inertia * f[0], lf=p.lf, lr=p.lr, gravity=p.gravity,
        friction=p.friction * f[1], cornering_front=p.cornering_front * f[2],
        cornering_rear=p.cornering_rear * f[2], max_steer=p.max_steer, max_steer_rate=p.max_steer_rate,
        steer_tau=p.steer_tau * f[4], max_force=p.max_force * f[3], max_speed=p.max_speed,
        max_brake_force=p.max_brake_force, rolling_resistance=p.rolling_resistance,
        throttle_tau=p.throttle_tau, dt=p.dt)
    return params, f


def initial_state(x, y, yaw, speed=0.0) -> State:
    z = jnp.zeros_like(jnp.asarray(x))
    return State(x=jnp.asarray(x) + z, y=jnp.asarray(y) + z, yaw=jnp.asarray(yaw) + z, vx=jnp.asarray(speed) + z,
                 vy=z, yaw_rate=z, steer=z, throttle=z)


def _deriv(x, c):
    (m, iz, lf, lr, wb, mu_fzf, mu_fzr, traction, cf, cr, delta, cos_d, sin_d, tan_d,
     drive, vmax, fbrake, froll, lo, span, inv_tau, vbrk) = c
    yaw, vx, vy, r = x[2], x[3], x[4], x[5]
    fade = jnp.clip(vx / vbrk, 0.0, 1.0)
    fx = jnp.clip(drive * (1.0 - vx / vmax), -traction, traction) - (fbrake + froll) * fade
    vxe = jnp.maximum(vx, lo)
    fyf = mu_fzf * jnp.tanh(cf * (delta - jnp.arctan2(vy + lf * r, vxe)))
    fyr = mu_fzr * jnp.tanh(cr * -jnp.arctan2(vy - lr * r, vxe))
    dvx_d = (fx - fyf * sin_d) / m + vy * r
    dvy_d = (fyr + fyf * cos_d) / m - vx * r
    dr_d = (lf * fyf * cos_d - lr * fyr) / iz
    r_k = vx * tan_d / wb
    w = jnp.clip((vx - lo) / span, 0.0, 1.0)
    dvx = w * dvx_d + (1.0 - w) * (fx / m)
    dvy = w * dvy_d + (1.0 - w) * ((lr * r_k - vy) * inv_tau)
    dr = w * dr_d + (1.0 - w) * ((r_k - r) * inv_tau)
    cy, sy = jnp.cos(yaw), jnp.sin(yaw)
    return (vx * cy - vy * sy, vx * sy + vy * cy, r, dvx, dvy, dr)


def dynamics_step(s: State, action, p: Params, substeps: int = SUBSTEPS) -> State:
    """Advance one control period; action = [steer, throttle] in [-1, 1] (clipped)."""
    dt = p.dt
    dtype = jnp.result_type(s.x)
    steer_cmd = jnp.clip(action[0], -1.0, 1.0).astype(dtype) * p.max_steer
    thr_cmd = jnp.clip(action[1], -1.0, 1.0).astype(dtype)
    max_ds = p.max_steer_rate * dt
    ds = (steer_cmd - s.steer) * (1.0 - jnp.exp(-dt / p.steer_tau))
    delta = s.steer + jnp.clip(ds, -max_ds, max_ds)
    thr = s.throttle + (thr_cmd - s.throttle) * (1.0 - jnp.exp(-dt / p.throttle_tau))
    m, g, mu, lf, lr = p.mass, p.gravity, p.friction, p.lf, p.lr
    wb = lf + lr
    c = (m, p.yaw_inertia, lf, lr, wb, mu * m * g * lr / wb, mu * m * g * lf / wb, mu * m * g,
         p.cornering_front, p.cornering_rear, delta, jnp.cos(delta), jnp.sin(delta), jnp.tan(delta),
         jnp.maximum(thr, 0.0) * p.max_force, p.max_speed, jnp.maximum(-thr, 0.0) * p.max_brake_force,
         p.rolling_resistance, KIN_SPEED_LO, KIN_SPEED_HI - KIN_SPEED_LO, 1.0 / KIN_TAU, BRAKE_SPEED)
    x = (s.x, s.y, s.yaw, s.vx, s.vy, s.yaw_rate)
    h = dt / substeps
    h6 = h / 6.0
    axpy = lambda x, a, k: tuple(xi + a * ki for xi, ki in zip(x, k))  # noqa: E731

    def rk4(_, x):
        k1 = _deriv(x, c)
        k2 = _deriv(axpy(x, 0.5 * h, k1), c)
        k3 = _deriv(axpy(x, 0.5 * h, k2), c)
        k4 = _deriv(axpy(x, h, k3), c)
        return tuple(xi + h6 * (a + 2.0 * b + 2.0 * cc + d) for xi, a, b, cc, d in zip(x, k1, k2, k3, k4))

    # A rolled loop: unrolling the substeps doubled the training step's compile time for no speed.
    x = jax.lax.fori_loop(0, substeps, rk4, x)
    return State(x=x[0], y=x[1], yaw=x[2], vx=x[3], vy=x[4], yaw_rate=x[5], steer=delta, throttle=thr)


def state_to_array(s: State) -> jax.Array:
    return jnp.stack([getattr(s, n) for n in STATE_NAMES], axis=-1)


def state_from_array(a) -> State:
    return State(**{n: a[..., i] for i, n in enumerate(STATE_NAMES)})
