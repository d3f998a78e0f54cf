# Coverage build of the Cortex-M harness (included by ../Makefile): which optimized kernel paths a
# set of cases runs on the emulated M4 / M7 (tests/test_kernel_path_coverage.py):
#
#   make m4 m7 FXPQ_COVERAGE=1 BUILD=build/cov
#
# Debian's arm-none-eabi libgcov has no file I/O (its __gcov_dump does nothing), so the kernels are
# compiled with --coverage -fprofile-info-section=gcov_info: the compiler lists every object's
# profile in the section gcov_info (the linker defines __start_gcov_info / __stop_gcov_info), and the
# harness (FXPQ_COVERAGE) serializes each with libgcov's __gcov_info_to_gcda into the object's .gcda
# file through semihosting (QEMU's host file I/O), for arm-none-eabi-gcov to read. Instruction
# counts of this build mean nothing: use a BUILD directory of its own.

FXPQ_COVERAGE ?= 0
ifeq ($(FXPQ_COVERAGE),1)
M4_CFLAGS += --coverage -fprofile-info-section=gcov_info -DFXPQ_COVERAGE
M7_CFLAGS += --coverage -fprofile-info-section=gcov_info -DFXPQ_COVERAGE
ARM_LDLIBS += -lgcov
endif
