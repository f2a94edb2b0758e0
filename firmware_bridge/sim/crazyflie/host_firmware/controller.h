/* Stand-in for crazyflie-firmware src/modules/interface/controller/controller.h (2026.08): the
 * out-of-tree controller's entry points (CONFIG_CONTROLLER_OOT). See README.md. */
#ifndef EDGECTL_STANDIN_CONTROLLER_H
#define EDGECTL_STANDIN_CONTROLLER_H

#include "stabilizer_types.h"

#ifdef CONFIG_CONTROLLER_OOT
void controllerOutOfTreeInit(void);
bool controllerOutOfTreeTest(void);
void controllerOutOfTree(control_t *control, const setpoint_t *setpoint, const sensorData_t *sensors,
                         const state_t *state, const stabilizerStep_t stabilizerStep);
#endif

#endif
