"""Quadrotor dynamics in Numba: the same math as ``train_fast/sims/quadrotor.py``, for the host side.

The simulated vehicles (firmware bridge, hardware-in-the-loop stand-ins) step one vehicle at a
time at 100 Hz-1 kHz and must not need JAX, so this module imports only numpy and numba.

Layout
- state: flat array of ``STATE_SIZE`` = 17 values, ``STATE_NAMES`` order: pos (3, world, m),
  quat (4, w x y z, body to world), vel (3, world, m/s), omega (3, body, rad/s),
  motor (4, normalized motor command after the lag, thrust from the platform's thrust curve).
- action: 4 values in [-1, 1], firmware order M1..M4 (clipped, as in JAX).
- params: flat array of ``PARAM_SIZE`` values in ``PARAM_NAMES`` order (``PARAM_FIELDS`` gives
  the Params field and width of each block); ``params_to_array`` builds it from a JAX ``Params``
  (single or batched) or a dict, ``params_from_platform`` from a platform file without JAX.

API (all njit, ``cache=True``)
- ``step(state, action, params) -> new_state``: one vehicle, one RK4 step of ``params``' dt.
- ``step_into(state, action, params, out)``: the same without allocating (``out`` may be ``state``).
- ``step_batch(states, actions, params, out)``: N vehicles, ``prange``; params (P,) or (N, P).
- ``rollout_batch(states, n_steps, params, seed, fastmath=False, order="step")``: benchmark
  rollout with actions computed in the loop, vectorized struct-of-arrays kernel.

Numerics
- ``step`` / ``step_into`` / ``step_batch`` / ``rollout_batch`` are exact IEEE (no fastmath) and
  follow the JAX code operation by operation, so float64 results agree with JAX float64 to
  rounding (~1e-11 over 1,000 random-action steps), and all four agree with each other bit for bit.
- The computation runs in the dtype of the *state* array (float32 or float64); params and actions
  are cast to it, literal constants are typed to it (no silent float64 promotion of float32 runs).
- ``rollout_batch(..., fastmath=True)`` uses a separately compiled fastmath kernel. It is for the
  throughput benchmark only.
"""
from __future__ import annotations

import math
import types
from typing import Any, Mapping

import numba as nb
import numpy as np

STATE_NAMES = (
    "px", "py", "pz",
    "qw", "qx", "qy", "qz",
    "vx", "vy", "vz",
    "wx", "wy", "wz",
    "m0", "m1", "m2", "m3",
)
STATE_SIZE = len(STATE_NAMES)
POS, QUAT, VEL, OMEGA, MOTOR = slice(0, 3), slice(3, 7), slice(7, 10), slice(10, 13), slice(13, 17)

# (Params field, number of values), in array order.
PARAM_FIELDS = (
    ("mass", 1),
    ("inertia", 3),
    ("gravity", 1),
    ("rotor_x", 4),
    ("rotor_y", 4),
    ("spin", 4),
    ("thrust_max", 1),
    ("thrust_shape", 2),
    ("torque_coefficient", 1),
    ("motor_tau", 1),
    ("motor_tau_down", 1),
    ("drag", 1),
    ("motor_min", 1),
    ("dt", 1),
    ("force", 3),
    ("torque", 3),
)
PARAM_NAMES = tuple(
    name if width == 1 else f"{name}_{'xyz'[i] if width == 3 else i}"
    for name, width in PARAM_FIELDS
    for i in range(width)
)
PARAM_SIZE = len(PARAM_NAMES)
PARAM_INDEX = {name: i for i, name in enumerate(PARAM_NAMES)}

# Index constants (module globals are compile-time constants for numba).
_MASS = PARAM_INDEX["mass"]
_IXX, _IYY, _IZZ = PARAM_INDEX["inertia_x"], PARAM_INDEX["inertia_y"], PARAM_INDEX["inertia_z"]
_GRAV = PARAM_INDEX["gravity"]
_RX = PARAM_INDEX["rotor_x_0"]
_RY = PARAM_INDEX["rotor_y_0"]
_SPIN = PARAM_INDEX["spin_0"]
_TMAX = PARAM_INDEX["thrust_max"]
_TB0 = PARAM_INDEX["thrust_shape_0"]
_CTAU = PARAM_INDEX["torque_coefficient"]
_MTAU = PARAM_INDEX["motor_tau"]
_MTAUD = PARAM_INDEX["motor_tau_down"]
_DRAG = PARAM_INDEX["drag"]
_MMIN = PARAM_INDEX["motor_min"]
_DT = PARAM_INDEX["dt"]
_FX = PARAM_INDEX["force_x"]
_TX = PARAM_INDEX["torque_x"]


