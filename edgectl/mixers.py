"""Motor mixers of the autopilots edgectl flies with, as their sources write them.

A platform file says which firmware drives its motors (``[platform] firmware = "crazyflie"``);
the loader then derives, from the file's rotor positions and spins through the simulator's own
torque equations, the sign of the roll, pitch and yaw torque each motor produces, and refuses the
file if any sign disagrees with that firmware's mixer. A policy trained on a flipped sign learns
the wrong yaw and spins up and crashes on its first flight (issue 13: 0 % survival), so this is
checked on every load, not only in tests.

Frames: body x forward, y left, z up (the Crazyflie firmware's). The torque of thrust T_i at
rotor (x_i, y_i) is (y_i T_i, -x_i T_i, spin_i * k * T_i), as in train_fast/sims/quadrotor.py;
spin +1 is a propeller turning clockwise seen from above, whose drag turns the body
counter-clockwise (+z yaw).
"""
from __future__ import annotations

import numpy as np

# Each table: rows M1..M4 in the firmware's motor numbering, columns the sign of the roll, pitch
# and yaw torque more thrust on that motor gives (body x forward, y left, z up).
MIXERS: dict[str, dict] = {
    "crazyflie": {
        # powerDistributionForceTorque: motorForces[i] = thrustPart -/+ rollPart -/+ pitchPart
        # -/+ yawPart with signs (M1 - - -), (M2 - + +), (M3 + + -), (M4 + - +). The mixer inverts
        # the allocation, so a motor's torque sign is the sign it is given for that torque.
        "source": "bitcraze/crazyflie-firmware src/modules/src/power_distribution_quadrotor.c, "
                  "powerDistributionForceTorque (M1 front-right, M2 back-right, M3 back-left, "
                  "M4 front-left; M1 and M3 propellers counter-clockwise seen from above)",
        "signs": ((-1, -1, -1), (-1, +1, +1), (+1, +1, -1), (+1, -1, +1)),
    },
    "px4": {
        # Quad X: motor 1 front-right CCW, 2 back-left CCW, 3 front-left CW, 4 back-right CW.
        "source": "PX4 user guide, Airframe Reference, Quadrotor x (motor 1 front-right CCW, "
                  "2 back-left CCW, 3 front-left CW, 4 back-right CW)",
        "signs": ((-1, -1, -1), (+1, +1, -1), (+1, -1, +1), (-1, +1, +1)),
    },
    "ardupilot": {
        "source": "ArduPilot Copter docs, Connect ESCs and Motors, QUAD X (motor 1 front-right "
                  "CCW, 2 back-left CCW, 3 front-left CW, 4 back-right CW)",
        "signs": ((-1, -1, -1), (+1, +1, -1), (+1, -1, +1), (-1, +1, +1)),
    },
}


def torque_signs(positions, spin) -> np.ndarray:
    """(4, 3) signs of (roll, pitch, yaw) torque per unit thrust of each rotor, by the simulator's
    equations: roll y_i, pitch -x_i, yaw spin_i."""
    pos = np.asarray(positions, dtype=np.float64)
    return np.sign(np.stack([pos[:, 1], -pos[:, 0], np.asarray(spin, dtype=np.float64)], axis=1)).astype(int)


def mismatch(firmware: str, positions, spin) -> str | None:
    """None if the rotors agree with ``firmware``'s mixer, else one line naming the first bad motor."""
    table = MIXERS[firmware]
    got = torque_signs(positions, spin)
    for i, (want, have) in enumerate(zip(table["signs"], got)):
        for axis, w, h in zip(("roll", "pitch", "yaw"), want, have):
            if w != h:
                return (f"M{i + 1} gives {'+' if h > 0 else '-' if h < 0 else '0'}{axis} torque, "
                        f"the {firmware} mixer {'+' if w > 0 else '-'}{axis} ({table['source']})")
    return None
