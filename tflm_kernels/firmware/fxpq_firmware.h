/*
 * fxpq_firmware.h - services of the bare-metal start-up (firmware/startup.c).
 */
#ifndef FXPQ_FIRMWARE_H
#define FXPQ_FIRMWARE_H

/* Leave QEMU with an exit status (semihosting SYS_EXIT_EXTENDED). Does not return. */
void fxpq_semihost_exit(int status);

#endif /* FXPQ_FIRMWARE_H */