# --------------------------------------------------------------------------------------------
# Conversions (plain numpy, no JAX import)
# --------------------------------------------------------------------------------------------

def params_to_array(params: Any, dtype=np.float64) -> np.ndarray:
    """Flatten a ``train_fast.sims.quadrotor.Params`` (or a dict with the same keys) to an array.

    Leaves may be Python numbers, numpy or JAX arrays. A single Params gives shape
    ``(PARAM_SIZE,)``; a batched one (leading axis N on any leaf, e.g. from ``jax.vmap`` of
    ``sample_params``) gives ``(N, PARAM_SIZE)``, unbatched leaves broadcast over N.
    """
    get = params.__getitem__ if isinstance(params, Mapping) else lambda k: getattr(params, k)
    blocks, batch = [], None
    for name, width in PARAM_FIELDS:
        try:
            leaf = np.asarray(get(name), dtype=np.float64)
        except (KeyError, AttributeError):
            raise KeyError(f"params_to_array: missing field {name!r}") from None
        base_ndim = 0 if width == 1 else 1
        if leaf.ndim == base_ndim:
            blocks.append((leaf.reshape(1, width), False))
        elif leaf.ndim == base_ndim + 1:
            n = leaf.shape[0]
            if batch is not None and n != batch:
                raise ValueError(f"params_to_array: field {name!r} has batch size {n}, others {batch}")
            batch = n
            blocks.append((leaf.reshape(n, width), True))
        else:
            raise ValueError(f"params_to_array: field {name!r} has shape {leaf.shape}, expected "
                             f"{() if width == 1 else (width,)} or a batch of those")
        if blocks[-1][0].shape[1] != width:
            raise ValueError(f"params_to_array: field {name!r} has shape {leaf.shape}, expected width {width}")
    n = 1 if batch is None else batch
    out = np.concatenate([np.broadcast_to(b, (n, b.shape[1])) for b, _ in blocks], axis=1)
    out = np.ascontiguousarray(out, dtype=dtype)
    return out[0] if batch is None else out


def params_from_platform(platform, dtype=np.float64) -> np.ndarray:
    """The nominal params array of a quadrotor platform, same formulas as ``nominal_params``."""
    from edgectl.platforms import rotor_model

    g = platform.get
    pos = np.asarray(g("rotors.positions"), dtype=np.float64)
    rm = rotor_model(platform)
    return params_to_array({
        "mass": g("body.mass"),
        "inertia": g("body.inertia"),
        "gravity": g("body.gravity"),
        "rotor_x": pos[:, 0],
        "rotor_y": pos[:, 1],
        "spin": g("rotors.spin"),
        "thrust_max": rm["thrust_max"],
        "thrust_shape": rm["thrust_shape"],
        "torque_coefficient": g("rotors.torque_coefficient"),
        "motor_tau": rm["motor_tau"],
        "motor_tau_down": rm["motor_tau_down"],
        "drag": rm["drag"],
        "motor_min": rm["motor_min"],
        "dt": 1.0 / g("control.sim_rate"),
        "force": np.zeros(3),
        "torque": np.zeros(3),
    }, dtype=dtype)


def params_as_dict(params_array: np.ndarray) -> dict[str, np.ndarray]:
    """Inverse of ``params_to_array`` for one vehicle: field name -> numpy value."""
    p = np.asarray(params_array)
    out, i = {}, 0
    for name, width in PARAM_FIELDS:
        out[name] = p[..., i] if width == 1 else p[..., i:i + width]
        i += width
    return out


def state_to_array(state: Any, dtype=np.float64) -> np.ndarray:
    """Flatten a JAX ``State`` (or a dict with pos/quat/vel/omega/motor) to ``(..., 17)``."""
    get = state.__getitem__ if isinstance(state, Mapping) else lambda k: getattr(state, k)
    parts = [np.asarray(get(k), dtype=np.float64) for k in ("pos", "quat", "vel", "omega", "motor")]
    return np.ascontiguousarray(np.concatenate(parts, axis=-1), dtype=dtype)


