/* Stand-in for crazyflie-firmware src/modules/interface/log.h (2026.08): type codes and the macros
 * that declare a log group; the rows go into the host's table (edgectl_host_vars.h). See README.md. */
#ifndef EDGECTL_STANDIN_LOG_H
#define EDGECTL_STANDIN_LOG_H

#include "edgectl_host_vars.h"

#define LOG_UINT8 1
#define LOG_UINT16 2
#define LOG_UINT32 3
#define LOG_INT8 4
#define LOG_INT16 5
#define LOG_INT32 6
#define LOG_FLOAT 7
#define LOG_FP16 8
#define LOG_CORE 0x20

#define LOG_GROUP_START(NAME)                                                                   \
  static edgectl_host_var_t edgectl_host_log_##NAME[] __attribute__((section("edgectl_host_log"), used)) = { \
      {EDGECTL_HOST_GROUP_START, #NAME, NULL},
#define LOG_ADD(TYPE, NAME, ADDRESS) {(TYPE), #NAME, (void *)(ADDRESS)},
#define LOG_ADD_CORE(TYPE, NAME, ADDRESS) LOG_ADD((TYPE) | LOG_CORE, NAME, ADDRESS)
#define LOG_GROUP_STOP(NAME) {EDGECTL_HOST_GROUP_STOP, #NAME, NULL}};

#endif
