"""Crazyflie OOT app: the C observation builder against the simulator, the force mapping, the app
folder (compiled and exercised on the host against stand-in firmware headers) and the firmware build's
refusals. No firmware checkout and no ARM toolchain needed: the real build is a user-side step."""
from __future__ import annotations

import ctypes
import math
import os
import re
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

from edgectl.bundle import load_bundle, write_bundle
from edgectl.platforms import load_platform
from export.crazyflie_app import build_firmware, generate_observation_c, write_app
from export.errors import ExportError, TargetUnavailable

REPO = Path(__file__).resolve().parent.parent
HOVER_BUNDLE = REPO / "tests" / "data" / "hover_bundle"
GCC = shutil.which("gcc")
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Wdouble-promotion", "-pedantic"]
needs_gcc = pytest.mark.skipif(GCC is None, reason="no host C compiler (gcc)")


@pytest.fixture(scope="module")
def platform():
    return load_platform("crazyflie_2_1")


def SAFETY_SOURCES(src):
    """The backup, signal builder and monitors every app carries (export/crazyflie_app.safety_files)."""
    return [src / "edgectl_backup.c", src / "edgectl_signals.c", src / "edgectl_stl.c"]


def _gcc(*args, cwd: Path) -> None:
    r = subprocess.run([GCC, *CFLAGS, *map(str, args)], cwd=cwd, capture_output=True, text=True)
    assert r.returncode == 0, f"gcc {' '.join(map(str, args))}:\n{r.stderr}"