def array_to_state_dict(x: np.ndarray) -> dict[str, np.ndarray]:
    """Split a ``(..., 17)`` state array into pos/quat/vel/omega/motor (views)."""
    x = np.asarray(x)
    return {"pos": x[..., POS], "quat": x[..., QUAT], "vel": x[..., VEL], "omega": x[..., OMEGA],
            "motor": x[..., MOTOR]}


def hover_motor(params_array: np.ndarray) -> np.ndarray:
    """Motor state that carries the weight, as in the JAX module."""
    from edgectl.platforms import motor_for_fraction

    p = np.asarray(params_array)
    return motor_for_fraction(p[..., _MASS] * p[..., _GRAV] / (4.0 * p[..., _TMAX]), p[..., _TB0], p[..., _TB0 + 1])


def motor_to_action(motor, params_array: np.ndarray):
    p = np.asarray(params_array)
    mmin = p[..., _MMIN]
    return 2.0 * (np.asarray(motor) - mmin) / (1.0 - mmin) - 1.0


def hover_action(params_array: np.ndarray) -> np.ndarray:
    return motor_to_action(hover_motor(params_array), params_array)


def hover_state(params_array: np.ndarray, dtype=np.float64) -> np.ndarray:
    """At rest at the origin, level, motors at hover speed."""
    x = np.zeros(STATE_SIZE, dtype=dtype)
    x[3] = 1.0
    x[MOTOR] = hover_motor(params_array)
    return x


# --------------------------------------------------------------------------------------------
# Kernels. `_deriv`, `_axpy` and `_step_row` are inlined at the Numba IR level into each public
# kernel, which therefore carries its own copy compiled with its own flags. error_model="numpy":
# a division by zero gives inf/nan as in JAX instead of raising.
# --------------------------------------------------------------------------------------------

@nb.njit(inline="always", cache=True)
def _deriv(x, u, c):
    """State derivative; x: 17-tuple, u: 4 motor commands, c: the constants tuple of _step_row."""
    qw, qx, qy, qz = x[3], x[4], x[5], x[6]
    wx, wy, wz = x[10], x[11], x[12]
    m0, m1, m2, m3 = x[13], x[14], x[15], x[16]
    (mass, ixx, iyy, izz, grav, rx0, rx1, rx2, rx3, ry0, ry1, ry2, ry3, s0, s1, s2, s3,
     tmax, b0, b1, ctau, inv_up, inv_down, drag, fx, fy, fz, tqx, tqy, tqz, one, two, half) = c
    b2 = one - b0 - b1
    t0 = tmax * (b0 + m0 * (b1 + m0 * b2))
    t1 = tmax * (b0 + m1 * (b1 + m1 * b2))
    t2 = tmax * (b0 + m2 * (b1 + m2 * b2))
    t3 = tmax * (b0 + m3 * (b1 + m3 * b2))
    thrust = t0 + t1 + t2 + t3
    # Body-to-world rotation; its third column is where the rotors push.
    r00 = one - two * (qy * qy + qz * qz)
    r01 = two * (qx * qy - qw * qz)
    r02 = two * (qx * qz + qw * qy)
    r10 = two * (qx * qy + qw * qz)
    r11 = one - two * (qx * qx + qz * qz)
    r12 = two * (qy * qz - qw * qx)
    r20 = two * (qx * qz - qw * qy)
    r21 = two * (qy * qz + qw * qx)
    r22 = one - two * (qx * qx + qy * qy)
    vx, vy, vz = x[7], x[8], x[9]
    dbx = -drag * (r00 * vx + r10 * vy + r20 * vz)
    dby = -drag * (r01 * vx + r11 * vy + r21 * vz)
    ax = (r02 * thrust + r00 * dbx + r01 * dby + fx) / mass
    ay = (r12 * thrust + r10 * dbx + r11 * dby + fy) / mass
    az = (r22 * thrust + r20 * dbx + r21 * dby + fz) / mass - grav
    tx = ry0 * t0 + ry1 * t1 + ry2 * t2 + ry3 * t3 + tqx
    ty = -(rx0 * t0 + rx1 * t1 + rx2 * t2 + rx3 * t3) + tqy
    tz = ctau * (s0 * t0 + s1 * t1 + s2 * t2 + s3 * t3) + tqz
    dwx = (tx - (izz - iyy) * wy * wz) / ixx
    dwy = (ty - (ixx - izz) * wz * wx) / iyy
    dwz = (tz - (iyy - ixx) * wx * wy) / izz
    dqw = half * (-qx * wx - qy * wy - qz * wz)
    dqx = half * (qw * wx + qy * wz - qz * wy)
    dqy = half * (qw * wy + qz * wx - qx * wz)
    dqz = half * (qw * wz + qx * wy - qy * wx)
    return (x[7], x[8], x[9], dqw, dqx, dqy, dqz, ax, ay, az, dwx, dwy, dwz,
            (u[0] - m0) * (inv_up if u[0] > m0 else inv_down), (u[1] - m1) * (inv_up if u[1] > m1 else inv_down),
            (u[2] - m2) * (inv_up if u[2] > m2 else inv_down), (u[3] - m3) * (inv_up if u[3] > m3 else inv_down))


