"""What PX4 and ArduPilot accept from a companion computer, and how edgectl tells them apart.

Sources (checked 2026-12; FIELD_NOTES section 8):
- Rate-level offboard: SET_ATTITUDE_TARGET with ATTITUDE_TARGET_TYPEMASK_ATTITUDE_IGNORE, body rates (FRD,
  rad/s) and a normalized thrust. PX4: in OFFBOARD, which it enters only while setpoints stream at > 2 Hz
  (PX4 user guide, Offboard mode); ArduPilot Copter: in GUIDED or GUIDED_NOGPS (Copter commands in Guided
  mode), its thrust field a climb rate (0.5 = hold) unless GUID_OPTIONS bit 3 (value 8,
  "SetAttitudeTarget_ThrustAsThrust", ArduCopter mode.h) is set.
- Offboard-loss failsafes: PX4 COM_OF_LOSS_T (default 1.0 s, commander_params.yaml) then COM_OBL_RC_ACT
  (default 0, Position mode; 4 Land, 5 Hold); ArduPilot GUID_TIMEOUT (default 3.0 s, ArduCopter
  Parameters.cpp: "vehicle will stop or return to level if no updates are received"): it levels with zero
  rates and holds its altitude, still in the guided mode.
- Motor-level: SET_ACTUATOR_CONTROL_TARGET drives no motor on PX4 >= 1.14 (direct motor control moved to the
  uORB/DDS actuator_motors topic); PX4 <= 1.13 reads group 0 as pre-mixer roll, pitch, yaw, thrust; ArduPilot
  ignores it (MAVSDK #2578, PX4-user_guide #2743, PX4-Autopilot #22222).
- AUTOPILOT_VERSION.flight_sw_version = major << 24 | minor << 16 | patch << 8 | FIRMWARE_VERSION_TYPE
  (MAVLink common.xml), as PX4 and ArduPilot fill it.

A vehicle that does take SET_ACTUATOR_CONTROL_TARGET group 0 as motors M1..M4 (edgectl's simulated
vehicle; a firmware with such a module) declares it with the parameter ``EDGECTL_MOTOR_IN`` = 1; a real PX4
or ArduPilot never has it, and edgectl refuses to fly them motor-level.
"""
from __future__ import annotations

MOTOR_PARAM = "EDGECTL_MOTOR_IN"  # 16 characters at most (PARAM_VALUE.param_id)

OFFBOARD_MODE = {"px4": "OFFBOARD", "ardupilot": "GUIDED_NOGPS"}
LAND_MODE = {"px4": "LAND", "ardupilot": "LAND"}
OFFBOARD_LOSS = {
    "px4": {"param": "COM_OF_LOSS_T", "default_s": 1.0, "then": "COM_OBL_RC_ACT (default 0: Position mode)"},
    "ardupilot": {"param": "GUID_TIMEOUT", "default_s": 3.0, "then": "level, zero rates, hold altitude (still GUIDED_NOGPS)"},
}
GUID_OPTIONS_THRUST = 8  # ArduCopter GUID_OPTIONS bit 3: SET_ATTITUDE_TARGET thrust is thrust, not a climb rate
PX4_MOTOR_CONTROL_REMOVED = (1, 14)


def encode_version(major: int, minor: int, patch: int, fw_type: int = 255) -> int:
    """flight_sw_version as MAVLink writes it (255: FIRMWARE_VERSION_TYPE_OFFICIAL)."""
    return (int(major) << 24) | (int(minor) << 16) | (int(patch) << 8) | int(fw_type)


def decode_version(v: int) -> tuple[int, int, int, int]:
    v = int(v)
    return (v >> 24) & 0xFF, (v >> 16) & 0xFF, (v >> 8) & 0xFF, v & 0xFF


def version_text(v: tuple[int, int, int, int] | None) -> str:
    return "version unknown" if v is None else f"{v[0]}.{v[1]}.{v[2]}"


def motor_level_refusal(autopilot: str | None, version: tuple[int, int, int, int] | None,
                        declares_motor_input: bool) -> str | None:
    """None if a vehicle may be flown motor-level (SET_ACTUATOR_CONTROL_TARGET as motors), else the one-line reason.

    ``autopilot``: "px4" | "ardupilot" | "other" (HEARTBEAT.autopilot); ``version``: decoded AUTOPILOT_VERSION
    (None: not answered); ``declares_motor_input``: the vehicle's EDGECTL_MOTOR_IN parameter is 1."""
    use = "fly a ctbr bundle instead (edgectl train quadrotor --action ctbr), which streams SET_ATTITUDE_TARGET body rates"
    released = version is not None and version[:3] != (0, 0, 0)
    if autopilot == "ardupilot":
        return f"ArduPilot {version_text(version)} ignores SET_ACTUATOR_CONTROL_TARGET, so motor-level commands would not reach its motors; {use}"
    if autopilot == "px4" and released:
        if version[:2] >= PX4_MOTOR_CONTROL_REMOVED:
            return (f"PX4 {version_text(version)} does not drive motors from SET_ACTUATOR_CONTROL_TARGET (removed in v1.14; "
                    f"direct motor control is the uXRCE-DDS actuator_motors topic); {use}")
        return (f"PX4 {version_text(version)} reads SET_ACTUATOR_CONTROL_TARGET as mixer-group roll/pitch/yaw/thrust, "
                f"not motors; {use}")
    if declares_motor_input:
        return None
    who = {"px4": "PX4", "ardupilot": "ArduPilot"}.get(autopilot or "", f"autopilot {autopilot!r}")
    return (f"{who} {version_text(version)} does not declare that it takes SET_ACTUATOR_CONTROL_TARGET as motors "
            f"(parameter {MOTOR_PARAM} = 1); {use}, or name the firmware that does with --motor-firmware")
