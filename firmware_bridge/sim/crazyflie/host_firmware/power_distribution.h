/* Stand-in for crazyflie-firmware src/modules/interface/power_distribution.h (2026.08). See README.md. */
#ifndef EDGECTL_STANDIN_POWER_DISTRIBUTION_H
#define EDGECTL_STANDIN_POWER_DISTRIBUTION_H

#include "stabilizer_types.h"

/* Thrust of all motors together at full command, N (with battery compensation: what a normalized
 * force of 1 gives per motor, times the number of motors). */
float powerDistributionGetMaxThrust(void);

#endif