@nb.njit(inline="always", cache=True)
def _axpy(x, h, k):
    """x + h * k, elementwise over 17-tuples."""
    return (x[0] + h * k[0], x[1] + h * k[1], x[2] + h * k[2], x[3] + h * k[3], x[4] + h * k[4],
            x[5] + h * k[5], x[6] + h * k[6], x[7] + h * k[7], x[8] + h * k[8], x[9] + h * k[9],
            x[10] + h * k[10], x[11] + h * k[11], x[12] + h * k[12], x[13] + h * k[13],
            x[14] + h * k[14], x[15] + h * k[15], x[16] + h * k[16])


@nb.njit(inline="always", cache=True)
def _step_row(s, a, p, out):
    """One RK4 step of one vehicle: s (17,), a (4,), p (PARAM_SIZE,) -> out (17,); out may be s."""
    T = s.dtype.type
    one, two, half, six = T(1.0), T(2.0), T(0.5), T(6.0)
    mmin, h = T(p[_MMIN]), T(p[_DT])
    c = (T(p[_MASS]), T(p[_IXX]), T(p[_IYY]), T(p[_IZZ]), T(p[_GRAV]),
         T(p[_RX]), T(p[_RX + 1]), T(p[_RX + 2]), T(p[_RX + 3]),
         T(p[_RY]), T(p[_RY + 1]), T(p[_RY + 2]), T(p[_RY + 3]),
         T(p[_SPIN]), T(p[_SPIN + 1]), T(p[_SPIN + 2]), T(p[_SPIN + 3]),
         T(p[_TMAX]), T(p[_TB0]), T(p[_TB0 + 1]), T(p[_CTAU]), one / T(p[_MTAU]), one / T(p[_MTAUD]), T(p[_DRAG]),
         T(p[_FX]), T(p[_FX + 1]), T(p[_FX + 2]), T(p[_TX]), T(p[_TX + 1]), T(p[_TX + 2]),
         one, two, half)
    # action_to_motor: motor_min + (clip(a, -1, 1) + 1) * 0.5 * (1 - motor_min)
    span = one - mmin
    u = (mmin + (min(max(T(a[0]), -one), one) + one) * half * span,
         mmin + (min(max(T(a[1]), -one), one) + one) * half * span,
         mmin + (min(max(T(a[2]), -one), one) + one) * half * span,
         mmin + (min(max(T(a[3]), -one), one) + one) * half * span)
    x = (s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], s[11], s[12],
         s[13], s[14], s[15], s[16])
    hh = half * h
    k1 = _deriv(x, u, c)
    k2 = _deriv(_axpy(x, hh, k1), u, c)
    k3 = _deriv(_axpy(x, hh, k2), u, c)
    k4 = _deriv(_axpy(x, h, k3), u, c)
    h6 = h / six
    y = (x[0] + h6 * (k1[0] + two * k2[0] + two * k3[0] + k4[0]),
         x[1] + h6 * (k1[1] + two * k2[1] + two * k3[1] + k4[1]),
         x[2] + h6 * (k1[2] + two * k2[2] + two * k3[2] + k4[2]),
         x[3] + h6 * (k1[3] + two * k2[3] + two * k3[3] + k4[3]),
         x[4] + h6 * (k1[4] + two * k2[4] + two * k3[4] + k4[4]),
         x[5] + h6 * (k1[5] + two * k2[5] + two * k3[5] + k4[5]),
         x[6] + h6 * (k1[6] + two * k2[6] + two * k3[6] + k4[6]),
         x[7] + h6 * (k1[7] + two * k2[7] + two * k3[7] + k4[7]),
         x[8] + h6 * (k1[8] + two * k2[8] + two * k3[8] + k4[8]),
         x[9] + h6 * (k1[9] + two * k2[9] + two * k3[9] + k4[9]),
         x[10] + h6 * (k1[10] + two * k2[10] + two * k3[10] + k4[10]),
         x[11] + h6 * (k1[11] + two * k2[11] + two * k3[11] + k4[11]),
         x[12] + h6 * (k1[12] + two * k2[12] + two * k3[12] + k4[12]),
         x[13] + h6 * (k1[13] + two * k2[13] + two * k3[13] + k4[13]),
         x[14] + h6 * (k1[14] + two * k2[14] + two * k3[14] + k4[14]),
         x[15] + h6 * (k1[15] + two * k2[15] + two * k3[15] + k4[15]),
         x[16] + h6 * (k1[16] + two * k2[16] + two * k3[16] + k4[16]))
    # Renormalize the quaternion (JAX: rsqrt of the squared norm, then multiply).
    qn = one / math.sqrt(y[3] * y[3] + y[4] * y[4] + y[5] * y[5] + y[6] * y[6])
    for k in range(3):
        out[k] = y[k]
    out[3] = y[3] * qn
    out[4] = y[4] * qn
    out[5] = y[5] * qn
    out[6] = y[6] * qn
    for k in range(7, 17):
        out[k] = y[k]


