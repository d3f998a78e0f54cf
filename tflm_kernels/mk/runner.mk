# Model runner, options reader, fuzz targets (owner: model runner; included by ../Makefile).
#
#   make runner-host   build/host/libfxpq_runner.so: kernels + options reader + runner (ctypes)
#   make fuzz          build/fuzz/fuzz_model, build/fuzz/fuzz_options (clang, libFuzzer + ASan/UBSan)
#   make fuzz-smoke    run each fuzz target for FUZZ_SECONDS (default 5) on its seed corpus
#   make model-m4 / model-m7   build/<cpu>/fxpq_model.elf: whole-model firmware, model loaded
#                      at run time over semihosting (firmware/model_main.c)
#   make model-linked-m4 MODEL_C=path/to/model_data.c ...  same with the model linked in (used
#                      by fxpq_keras/kernels/qemu engines and bench/mcu.py through MODEL_C/OUT)

RUNNER_SRCS := $(sort $(wildcard src/options/*.c) $(wildcard src/runner/*.c))
RUNNER_HDRS := include/fxpq_kernels.h $(wildcard src/runner/*.h)
MODEL_FW_SRCS := firmware/startup.c firmware/model_main.c

$(call fxpq_objs,host,$(RUNNER_SRCS)) $(call fxpq_objs,m4,$(RUNNER_SRCS) $(MODEL_FW_SRCS)) \
    $(call fxpq_objs,m7,$(RUNNER_SRCS) $(MODEL_FW_SRCS)): $(RUNNER_HDRS)

.PHONY: runner-host fuzz fuzz-smoke model-m4 model-m7 model-linked
runner-host: $(BUILD)/host/libfxpq_runner.so

$(BUILD)/host/libfxpq_runner.so: $(call fxpq_objs,host,$(KERNEL_SRCS) $(RUNNER_SRCS))
	$(HOST_CC) -shared -o $@.tmp $^ && mv -f $@.tmp $@

$(BUILD)/m4/libfxpq_runner.a: $(call fxpq_objs,m4,$(RUNNER_SRCS))
	rm -f $@ && $(ARM_AR) rcs $@ $^
$(BUILD)/m7/libfxpq_runner.a: $(call fxpq_objs,m7,$(RUNNER_SRCS))
	rm -f $@ && $(ARM_AR) rcs $@ $^

# ---- whole-model firmware --------------------------------------------------------------------
# MODEL_FW_DEFS: e.g. -DFXPQ_MODEL_LINKED (with MODEL_C = generated C array source)
MODEL_C ?=
MODEL_FW_DEFS ?=
model-m4: $(BUILD)/m4/fxpq_model.elf
model-m7: $(BUILD)/m7/fxpq_model.elf

define fxpq_model_fw
$(BUILD)/$(1)/fxpq_model.elf: $(call fxpq_objs,$(1),$(MODEL_FW_SRCS)) $(BUILD)/$(1)/libfxpq_runner.a $(BUILD)/$(1)/libfxpq_kernels.a firmware/$(2)
	$$(ARM_CC) $(3) $$(ARM_COMMON) $$(ARM_LDFLAGS) -T firmware/$(2) -o $$@ \
	    $(call fxpq_objs,$(1),$(MODEL_FW_SRCS)) $(BUILD)/$(1)/libfxpq_runner.a $(BUILD)/$(1)/libfxpq_kernels.a
endef
$(eval $(call fxpq_model_fw,m4,mps2_an386.ld,$(M4_ARCH)))
$(eval $(call fxpq_model_fw,m7,mps2_an500.ld,$(M7_ARCH)))

# Linked-model firmware: OUT=<dir> MODEL_C=<file.c> CPU=m4|m7; objects in OUT, libraries shared.
CPU ?= m4
OUT ?= $(BUILD)/linked
model-linked: $(BUILD)/$(CPU)/libfxpq_runner.a $(BUILD)/$(CPU)/libfxpq_kernels.a
	@test -n "$(MODEL_C)" || (echo "MODEL_C=<model array .c> is required" && false)
	@mkdir -p $(OUT)
	$(ARM_CC) $(if $(filter m7,$(CPU)),$(M7_CFLAGS),$(M4_CFLAGS)) -Ifirmware -DFXPQ_MODEL_LINKED \
	    $(MODEL_FW_DEFS) -c firmware/model_main.c -o $(OUT)/model_main.o
	$(ARM_CC) -std=c99 $(ARM_OPT) $(if $(filter m7,$(CPU)),$(M7_ARCH),$(M4_ARCH)) $(ARM_COMMON) \
	    -c $(MODEL_C) -o $(OUT)/model_data.o
	$(ARM_CC) $(if $(filter m7,$(CPU)),$(M7_CFLAGS),$(M4_CFLAGS)) -Ifirmware -c firmware/startup.c -o $(OUT)/startup.o
	$(ARM_CC) $(if $(filter m7,$(CPU)),$(M7_ARCH),$(M4_ARCH)) $(ARM_COMMON) --specs=rdimon.specs -nostartfiles \
	    -Wl,--gc-sections -Wl,-Map,$(OUT)/fxpq_model.map \
	    -T firmware/$(if $(filter m7,$(CPU)),mps2_an500.ld,mps2_an386.ld) -o $(OUT)/fxpq_model.elf \
	    $(OUT)/startup.o $(OUT)/model_main.o $(OUT)/model_data.o $(BUILD)/$(CPU)/libfxpq_runner.a $(BUILD)/$(CPU)/libfxpq_kernels.a

# ---- fuzzing (clang + libFuzzer) -------------------------------------------------------------
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 5
FUZZ_CFLAGS = -std=c99 -Wall -Wextra -Werror -g -O1 -fsanitize=fuzzer,address,undefined \
    -fno-sanitize-recover=undefined -Iinclude -Isrc/kernels
FUZZ_LIB_SRCS = $(KERNEL_SRCS) $(RUNNER_SRCS)

fuzz: $(BUILD)/fuzz/fuzz_model $(BUILD)/fuzz/fuzz_options

$(BUILD)/fuzz/%: fuzz/%.c $(FUZZ_LIB_SRCS) $(KERNEL_HDRS) $(RUNNER_HDRS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< $(FUZZ_LIB_SRCS)

fuzz-smoke: fuzz
	@mkdir -p $(BUILD)/fuzz/work_model $(BUILD)/fuzz/work_options
	$(BUILD)/fuzz/fuzz_model -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=1024 \
	    -print_final_stats=1 $(BUILD)/fuzz/work_model fuzz/corpus/model
	$(BUILD)/fuzz/fuzz_options -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=1024 \
	    -print_final_stats=1 $(BUILD)/fuzz/work_options fuzz/corpus/options
