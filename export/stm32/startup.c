/* Cortex-M4F startup for the PIL harness: vector table, RAM init, FPU on, main, exit. */
#include <stdint.h>
#include "semihost.h"

/* Symbols from linker.ld. */
extern uint32_t _sidata[], _sdata[], _edata[], _sbss[], _ebss[], _estack[];

int main(void);
void pil_reset_handler(void) __attribute__((noreturn));
void pil_fault_handler(void) __attribute__((noreturn));

#define CPACR (*(volatile uint32_t *)0xE000ED88u)
#define CPACR_CP10_CP11_FULL (0xFu << 20)

/* Exit status a fault produces, so the host can tell a crash from a clean run. */
#define PIL_EXIT_FAULT 3

/* Only the core's exceptions: the harness enables no peripheral interrupt. */
__attribute__((section(".isr_vector"), used))
void (*const pil_vectors[16])(void) = {
    (void (*)(void))(uintptr_t)_estack, /* initial stack pointer */
    pil_reset_handler,
    pil_fault_handler, /* NMI */
    pil_fault_handler, /* HardFault */
    pil_fault_handler, /* MemManage */
    pil_fault_handler, /* BusFault */
    pil_fault_handler, /* UsageFault */
    0, 0, 0, 0,
    pil_fault_handler, /* SVCall */
    pil_fault_handler, /* DebugMonitor */
    0,
    pil_fault_handler, /* PendSV */
    pil_fault_handler, /* SysTick */
};

/* Kept out of line so that nothing the compiler might schedule with FPU registers
 * runs before pil_reset_handler has switched the FPU on. */
__attribute__((noinline)) static void pil_init_ram(void)
{
    /* volatile: stops GCC from turning the loops into memcpy/memset calls, which would
     * pull libc into the harness and blur the policy's own footprint. */
    volatile uint32_t *dst = _sdata;
    const volatile uint32_t *src = _sidata;
    while (dst < _edata) {
        *dst++ = *src++;
    }
    for (dst = _sbss; dst < _ebss; ++dst) {
        *dst = 0;
    }
}

void pil_reset_handler(void)
{
    /* Any float instruction before this line is a UsageFault (NOCP). */
    CPACR |= CPACR_CP10_CP11_FULL;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    pil_init_ram();
    sh_exit(main());
}

void pil_fault_handler(void)
{
    sh_write0("PIL FAULT: the firmware took an exception (HardFault, bus or usage fault)\n");
    sh_exit(PIL_EXIT_FAULT);
}
