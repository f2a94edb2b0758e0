"""RC-car dynamics in Numba: the same math as ``train_fast/sims/car.py``, for the host side.

A simulated car MCU or a serial bridge steps one car at a time at 50 Hz and must not need JAX, so
this module imports only numpy and numba (``params_from_platform`` takes a loaded Platform).

Layout
- state: flat array of ``STATE_SIZE`` = 8 values in ``STATE_NAMES`` order, SI units:
  x, y (m, world), yaw (rad, counter-clockwise from world x, not wrapped), vx, vy (m/s, body frame:
  x forward, y left), yaw_rate (rad/s), steer (rad, actual front-wheel angle, + = left),
  throttle (1, actual normalized drive command after the speed controller's lag).
- action: 2 values in [-1, 1], [steer, throttle] (clipped): steer * max_steer is the commanded wheel
  angle; throttle > 0 drives, < 0 brakes (no reverse).
- params: flat array of ``PARAM_SIZE`` values in ``PARAM_NAMES`` order.

API (njit, ``cache=True``): ``step(state, action, params) -> new state``,
``step_into(state, action, params, out)``, ``step_batch(states, actions, params, out)`` (prange).
Plain numpy: ``params_from_platform``, ``initial_state``, ``params_as_dict``.

Exact IEEE arithmetic in the dtype of the state (no fastmath) and the operation order of the JAX
code, so float64 runs agree with JAX float64 to rounding.
"""
from __future__ import annotations

import math

import numba as nb
import numpy as np

STATE_NAMES = ("x", "y", "yaw", "vx", "vy", "yaw_rate", "steer", "throttle")
STATE_SIZE = len(STATE_NAMES)
PARAM_NAMES = (
    "mass", "yaw_inertia", "lf", "lr", "gravity",
    "friction", "cornering_front", "cornering_rear",
    "max_steer", "max_steer_rate", "steer_tau",
    "max_force", "max_speed", "max_brake_force", "rolling_resistance", "throttle_tau",
    "dt",
)
PARAM_SIZE = len(PARAM_NAMES)
PARAM_INDEX = {n: i for i, n in enumerate(PARAM_NAMES)}

# Integration and low-speed constants; the JAX module imports these, so both stay the same.
SUBSTEPS = 2  # RK4 substeps per step: the tire modes reach ~140 1/s at 0.8 m/s, RK4 is stable to h*lambda < 2.78
KIN_SPEED_LO = 0.3  # m/s: below, kinematic rolling (no slip angles: they are undefined at standstill)
KIN_SPEED_HI = 0.8  # m/s: above, the full dynamic (tire slip) model; linear blend between
KIN_TAU = 0.05  # s: at low speed, side slip and yaw rate relax to rolling without slip this fast
BRAKE_SPEED = 0.2  # m/s: the brake force fades to zero below this, so braking never drives backwards

_I = PARAM_INDEX
_MASS, _IZ, _LF, _LR, _G = _I["mass"], _I["yaw_inertia"], _I["lf"], _I["lr"], _I["gravity"]
_MU, _CF, _CR = _I["friction"], _I["cornering_front"], _I["cornering_rear"]
_SMAX, _SRATE, _STAU = _I["max_steer"], _I["max_steer_rate"], _I["steer_tau"]
_FMAX, _VMAX, _FBRK, _FROLL, _TTAU = (_I["max_force"], _I["max_speed"], _I["max_brake_force"],
                                      _I["rolling_resistance"], _I["throttle_tau"])
_DT = _I["dt"]


