/*
 * board.c - the package's board hooks for QEMU's mps2-an386 (Cortex-M4), with startup.c and
 * mps2_an386.ld from fxpq's firmware: printf through semihosting, and fxpq_cycle_count() from the
 * board's TIMER0 (25 MHz). Under `qemu-system-arm -icount shift=0` every instruction takes one
 * virtual nanosecond, so 40 x the TIMER0 ticks is the instructions executed (docs/tflm.md
 * section 8). Build: cmake -DFXPQ_BOARD=qemu_mps2_an386 (CMakeLists.txt).
 */
#include <stdint.h>

extern void initialise_monitor_handles(void);
void fxpq_board_init(void);
uint32_t fxpq_cycle_count(void);

/* C++ runtime hook of an image linked without crt files (static objects register their destructors
 * against it; main's return leaves through semihosting, so they never run). */
void *__dso_handle = &__dso_handle;

#define TIMER0_CTRL (*(volatile uint32_t *)0x40000000u)
#define TIMER0_VALUE (*(volatile uint32_t *)0x40000004u)
#define TIMER0_RELOAD (*(volatile uint32_t *)0x40000008u)

void fxpq_board_init(void)
{
    initialise_monitor_handles();
    TIMER0_CTRL = 0u;
    TIMER0_RELOAD = 0xFFFFFFFFu;
    TIMER0_VALUE = 0xFFFFFFFFu;
    TIMER0_CTRL = 1u;
}

uint32_t fxpq_cycle_count(void)
{
    return (0xFFFFFFFFu - TIMER0_VALUE) * 40u;  /* TIMER0 counts down at 25 MHz: 40 ns a tick */
}