def _write(d: Path, files: dict[str, str]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (d / name).write_text(text)
    return d


def _define(text: str, name: str) -> int:
    return int(re.search(rf"#define {name} (\d+)", text).group(1))


def load_obs_lib(contract: dict, d: Path):
    """Compile edgectl_obs.c for `contract` into a shared library; return (lib, Vehicle, History)."""
    files = generate_observation_c(contract)
    _write(d, files)
    _gcc("-O2", "-shared", "-fPIC", "-o", "libobs.so", "edgectl_obs.c", "-lm", cwd=d)
    lib = ctypes.CDLL(str(d / "libobs.so"))
    f3 = ctypes.c_float * 3

    class Vehicle(ctypes.Structure):
        _fields_ = [("position", f3), ("velocity", f3), ("quaternion_xyzw", ctypes.c_float * 4), ("gyro_deg_s", f3),
                    ("ref_position", f3), ("ref_velocity", f3), ("ref_acceleration", f3)]

    class History(ctypes.Structure):
        _fields_ = [("actions", ctypes.c_float * _define(files["edgectl_obs.h"], "EDGECTL_HISTORY_LEN")),
                    ("integral", f3), ("integral_ref", f3), ("integrated", ctypes.c_int)]

    assert _define(files["edgectl_obs.h"], "EDGECTL_OBS_SIZE") == contract["observation"]["size"]
    return lib, Vehicle, History


def c_obs(lib, Vehicle, vehicle: dict, history, size: int) -> np.ndarray:
    v = Vehicle(**{k: (ctypes.c_float * len(x))(*map(float, x)) for k, x in vehicle.items()})
    out = (ctypes.c_float * size)()
    lib.edgectl_obs_integrate(ctypes.byref(v), ctypes.byref(history))  # as the app does before every build
    lib.edgectl_obs_build(ctypes.byref(v), ctypes.byref(history), out)
    return np.frombuffer(out, dtype=np.float32).copy()


def c_push(lib, history, action) -> None:
    lib.edgectl_obs_push_action(ctypes.byref(history), (ctypes.c_float * 4)(*map(float, action)))


# --- (a) the C observation equals the simulator's, field by field ------------------------------
@needs_gcc
@pytest.mark.parametrize("task, history, integral_tau", [("hover", 1, 0.0), ("figure8", 3, 0.0), ("hover", 4, 0.05),
                                                         ("figure8", 2, 0.05)])  # figure8: the moving reference's jump rule
def test_observation_matches_simulator(task, history, integral_tau, platform, tmp_path):
    jax = pytest.importorskip("jax")
    import train_fast.tasks.quadrotor_tasks as qt

    # integral_tau 0.05 s with the 0.1 m s limit: both the leak and (after a few steps) nothing clipped are exercised
    cfg = qt.TASKS[task](action_history=history, integral_tau=integral_tau)
    # randomize=False: reset then fills the history with the nominal hover action, as the contract says.
    env = qt.make_env(cfg, platform, randomize=False)
    contract = qt.contract(cfg, platform)
    lib, Vehicle, History = load_obs_lib(contract, tmp_path)
    n_env, n_steps = 12, 5 if not integral_tau else 40

    def rollout(key, actions):
        s = qt.reset(key, env)

        def body(s, a):
            p_ref, v_ref, a_ref = qt.reference(cfg, s.phase + s.t * env.nominal.dt)
            seen = (qt._fields(env, s), s.sim.pos, s.sim.quat, s.sim.vel, s.sim.omega, p_ref, v_ref, a_ref)
            return qt.step(None, s, a, env)[0], seen

        return jax.lax.scan(body, s, actions)[1]

    keys = jax.random.split(jax.random.PRNGKey(3), n_env)
    # Around hover, with some commands outside [-1, 1] so the history's clipping is exercised.
    rng = np.random.default_rng(0)
    actions = (contract["action"]["hover_action"] + rng.uniform(-0.4, 0.4, (n_env, n_steps, 4))).astype(np.float32)
    actions[:, ::2, 0] = 1.7
    actions[:, 1::2, 3] = -1.3
    out = jax.jit(jax.vmap(rollout))(keys, actions)
    sim_obs, pos, quat, vel, omega, p_ref, v_ref, a_ref = (np.asarray(x, dtype=np.float64) for x in out)
    size = contract["observation"]["size"]
    assert sim_obs.shape == (n_env, n_steps, size)

    for e in range(n_env):
        hist = History()
        lib.edgectl_obs_reset(ctypes.byref(hist))
        for t in range(n_steps):
            vehicle = dict(position=pos[e, t], velocity=vel[e, t],
                           quaternion_xyzw=quat[e, t, [1, 2, 3, 0]],  # simulator w, x, y, z -> firmware x, y, z, w
                           gyro_deg_s=np.degrees(omega[e, t]),  # simulator rad/s -> firmware deg/s
                           ref_position=p_ref[e, t], ref_velocity=v_ref[e, t], ref_acceleration=a_ref[e, t])
            got = c_obs(lib, Vehicle, vehicle, hist, size)
            np.testing.assert_allclose(got, sim_obs[e, t], rtol=1e-6, atol=1e-6,
                                       err_msg=f"{task}: env {e}, step {t}")
            c_push(lib, hist, actions[e, t])
    # The rollout must have left hover for this to mean anything.
    assert np.abs(omega).max() > 0.5
    if integral_tau:
        assert np.abs(sim_obs[:, -1, -3:]).max() > 1e-3 and np.all(sim_obs[:, 0, -3:] == 0.0)
    else:
        assert np.abs(sim_obs[:, -1, -4:]).max() == 1.0


def integral_in_c_and_python(task: str, platform, tmp_path, refs, positions):
    """The position_error_integral the C app and edgectl.contract.PositionIntegral (host loop, on-board mirror) keep
    along ``refs`` with the vehicle at ``positions``: (C, Python), one row per period, checked equal."""
    import train_fast.tasks.quadrotor_tasks as qt
    from edgectl.contract import PositionIntegral

    contract = qt.contract(qt.TASKS[task](), platform)
    lib, Vehicle, History = load_obs_lib(contract, tmp_path)
    size = contract["observation"]["size"]
    hist = History()
    lib.edgectl_obs_reset(ctypes.byref(hist))
    mirror = PositionIntegral(contract)
    got_c, got_py = [], []
    for ref, pos in zip(refs, positions):
        vehicle = dict(position=pos, velocity=np.zeros(3), quaternion_xyzw=np.array([0.0, 0.0, 0.0, 1.0]),
                       gyro_deg_s=np.zeros(3), ref_position=ref, ref_velocity=np.zeros(3), ref_acceleration=np.zeros(3))
        got_c.append(c_obs(lib, Vehicle, vehicle, hist, size)[-3:])
        got_py.append(mirror.update(np.float32(pos) - np.float32(ref), ref))
    got_c, got_py = np.array(got_c), np.array(got_py)
    np.testing.assert_allclose(got_c, got_py, atol=2e-6)
    return got_c, got_py


@needs_gcc
def test_integral_restarts_when_the_reference_moves(platform, tmp_path):
    """A take-off ramp (the reference climbs every period) keeps the integral at 0, in C as in
    edgectl.contract.PositionIntegral (host loop, on-board mirror); from the first period of a fixed
    reference on it integrates again, and a hop of the reference restarts it."""
    rng = np.random.default_rng(5)
    refs = [np.array([0.0, 0.0, 0.004 * (k + 1)]) for k in range(25)]  # 0.4 m/s at 100 Hz
    refs += [refs[-1]] * 30 + [refs[-1] + np.array([0.2, 0.0, 0.0])] * 10  # hold, then a waypoint hop
    # lagging the reference, as on a climb
    positions = [ref + np.array([0.0, 0.0, -0.06]) + rng.normal(0.0, 0.01, 3) for ref in refs]
    got_c, _ = integral_in_c_and_python("hover", platform, tmp_path, refs, positions)
    assert np.all(got_c[:25] == 0.0)  # the ramp, whose last period is the first of the hold
    assert np.all(got_c[25] != 0.0)
    assert got_c[54, 2] < -0.01  # 30 periods of a 6 cm lag integrated
    assert np.all(got_c[55] == 0.0) and np.abs(got_c[-1]).max() > 1e-3  # the hop restarts it


@needs_gcc
def test_integral_with_a_jump_rule_integrates_along_a_ramp_and_restarts_on_a_hop(platform, tmp_path):
    """The figure-eight's contract (reset_jump_m 0.02): a reference moving 4 mm a period keeps integrating, in C as in
    edgectl.contract.PositionIntegral, and a 3 cm hop restarts it."""
    refs = [np.array([0.004 * (k + 1), 0.0, 0.0]) for k in range(40)]
    refs += [refs[-1] + np.array([0.0, 0.03, 0.0])] * 5
    positions = [ref + np.array([-0.05, 0.0, 0.0]) for ref in refs]
    got_c, _ = integral_in_c_and_python("figure8", platform, tmp_path, refs, positions)
    assert got_c[0, 0] == 0.0 and got_c[39, 0] < -0.01  # along the ramp: 39 periods of a 5 cm lag
    assert np.all(got_c[40] == 0.0) and got_c[-1, 0] < 0.0  # the hop restarts it, then it integrates again


@needs_gcc
def test_observation_without_history_compiles(platform, tmp_path):
    import train_fast.tasks.quadrotor_tasks as qt

    contract = qt.contract(qt.hover_config(action_history=0, integral_tau=0.0), platform)
    assert contract["observation"]["size"] == 18
    lib, Vehicle, History = load_obs_lib(contract, tmp_path)
    hist = History()
    lib.edgectl_obs_reset(ctypes.byref(hist))
    v = dict(position=[1, 2, 3], velocity=[0.5, 0, 0], quaternion_xyzw=[0, 0, 0, 1], gyro_deg_s=[180, 0, -90],
             ref_position=[1, 2, 2], ref_velocity=[0, 0, 0], ref_acceleration=[0, 0, 0])
    got = c_obs(lib, Vehicle, v, hist, 18)
    want = [0, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0.5, 0, 0, math.pi, 0, -math.pi / 2]
    np.testing.assert_allclose(got, want, atol=1e-6)


# --- (b) the action -> normalized force mapping ------------------------------------------------
@needs_gcc
@pytest.mark.parametrize("curve", [None, [0.0035, 0.0144, 0.0922], {"min_rpm": 3000.0}],
                         ids=["shipped", "l2f_curve", "rpm_linear_min_rpm"])
def test_force_mapping_matches_contract(curve, tmp_path):
    """The app asks the firmware for the simulator's own thrust: thrust_curve(u) / thrust_curve(1), u = (a + 1) / 2
    (and the older rpm_linear mapping, (rpm / max_rpm)^2, for bundles trained before issue 13)."""
    contract = load_bundle(HOVER_BUNDLE).contract
    m = contract["action"]["mapping"]
    if isinstance(curve, list):
        m["thrust_curve"] = curve
    elif isinstance(curve, dict):
        contract["action"]["mapping"] = m = {"kind": "rpm_linear", "min_rpm": curve["min_rpm"], "max_rpm": 21702.0,
                                             "thrust_coefficient": 3.16e-10}
    lib, _, _ = load_obs_lib(contract, tmp_path)
    a = np.linspace(-1.5, 1.5, 4 * 31).reshape(-1, 4)
    for row in a:
        out = (ctypes.c_float * 4)()
        lib.edgectl_action_to_forces((ctypes.c_float * 4)(*row), out)
        u = (np.clip(row, -1, 1) + 1) / 2
        if m["kind"] == "rpm_linear":
            rpm = m["min_rpm"] + u * (m["max_rpm"] - m["min_rpm"])
            want = (rpm / m["max_rpm"]) ** 2
        else:
            c = m["thrust_curve"]
            want = (c[0] + c[1] * u + c[2] * u * u) / sum(c)
        np.testing.assert_allclose(np.frombuffer(out, np.float32), want, rtol=1e-6, atol=1e-7)
    if curve is None:  # the shipped Crazyflie 2.1: a pure quadratic up to the firmware's THRUST_MAX
        h = contract["action"]["hover_action"]
        out = (ctypes.c_float * 4)()
        lib.edgectl_action_to_forces((ctypes.c_float * 4)(h, h, h, h), out)
        assert abs(out[0] - ((h + 1) / 2) ** 2) < 1e-6


def test_unknown_mapping_kind_is_refused():
    contract = load_bundle(HOVER_BUNDLE).contract
    contract["action"]["mapping"]["kind"] = "pwm_direct"
    with pytest.raises(ExportError, match=r"contract\.action\.mapping\.kind.*'pwm_direct'"):
        generate_observation_c(contract)


# --- (e) fields the exporter cannot build ------------------------------------------------------
def test_unknown_field_is_refused():
    contract = load_bundle(HOVER_BUNDLE).contract
    contract["observation"]["fields"][2]["name"] = "wind_speed"
    with pytest.raises(ExportError, match=r"fields\[2\]\.name.*'wind_speed'"):
        generate_observation_c(contract)


def test_wrong_unit_or_size_is_refused():
    contract = load_bundle(HOVER_BUNDLE).contract
    contract["observation"]["fields"][3]["unit"] = "deg/s"
    with pytest.raises(ExportError, match=r"fields\[3\]\.unit.*angular_velocity.*'deg/s'"):
        generate_observation_c(contract)
    contract = load_bundle(HOVER_BUNDLE).contract
    fields = contract["observation"]["fields"]
    k = next(i for i, f in enumerate(fields) if f["name"] == "previous_actions")
    fields[k]["size"] = 6
    contract["observation"]["size"] -= 10
    for key in ("offset", "scale", "noise_std"):
        where = contract["observation"] if key == "noise_std" else contract["observation"]["normalization"]
        del where[key][-10:]
    with pytest.raises(ExportError, match=rf"fields\[{k}\]\.size.*previous_actions.*6"):
        generate_observation_c(contract)


# --- (c) the app folder ------------------------------------------------------------------------
def policy_standin(obs_size: int) -> dict[str, str]:
    """A stand-in for export/c_codegen.py's output, same API, that records its calls for the harness."""
    h = f"""#ifndef EDGECTL_POLICY_H
#define EDGECTL_POLICY_H
#define EDGECTL_POLICY_OBS_SIZE {obs_size}
#define EDGECTL_POLICY_ACTION_SIZE 4
void edgectl_policy_step(const float obs[EDGECTL_POLICY_OBS_SIZE], float action[EDGECTL_POLICY_ACTION_SIZE]);
#endif
"""
    c = """#include "edgectl_policy.h"
int standin_calls;
float standin_obs[EDGECTL_POLICY_OBS_SIZE];
float standin_action[EDGECTL_POLICY_ACTION_SIZE];
void edgectl_policy_step(const float obs[EDGECTL_POLICY_OBS_SIZE], float action[EDGECTL_POLICY_ACTION_SIZE]) {
  int i;
  standin_calls++;
  for (i = 0; i < EDGECTL_POLICY_OBS_SIZE; i++) standin_obs[i] = obs[i];
  for (i = 0; i < EDGECTL_POLICY_ACTION_SIZE; i++) action[i] = standin_action[i];
}
"""
    return {"edgectl_policy.h": h, "edgectl_policy.c": c}


# Only the firmware names and fields the controller uses, spelled as in crazyflie-firmware's
# stabilizer_types.h, controller.h, supervisor.h, power_distribution.h, log.h, app.h, debug.h.
FIRMWARE_STANDINS = {
    "stabilizer_types.h": """#ifndef STANDIN_STABILIZER_TYPES_H
#define STANDIN_STABILIZER_TYPES_H
#include <stdint.h>
#include <stdbool.h>
typedef uint32_t stabilizerStep_t;
typedef struct { float x; float y; float z; } Axis3f;
struct vec3_s { uint32_t timestamp; float x; float y; float z; };
typedef struct vec3_s point_t;
typedef struct vec3_s velocity_t;
typedef struct vec3_s acc_t;
typedef struct { float x; float y; float z; float w; } quaternion_t;
typedef struct { Axis3f acc; Axis3f gyro; } sensorData_t;
typedef struct { quaternion_t attitudeQuaternion; point_t position; velocity_t velocity; acc_t acc; } state_t;
#define STABILIZER_NR_OF_MOTORS 4
typedef enum { controlModeLegacy = 0, controlModeForceTorque = 1, controlModeForce = 2 } control_mode_t;
typedef struct { float normalizedForces[STABILIZER_NR_OF_MOTORS]; control_mode_t controlMode; } control_t;
typedef enum { modeDisable = 0, modeAbs, modeVelocity } stab_mode_t;
typedef struct { stab_mode_t x; stab_mode_t y; stab_mode_t z; stab_mode_t roll; stab_mode_t pitch; stab_mode_t yaw; } setpoint_mode_t;
typedef struct { uint32_t timestamp; float thrust; point_t position; velocity_t velocity; acc_t acceleration; setpoint_mode_t mode; } setpoint_t;
#define RATE_1000_HZ 1000
#define RATE_MAIN_LOOP RATE_1000_HZ
#define RATE_DO_EXECUTE(RATE_HZ, TICK) ((TICK % (RATE_MAIN_LOOP / RATE_HZ)) == 0)
#endif
""",
    "controller.h": """#include "stabilizer_types.h"
void controllerOutOfTreeInit(void);
bool controllerOutOfTreeTest(void);
void controllerOutOfTree(control_t *control, const setpoint_t *setpoint, const sensorData_t *sensors, const state_t *state, const stabilizerStep_t stabilizerStep);
""",
    "supervisor.h": "#include <stdbool.h>\nbool supervisorAreMotorsAllowedToRun(void);\n",
    "commander.h": "#include \"stabilizer_types.h\"\n#define COMMANDER_PRIORITY_CRTP 2\n"
                   "void commanderSetSetpoint(setpoint_t *setpoint, int priority);\n",
    "power_distribution.h": "float powerDistributionGetMaxThrust(void);\n",
    "app.h": "void appMain(void);\n",
    "FreeRTOS.h": "#include <stdint.h>\n#define M2T(X) ((unsigned int)(X))\n",
    "task.h": "#include <stdint.h>\nvoid vTaskDelay(uint32_t ticks);\nuint32_t xTaskGetTickCount(void);\n",
    "debug.h": "void debugPrint(const char *fmt, ...) __attribute__((format(printf, 1, 2)));\n"
                "#define DEBUG_PRINT(...) debugPrint(__VA_ARGS__)\n",
    "param.h": """enum { PARAM_UINT8 = 0x08, PARAM_UINT16 = 0x09, PARAM_UINT32 = 0x0A, PARAM_FLOAT = 0x06, PARAM_RONLY = 0x40 };
typedef struct { int type; const char *name; void *address; } param_entry_t;
#define PARAM_GROUP_START(NAME) param_entry_t param_##NAME[] = {
#define PARAM_ADD(TYPE, NAME, ADDRESS) {TYPE, #NAME, (void *)(ADDRESS)},
#define PARAM_GROUP_STOP(NAME) {0, 0, 0}};
""",
    "log.h": """enum { LOG_UINT8 = 1, LOG_UINT16, LOG_UINT32, LOG_INT8, LOG_INT16, LOG_INT32, LOG_FLOAT };
typedef struct { int type; const char *name; const void *address; } log_entry_t;
#define LOG_GROUP_START(NAME) const log_entry_t log_##NAME[] = {
#define LOG_ADD(TYPE, NAME, ADDRESS) {TYPE, #NAME, (const void *)(ADDRESS)},
#define LOG_GROUP_STOP(NAME) {0, 0, 0}};
""",
}

# Drives controllerOutOfTree() tick by tick through the safety and reference cases. Includes the
# controller's source to read its static state; the policy is the recording stand-in above.
HARNESS = r"""
#include <math.h>
#include <stdio.h>
#include "edgectl_controller.c"

extern int standin_calls;
extern float standin_obs[EDGECTL_POLICY_OBS_SIZE];
extern float standin_action[EDGECTL_POLICY_ACTION_SIZE];
static int allowed = 1;
bool supervisorAreMotorsAllowedToRun(void) { return allowed; }
float powerDistributionGetMaxThrust(void) { return 4.0f * 0.12f; }
void vTaskDelay(uint32_t ticks) { (void)ticks; }
void debugPrint(const char *fmt, ...) { (void)fmt; }
/* The firmware's tick count (1 kHz) and the commander, as the app sees them: a host that streams
 * stamps every setpoint with the current tick; commanderSetSetpoint stamps and stores the app's own. */
static uint32_t nowTick;
static int hostStreams = 1;
static int fedCount;
static setpoint_t commanderSp;
uint32_t xTaskGetTickCount(void) { return nowTick; }
static setpoint_t sp;
void commanderSetSetpoint(setpoint_t *s, int priority) {
  (void)priority;
  s->timestamp = nowTick;
  commanderSp = *s;
  sp = *s; /* what the stabilizer hands the controller next */
  fedCount++;
}

static int failures;
#define CHECK(cond) do { if (!(cond)) { printf("FAIL line %d: %s\n", __LINE__, #cond); failures++; } } while (0)
#define NEAR(a, b) (fabsf((float)(a) - (float)(b)) < 1e-5f)

static control_t control;
static sensorData_t sensors;
static state_t state;
static stabilizerStep_t tick = 1;

static void run(int n) {
  int i;
  for (i = 0; i < n; i++) {
    nowTick++;
    if (hostStreams) sp.timestamp = nowTick;
    controllerOutOfTree(&control, &sp, &sensors, &state, tick++);
  }
}
static int forcesZero(void) {
  int i;
  for (i = 0; i < 4; i++) if (control.normalizedForces[i] != 0.0f) return 0;
  return 1;
}
/* The backup's command: every motor between off and full, not all off (it holds the vehicle up). */
static int backupFlying(void) {
  int i, spinning = 0;
  for (i = 0; i < 4; i++) {
    float f = control.normalizedForces[i];
    if (!(f >= 0.0f && f <= 1.0f)) return 0;
    spinning += f > 0.05f;
  }
  return spinning == 4;
}
static float expectedForce(float a) {
  float u = (a < -1.0f ? -1.0f : (a > 1.0f ? 1.0f : a));
  float f = (u + 1.0f) * 0.5f;
  f = f * f * forceScale;
  return f > 1.0f ? 1.0f : f;
}

int main(void) {
  const float h = TEST_HOVER_ACTION;
  int calls;
  controllerOutOfTreeInit();
  CHECK(controllerOutOfTreeTest());
  CHECK(NEAR(forceScale, EDGECTL_MODEL_THRUST_MAX_N / 0.12f));
  state.attitudeQuaternion.w = 1.0f;
  state.position.x = 0.1f; state.position.y = -0.2f; state.position.z = 0.5f;
  state.velocity.x = 0.25f;
  standin_action[0] = h; standin_action[1] = h; standin_action[2] = 1.5f; standin_action[3] = -1.5f;

  /* Not allowed by the supervisor: motors off, policy never runs, even with thrust asked for. */
  allowed = 0; sp.thrust = 30000.0f;
  run(100);
  CHECK(forcesZero() && standin_calls == 0 && control.controlMode == controlModeForce && !engaged);
  /* Allowed, but the null setpoint (lost link, supervisor override): still off. */
  allowed = 1; sp.thrust = 0.0f;
  run(100);
  CHECK(forcesZero() && standin_calls == 0);

  /* Absolute position setpoint: the policy runs every 1000 / rate ticks, forces held in between. */
  sp.mode.x = modeAbs; sp.mode.y = modeAbs; sp.mode.z = modeAbs;
  sp.position.x = 1.0f; sp.position.y = 2.0f; sp.position.z = 3.0f;
  sp.velocity.x = 0.5f; sp.acceleration.y = -0.75f;
  run(1000);
  CHECK(standin_calls == EDGECTL_RATE_HZ);
  CHECK(engaged && fault == 0 && policySteps == (uint32_t)EDGECTL_RATE_HZ);
  CHECK(NEAR(standin_obs[IDX_POS + 0], 0.1f - 1.0f) && NEAR(standin_obs[IDX_POS + 2], 0.5f - 3.0f));
  CHECK(NEAR(standin_obs[IDX_VEL + 0], 0.25f - (TRACK ? 0.5f : 0.0f)));
#if IDX_ACC >= 0
  CHECK(NEAR(standin_obs[IDX_ACC + 1], -0.75f));
#endif
  /* Identity attitude -> identity rotation matrix. */
  CHECK(NEAR(standin_obs[IDX_ROT + 0], 1.0f) && NEAR(standin_obs[IDX_ROT + 1], 0.0f) && NEAR(standin_obs[IDX_ROT + 8], 1.0f));
  /* The history holds the last action, clipped. */
  CHECK(NEAR(standin_obs[IDX_PREV + 0], h) && NEAR(standin_obs[IDX_PREV + 2], 1.0f) && NEAR(standin_obs[IDX_PREV + 3], -1.0f));
  CHECK(NEAR(control.normalizedForces[0], expectedForce(h)) && NEAR(control.normalizedForces[2], expectedForce(1.5f)));
  CHECK(control.normalizedForces[3] == 0.0f && control.normalizedForces[2] <= 1.0f);
  calls = standin_calls;
  run(3);
  CHECK(standin_calls - calls <= 1 && NEAR(control.normalizedForces[0], expectedForce(h)));

  /* A manual setpoint with thrust: hold the last absolute reference, zero reference velocity. */
  sp.mode.x = modeDisable; sp.mode.y = modeDisable; sp.mode.z = modeDisable; sp.thrust = 30000.0f;
  state.position.x = 0.6f;
  run(100);
  CHECK(NEAR(standin_obs[IDX_POS + 0], 0.6f - 1.0f) && NEAR(standin_obs[IDX_VEL + 0], 0.25f));

  /* NaN in the gyro: the backup flies (its open-loop hover command without a usable state), the policy
   * is no longer called, and the fault latches until the setpoint asks for zero thrust. */
  sensors.gyro.x = NAN;
  run(20);
  CHECK(fault == 1 && backupFlying());
  sensors.gyro.x = 0.0f;
  calls = standin_calls;
  run(100);
  CHECK(fault == 1 && backupFlying() && standin_calls == calls);
  sp.thrust = 0.0f;
  run(1);
  CHECK(fault == 0 && !engaged && forcesZero());
  /* Re-engaging starts like an episode: hold here, hover in the history. */
  sp.thrust = 30000.0f; state.position.x = 2.0f;
  run(100);
  CHECK(engaged && fault == 0 && standin_calls > calls);
  CHECK(NEAR(standin_obs[IDX_POS + 0], 0.0f));
  /* A NaN action from the policy: fault 2, the backup flies. */
  standin_action[1] = NAN;
  run(20);
  CHECK(fault == 2 && backupFlying());
  /* Link cut: the host stops writing setpoints. Flying on until the newest host setpoint is
   * edgectl.linkMs old, then on that very tick the backup (fault 4), and the app feeds the
   * commander a hold setpoint at the last reference so the supervisor keeps the motors running; it
   * does not count its own setpoints as the host's. */
  standin_action[1] = h; sp.thrust = 0.0f;
  run(1);
  sp.mode.x = modeAbs; sp.mode.y = modeAbs; sp.mode.z = modeAbs;
  sp.position.x = 0.5f; sp.position.y = 0.25f; sp.position.z = 1.0f;
  run(100);
  CHECK(engaged && fault == 0);
  /* At boot the parameter is 50 ms: a 100 Hz setpoint source (a script, the high-level commander) flies
   * the policy without a single link episode. */
  CHECK(linkTimeoutMs == 50 && param_edgectl[0].address == (void *)&linkTimeoutMs);
  {
    const uint32_t drops = linkDrops;
    int i;
    /* a level hover command: the vehicle here never moves, and the backup's disturbance observer would
     * read a lasting asymmetric command as a torque to cancel */
    standin_action[2] = h; standin_action[3] = h;
    calls = standin_calls;
    hostStreams = 0;
    for (i = 0; i < 500; i++) {
      if (nowTick % 10 == 0) sp.timestamp = nowTick + 1;
      run(1);
    }
    hostStreams = 1;
    CHECK(fault == 0 && linkDrops == drops && standin_calls == calls + 50);
    run(10);
  }
  linkTimeoutMs = 6; /* as `edgectl run` sets it, with its keep-alive (a setpoint every tick here) */
  {
    /* A gap shorter than EDGECTL_LINK_LATCH_MS (host jitter): the backup flies from the tick the gap
     * passes the threshold, and the policy flies again on its first period after the host is back. */
    const uint32_t drops = linkDrops, gap = nowTick;
    uint32_t took = 0, back = 0;
    hostStreams = 0;
    while (nowTick - gap < 20) {
      run(1);
      if (fault == EDGECTL_FAULT_LINK && took == 0) took = nowTick;
    }
    CHECK(took == gap + linkTimeoutMs + 1 && backupFlying() && linkDrops == drops + 1);
    hostStreams = 1;
    calls = standin_calls;
    run(1);
    CHECK(fault == 0 && !linkLatched);
    while (standin_calls == calls && nowTick - gap < 100) {
      run(1);
      back = nowTick;
    }
    CHECK(standin_calls == calls + 1 && back - gap <= 20 + 1000 / EDGECTL_RATE_HZ);
    run(100);
    CHECK(fault == 0 && engaged && linkDrops == drops + 1);
  }
  {
    const uint32_t cut = nowTick;
    uint32_t took = 0;
    hostStreams = 0;
    fedCount = 0;
    while (nowTick - cut < 200) {
      run(1);
      if (fault != 0 && took == 0) took = nowTick;
      if (took == 0) CHECK(forcesZero() == 0);
    }
    CHECK(fault == EDGECTL_FAULT_LINK && backupFlying());
    /* the first tick past the threshold: within one control period of the cut; latched since */
    CHECK(took == cut + linkTimeoutMs + 1 && took - cut < 1000 / EDGECTL_RATE_HZ && linkLatched);
    CHECK(fedCount == 2 && commanderSp.mode.z == modeAbs && NEAR(commanderSp.position.x, 0.5f) &&
          NEAR(commanderSp.position.z, 1.0f) && commanderSp.timestamp == ownStamp);
    run(3000);
    CHECK(fault == EDGECTL_FAULT_LINK && backupFlying() && fedCount >= 30);
    /* heard again after the latch: the backup keeps flying (it is landing the vehicle) */
    hostStreams = 1;
    run(100);
    CHECK(fault == EDGECTL_FAULT_LINK && backupFlying());
    /* the host comes back and asks for zero thrust: disengaged, the fault cleared */
    hostStreams = 1; sp.thrust = 0.0f;
    sp.mode.x = modeDisable; sp.mode.y = modeDisable; sp.mode.z = modeDisable;
    run(1);
    CHECK(fault == 0 && !engaged && forcesZero());
  }
  /* The log group names the variables a pilot watches. */
  CHECK(log_edgectl[0].name != 0 && log_edgectl[1].address == (const void *)&fault);

  printf(failures ? "%d failures\n" : "ok\n", failures);
  return failures != 0;
}
"""


def make_figure8_bundle(platform, d: Path):
    import train_fast.tasks.quadrotor_tasks as qt

    cfg = qt.figure8_config()
    contract = qt.contract(cfg, platform)
    rng = np.random.default_rng(0)
    n = contract["observation"]["size"]
    weights = {"actor.0.weight": rng.normal(size=(n, 8)), "actor.0.bias": np.zeros(8),
               "actor.1.weight": rng.normal(size=(8, 4)), "actor.1.bias": np.zeros(4)}
    policy = {"kind": "mlp", "activation": "tanh", "output_activation": "clip",
              "layers": [{"weight": f"actor.{i}.weight", "bias": f"actor.{i}.bias"} for i in range(2)]}
    write_bundle(d, contract=contract, policy=policy, weights=weights, platform_toml=platform.raw,
                 platform_name=platform.name, task={"name": "figure8"}, seed=0, metrics={}, versions={})
    return load_bundle(d)


def _index(contract: dict, name: str) -> int:
    o = 0
    for f in contract["observation"]["fields"]:
        if f["name"] == name:
            return o
        o += f["size"]
    return -1


@needs_gcc
@pytest.mark.parametrize("task", ["hover", "figure8"])
def test_app_folder_builds_and_flies_on_host(task, platform, tmp_path):
    bundle = load_bundle(HOVER_BUNDLE) if task == "hover" else make_figure8_bundle(platform, tmp_path / "bundle")
    contract = bundle.contract
    app = write_app(bundle, policy_standin(contract["observation"]["size"]), tmp_path / "cf_app")

    for rel in ("Makefile", "Kbuild", "app-config", "README.md", "src/Kbuild", "src/edgectl_controller.c",
                "src/edgectl_obs.h", "src/edgectl_obs.c", "src/edgectl_policy.h", "src/edgectl_policy.c"):
        assert (app / rel).is_file(), rel
    makefile = (app / "Makefile").read_text()
    assert "include $(CRAZYFLIE_BASE)/tools/make/oot.mk" in makefile and "CRAZYFLIE_BASE ?=" in makefile
    config = (app / "app-config").read_text().splitlines()
    assert "CONFIG_APP_ENABLE=y" in config and "CONFIG_CONTROLLER_OOT=y" in config
    assert (app / "Kbuild").read_text().strip() == "obj-y += src/"
    kbuild = (app / "src" / "Kbuild").read_text().split()
    for obj in ("edgectl_controller.o", "edgectl_obs.o", "edgectl_policy.o"):
        assert obj in kbuild
    src = (app / "src" / "edgectl_controller.c").read_text()
    for name in ("void appMain(void)", "void controllerOutOfTreeInit(void)", "bool controllerOutOfTreeTest(void)",
                 "void controllerOutOfTree(control_t *control", "controlModeForce", "RATE_DO_EXECUTE(EDGECTL_RATE_HZ"):
        assert name in src, name
    readme = (app / "README.md").read_text()
    assert "edgectl build-firmware" in readme and "edgectl flash" in readme and "git clone --recursive" in readme

    # Compile the controller against stand-in firmware headers, then drive it tick by tick.
    inc = _write(tmp_path / "firmware_standins", FIRMWARE_STANDINS)
    _gcc(f"-I{inc}", "-c", "edgectl_controller.c", "-o", tmp_path / "controller.o", cwd=app / "src")
    _write(tmp_path, {"harness.c": HARNESS})
    idx = {k: _index(contract, n) for k, n in (("IDX_POS", "position_error"), ("IDX_ROT", "rotation_matrix"),
                                                 ("IDX_VEL", "velocity_error"), ("IDX_ACC", "reference_acceleration"),
                                                 ("IDX_PREV", "previous_actions"))}
    defines = [f"-D{k}={v}" for k, v in idx.items()]
    defines += ["-DEDGECTL_ONBOARD_MONITOR=0", f"-DTRACK={int(task == 'figure8')}", f"-DTEST_HOVER_ACTION={contract['action']['hover_action']!r}f",
                "-DCONFIG_ENABLE_THRUST_BAT_COMPENSATED=1"]
    exe = tmp_path / "harness"
    _gcc(f"-I{inc}", f"-I{app / 'src'}", *defines, "harness.c", app / "src" / "edgectl_obs.c",
         app / "src" / "edgectl_policy.c", *SAFETY_SOURCES(app / "src"), "-o", exe, "-lm", cwd=tmp_path)
    r = subprocess.run([exe], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stdout + r.stderr


def test_write_app_refusals(platform, tmp_path):
    bundle = load_bundle(HOVER_BUNDLE)
    with pytest.raises(ExportError, match="EDGECTL_POLICY_OBS_SIZE is 25.*says 37"):
        write_app(bundle, policy_standin(25), tmp_path / "a")
    with pytest.raises(ExportError, match="edgectl_policy.c is missing"):
        write_app(bundle, {"edgectl_policy.h": policy_standin(37)["edgectl_policy.h"]}, tmp_path / "a")
    assert not (tmp_path / "a").exists()
    other = tmp_path / "not_an_app"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ExportError, match="not an edgectl Crazyflie app"):
        write_app(bundle, policy_standin(37), other)
    assert (other / "notes.txt").read_text() == "mine"
    # An earlier app is replaced.
    app = write_app(bundle, policy_standin(37), tmp_path / "app")
    (app / "build").mkdir()
    assert write_app(bundle, policy_standin(37), app) == app and not (app / "build").exists()


# --- (d) the firmware build --------------------------------------------------------------------
@pytest.fixture
def app_dir(tmp_path):
    return write_app(load_bundle(HOVER_BUNDLE), policy_standin(37), tmp_path / "app")


def test_build_firmware_without_firmware_explains(app_dir, tmp_path):
    with pytest.raises(TargetUnavailable) as e:
        build_firmware(app_dir, None)
    msg = str(e.value)
    assert "git clone --recursive https://github.com/bitcraze/crazyflie-firmware" in msg
    assert "arm-none-eabi-gcc" in msg and f"edgectl build-firmware {app_dir} --firmware-dir" in msg
    with pytest.raises(TargetUnavailable, match="not a crazyflie-firmware checkout.*git clone --recursive"):
        build_firmware(app_dir, tmp_path)


def _fake_firmware(d: Path, submodules: bool = True) -> Path:
    for rel in ("tools/make/oot.mk", "Makefile", "src/modules/interface/controller/controller.h"):
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text("")
    for sub in ("vendor/FreeRTOS", "vendor/CMSIS"):
        (d / sub).mkdir(parents=True, exist_ok=True)
        if submodules:
            (d / sub / "README").write_text("")
    return d


def _tool(bin_dir: Path, name: str, script: str) -> None:
    bin_dir.mkdir(exist_ok=True)
    p = bin_dir / name
    p.write_text("#!/bin/sh\n" + script)
    p.chmod(p.stat().st_mode | stat.S_IXUSR)


def test_build_firmware_runs_make(app_dir, tmp_path, monkeypatch):
    """The make invocation and its failure report, with a fake make and toolchain on PATH."""
    fw = _fake_firmware(tmp_path / "fw")
    bin_dir = tmp_path / "bin"
    _tool(bin_dir, "arm-none-eabi-gcc", "exit 0\n")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    with pytest.raises(TargetUnavailable, match="submodules vendor/FreeRTOS, vendor/CMSIS are empty"):
        build_firmware(app_dir, _fake_firmware(tmp_path / "fw_nosub", submodules=False))

    _tool(bin_dir, "fake-make", 'echo "args: $*"; echo "CRAZYFLIE_BASE=$CRAZYFLIE_BASE"\n'
                                'mkdir -p "$2/build" && printf cf2 > "$2/build/cf2.bin"\n')
    image = build_firmware(app_dir, fw, make="fake-make", jobs=3)
    assert image == app_dir / "build" / "cf2.bin" and image.read_text() == "cf2"

    _tool(bin_dir, "bad-make", 'i=0; while [ $i -lt 100 ]; do echo "line $i"; i=$((i+1)); done\n'
                               'echo "src/edgectl_controller.c:1: error: boom"; exit 2\n')
    with pytest.raises(ExportError) as e:
        build_firmware(app_dir, fw, make="bad-make")
    msg = str(e.value)
    assert f"CRAZYFLIE_BASE={fw}" in msg and "exit status 2" in msg and "error: boom" in msg
    assert "line 99" in msg and "line 10\n" not in msg  # the tail, not the whole log

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(TargetUnavailable, match="fake-make: not found"):
        build_firmware(app_dir, fw, make="fake-make")


# End to end with the real policy generator: firmware state -> observation -> policy -> forces,
# against the bundle's NumPy actor.
# The firmware functions the controller calls, for harnesses that link it on the host.
FIRMWARE_CALLS = r"""
#include "commander.h"
uint32_t xTaskGetTickCount(void) { return 0; }
void commanderSetSetpoint(setpoint_t *setpoint, int priority) { (void)setpoint; (void)priority; }
bool supervisorAreMotorsAllowedToRun(void) { return 1; }
float powerDistributionGetMaxThrust(void) { return 4.0f * 0.12f; }
void vTaskDelay(uint32_t ticks) { (void)ticks; }
void debugPrint(const char *fmt, ...) { (void)fmt; }
"""

E2E_HARNESS = r"""
#include <math.h>
#include <stdio.h>
#include "controller.h"
#include "supervisor.h"
#include "power_distribution.h"
#include "task.h"
""" + FIRMWARE_CALLS + r"""

int main(void) {
  static control_t control;
  static setpoint_t sp;
  static sensorData_t sensors;
  static state_t state;
  stabilizerStep_t tick;
  int i;
  controllerOutOfTreeInit();
  sp.mode.x = modeAbs; sp.mode.y = modeAbs; sp.mode.z = modeAbs; sp.position.z = 1.0f;
  state.position.x = 0.1f; state.position.y = -0.05f; state.position.z = 0.9f;
  state.velocity.x = 0.2f; state.velocity.z = -0.1f;
  state.attitudeQuaternion.x = 0.1f; state.attitudeQuaternion.w = sqrtf(0.99f);
  sensors.gyro.x = 10.0f; sensors.gyro.y = -20.0f; sensors.gyro.z = 5.0f;
  for (tick = 1; tick <= 20; tick++) {
    controllerOutOfTree(&control, &sp, &sensors, &state, tick);
    if (tick % 10 == 0) {
      for (i = 0; i < 4; i++) printf("%.9g ", (double)control.normalizedForces[i]);
      printf("\n");
    }
  }
  return 0;
}
"""


@needs_gcc
def test_app_with_generated_policy_matches_bundle(tmp_path):
    c_codegen = pytest.importorskip("export.c_codegen")
    bundle = load_bundle(HOVER_BUNDLE)
    app = write_app(bundle, c_codegen.generate_c(bundle), tmp_path / "app")
    inc = _write(tmp_path / "firmware_standins", FIRMWARE_STANDINS)
    _write(tmp_path, {"e2e.c": E2E_HARNESS})
    src = app / "src"
    exe = tmp_path / "e2e"
    _gcc(f"-I{inc}", f"-I{src}", "-DCONFIG_ENABLE_THRUST_BAT_COMPENSATED=1", "e2e.c", src / "edgectl_controller.c",
         src / "edgectl_obs.c", src / "edgectl_policy.c", *SAFETY_SOURCES(src), "-o", exe, "-lm", cwd=tmp_path)
    r = subprocess.run([exe], capture_output=True, text=True, check=True)
    got = np.array([[float(x) for x in line.split()] for line in r.stdout.splitlines()])

    from edgectl.contract import PositionIntegral, thrust_curve

    c = bundle.contract
    tmax, b0, b1 = thrust_curve(c["action"]["mapping"])
    scale = tmax / 0.12  # model max thrust / the stand-in firmware's THRUST_MAX
    w, x = math.sqrt(np.float32(0.99)), 0.1
    rot = [1, 0, 0, 0, 1 - 2 * x * x, -2 * w * x, 0, 2 * w * x, 1 - 2 * x * x]
    err = np.array([0.1, -0.05, -0.1])
    history = [c["action"]["hover_action"]] * (4 * 4)
    integral = PositionIntegral(c)
    want = []
    for _ in range(2):  # the policy runs at ticks 10 and 20 (100 Hz in the 1 kHz loop)
        obs = np.array([*err, *rot, 0.2, 0, -0.1, *np.radians([10, -20, 5]), *history,
                        *integral.update(err, np.array([0.0, 0.0, 1.0]))])
        a = np.clip(bundle.act(obs), -1, 1)
        u = (a + 1) / 2
        want.append(np.clip((b0 + u * (b1 + u * (1 - b0 - b1))) * scale, 0, 1))
        history = [*a, *history[:-4]]
    np.testing.assert_allclose(got, np.array(want), atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("arm-none-eabi-gcc") or not os.environ.get("EDGECTL_CRAZYFLIE_FIRMWARE"),
                    reason="set EDGECTL_CRAZYFLIE_FIRMWARE to a crazyflie-firmware checkout (with submodules) and "
                           "install arm-none-eabi-gcc to build a real image")
def test_build_against_real_firmware(tmp_path):
    bundle = load_bundle(HOVER_BUNDLE)
    try:
        from export.c_codegen import generate_c
        policy = generate_c(bundle)
    except ImportError:
        policy = policy_standin(bundle.contract["observation"]["size"])
    app = write_app(bundle, policy, tmp_path / "app")
    image = build_firmware(app, Path(os.environ["EDGECTL_CRAZYFLIE_FIRMWARE"]), jobs=os.cpu_count() or 2)
    assert image == app / "build" / "cf2.bin" and image.stat().st_size > 100_000
    config = (app / "build" / ".config").read_text().splitlines()
    assert "CONFIG_CONTROLLER_OOT=y" in config and "CONFIG_APP_ENABLE=y" in config


MONITOR_HARNESS = r"""
#include <math.h>
#include <stdio.h>
#include "edgectl_controller.c"
""" + FIRMWARE_CALLS + r"""
int main(void) {
  static control_t control;
  static setpoint_t sp;
  static sensorData_t sensors;
  static state_t state;
  stabilizerStep_t tick;
  int i;
  controllerOutOfTreeInit();
  sp.mode.x = modeAbs; sp.mode.y = modeAbs; sp.mode.z = modeAbs; sp.position.z = 1.0f;
  state.position.z = 1.0f; state.attitudeQuaternion.w = 1.0f;
  for (tick = 1; tick <= 50; tick++) controllerOutOfTree(&control, &sp, &sensors, &state, tick);
  printf("%d %u %.6g\n", (int)fault, (unsigned)policySteps, (double)robustness);
  state.position.x = 0.7f;  /* 0.7 m from the reference: outside the platform's 0.5 m box */
  for (; tick <= 100; tick++) controllerOutOfTree(&control, &sp, &sensors, &state, tick);
  printf("%d %u %.6g\n", (int)fault, (unsigned)policySteps, (double)robustness);
  for (i = 0; i < 4; i++) printf("%.6g ", (double)control.normalizedForces[i]);
  printf("\n");
  return 0;
}
"""


@needs_gcc
def test_onboard_monitor_hands_the_motors_to_the_backup(tmp_path):
    """The platform's safety specs run on the vehicle (past-time form): leaving the box latches fault 3,
    stops calling the policy and flies the backup controller (the same law as the host's shield)."""
    c_codegen = pytest.importorskip("export.c_codegen")
    bundle = load_bundle(HOVER_BUNDLE)
    app = write_app(bundle, c_codegen.generate_c(bundle), tmp_path / "app")
    assert "obj-y += edgectl_backup.o" in (app / "src" / "Kbuild").read_text()
    inc = _write(tmp_path / "firmware_standins", FIRMWARE_STANDINS)
    _write(tmp_path, {"mon.c": MONITOR_HARNESS})
    src = app / "src"
    exe = tmp_path / "mon"
    _gcc(f"-I{inc}", f"-I{src}", "mon.c", src / "edgectl_obs.c", src / "edgectl_policy.c", *SAFETY_SOURCES(src),
         "-o", exe, "-lm", cwd=tmp_path)
    lines = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.splitlines()
    fault0, steps0, rob0 = lines[0].split()
    assert (fault0, steps0) == ("0", "5") and float(rob0) > 0.4  # at the reference: the box spec holds by 0.5 m
    fault1, steps1, rob1 = lines[1].split()
    assert fault1 == "3" and steps1 == "5" and float(rob1) == pytest.approx(0.5 - 0.7, abs=1e-6)
    forces = [float(x) for x in lines[2].split()]
    assert all(0.0 <= f <= 1.0 for f in forces) and sum(f > 0.05 for f in forces) == 4


def test_c_signals_match_python_signals():
    from edgectl.safety import c_signals
    from edgectl.safety.signals import QUADROTOR_SIGNALS, signals_from_state
    lib_dir = Path(tempfile.mkdtemp())
    _write(lib_dir, c_signals.generate())
    _gcc("-O2", "-shared", "-fPIC", "-o", "libsig.so", "edgectl_signals.c", "-lm", cwd=lib_dir)
    lib = ctypes.CDLL(str(lib_dir / "libsig.so"))
    rng = np.random.default_rng(3)
    fp = ctypes.POINTER(ctypes.c_float)
    for _ in range(200):
        pos, vel, omega, ref = (rng.normal(size=3).astype(np.float32) for _ in range(4))
        q = rng.normal(size=4).astype(np.float32)
        q /= np.linalg.norm(q)
        out = np.zeros(len(QUADROTOR_SIGNALS), np.float32)
        lib.edgectl_signals(*(np.ascontiguousarray(a).ctypes.data_as(fp) for a in (pos, q, vel, omega, ref, out)))
        want = signals_from_state(pos.astype(np.float64), q.astype(np.float64), vel.astype(np.float64),
                                  omega.astype(np.float64), ref.astype(np.float64))
        np.testing.assert_allclose(out, [want[k] for k in QUADROTOR_SIGNALS], atol=2e-5)
