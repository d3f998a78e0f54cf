/*
 * fxpq_pool_common.h - argument checks shared by the pooling kernels (private).
 */
#ifndef FXPQ_POOL_COMMON_H
#define FXPQ_POOL_COMMON_H

#include "fxpq_internal.h"

/* Validate a pooling call; on success fills the output size, leading padding and the
 * activation clamp. */
static inline fxpq_status fxpq_check_pool(const fxpq_pool_params *params,
                                          const fxpq_dims *input_dims, const void *input,
                                          const fxpq_format *input_fmt,
                                          const fxpq_dims *output_dims, const void *output,
                                          const fxpq_format *output_fmt, int32_t *pad_t,
                                          int32_t *pad_l, int32_t *act_lo, int32_t *act_hi)
{
    fxpq_status st;
    int32_t oh, ow;
    if (params == NULL || input == NULL || output == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if ((st = fxpq_check_format(input_fmt)) != FXPQ_OK ||
        (st = fxpq_check_format(output_fmt)) != FXPQ_OK) {
        return st;
    }
    if ((st = fxpq_check_dims(input_dims, NULL)) != FXPQ_OK ||
        (st = fxpq_check_dims(output_dims, NULL)) != FXPQ_OK) {
        return st;
    }
    if (params->filter.h <= 0 || params->filter.w <= 0) {
        return FXPQ_ERR_BAD_PARAM;
    }
    if ((st = fxpq_conv_output_size(input_dims->h, params->filter.h, params->stride.h, 1,
                                    params->padding, &oh, pad_t)) != FXPQ_OK ||
        (st = fxpq_conv_output_size(input_dims->w, params->filter.w, params->stride.w, 1,
                                    params->padding, &ow, pad_l)) != FXPQ_OK) {
        return st;
    }
    if (output_dims->n != input_dims->n || output_dims->c != input_dims->c ||
        output_dims->h != oh || output_dims->w != ow) {
        return FXPQ_ERR_BAD_DIMS;
    }
    if ((st = fxpq_activation_bounds(output_fmt, params->activation, act_lo, act_hi)) != FXPQ_OK) {
        return st;
    }
    if ((st = fxpq_check_aligned(input, fxpq_storage_of(input_fmt))) != FXPQ_OK ||
        (st = fxpq_check_aligned(output, fxpq_storage_of(output_fmt))) != FXPQ_OK) {
        return st;
    }
    return FXPQ_OK;
}

#endif /* FXPQ_POOL_COMMON_H */
