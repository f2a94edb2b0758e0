/* The log and parameter tables of the host build (log.h / param.h stand-ins): every LOG_ADD and
 * PARAM_ADD becomes a row {type, name, address} of a table in the linker section edgectl_host_log or
 * edgectl_host_param, a group between a start row and a stop row; edgectl_host_vars() hands the
 * section to the simulated vehicle, which serves these variables in its log and parameter TOCs. */
#ifndef EDGECTL_HOST_VARS_H
#define EDGECTL_HOST_VARS_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t type; /* the firmware's LOG_ / PARAM_ type code and flags, or a group marker */
  const char *name;
  void *address;
} edgectl_host_var_t;

#define EDGECTL_HOST_GROUP_START 0x80000000u
#define EDGECTL_HOST_GROUP_STOP 0x80000001u

#endif
