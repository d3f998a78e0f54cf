# fxpq_model.mk - Makefile fragment of a model package written by `fxpq export --package`
# (docs/tflm.md section 8). In your firmware's Makefile:
#
#   FXPQ_MODEL_DIR := path/to/package
#   include $(FXPQ_MODEL_DIR)/fxpq_model.mk
#   CFLAGS   += $(FXPQ_MODEL_INCLUDES)      # and TFLM's flags and includes, as for TFLM itself
#   CXXFLAGS += $(FXPQ_MODEL_INCLUDES)
#   SRCS     += $(FXPQ_MODEL_C_SRCS) $(FXPQ_MODEL_CC_SRCS)   # + $(FXPQ_MODEL_MAIN) for the demo main
#
# C sources are C99, C++ sources C++11 or later, compiled with TFLM's own flags (they include
# -fno-threadsafe-statics: the glue's registrations are function-local statics, and a thread-safe
# guard would pull libstdc++'s exception runtime into a bare-metal image).
# The fxpq kernels compile only the paths this model runs (fxpq_model_paths.h, docs/kernels.md
# "Selective build"); FXPQ_ALL_PATHS=1 compiles every path (a firmware that loads other models).
FXPQ_MODEL_DIR ?= $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
FXPQ_MODEL_C_SRCS := $(sort $(wildcard $(FXPQ_MODEL_DIR)/fxpq/src/kernels/*.c $(FXPQ_MODEL_DIR)/fxpq/src/options/*.c))
FXPQ_MODEL_CC_SRCS := $(FXPQ_MODEL_DIR)/fxpq_model_data.cc $(FXPQ_MODEL_DIR)/fxpq_model_ops.cc \
    $(wildcard $(FXPQ_MODEL_DIR)/fxpq/tflm/*.cc)
FXPQ_MODEL_INCLUDES := -I$(FXPQ_MODEL_DIR) $(if $(FXPQ_MODEL_C_SRCS),-I$(FXPQ_MODEL_DIR)/fxpq/include \
    -I$(FXPQ_MODEL_DIR)/fxpq/tflm -I$(FXPQ_MODEL_DIR)/fxpq/src/kernels)
FXPQ_MODEL_INCLUDES += $(if $(and $(FXPQ_MODEL_C_SRCS),$(wildcard $(FXPQ_MODEL_DIR)/fxpq_model_paths.h)),\
    $(if $(FXPQ_ALL_PATHS),,-DFXPQ_SELECTIVE_PATHS))
FXPQ_MODEL_MAIN := $(FXPQ_MODEL_DIR)/main.cc
