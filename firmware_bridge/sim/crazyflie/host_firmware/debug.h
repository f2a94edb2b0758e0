/* Stand-in for crazyflie-firmware src/utils/interface/debug.h (2026.08): DEBUG_PRINT goes to the
 * console (CRTP port 0) on the vehicle; on the host into a buffer the simulated vehicle forwards. */
#ifndef EDGECTL_STANDIN_DEBUG_H
#define EDGECTL_STANDIN_DEBUG_H

void edgectl_host_debug_print(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define DEBUG_PRINT(fmt, ...) edgectl_host_debug_print(fmt, ##__VA_ARGS__)

#endif