@nb.njit(cache=True, error_model="numpy")
def step_into(state, action, params, out):
    """One vehicle, no allocation: writes the next state into ``out`` (may be ``state``)."""
    _step_row(state, action, params, out)
    return out


@nb.njit(cache=True, error_model="numpy")
def step(state, action, params):
    """One vehicle, one RK4 step of params' dt: state (17,), action (4,) in [-1, 1], params (P,).

    Returns a new array of the state's dtype. Exact IEEE arithmetic, same operations as JAX.
    """
    out = np.empty(STATE_SIZE, dtype=state.dtype)
    _step_row(state, action, params, out)
    return out


@nb.njit(cache=True, parallel=True, error_model="numpy")
def step_batch(states, actions, params, out):
    """N vehicles in parallel: states (N, 17), actions (N, 4), params (P,) shared or (N, P).

    Writes into ``out`` (N, 17), which may be ``states`` itself, and returns it.
    """
    n = states.shape[0]
    p2 = np.atleast_2d(params)
    pstride = 1 if p2.shape[0] > 1 else 0
    if pstride == 1 and p2.shape[0] != n:
        raise ValueError("step_batch: params must be (P,) or (N, P) with N = number of states")
    if actions.shape[0] != n or out.shape[0] != n:
        raise ValueError("step_batch: states, actions and out must have the same number of rows")
    for i in nb.prange(n):
        _step_row(states[i], actions[i], p2[i * pstride], out[i])
    return out


# --------------------------------------------------------------------------------------------
# Benchmark rollout: actions come from a cheap law computed inside the loop (hover thrust +
# a PD attitude/altitude feedback on the vehicle's own state + a per-step sine dither), so no
# big action array is read and the vehicles stay in a bounded, flight-like regime.
# `bench/sim_throughput.py` implements the same law in JAX.
#
# Layout: struct of arrays. The batch is held as 17 separate 1-D arrays (one per state
# component, allocated inside the kernel) and params as a (PARAM_SIZE, N) array, and the
# per-vehicle work is a plain (non-inlined) call, so that the parfor body has no aliasing
# variables: Numba then marks the gufunc's arrays noalias and LLVM vectorizes the vehicle loop
# (AVX2/AVX-512), about 10x the scalar per-vehicle code. Elementwise SIMD arithmetic is still
# exact IEEE: the exact build gives the same numbers as `step_batch`, bit for bit.
# --------------------------------------------------------------------------------------------

_G_Z, _G_VZ, _G_ATT_P, _G_ATT_D, _G_YAW_P, _G_YAW_D = 0.2, 0.2, 0.02, 0.005, 0.1, 0.02
_DITHER, _DITHER_RATE, _SEED_PHASE = 0.05, 0.37, 0.7
_DITHER_OFFSETS = (0.0, 1.57, 3.14, 4.71)  # per motor, rad
BENCH_GAINS = {"z": _G_Z, "vz": _G_VZ, "att_p": _G_ATT_P, "att_d": _G_ATT_D, "yaw_p": _G_YAW_P,
               "yaw_d": _G_YAW_D, "dither": _DITHER, "dither_rate": _DITHER_RATE,
               "seed_phase": _SEED_PHASE, "dither_offsets": _DITHER_OFFSETS}
