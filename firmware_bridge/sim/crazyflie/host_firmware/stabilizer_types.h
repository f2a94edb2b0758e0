/* Stand-in for crazyflie-firmware src/modules/interface/stabilizer_types.h (release 2026.08), for the
 * host build of the edgectl app: the types, fields (in the firmware's order) and rate macros the app
 * uses. Written for edgectl from the firmware's interface; see README.md. */
#ifndef EDGECTL_STANDIN_STABILIZER_TYPES_H
#define EDGECTL_STANDIN_STABILIZER_TYPES_H

#include <stdbool.h>
#include <stdint.h>

/* Iterations of the stabilizer loop (1 kHz); the firmware starts counting at 1. */
typedef uint32_t stabilizerStep_t;

/* imu_types.h */
typedef struct {
  float x;
  float y;
  float z;
} Axis3f;

typedef struct attitude_s {
  uint32_t timestamp;
  float roll;  /* deg */
  float pitch; /* deg */
  float yaw;   /* deg */
} attitude_t;

struct vec3_s {
  uint32_t timestamp;
  float x;
  float y;
  float z;
};
typedef struct vec3_s point_t;
typedef struct vec3_s velocity_t;
typedef struct vec3_s acc_t;
typedef struct vec3_s jerk_t;

/* Either q0..q3 or x, y, z, w (the estimator's order: x, y, z, then w). */
typedef struct quaternion_s {
  union {
    struct {
      float q0;
      float q1;
      float q2;
      float q3;
    };
    struct {
      float x;
      float y;
      float z;
      float w;
    };
  };
} quaternion_t;

typedef struct sensorData_s {
  Axis3f acc;  /* g */
  Axis3f gyro; /* deg/s */
  Axis3f mag;  /* gauss */
} sensorData_t;

typedef struct state_s {
  attitude_t attitude;             /* deg, legacy: pitch inverted */
  quaternion_t attitudeQuaternion; /* body to world */
  point_t position;                /* m */
  velocity_t velocity;             /* m/s */
  acc_t acc;                       /* g, without gravity */
} state_t;

#define STABILIZER_NR_OF_MOTORS 4

typedef enum control_mode_e {
  controlModeLegacy = 0,
  controlModeForceTorque = 1,
  controlModeForce = 2,
} control_mode_t;

typedef struct control_s {
  union {
    struct { /* controlModeLegacy */
      int16_t roll;
      int16_t pitch;
      int16_t yaw;
      float thrust;
    };
    struct { /* controlModeForceTorque, SI */
      float thrustSi;
      float torque[3];
    };
    float normalizedForces[STABILIZER_NR_OF_MOTORS]; /* controlModeForce: 0..1 per motor */
  };
  control_mode_t controlMode;
} control_t;

typedef enum mode_e {
  modeDisable = 0,
  modeAbs,
  modeVelocity,
} stab_mode_t;

typedef struct {
  stab_mode_t x;
  stab_mode_t y;
  stab_mode_t z;
  stab_mode_t roll;
  stab_mode_t pitch;
  stab_mode_t yaw;
  stab_mode_t quat;
} setpoint_mode_t;

typedef struct setpoint_s {
  uint32_t timestamp; /* ticks; commanderSetSetpoint stamps it */
  attitude_t attitude;
  attitude_t attitudeRate;
  quaternion_t attitudeQuaternion;
  float thrust;
  point_t position;
  velocity_t velocity;
  acc_t acceleration;
  jerk_t jerk;
  bool velocity_body;
  setpoint_mode_t mode;
} setpoint_t;

#define RATE_1000_HZ 1000
#define RATE_500_HZ 500
#define RATE_250_HZ 250
#define RATE_100_HZ 100
#define RATE_50_HZ 50
#define RATE_25_HZ 25
#define RATE_MAIN_LOOP RATE_1000_HZ

/* True on the stabilizer steps a task running at RATE_HZ executes. */
#define RATE_DO_EXECUTE(RATE_HZ, TICK) (((TICK) % (RATE_MAIN_LOOP / (RATE_HZ))) == 0)

#endif
