/*
 * startup.c - bare-metal start-up for the MPS2 Cortex-M boards under QEMU (AN386: M4,
 * AN500: M7): vector table, .data/.bss set-up, FPU enable, C++ static constructors,
 * semihosting exit.
 */
#include <stdint.h>

#include "fxpq_firmware.h"
#include "fxpq_harness_protocol.h"

extern uint32_t __stack_top;
extern uint32_t __data_load;
extern uint32_t __data_start;
extern uint32_t __data_end;
extern uint32_t __bss_start;
extern uint32_t __bss_end;
/* C++ static constructors (the TFLM firmware's; empty in the C firmware), from the linker script */
typedef void (*fxpq_init_fn)(void);
extern fxpq_init_fn __preinit_array_start[];
extern fxpq_init_fn __preinit_array_end[];
extern fxpq_init_fn __init_array_start[];
extern fxpq_init_fn __init_array_end[];

int main(void);
void Reset_Handler(void);
void Fault_Handler(void);
void Default_Handler(void);

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)

typedef void (*fxpq_vector)(void);

__attribute__((section(".vectors"), used)) const fxpq_vector fxpq_vector_table[16] = {
    (fxpq_vector)(uintptr_t)&__stack_top, /* initial stack pointer */
    Reset_Handler,
    Default_Handler, /* NMI */
    Fault_Handler,   /* HardFault */
    Fault_Handler,   /* MemManage */
    Fault_Handler,   /* BusFault */
    Fault_Handler,   /* UsageFault */
    0, 0, 0, 0,
    Default_Handler, /* SVCall */
    Default_Handler, /* DebugMonitor */
    0,
    Default_Handler, /* PendSV */
    Default_Handler  /* SysTick */
};

void fxpq_semihost_exit(int status)
{
    /* SYS_EXIT_EXTENDED (0x20): { ADP_Stopped_ApplicationExit, status } -> QEMU's exit code */
    volatile uint32_t block[2];
    register uint32_t r0 __asm__("r0") = 0x20u;
    register volatile uint32_t *r1 __asm__("r1") = block;
    block[0] = 0x20026u;
    block[1] = (uint32_t)status;
    __asm__ volatile("bkpt 0xab" : : "r"(r0), "r"(r1) : "memory");
    for (;;) {
    }
}

void Reset_Handler(void)
{
    uint32_t *src, *dst;
    /* full access to CP10/CP11 before any floating-point instruction */
    SCB_CPACR |= (0xFu << 20);
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    for (src = &__data_load, dst = &__data_start; dst < &__data_end;) {
        *dst++ = *src++;
    }
    for (dst = &__bss_start; dst < &__bss_end;) {
        *dst++ = 0;
    }
    for (fxpq_init_fn *fn = __preinit_array_start; fn < __preinit_array_end; ++fn) {
        (*fn)();
    }
    for (fxpq_init_fn *fn = __init_array_start; fn < __init_array_end; ++fn) {
        (*fn)();
    }
    fxpq_semihost_exit(main());
}

void Fault_Handler(void)
{
    fxpq_semihost_exit(FXPQ_HARNESS_EXIT_FAULT);
}

void Default_Handler(void)
{
    fxpq_semihost_exit(FXPQ_HARNESS_EXIT_FAULT);
}