"""The benchmark action law, per vehicle, for motors M1..M4 (front-right, back-right, back-left,
front-left; M1 and M3 counter-clockwise, the firmware's mixer signs), then clipped to [-1, 1]:
    thr = hover_action - z * pz - vz * vz_world;  roll = -(att_p * qx + att_d * wx)
    pitch = -(att_p * qy + att_d * wy);  yaw = -(yaw_p * qz + yaw_d * wz)
    d_m = dither * sin(dither_rate * t + seed_phase * seed + dither_offsets[m])
    a = (thr - roll - pitch - yaw, thr - roll + pitch + yaw, thr + roll + pitch - yaw,
         thr + roll - pitch + yaw) + d
"""
ROLLOUT_CHUNK = 256  # vehicles per work item in vehicle-major order


@nb.njit(cache=True)
def _dither_table(n_steps, seed, like):
    T = like.dtype.type
    dither = np.empty((n_steps, 4), dtype=like.dtype)
    phase = _SEED_PHASE * seed
    for t in range(n_steps):
        for m in range(4):
            dither[t, m] = T(_DITHER * math.sin(_DITHER_RATE * t + phase + _DITHER_OFFSETS[m]))
    return dither


def _soa_vehicle(x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15, x16,
                 P, H, d0, d1, d2, d3, i):
    """Action law + one RK4 step for vehicle i, in place. `_DERIV` / `_AXPY` are bound per build."""
    T = x0.dtype.type
    one, two, half, six = T(1.0), T(2.0), T(0.5), T(6.0)
    x = (x0[i], x1[i], x2[i], x3[i], x4[i], x5[i], x6[i], x7[i], x8[i], x9[i], x10[i], x11[i], x12[i],
         x13[i], x14[i], x15[i], x16[i])
    thr = H[i] - T(_G_Z) * x[2] - T(_G_VZ) * x[9]
    roll = -(T(_G_ATT_P) * x[4] + T(_G_ATT_D) * x[10])
    pitch = -(T(_G_ATT_P) * x[5] + T(_G_ATT_D) * x[11])
    yaw = -(T(_G_YAW_P) * x[6] + T(_G_YAW_D) * x[12])
    a0 = min(max(thr - roll - pitch - yaw + d0, -one), one)
    a1 = min(max(thr - roll + pitch + yaw + d1, -one), one)
    a2 = min(max(thr + roll + pitch - yaw + d2, -one), one)
    a3 = min(max(thr + roll - pitch + yaw + d3, -one), one)
    mmin, h = P[_MMIN, i], P[_DT, i]
    span = one - mmin
    u = (mmin + (a0 + one) * half * span, mmin + (a1 + one) * half * span,
         mmin + (a2 + one) * half * span, mmin + (a3 + one) * half * span)
    c = (P[_MASS, i], P[_IXX, i], P[_IYY, i], P[_IZZ, i], P[_GRAV, i],
         P[_RX, i], P[_RX + 1, i], P[_RX + 2, i], P[_RX + 3, i],
         P[_RY, i], P[_RY + 1, i], P[_RY + 2, i], P[_RY + 3, i],
         P[_SPIN, i], P[_SPIN + 1, i], P[_SPIN + 2, i], P[_SPIN + 3, i],
         P[_TMAX, i], P[_TB0, i], P[_TB0 + 1, i], P[_CTAU, i], one / P[_MTAU, i], one / P[_MTAUD, i], P[_DRAG, i],
         P[_FX, i], P[_FX + 1, i], P[_FX + 2, i], P[_TX, i], P[_TX + 1, i], P[_TX + 2, i],
         one, two, half)
    hh = half * h
    k1 = _DERIV(x, u, c)  # noqa: F821  bound per build (_rebind)
    k2 = _DERIV(_AXPY(x, hh, k1), u, c)  # noqa: F821  bound per build (_rebind)
    k3 = _DERIV(_AXPY(x, hh, k2), u, c)  # noqa: F821  bound per build (_rebind)
    k4 = _DERIV(_AXPY(x, h, k3), u, c)  # noqa: F821  bound per build (_rebind)
    h6 = h / six
    y3 = x[3] + h6 * (k1[3] + two * k2[3] + two * k3[3] + k4[3])
    y4 = x[4] + h6 * (k1[4] + two * k2[4] + two * k3[4] + k4[4])
    y5 = x[5] + h6 * (k1[5] + two * k2[5] + two * k3[5] + k4[5])
    y6 = x[6] + h6 * (k1[6] + two * k2[6] + two * k3[6] + k4[6])
    qn = one / math.sqrt(y3 * y3 + y4 * y4 + y5 * y5 + y6 * y6)
    x0[i] = x[0] + h6 * (k1[0] + two * k2[0] + two * k3[0] + k4[0])
    x1[i] = x[1] + h6 * (k1[1] + two * k2[1] + two * k3[1] + k4[1])
    x2[i] = x[2] + h6 * (k1[2] + two * k2[2] + two * k3[2] + k4[2])
    x3[i] = y3 * qn
    x4[i] = y4 * qn
    x5[i] = y5 * qn
    x6[i] = y6 * qn
    x7[i] = x[7] + h6 * (k1[7] + two * k2[7] + two * k3[7] + k4[7])
    x8[i] = x[8] + h6 * (k1[8] + two * k2[8] + two * k3[8] + k4[8])
    x9[i] = x[9] + h6 * (k1[9] + two * k2[9] + two * k3[9] + k4[9])
    x10[i] = x[10] + h6 * (k1[10] + two * k2[10] + two * k3[10] + k4[10])
    x11[i] = x[11] + h6 * (k1[11] + two * k2[11] + two * k3[11] + k4[11])
    x12[i] = x[12] + h6 * (k1[12] + two * k2[12] + two * k3[12] + k4[12])
    x13[i] = x[13] + h6 * (k1[13] + two * k2[13] + two * k3[13] + k4[13])
    x14[i] = x[14] + h6 * (k1[14] + two * k2[14] + two * k3[14] + k4[14])
    x15[i] = x[15] + h6 * (k1[15] + two * k2[15] + two * k3[15] + k4[15])
    x16[i] = x[16] + h6 * (k1[16] + two * k2[16] + two * k3[16] + k4[16])


