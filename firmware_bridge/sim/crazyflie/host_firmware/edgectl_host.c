/* edgectl_host.c - the firmware around the edgectl Crazyflie app, on a host.
 *
 * The simulated Crazyflie (firmware_bridge/sim/crazyflie/sim_vehicle.py) loads the app built with this
 * file (firmware_bridge/sim/crazyflie/host_app.py) and calls edgectl_host_step() once per stabilizer tick
 * (1 kHz): it plays the stabilizer loop (state, sensors, the setpoint after the supervisor's override,
 * the stabilizer step), the tick count, the supervisor's motor permission, the commander (a setpoint the
 * app feeds is handed back to the vehicle's commander), the power distribution's maximum thrust and the
 * console. The log and parameter tables (log.h / param.h stand-ins) are read back through
 * edgectl_host_vars(); the app's variables are the vehicle's.
 *
 * The generated controller is #included: one translation unit, so that edgectl_host_status() can read
 * its file-scope state (the link latch, the backup's phase and hold point) that the firmware's log and
 * parameter tables do not carry. Nothing here changes what the controller computes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "edgectl_controller.c"

/* --- the firmware services the app calls ----------------------------------------------------------- */
static TickType_t hostTick;
static bool hostMotorsAllowed;
static float hostMaxThrust; /* N, all motors */
static setpoint_t hostFed;
static uint32_t hostFedCount;
static char hostConsole[2048];
static size_t hostConsoleLen;
static jmp_buf hostAppMainExit;
static int hostInAppMain;

TickType_t xTaskGetTickCount(void) {
  return hostTick;
}

/* appMain's task loop: on the host its first delay ends the run (edgectl_host_app_main). */
void vTaskDelay(const TickType_t xTicksToDelay) {
  (void)xTicksToDelay;
  if (hostInAppMain) {
    longjmp(hostAppMainExit, 1);
  }
}

bool supervisorAreMotorsAllowedToRun(void) {
  return hostMotorsAllowed;
}

float powerDistributionGetMaxThrust(void) {
  return hostMaxThrust;
}

/* The app only feeds at COMMANDER_PRIORITY_CRTP, the host's own priority, so its setpoint always
 * replaces the current one; the vehicle takes it from edgectl_host_fed(). */
void commanderSetSetpoint(setpoint_t *setpoint, int priority) {
  (void)priority;
  setpoint->timestamp = hostTick;
  hostFed = *setpoint;
  hostFedCount++;
}

void edgectl_host_debug_print(const char *fmt, ...) {
  va_list ap;
  int n;
  if (hostConsoleLen >= sizeof(hostConsole) - 1) {
    return;
  }
  va_start(ap, fmt);
  n = vsnprintf(hostConsole + hostConsoleLen, sizeof(hostConsole) - hostConsoleLen, fmt, ap);
  va_end(ap);
  if (n > 0) {
    hostConsoleLen += (size_t)n;
    if (hostConsoleLen > sizeof(hostConsole) - 1) {
      hostConsoleLen = sizeof(hostConsole) - 1;
    }
  }
}

/* --- the host's entry points --------------------------------------------------------------------- */
/* Flat layouts of one tick's inputs (firmware_bridge/sim/crazyflie/host_app.py packs them). */
enum {
  EDGECTL_HOST_ST_POS = 0,   /* state_t.position, m */
  EDGECTL_HOST_ST_VEL = 3,   /* state_t.velocity, m/s */
  EDGECTL_HOST_ST_QUAT = 6,  /* state_t.attitudeQuaternion x, y, z, w */
  EDGECTL_HOST_ST_GYRO = 10, /* sensorData_t.gyro, deg/s */
  EDGECTL_HOST_ST_ACC = 13,  /* sensorData_t.acc, g */
  EDGECTL_HOST_ST_SIZE = 16,
  EDGECTL_HOST_SP_THRUST = 0, /* setpoint_t.thrust */
  EDGECTL_HOST_SP_POS = 1,    /* .position, m */
  EDGECTL_HOST_SP_VEL = 4,    /* .velocity, m/s */
  EDGECTL_HOST_SP_ACC = 7,    /* .acceleration, m/s^2 */
  EDGECTL_HOST_SP_ATT = 10,   /* .attitude roll, pitch, yaw, deg */
  EDGECTL_HOST_SP_RATE = 13,  /* .attitudeRate, deg/s */
  EDGECTL_HOST_SP_SIZE = 16,
  EDGECTL_HOST_MODES = 7 /* .mode x, y, z, roll, pitch, yaw, quat */
};

static void vec3In(struct vec3_s *v, const float *x) {
  v->x = x[0];
  v->y = x[1];
  v->z = x[2];
}