def params_from_platform(platform, dtype=np.float64) -> np.ndarray:
    """Nominal params of an ``rc_car`` platform, in PARAM_NAMES order (same formulas as JAX)."""
    if platform.kind != "rc_car":
        raise ValueError(f"{platform.path}: platform {platform.name!r} is a {platform.kind}, not an rc_car")
    g = platform.get
    lf = g("body.cg_to_front")
    values = {
        "mass": g("body.mass"), "yaw_inertia": g("body.yaw_inertia"),
        "lf": lf, "lr": g("body.wheelbase") - lf, "gravity": g("body.gravity"),
        "friction": g("tires.friction"),
        "cornering_front": g("tires.cornering_stiffness_front"),
        "cornering_rear": g("tires.cornering_stiffness_rear"),
        "max_steer": g("steering.max_angle"), "max_steer_rate": g("steering.max_rate"),
        "steer_tau": g("steering.time_constant"),
        "max_force": g("drive.max_force"), "max_speed": g("drive.max_speed"),
        "max_brake_force": g("drive.max_brake_force"), "rolling_resistance": g("drive.rolling_resistance"),
        "throttle_tau": g("drive.time_constant"),
        "dt": 1.0 / g("control.sim_rate"),
    }
    return np.array([values[n] for n in PARAM_NAMES], dtype=dtype)


def params_as_dict(params: np.ndarray) -> dict[str, np.ndarray]:
    p = np.asarray(params)
    return {n: p[..., i] for i, n in enumerate(PARAM_NAMES)}


def initial_state(x: float, y: float, yaw: float, speed: float = 0.0, dtype=np.float64) -> np.ndarray:
    """At (x, y) heading `yaw`, rolling straight at `speed` (m/s), wheels straight, no throttle."""
    s = np.zeros(STATE_SIZE, dtype=dtype)
    s[0], s[1], s[2], s[3] = x, y, yaw, speed
    return s


# --------------------------------------------------------------------------------------------
# Kernels (inlined into each public kernel, error_model="numpy": inf/nan as in JAX, no raise).
# --------------------------------------------------------------------------------------------
@nb.njit(inline="always", cache=True)
def _axpy(x, h, k):
    """x + h * k over 6-tuples."""
    return (x[0] + h * k[0], x[1] + h * k[1], x[2] + h * k[2], x[3] + h * k[3], x[4] + h * k[4], x[5] + h * k[5])


@nb.njit(inline="always", cache=True)
def _deriv(x, c):
    """d/dt of (x, y, yaw, vx, vy, yaw_rate) with the actuators held; c: constants of _step_row."""
    (m, iz, lf, lr, wb, mu_fzf, mu_fzr, traction, cf, cr, delta, cos_d, sin_d, tan_d,
     drive, vmax, fbrake, froll, zero, one, lo, span, inv_tau, vbrk) = c
    yaw, vx, vy, r = x[2], x[3], x[4], x[5]
    # Longitudinal (Liniger et al. 2015): the motor's force falls linearly to zero at the speed
    # controller's top speed; brake and rolling resistance fade out at standstill, so they stop the
    # car without pushing it backwards.
    fade = min(max(vx / vbrk, zero), one)
    fx = min(max(drive * (one - vx / vmax), -traction), traction) - (fbrake + froll) * fade
    # Dynamic single-track model with saturating tires. Slip angles need forward speed, so they
    # use at least `lo`; below `lo` this branch has zero weight anyway.
    vxe = max(vx, lo)
    fyf = mu_fzf * math.tanh(cf * (delta - math.atan2(vy + lf * r, vxe)))
    fyr = mu_fzr * math.tanh(cr * -math.atan2(vy - lr * r, vxe))
    dvx_d = (fx - fyf * sin_d) / m + vy * r
    dvy_d = (fyr + fyf * cos_d) / m - vx * r
    dr_d = (lf * fyf * cos_d - lr * fyr) / iz
    # Kinematic rolling: side slip and yaw rate relax to the bicycle's no-slip values. Integrating
    # only their derivatives would keep a spinning car spinning after it slowed below `lo`.
    r_k = vx * tan_d / wb
    w = min(max((vx - lo) / span, zero), one)
    dvx = w * dvx_d + (one - w) * (fx / m)
    dvy = w * dvy_d + (one - w) * ((lr * r_k - vy) * inv_tau)
    dr = w * dr_d + (one - w) * ((r_k - r) * inv_tau)
    cy, sy = math.cos(yaw), math.sin(yaw)
    return (vx * cy - vy * sy, vx * sy + vy * cy, r, dvx, dvy, dr)


