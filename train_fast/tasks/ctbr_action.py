"""The ``ctbr`` action mapping of the quadrotor tasks: collective thrust and body rates, as an autopilot takes them.

action a in [-1, 1]^4:
- collective thrust setpoint T = (a0 + 1) / 2 in [0, 1]: the autopilot's normalized thrust (PX4
  SET_ATTITUDE_TARGET.thrust / vehicle_rates_setpoint.thrust_body; ArduPilot's with GUID_OPTIONS bit 3,
  "SetAttitudeTarget_ThrustAsThrust"; the Crazyflie's setpoint thrust / 65535);
- body rates (roll, pitch, yaw) = a1..a3 * rate_controller.max_rate, rad/s, body FLU (x forward, y left, z up);
  MAVLink's FRD rates are (p, -q, -r) of these (firmware_bridge/mavlink/frames.py).

The platform's [rate_controller] loop (edgectl/rate_control.py) flies them: train_fast/sims/rate_loop.py. Per
episode, with randomization on, the loop's P, I and D are scaled by a factor from randomization.rate_gain and
its clamp on commanded rates by one from randomization.rate_limit (both log-uniform); the actuation delay
(randomization.action_delay) delays the setpoint inside the rate loop, to the tick.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from edgectl import rate_control as rc
from edgectl.platforms import Platform
from train_fast.sims import quadrotor as quad
from train_fast.sims import rate_loop

NAMES = ["thrust", "roll_rate", "pitch_rate", "yaw_rate"]


def loop_for(platform: Platform) -> rc.RateLoop:
    return rc.from_platform(platform)


def env_fields(platform: Platform, randomize: bool) -> dict:
    loop = loop_for(platform)
    ranges = np.array([platform.get("randomization.rate_gain"), platform.get("randomization.rate_limit")], np.float32)
    return {"rate_loop": loop, "rate_steps": loop.substeps(platform.get("control.sim_rate")),
            "rate_ranges": ranges if randomize else np.ones_like(ranges)}


def hover_vector(loop: rc.RateLoop, params: quad.Params):
    """The ctbr action that hovers ``params``: thrust at hover, zero rates."""
    t = rate_loop.hover_thrust(loop, params)
    return jnp.stack([2.0 * t - 1.0, jnp.zeros_like(t), jnp.zeros_like(t), jnp.zeros_like(t)])


def hover_actions(platform: Platform) -> list[float]:
    v = hover_vector(loop_for(platform), quad.nominal_params(platform))
    return [float(x) for x in np.asarray(v)]


def reset_fields(key, env, params: quad.Params, omega):
    """(previous actions at hover, rate-loop state with this episode's gain and limit factors)."""
    lo, hi = jnp.log(jnp.asarray(env.rate_ranges)[:, 0]), jnp.log(jnp.asarray(env.rate_ranges)[:, 1])
    f = jnp.exp(lo + (hi - lo) * jax.random.uniform(key, (2,)))
    prev = jnp.tile(hover_vector(env.rate_loop, params), env.cfg.action_history)
    return prev, rate_loop.init_state(env.rate_loop, omega, f[0], f[1])


def action_contract(platform: Platform) -> dict:
    loop = loop_for(platform)
    hv = hover_actions(platform)
    mr = [float(v) for v in loop.max_rate]
    return {
        "size": 4,
        "names": list(NAMES),
        "low": -1.0,
        "high": 1.0,
        "hover_action": hv[0],
        "hover_actions": hv,
        "mapping": {
            "kind": "ctbr",
            "formula": "collective thrust T = (clip(a0, -1, 1) + 1) / 2 (the autopilot's normalized thrust setpoint); "
                       "body rates [rad/s, FLU] = clip(a1..a3, -1, 1) * max_rate",
            "max_rate": mr,
            "rate_frame": "body FLU (x forward, y left, z up), rad/s; MAVLink SET_ATTITUDE_TARGET takes FRD: (p, -q, -r)",
            "hover_thrust": 0.5 * (hv[0] + 1.0),
            "thrust_setpoint": "PX4: SET_ATTITUDE_TARGET.thrust in offboard; ArduPilot: the same in GUIDED_NOGPS with "
                               "GUID_OPTIONS bit 3 (SetAttitudeTarget_ThrustAsThrust), else it is read as a climb rate",
            "rate_loop": loop.describe(),
            "motor_order": "the autopilot mixes; rotor geometry below is what the rate loop was simulated with",
            "rotor_positions": [[float(v) for v in r] for r in platform.get("rotors.positions")],
            "spin": [int(v) for v in platform.get("rotors.spin")],
        },
    }
