/* Stand-in for crazyflie-firmware src/modules/interface/commander.h (2026.08). See README.md. */
#ifndef EDGECTL_STANDIN_COMMANDER_H
#define EDGECTL_STANDIN_COMMANDER_H

#include "stabilizer_types.h"

#define COMMANDER_PRIORITY_DISABLE 0
#define COMMANDER_PRIORITY_LOWEST 1
#define COMMANDER_PRIORITY_HIGHLEVEL 1
#define COMMANDER_PRIORITY_CRTP 2
#define COMMANDER_PRIORITY_EXTRX 3

/* Stamps setpoint->timestamp with the tick count, then takes it if priority is at least the current one. */
void commanderSetSetpoint(setpoint_t *setpoint, int priority);

#endif
