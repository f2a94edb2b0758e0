/* Stand-in for FreeRTOS.h as crazyflie-firmware configures it (src/config/FreeRTOSConfig.h, 2026.08:
 * a 1 kHz tick, so milliseconds and ticks are the same numbers). See README.md. */
#ifndef EDGECTL_STANDIN_FREERTOS_H
#define EDGECTL_STANDIN_FREERTOS_H

#include <stdint.h>

typedef uint32_t TickType_t;

#define M2T(X) ((unsigned int)(X))
#define T2M(X) ((unsigned int)(X))

#endif