def _soa_rollout_step_major(X0, P0, H0, n_steps, seed):
    """X0 (17, N), P0 (PARAM_SIZE, N), H0 (N,) hover actions -> final states (17, N)."""
    n = X0.shape[1]
    P = P0.copy()
    H = H0.copy()
    dither = _dither_table(n_steps, seed, X0)
    x0, x1, x2, x3 = X0[0].copy(), X0[1].copy(), X0[2].copy(), X0[3].copy()
    x4, x5, x6, x7 = X0[4].copy(), X0[5].copy(), X0[6].copy(), X0[7].copy()
    x8, x9, x10, x11 = X0[8].copy(), X0[9].copy(), X0[10].copy(), X0[11].copy()
    x12, x13, x14, x15, x16 = X0[12].copy(), X0[13].copy(), X0[14].copy(), X0[15].copy(), X0[16].copy()
    for t in range(n_steps):
        d0, d1, d2, d3 = dither[t, 0], dither[t, 1], dither[t, 2], dither[t, 3]
        for i in nb.prange(n):
            _VEHICLE(x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15, x16,  # noqa: F821  bound per build (_rebind)
                     P, H, d0, d1, d2, d3, i)
    return _soa_stack(x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15, x16)


def _soa_rollout_vehicle_major(X0, P0, H0, n_steps, seed):
    """As step-major, but each work item runs a chunk of vehicles through all steps."""
    n = X0.shape[1]
    P = P0.copy()
    H = H0.copy()
    dither = _dither_table(n_steps, seed, X0)
    x0, x1, x2, x3 = X0[0].copy(), X0[1].copy(), X0[2].copy(), X0[3].copy()
    x4, x5, x6, x7 = X0[4].copy(), X0[5].copy(), X0[6].copy(), X0[7].copy()
    x8, x9, x10, x11 = X0[8].copy(), X0[9].copy(), X0[10].copy(), X0[11].copy()
    x12, x13, x14, x15, x16 = X0[12].copy(), X0[13].copy(), X0[14].copy(), X0[15].copy(), X0[16].copy()
    n_chunks = (n + ROLLOUT_CHUNK - 1) // ROLLOUT_CHUNK
    for c in nb.prange(n_chunks):
        lo = c * ROLLOUT_CHUNK
        hi = min(n, lo + ROLLOUT_CHUNK)
        for t in range(n_steps):
            d0, d1, d2, d3 = dither[t, 0], dither[t, 1], dither[t, 2], dither[t, 3]
            for j in range(lo, hi):
                i = np.uint64(j)  # unsigned: no negative-index wraparound, so LLVM can vectorize
                _VEHICLE(x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15, x16,  # noqa: F821  bound per build (_rebind)
                         P, H, d0, d1, d2, d3, i)
    return _soa_stack(x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15, x16)


