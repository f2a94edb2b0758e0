/* ARM semihosting for the PIL harness: QEMU (-semihosting-config enable=on) services
 * `bkpt 0xAB`; without a debugger or QEMU the same instruction faults, so this is
 * for the emulator only. */
#ifndef PIL_SEMIHOST_H
#define PIL_SEMIHOST_H

/* Write a NUL-terminated string to the host (QEMU prints it on its stderr). */
void sh_write0(const char *s);

/* End the emulation; QEMU's exit status becomes `code` (SYS_EXIT_EXTENDED). */
void sh_exit(int code) __attribute__((noreturn));

#endif