static void vec3Out(const struct vec3_s *v, float *x) {
  x[0] = v->x;
  x[1] = v->y;
  x[2] = v->z;
}

static void setpointIn(setpoint_t *s, uint32_t stamp, const float *sp, const int32_t *modes) {
  memset(s, 0, sizeof(*s));
  s->timestamp = stamp;
  s->thrust = sp[EDGECTL_HOST_SP_THRUST];
  vec3In(&s->position, sp + EDGECTL_HOST_SP_POS);
  vec3In(&s->velocity, sp + EDGECTL_HOST_SP_VEL);
  vec3In(&s->acceleration, sp + EDGECTL_HOST_SP_ACC);
  s->attitude.roll = sp[EDGECTL_HOST_SP_ATT];
  s->attitude.pitch = sp[EDGECTL_HOST_SP_ATT + 1];
  s->attitude.yaw = sp[EDGECTL_HOST_SP_ATT + 2];
  s->attitudeRate.roll = sp[EDGECTL_HOST_SP_RATE];
  s->attitudeRate.pitch = sp[EDGECTL_HOST_SP_RATE + 1];
  s->attitudeRate.yaw = sp[EDGECTL_HOST_SP_RATE + 2];
  s->mode.x = (stab_mode_t)modes[0];
  s->mode.y = (stab_mode_t)modes[1];
  s->mode.z = (stab_mode_t)modes[2];
  s->mode.roll = (stab_mode_t)modes[3];
  s->mode.pitch = (stab_mode_t)modes[4];
  s->mode.yaw = (stab_mode_t)modes[5];
  s->mode.quat = (stab_mode_t)modes[6];
}

static uint32_t setpointOut(const setpoint_t *s, float *sp, int32_t *modes) {
  sp[EDGECTL_HOST_SP_THRUST] = s->thrust;
  vec3Out(&s->position, sp + EDGECTL_HOST_SP_POS);
  vec3Out(&s->velocity, sp + EDGECTL_HOST_SP_VEL);
  vec3Out(&s->acceleration, sp + EDGECTL_HOST_SP_ACC);
  sp[EDGECTL_HOST_SP_ATT] = s->attitude.roll;
  sp[EDGECTL_HOST_SP_ATT + 1] = s->attitude.pitch;
  sp[EDGECTL_HOST_SP_ATT + 2] = s->attitude.yaw;
  sp[EDGECTL_HOST_SP_RATE] = s->attitudeRate.roll;
  sp[EDGECTL_HOST_SP_RATE + 1] = s->attitudeRate.pitch;
  sp[EDGECTL_HOST_SP_RATE + 2] = s->attitudeRate.yaw;
  modes[0] = (int32_t)s->mode.x;
  modes[1] = (int32_t)s->mode.y;
  modes[2] = (int32_t)s->mode.z;
  modes[3] = (int32_t)s->mode.roll;
  modes[4] = (int32_t)s->mode.pitch;
  modes[5] = (int32_t)s->mode.yaw;
  modes[6] = (int32_t)s->mode.quat;
  return s->timestamp;
}

/* Layout check for the Python side: the sizes above and the app's rate and observation size. */
void edgectl_host_layout(int32_t out[6]) {
  out[0] = EDGECTL_HOST_ST_SIZE;
  out[1] = EDGECTL_HOST_SP_SIZE;
  out[2] = EDGECTL_HOST_MODES;
  out[3] = EDGECTL_RATE_HZ;
  out[4] = EDGECTL_OBS_SIZE;
  out[5] = EDGECTL_ACTION_SIZE;
}

void edgectl_host_set_max_thrust(float newtons) {
  hostMaxThrust = newtons;
}

/* appMain up to its first vTaskDelay (its boot message); the firmware runs it as its own task. */
void edgectl_host_app_main(void) {
  if (setjmp(hostAppMainExit) == 0) {
    hostInAppMain = 1;
    appMain();
  }
  hostInAppMain = 0;
}

/* One stabilizer tick: tick count `tick`, step `stabilizerStep`; writes the control's normalized
 * forces; returns how many setpoints the app fed the commander during it (0 or 1). */