@nb.njit(cache=True)
def _soa_stack(x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15, x16):
    out = np.empty((STATE_SIZE, x0.shape[0]), dtype=x0.dtype)
    out[0], out[1], out[2], out[3], out[4], out[5] = x0, x1, x2, x3, x4, x5
    out[6], out[7], out[8], out[9], out[10], out[11] = x6, x7, x8, x9, x10, x11
    out[12], out[13], out[14], out[15], out[16] = x12, x13, x14, x15, x16
    return out


def _rebind(fn, name, **names):
    """`fn` with some global names rebound and its own name (Numba's cache key ignores compile
    flags, so every build needs its own qualified name, hence its own cache file)."""
    glb = dict(fn.__globals__)
    glb.update(names)
    f = types.FunctionType(fn.__code__, glb, name, fn.__defaults__, fn.__closure__)
    f.__qualname__ = name
    f.__module__ = fn.__module__
    return f


def _build_rollouts():
    kernels = {}
    for fm in (False, True):
        tag = "fast" if fm else "exact"
        # Plain calls at the Numba IR level (no aliasing temporaries in the parfor body), forced
        # inline at the LLVM level; uncached (the kernels' cache holds the linked code).
        opts = dict(error_model="numpy", fastmath=fm, forceinline=True)
        deriv = nb.njit(**opts)(_deriv.py_func)
        axpy = nb.njit(**opts)(_axpy.py_func)
        vehicle = nb.njit(**opts)(
            _rebind(_soa_vehicle, f"_soa_vehicle_{tag}", _DERIV=deriv, _AXPY=axpy))
        for order, fn in (("step", _soa_rollout_step_major), ("vehicle", _soa_rollout_vehicle_major)):
            kernels[order, fm] = nb.njit(cache=True, parallel=True, error_model="numpy", fastmath=fm)(
                _rebind(fn, f"_rollout_{order}_{tag}", _VEHICLE=vehicle))
    return kernels


_ROLLOUTS = _build_rollouts()


def rollout_batch(states: np.ndarray, n_steps: int, params: np.ndarray, seed: int = 0,
                  fastmath: bool = False, order: str = "step") -> np.ndarray:
    """Benchmark rollout of N vehicles for ``n_steps`` steps; returns the final states (N, 17).

    Actions are computed inside the loop from each vehicle's own state and the step index
    (hover + PD altitude/attitude feedback + a sine dither, see ``BENCH_GAINS``); ``seed``
    shifts the dither phase. The input is not modified. Computation in the states' dtype.

    ``order="step"`` (default): step-major, every step is one parallel pass over the batch, as
    with a policy in the loop (one thread barrier per step). ``order="vehicle"``: each work item
    runs ``ROLLOUT_CHUNK`` vehicles through all steps (one parallel region in all; the chunk
    stays in cache). Both give the same numbers as repeated ``step_batch``, bit for bit.
    ``fastmath=True`` runs a fastmath build (benchmark only; not bit-equal to JAX).
    """
    if order not in ("step", "vehicle"):
        raise ValueError(f"rollout_batch: order must be 'step' or 'vehicle', got {order!r}")
    states = np.asarray(states)
    if states.ndim != 2 or states.shape[1] != STATE_SIZE or states.dtype not in (np.float32, np.float64):
        raise ValueError(f"rollout_batch: states must be float32/float64 (N, {STATE_SIZE}), got {states.dtype} {states.shape}")
    n = states.shape[0]
    params = np.asarray(params, dtype=np.float64)
    if params.shape[-1] != PARAM_SIZE or params.ndim not in (1, 2) or (params.ndim == 2 and params.shape[0] not in (1, n)):
        raise ValueError(f"rollout_batch: params must be ({PARAM_SIZE},) or (N, {PARAM_SIZE}), got {params.shape}")
    if n_steps < 0:
        raise ValueError("rollout_batch: n_steps must be >= 0")
    dtype = states.dtype
    p = np.broadcast_to(params.reshape(-1, PARAM_SIZE), (n, PARAM_SIZE))
    hover = np.ascontiguousarray(hover_action(p), dtype=dtype)
    X = np.ascontiguousarray(states.T)
    P = np.ascontiguousarray(p.T, dtype=dtype)
    out = _ROLLOUTS[order, bool(fastmath)](X, P, hover, int(n_steps), int(seed))
    return np.ascontiguousarray(out.T)
