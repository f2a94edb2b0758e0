/* ARM semihosting calls (operation in r0, parameter in r1, result in r0). */
#include <stdint.h>
#include "semihost.h"

#define SYS_WRITE0 0x04
#define SYS_EXIT_EXTENDED 0x20
#define ADP_STOPPED_APPLICATION_EXIT 0x20026

static int sh_call(int op, const void *arg)
{
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    /* "memory": the host reads the buffer r1 points to, so it must be stored first. */
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void sh_write0(const char *s)
{
    (void)sh_call(SYS_WRITE0, s);
}

void sh_exit(int code)
{
    /* Plain SYS_EXIT (0x18) cannot carry a status on 32-bit ARM; the extended call can. */
    const uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)code};
    (void)sh_call(SYS_EXIT_EXTENDED, block);
    for (;;) {
        /* Not reached under QEMU; spin rather than run off into flash. */
    }
}
