# The optional CMSIS-NN route of conv 2D and fully connected (src/kernels/fxpq_cmsis.c,
# docs/kernels.md "CMSIS-NN route"; included by ../Makefile). Off unless FXPQ_CMSIS_NN is 1 or all:
#
#   make m4 model-m4 runner-host FXPQ_CMSIS_NN=1 BUILD=build/cmsis [CMSIS_NN_DIR=<tree>]
#
# FXPQ_CMSIS_NN=1 routes the layers where CMSIS-NN measured faster (fully connected, 1-3 rows);
# FXPQ_CMSIS_NN=all (-DFXPQ_CMSIS_NN_CONV) conv 2D too, for measuring and testing every path
# (BUILD=build/cmsis-all).
#
# compiles every kernel with -DFXPQ_WITH_CMSIS_NN and adds the CMSIS-NN sources the route calls
# (int8 convolution, fully connected and their support functions; floating-point and other
# widths left out) to the same libfxpq_kernels.a, so the harness, the model firmware, the host
# libraries and the TFLM programs link them without other changes. The tree is CMSIS_NN_DIR,
# else TFLM_DIR's downloads/cmsis_nn (the version TFLM's cmsis_nn libraries are built from, so a
# TFLM program links one copy of each CMSIS-NN function); it is never copied into this repository.
# Use a BUILD directory of its own: objects compiled with and without the route must not mix.

FXPQ_CMSIS_NN ?= 0
ifneq ($(filter 1 all,$(FXPQ_CMSIS_NN)),)
CMSIS_NN_DIR ?= $(if $(TFLM_DIR),$(TFLM_DIR)/tensorflow/lite/micro/tools/make/downloads/cmsis_nn)
ifeq ($(wildcard $(CMSIS_NN_DIR)/Include/arm_nnfunctions.h),)
$(error FXPQ_CMSIS_NN=1 needs a CMSIS-NN tree: set CMSIS_NN_DIR or TFLM_DIR (docs/kernels.md "CMSIS-NN route"))
endif
INCLUDES += -DFXPQ_WITH_CMSIS_NN $(if $(filter all,$(FXPQ_CMSIS_NN)),-DFXPQ_CMSIS_NN_CONV) -I$(CMSIS_NN_DIR)/Include
CMSIS_NN_SRCS := $(sort $(filter-out %_f16.c %_f32.c,\
    $(wildcard $(CMSIS_NN_DIR)/Source/ConvolutionFunctions/*_s8*.c) \
    $(wildcard $(CMSIS_NN_DIR)/Source/FullyConnectedFunctions/*_s8*.c) \
    $(filter-out %lstm_step_s8.c %lstm_calculate_gate_s8_s16.c %svdf_s8.c,$(wildcard $(CMSIS_NN_DIR)/Source/NNSupportFunctions/*_s8*.c)) \
    $(wildcard $(CMSIS_NN_DIR)/Source/NNSupportFunctions/arm_q7_to_q15_with_offset.c) \
    $(wildcard $(CMSIS_NN_DIR)/Source/NNSupportFunctions/arm_nntables.c)))
# CMSIS-NN's own sources: its warnings are not ours to fix (-w), our optimization level
CMSIS_NN_CFLAGS = -std=c99 -w -I$(CMSIS_NN_DIR)/Include
cmsis_nn_objs = $(patsubst $(CMSIS_NN_DIR)/Source/%.c,$(BUILD)/$(1)/cmsis_nn/%.o,$(CMSIS_NN_SRCS))

$(BUILD)/host/cmsis_nn/%.o: $(CMSIS_NN_DIR)/Source/%.c
	@mkdir -p $(dir $@)
	$(HOST_CC) $(CMSIS_NN_CFLAGS) $(HOST_CFLAGS) -fPIC -c $< -o $@
$(BUILD)/m4/cmsis_nn/%.o: $(CMSIS_NN_DIR)/Source/%.c
	@mkdir -p $(dir $@)
	$(ARM_CC) $(CMSIS_NN_CFLAGS) $(ARM_OPT) $(M4_ARCH) $(ARM_COMMON) -c $< -o $@
$(BUILD)/m7/cmsis_nn/%.o: $(CMSIS_NN_DIR)/Source/%.c
	@mkdir -p $(dir $@)
	$(ARM_CC) $(CMSIS_NN_CFLAGS) $(ARM_OPT) $(M7_ARCH) $(ARM_COMMON) -c $< -o $@

# the route's objects join the kernel libraries (prerequisites added to the rules above)
$(BUILD)/host/libfxpq_kernels.so $(BUILD)/host/libfxpq_kernels.a $(BUILD)/host/libfxpq_runner.so: \
    $(call cmsis_nn_objs,host)
$(BUILD)/m4/libfxpq_kernels.a: $(call cmsis_nn_objs,m4)
$(BUILD)/m7/libfxpq_kernels.a: $(call cmsis_nn_objs,m7)
endif
