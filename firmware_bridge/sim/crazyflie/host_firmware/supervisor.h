/* Stand-in for crazyflie-firmware src/modules/interface/supervisor.h (2026.08). See README.md. */
#ifndef EDGECTL_STANDIN_SUPERVISOR_H
#define EDGECTL_STANDIN_SUPERVISOR_H

#include "stabilizer_types.h"

bool supervisorAreMotorsAllowedToRun(void);

#endif
