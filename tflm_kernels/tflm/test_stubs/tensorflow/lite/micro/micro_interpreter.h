// COMPILE-CHECK STUB, NOT TFLM CODE: forwards to tflm/test_stubs/tflm_compile_check_stub.h
#include "tflm_compile_check_stub.h"
