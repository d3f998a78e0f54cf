/*
 * fxpq_unpack.c - weight unpacking (numerics.md section 9): every width 2..16 is a
 * little-endian, LSB-first bit stream; each output channel's run starts on a byte boundary.
 */
#include "fxpq_internal.h"

int32_t fxpq_packed_row_size(int32_t bits, int32_t count)
{
    int64_t bytes;
    if (bits < FXPQ_MIN_BITS || bits > FXPQ_MAX_BITS || count <= 0) {
        return -1;
    }
    bytes = ((int64_t)count * bits + 7) / 8;
    return bytes > INT32_MAX ? -1 : (int32_t)bytes;
}

void fxpq_unpack_run(const uint8_t *src, int32_t bits, int32_t first, int32_t count, int16_t *dst)
{
    int32_t i;
    if (bits == 8) {
        for (i = 0; i < count; ++i) {
            const uint32_t b = src[first + i];
            dst[i] = (int16_t)(b >= 0x80u ? (int32_t)b - 0x100 : (int32_t)b);
        }
    } else if (bits == 16) {
        /* little-endian int16, byte-wise: no alignment requirement on src */
        for (i = 0; i < count; ++i) {
            const uint8_t *p = src + 2 * (first + i);
            uint16_t u = (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
            dst[i] = (int16_t)(u >= 0x8000u ? (int32_t)u - 0x10000 : (int32_t)u);
        }
    } else {
        const uint32_t mask = (1u << bits) - 1u;
        const int32_t sign = (int32_t)1 << (bits - 1);
        const uint64_t start = (uint64_t)first * (uint64_t)bits;
        uint32_t pos = (uint32_t)(start & 7u); /* bit position from src */
        src += (size_t)(start >> 3);
        for (i = 0; i < count; ++i) {
            uint32_t byte = pos >> 3;
            uint32_t off = pos & 7u;
            uint32_t end = off + (uint32_t)bits; /* bits of the window the value needs */
            uint32_t v = (uint32_t)src[byte];
            int32_t s;
            /* read only the bytes the value touches (never past the run's last byte) */
            if (end > 8u) {
                v |= (uint32_t)src[byte + 1] << 8;
            }
            if (end > 16u) {
                v |= (uint32_t)src[byte + 2] << 16;
            }
            s = (int32_t)((v >> off) & mask);
            dst[i] = (int16_t)(s >= sign ? s - 2 * sign : s);
            pos += (uint32_t)bits;
        }
    }
}

fxpq_status fxpq_unpack_weights(const uint8_t *src, int32_t bits, int32_t count, int16_t *dst)
{
    if (src == NULL || dst == NULL) {
        return FXPQ_ERR_NULL_POINTER;
    }
    if (bits < FXPQ_MIN_BITS || bits > FXPQ_MAX_BITS) {
        return FXPQ_ERR_BAD_FORMAT;
    }
    if (count <= 0 || fxpq_packed_row_size(bits, count) < 0) {
        return FXPQ_ERR_BAD_DIMS;
    }
    fxpq_unpack_run(src, bits, 0, count, dst);
    return FXPQ_OK;
}
