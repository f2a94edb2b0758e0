"""The autopilot's rate loop in the JAX simulator: how a rate-level (ctbr) action reaches the rotors.

One control period of the policy is ``loop.substeps(sim_rate)`` rate-loop ticks (the Crazyflie's 500 Hz
loop: 5 ticks of 2 ms at the 100 Hz policy rate; PX4 and ArduPilot 400 Hz: 4). Each tick runs the firmware's
PID (edgectl.rate_control, the same code the host plant and the simulated MAVLink vehicle run) on the true
body rates, mixes, and steps the rigid body over the tick (train_fast/sims/quadrotor.py's derivative, motor lag as
for motor-level policies; explicit Euler per tick, see euler_step). A setpoint delayed by ``delay`` control periods (the link and the autopilot's
scheduling) reaches the loop round(delay * ticks) ticks into the period; until then the previous one flies.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from edgectl import rate_control as rc
from train_fast.sims import quadrotor as quad

# Per-episode extras kept beside the PID state: rate-gain factor, rate-limit factor.
EXTRA = 2
STATE_SIZE = rc.PID_STATE_SIZE + EXTRA


def init_state(loop: rc.RateLoop, omega, gain, limit):
    return jnp.concatenate([rc.pid_init(loop, omega, xp=jnp), jnp.stack([gain, limit])])


def hover_thrust(loop: rc.RateLoop, params: quad.Params):
    """Collective thrust setpoint in [0, 1] that hovers the vehicle ``params`` through this loop."""
    return rc.thrust_setpoint_for_motor(loop, quad.hover_motor(params), xp=jnp)


def euler_step(sim: quad.State, u, params: quad.Params) -> quad.State:
    """One explicit Euler step of params.dt (a rate-loop tick, 2-2.5 ms) with motor commands ``u`` held: the
    same derivative as quad.dynamics_step's RK4 stages, a quarter of their cost (the ticks dominate the ctbr
    simulator); at 2 ms the fastest modes (motor lag >= 27 ms, a rate loop of ~60 rad/s) are well resolved."""
    x = quad._unpack(sim)
    k = quad._deriv(x, (u[0], u[1], u[2], u[3]), params)
    return quad._pack(tuple(a + params.dt * b for a, b in zip(x, k)))


def step(sim: quad.State, rate_state, action, previous_action, delay, params: quad.Params, loop: rc.RateLoop, n: int):
    """One control period of ``n`` rate-loop ticks (static: loop.substeps of the nominal sim rate):
    (new sim state, new rate state)."""
    h = params.dt / n
    p_tick = dataclasses.replace(params, dt=h)
    pid, gain, limit = rate_state[:rc.PID_STATE_SIZE], rate_state[-2], rate_state[-1]
    t_new, w_new = rc.ctbr_setpoint(action, loop, limit, xp=jnp)
    t_old, w_old = rc.ctbr_setpoint(previous_action, loop, limit, xp=jnp)
    k_late = jnp.round(delay * n)

    def tick(i, carry):  # a loop, not unrolled: unrolling the 4-5 ticks made the first compile 5x longer
        sim, pid = carry
        late = i < k_late
        thrust = jnp.where(late, t_old, t_new)
        rates = jnp.where(late, w_old, w_new)
        out, pid = rc.pid_step(loop, pid, rates, sim.omega, h, gain, xp=jnp)
        return euler_step(sim, rc.mix(loop, thrust, out, xp=jnp), p_tick), pid

    sim, pid = jax.lax.fori_loop(0, n, tick, (sim, pid))
    return sim, jnp.concatenate([pid, jnp.stack([gain, limit])])