@nb.njit(inline="always", cache=True)
def _step_row(s, a, p, out):
    """One car, one control period: s (8,), a (2,), p (PARAM_SIZE,) -> out (8,); out may be s."""
    T = s.dtype.type
    zero, one, half, two, six = T(0.0), T(1.0), T(0.5), T(2.0), T(6.0)
    dt = T(p[_DT])
    # Actuators first, exactly discretized (first-order lag; the servo also rate-limited), then
    # held over the step: what a 50 Hz command through a servo and a speed controller does.
    steer_cmd = min(max(T(a[0]), -one), one) * T(p[_SMAX])
    thr_cmd = min(max(T(a[1]), -one), one)
    max_ds = T(p[_SRATE]) * dt
    ds = (steer_cmd - s[6]) * (one - math.exp(-dt / T(p[_STAU])))
    delta = s[6] + min(max(ds, -max_ds), max_ds)
    thr = s[7] + (thr_cmd - s[7]) * (one - math.exp(-dt / T(p[_TTAU])))
    m, g, mu, lf, lr = T(p[_MASS]), T(p[_G]), T(p[_MU]), T(p[_LF]), T(p[_LR])
    wb = lf + lr
    c = (m, T(p[_IZ]), lf, lr, wb, mu * m * g * lr / wb, mu * m * g * lf / wb, mu * m * g,
         T(p[_CF]), T(p[_CR]), delta, math.cos(delta), math.sin(delta), math.tan(delta),
         max(thr, zero) * T(p[_FMAX]), T(p[_VMAX]), max(-thr, zero) * T(p[_FBRK]), T(p[_FROLL]),
         zero, one, T(KIN_SPEED_LO), T(KIN_SPEED_HI) - T(KIN_SPEED_LO), one / T(KIN_TAU), T(BRAKE_SPEED))
    x = (s[0], s[1], s[2], s[3], s[4], s[5])
    h = dt / T(SUBSTEPS)
    h6 = h / six
    for _ in range(SUBSTEPS):
        k1 = _deriv(x, c)
        k2 = _deriv(_axpy(x, half * h, k1), c)
        k3 = _deriv(_axpy(x, half * h, k2), c)
        k4 = _deriv(_axpy(x, h, k3), c)
        x = (x[0] + h6 * (k1[0] + two * k2[0] + two * k3[0] + k4[0]),
             x[1] + h6 * (k1[1] + two * k2[1] + two * k3[1] + k4[1]),
             x[2] + h6 * (k1[2] + two * k2[2] + two * k3[2] + k4[2]),
             x[3] + h6 * (k1[3] + two * k2[3] + two * k3[3] + k4[3]),
             x[4] + h6 * (k1[4] + two * k2[4] + two * k3[4] + k4[4]),
             x[5] + h6 * (k1[5] + two * k2[5] + two * k3[5] + k4[5]))
    for k in range(6):
        out[k] = x[k]
    out[6] = delta
    out[7] = thr


@nb.njit(cache=True, error_model="numpy")
def step_into(state, action, params, out):
    """One car, no allocation: writes the next state into ``out`` (may be ``state``)."""
    _step_row(state, action, params, out)
    return out


@nb.njit(cache=True, error_model="numpy")
def step(state, action, params):
    """One car, one period of params' dt: state (8,), action (2,) [steer, throttle] in [-1, 1],
    params (PARAM_SIZE,). Returns a new array of the state's dtype."""
    out = np.empty(STATE_SIZE, dtype=state.dtype)
    _step_row(state, action, params, out)
    return out


@nb.njit(cache=True, error_model="numpy", parallel=True)
def step_batch(states, actions, params, out):
    """N cars: states (N, 8), actions (N, 2), params (P,) shared or (N, P) per car -> out (N, 8)."""
    n = states.shape[0]
    if params.ndim == 1:
        for i in nb.prange(n):
            _step_row(states[i], actions[i], params, out[i])
    else:
        for i in nb.prange(n):
            _step_row(states[i], actions[i], params[i], out[i])
    return out