int edgectl_host_step(uint32_t tick, uint32_t stabilizerStep, int motorsAllowed, const float st[EDGECTL_HOST_ST_SIZE],
                      uint32_t spStamp, const float sp[EDGECTL_HOST_SP_SIZE], const int32_t modes[EDGECTL_HOST_MODES],
                      float forcesOut[STABILIZER_NR_OF_MOTORS]) {
  static control_t control;
  static setpoint_t setpoint;
  static sensorData_t sensors;
  static state_t state;
  const uint32_t fed0 = hostFedCount;
  int i;
  hostTick = tick;
  hostMotorsAllowed = motorsAllowed != 0;
  setpointIn(&setpoint, spStamp, sp, modes);
  memset(&state, 0, sizeof(state));
  memset(&sensors, 0, sizeof(sensors));
  vec3In(&state.position, st + EDGECTL_HOST_ST_POS);
  vec3In(&state.velocity, st + EDGECTL_HOST_ST_VEL);
  state.attitudeQuaternion.x = st[EDGECTL_HOST_ST_QUAT];
  state.attitudeQuaternion.y = st[EDGECTL_HOST_ST_QUAT + 1];
  state.attitudeQuaternion.z = st[EDGECTL_HOST_ST_QUAT + 2];
  state.attitudeQuaternion.w = st[EDGECTL_HOST_ST_QUAT + 3];
  sensors.gyro.x = st[EDGECTL_HOST_ST_GYRO];
  sensors.gyro.y = st[EDGECTL_HOST_ST_GYRO + 1];
  sensors.gyro.z = st[EDGECTL_HOST_ST_GYRO + 2];
  sensors.acc.x = st[EDGECTL_HOST_ST_ACC];
  sensors.acc.y = st[EDGECTL_HOST_ST_ACC + 1];
  sensors.acc.z = st[EDGECTL_HOST_ST_ACC + 2];
  control.controlMode = controlModeLegacy;
  controllerOutOfTree(&control, &setpoint, &sensors, &state, stabilizerStep);
  for (i = 0; i < STABILIZER_NR_OF_MOTORS; i++) {
    /* a controller that left force mode gives no forces the vehicle could use */
    forcesOut[i] = control.controlMode == controlModeForce ? control.normalizedForces[i] : NAN;
  }
  return (int)(hostFedCount - fed0);
}

/* The newest setpoint the app fed the commander; returns its timestamp. */
uint32_t edgectl_host_fed(float sp[EDGECTL_HOST_SP_SIZE], int32_t modes[EDGECTL_HOST_MODES]) {
  return setpointOut(&hostFed, sp, modes);
}

/* The controller's state, as numbers named by edgectl_host_status_names() in this order. */
const char *edgectl_host_status_names(void) {
  return "engaged fault steps linkdrops link_latched host_stamp own_stamp link_ms force_scale robustness "
         "backup_phase backup_t_phase backup_hold_x backup_hold_y backup_hold_z";
}

int edgectl_host_status(double *out, int n) {
  const double v[] = {engaged ? 1.0 : 0.0, (double)fault, (double)policySteps, (double)linkDrops,
                      linkLatched ? 1.0 : 0.0, (double)hostStamp, (double)ownStamp, (double)linkTimeoutMs,
                      (double)forceScale, (double)robustness, (double)backup.phase, (double)backup.t_phase,
                      (double)backup.hold[0], (double)backup.hold[1], (double)backup.hold[2]};
  const int count = (int)(sizeof(v) / sizeof(v[0]));
  int i;
  for (i = 0; i < n && i < count; i++) {
    out[i] = v[i];
  }
  return count;
}

/* The observation and action of the newest policy period (differential tests). */
void edgectl_host_policy_io(float obsOut[EDGECTL_OBS_SIZE], float actionOut[EDGECTL_ACTION_SIZE]) {
  memcpy(obsOut, obs, sizeof(obs));
  memcpy(actionOut, action, sizeof(action));
}

/* Console output since the last call (DEBUG_PRINT), NUL-terminated in out[n]; returns its length. */
int edgectl_host_console(char *out, int n) {
  int len = (int)hostConsoleLen < n - 1 ? (int)hostConsoleLen : n - 1;
  if (n <= 0) {
    return 0;
  }
  memcpy(out, hostConsole, (size_t)len);
  out[len] = '\0';
  hostConsoleLen = 0;
  return len;
}

/* The log (kind 0) or parameter (kind 1) table: its first row in *first; returns the number of rows. */
extern edgectl_host_var_t __start_edgectl_host_log[] __attribute__((weak));
extern edgectl_host_var_t __stop_edgectl_host_log[] __attribute__((weak));
extern edgectl_host_var_t __start_edgectl_host_param[] __attribute__((weak));
extern edgectl_host_var_t __stop_edgectl_host_param[] __attribute__((weak));

int edgectl_host_vars(int kind, const edgectl_host_var_t **first) {
  edgectl_host_var_t *a = kind == 0 ? __start_edgectl_host_log : __start_edgectl_host_param;
  edgectl_host_var_t *b = kind == 0 ? __stop_edgectl_host_log : __stop_edgectl_host_param;
  *first = a;
  return (a == NULL || b == NULL) ? 0 : (int)(b - a);
}
