# TFLM glue: the host harness (no TFLM needed) and programs linked against real TFLM (included by
# ../Makefile). The fxpq kernels always come from this Makefile's own libraries, so every source
# of src/kernels (KERNEL_SRCS) is in every TFLM build too.
#
#   make glue-harness   build/host/libfxpq_glue_harness.so: tflm/fxpq_tflm_ops.cc + the kernels +
#                       the options reader, on the functional stand-in of tflm/test_stubs (ctypes;
#                       fxpq_keras/kernels/glue_harness.py)
#   make tflm-program TFLM_MK=<flags.mk> TFLM_CPU=host|m4|m7 OUT=<dir> [MODEL_C=<model .c>]
#                     [TFLM_OPS_H=<resolver header>] [TFLM_FW_DEFS=-D...] [TFLM_GLUE_DIR=<dir>]
#                       OUT/fxpq_tflm(.elf): tflm/tflm_main.cc + the glue on real TFLM. TFLM_MK is
#                       the flags.mk written next to a TFLM library by fxpq_keras/kernels/tflm.py
#                       (TFLM's compiler, flags and include paths). Used by the tflm-* engines,
#                       bench/mcu.py and examples/firmware.

HOST_CXX ?= g++
OPTIONS_SRCS := $(sort $(wildcard src/options/*.c))
GLUE_HDRS := tflm/fxpq_tflm_ops.h $(wildcard tflm/test_stubs/*.h) include/fxpq_kernels.h
GLUE_WARN := -std=c++17 -Wall -Wextra -Werror

.PHONY: glue-harness tflm-program
glue-harness: $(BUILD)/host/libfxpq_glue_harness.so

$(BUILD)/host/libfxpq_glue_harness.so: tflm/fxpq_tflm_ops.cc tflm/test_stubs/glue_harness.cc $(GLUE_HDRS) \
        $(call fxpq_objs,host,$(KERNEL_SRCS) $(OPTIONS_SRCS))
	$(HOST_CXX) $(GLUE_WARN) -O1 -g -fPIC -shared -Itflm -Itflm/test_stubs -Iinclude -o $@.tmp \
	    tflm/fxpq_tflm_ops.cc tflm/test_stubs/glue_harness.cc $(call fxpq_objs,host,$(KERNEL_SRCS) $(OPTIONS_SRCS)) \
	    && mv -f $@.tmp $@

# ---- programs on real TFLM ------------------------------------------------------------------
ifneq ($(TFLM_MK),)
include $(TFLM_MK)
TFLM_CPU ?= host
MODEL_C ?=
TFLM_OPS_H ?=
TFLM_FW_DEFS ?=
TFLM_GLUE_FLAGS = $(GLUE_WARN) $(filter-out -Werror% -std=%,$(TFLM_CXXFLAGS)) -Os $(TFLM_INCLUDES) \
    -Itflm -Iinclude -Ifirmware
TFLM_FXPQ_LIBS = $(if $(filter host,$(TFLM_CPU)),$(BUILD)/host/libfxpq_kernels.a $(BUILD)/host/libfxpq_options.a,\
    $(BUILD)/$(TFLM_CPU)/libfxpq_kernels.a $(BUILD)/$(TFLM_CPU)/libfxpq_options.a)
TFLM_LD_SCRIPT = firmware/$(if $(filter m7,$(TFLM_CPU)),mps2_an500.ld,mps2_an386.ld)

# The glue object depends only on the glue sources and the TFLM library's flags, not on the model:
# one per TFLM library in TFLM_GLUE_DIR (kept up to date by its -MD dependency file), which every
# program of that library links, so a program build compiles tflm_main.cc and the model only.
TFLM_GLUE_DIR ?= $(OUT)
TFLM_GLUE_OBJ = $(TFLM_GLUE_DIR)/fxpq_tflm_ops.o
-include $(TFLM_GLUE_OBJ:.o=.d)
$(TFLM_GLUE_OBJ): tflm/fxpq_tflm_ops.cc $(GLUE_HDRS) $(TFLM_MK)
	@mkdir -p $(dir $@)
	$(TFLM_CXX) $(TFLM_GLUE_FLAGS) -c tflm/fxpq_tflm_ops.cc -o $@

tflm-program: $(TFLM_FXPQ_LIBS) $(TFLM_GLUE_OBJ)
	@test -n "$(OUT)" || (echo "OUT=<dir> is required" && false)
	@mkdir -p $(OUT)
	$(TFLM_CXX) $(TFLM_GLUE_FLAGS) $(TFLM_FW_DEFS) $(if $(MODEL_C),-DFXPQ_MODEL_LINKED) \
	    $(if $(TFLM_OPS_H),-DFXPQ_TFLM_OPS_HEADER='"$(abspath $(TFLM_OPS_H))"') \
	    -c tflm/tflm_main.cc -o $(OUT)/tflm_main.o
	$(if $(MODEL_C),$(TFLM_CC) $(filter-out -Werror% -std=%,$(TFLM_CXXFLAGS:-fno-rtti=)) -std=c99 -x c -c $(MODEL_C) \
	    -o $(OUT)/model_data.o)
ifeq ($(TFLM_CPU),host)
	$(TFLM_CXX) $(filter-out -Werror%,$(TFLM_CXXFLAGS)) -o $(OUT)/fxpq_tflm $(OUT)/tflm_main.o $(TFLM_GLUE_OBJ) \
	    $(if $(MODEL_C),$(OUT)/model_data.o) $(TFLM_FXPQ_LIBS) $(TFLM_LIB) $(TFLM_LDFLAGS) $(TFLM_LIBS)
else
	$(ARM_CC) $(filter-out -Werror% -std=%,$(TFLM_CXXFLAGS)) -Ifirmware -Iinclude -std=c99 -c firmware/startup.c \
	    -o $(OUT)/startup.o
	$(TFLM_CXX) $(filter-out -Werror%,$(TFLM_CXXFLAGS)) --specs=rdimon.specs -nostartfiles -Wl,--gc-sections \
	    -Wl,-Map,$(OUT)/fxpq_tflm.map -T $(TFLM_LD_SCRIPT) -o $(OUT)/fxpq_tflm.elf $(OUT)/startup.o \
	    $(OUT)/tflm_main.o $(TFLM_GLUE_OBJ) $(if $(MODEL_C),$(OUT)/model_data.o) \
	    $(TFLM_FXPQ_LIBS) $(TFLM_LIB) -lm
endif
endif

# the options reader alone (the TFLM programs need it, not the model runner)
$(BUILD)/host/libfxpq_options.a: $(call fxpq_objs,host,$(OPTIONS_SRCS))
	rm -f $@ && $(HOST_AR) rcs $@ $^
$(BUILD)/m4/libfxpq_options.a: $(call fxpq_objs,m4,$(OPTIONS_SRCS))
	rm -f $@ && $(ARM_AR) rcs $@ $^
$(BUILD)/m7/libfxpq_options.a: $(call fxpq_objs,m7,$(OPTIONS_SRCS))
	rm -f $@ && $(ARM_AR) rcs $@ $^
