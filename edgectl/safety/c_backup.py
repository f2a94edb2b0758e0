"""The backup controller of ``backup.py`` in C99 for the Crazyflie app: ``edgectl_backup.h/.c``.

Same law, same gains, same mixing, operation for operation (so the double build agrees with the
Python to rounding and the float build to ~1e-6), with the platform's constants and the gains
computed here and written as literals. No malloc, no globals: the caller owns an
``edgectl_backup_t``. State in SI units, quaternion (w, x, y, z) body-to-world, body rates in
rad/s; actions in [-1, 1], motors M1..M4.

``edgectl_real`` is float (the Cortex-M4 has a single-precision FPU); define
EDGECTL_BACKUP_DOUBLE for double. Needs C99 ``isfinite`` (do not build with -ffast-math: the NaN
checks are how a broken state estimate is caught).

Use, every control period::

    edgectl_backup_t b; edgectl_backup_init(&b, NULL);          // once
    // while the policy flies: keep the rotor model and observers current
    edgectl_backup_observe(&b, quat, vel, omega, policy_action);
    // on the switch:
    edgectl_backup_engage(&b, target_or_NULL);
    // while it flies:
    edgectl_backup_step(&b, pos, quat, vel, omega, action);
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

from edgectl.csource import c_float, render
from edgectl.safety import backup as bk


def _lit(x: float) -> str:
    if not math.isfinite(x):
        raise ValueError(f"c_backup: constant {x!r} is not finite")
    return f"R({c_float(x, double=True)})"  # a double literal: the code builds as float or, for tests, double


def constants(model: bk.BackupModel, gains: bk.BackupGains) -> dict[str, float]:
    """Every number the C code uses, computed the way ``backup.step`` computes it."""
    M, G = model, gains
    g = M.gravity
    c = {
        "DT": M.dt, "G": g, "MASS": M.mass, "JX": M.inertia[0], "JY": M.inertia[1], "JZ": M.inertia[2],
        "TMAX": M.thrust_max, "MMIN": M.motor_min, "HOVER_ACTION": M.hover_action, "HOVER_MOTOR": M.hover_motor,
        "MOTOR_SPAN": 1.0 - M.motor_min, "MOTOR_K_UP": M.motor_k_up, "MOTOR_K_DOWN": M.motor_k_down,
        "B0": M.thrust_shape[0], "B1": M.thrust_shape[1], "B2": 1.0 - M.thrust_shape[0] - M.thrust_shape[1],
        "ONE_MINUS_B0": 1.0 - M.thrust_shape[0], "FALL_RATIO": M.fall_ratio,
        "ATT_KP": G.att_kp, "ATT_KD": G.att_kd, "YAW_KD": G.yaw_kd, "YAW_GUARD": G.yaw_guard, "DOB_GAIN": G.dob_gain, "DOB_MAX": G.dob_max,
        "FDOB_GAIN": G.fdob_gain, "FDOB_LIM": G.fdob_max * M.gravity,
        "XY_KP": G.xy_kp, "XY_KD": G.xy_kd, "XY_KI": G.xy_ki, "Z_KP": G.z_kp, "Z_KD": G.z_kd, "Z_KI": G.z_ki,
        "LIM_XY": G.pos_i_max / max(G.xy_ki, 1e-12), "LIM_Z": G.pos_i_max / max(G.z_ki, 1e-12),
        "LEVEL_Z_KD": G.level_z_kd, "A_XY_MAX": g * math.tan(G.max_tilt),
        "A_Z_MIN": -G.max_accel_down * g, "A_Z_MAX": 2.0 * g,
        "T_MIN": G.min_thrust * (M.mass * g), "T_MAX": 4.0 * M.thrust_max,
        "LEVEL_TILT": G.level_tilt, "LEVEL_RATE": G.level_rate, "RELEVEL_TILT": G.relevel_tilt, "HOLD_S": G.hold_s,
        "DESCENT_RATE": G.descent_rate, "NEG_DESCENT_RATE": -G.descent_rate, "GROUND_Z": G.ground_z,
        "TOUCHDOWN": G.ground_z + G.touchdown_z,
        "OVER": M.motor_tau / G.motor_tf,
        "T_LO": M.thrust(M.motor_min), "T_HI": M.thrust_max,
        "RNG": M.thrust_max - M.thrust(M.motor_min),
        "PI": math.pi,
    }
    for i in range(4):
        for j in range(4):
            c[f"F{i}{j}"] = M.alloc[i][j]  # row i of (T, tx, ty, tz), rotor j
            c[f"A{i}{j}"] = M.alloc_inv[i][j]  # rotor i, column j of (T, tx, ty, tz)
    return c


# The C: edgectl/safety/templates/edgectl_backup.{h,c}.in, reviewed text with @NAME@ placeholders; this module
# writes the constants (as #defines) and the provenance lines only.
TEMPLATES = Path(__file__).resolve().parent / "templates"


def generate(platform, gains: bk.BackupGains | None = None) -> dict[str, str]:
    """{"edgectl_backup.h": ..., "edgectl_backup.c": ...} for a quadrotor platform."""
    model = bk.model_from_platform(platform)
    gains = gains or bk.BackupGains()
    c = constants(model, gains)
    defines = "\n".join(f"#define {k} {_lit(v)}" for k, v in c.items())
    h_in, c_in = TEMPLATES / "edgectl_backup.h.in", TEMPLATES / "edgectl_backup.c.in"
    digest = hashlib.sha256((defines + c_in.read_text() + h_in.read_text()).encode()).hexdigest()[:16]
    source = f"{platform.name} ({Path(str(platform.path)).name}, sha256 {platform.sha256[:12]})"
    return {
        "edgectl_backup.h": render(h_in, SOURCE=source, DIGEST=digest, DT=f"({c_float(model.dt, double=True)})",
                                   HOVER=f"({c_float(model.hover_action, double=True)})"),
        "edgectl_backup.c": render(c_in, SOURCE=source, DIGEST=digest, DEFINES=defines),
    }


def write(platform, out_dir, gains: bk.BackupGains | None = None) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in generate(platform, gains).items():
        (out / name).write_text(text)
        paths.append(out / name)
    return paths
