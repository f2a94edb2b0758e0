/* Stand-in for crazyflie-firmware src/modules/interface/param.h (2026.08): type codes, flags and the
 * macros that declare a parameter group; the rows go into the host's table (edgectl_host_vars.h). */
#ifndef EDGECTL_STANDIN_PARAM_H
#define EDGECTL_STANDIN_PARAM_H

#include "edgectl_host_vars.h"

#define PARAM_1BYTE 0x00
#define PARAM_2BYTES 0x01
#define PARAM_4BYTES 0x02
#define PARAM_TYPE_INT (0x00 << 2)
#define PARAM_TYPE_FLOAT (0x01 << 2)
#define PARAM_SIGNED (0x00 << 3)
#define PARAM_UNSIGNED (0x01 << 3)
#define PARAM_CORE (1 << 5)
#define PARAM_RONLY (1 << 6)
#define PARAM_PERSISTENT (1 << 8)

#define PARAM_UINT8 (PARAM_1BYTE | PARAM_TYPE_INT | PARAM_UNSIGNED)
#define PARAM_INT8 (PARAM_1BYTE | PARAM_TYPE_INT | PARAM_SIGNED)
#define PARAM_UINT16 (PARAM_2BYTES | PARAM_TYPE_INT | PARAM_UNSIGNED)
#define PARAM_INT16 (PARAM_2BYTES | PARAM_TYPE_INT | PARAM_SIGNED)
#define PARAM_UINT32 (PARAM_4BYTES | PARAM_TYPE_INT | PARAM_UNSIGNED)
#define PARAM_INT32 (PARAM_4BYTES | PARAM_TYPE_INT | PARAM_SIGNED)
#define PARAM_FLOAT (PARAM_4BYTES | PARAM_TYPE_FLOAT | PARAM_SIGNED)

#define PARAM_GROUP_START(NAME)                                                                     \
  static edgectl_host_var_t edgectl_host_param_##NAME[] __attribute__((section("edgectl_host_param"), used)) = { \
      {EDGECTL_HOST_GROUP_START, #NAME, NULL},
#define PARAM_ADD(TYPE, NAME, ADDRESS) {(TYPE), #NAME, (void *)(ADDRESS)},
#define PARAM_ADD_CORE(TYPE, NAME, ADDRESS) PARAM_ADD((TYPE) | PARAM_CORE, NAME, ADDRESS)
#define PARAM_GROUP_STOP(NAME) {EDGECTL_HOST_GROUP_STOP, #NAME, NULL}};

#endif
