/* What the exact engine's kernels (_attention.c, _rows.c) share: exact rounding, powers of two
 * from their bits, maxima in lanes, and when a call is worth more than one thread. */
#ifndef ALPHAZIP_KERNEL_H
#define ALPHAZIP_KERNEL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define SMALL_WORK 65536 /* values below which a kernel runs on one thread: waking the others costs more */

#define ROUNDER 12582912.0f /* 1.5 * 2^23: (x + ROUNDER) - ROUNDER rounds |x| < 2^22 to nearest even */

static inline float round_even(float x) {
    return (x + ROUNDER) - ROUNDER; /* not folded: IEEE semantics hold without -ffast-math */
}

/* 2^k for k in float32's normal range, exactly. */
static inline float power_of_two(int k) {
    uint32_t bits = (uint32_t)(k + 127) << 23;
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

/* Without fast-math GCC does not vectorize a float reduction (it may not reorder it); kept in
 * LANES separate lanes, the loop vectorizes, and a maximum is the same in any order. */
#define LANES 16

/* The largest of x[0..n-1] (n >= 1). */
static inline float largest(const float *x, int n) {
    float lanes[LANES];
    for (int l = 0; l < LANES; l++) lanes[l] = x[0];
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) lanes[l] = x[j + l] > lanes[l] ? x[j + l] : lanes[l];
    for (; j < n; j++) lanes[0] = x[j] > lanes[0] ? x[j] : lanes[0];
    float top = lanes[0];
    for (int l = 1; l < LANES; l++) top = lanes[l] > top ? lanes[l] : top;
    return top;
}

/* The largest |x[0..n-1]| (n >= 0); 0 for an empty or zero row. */
static inline float largest_magnitude(const float *x, int n) {
    float lanes[LANES] = {0.0f};
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) lanes[l] = fabsf(x[j + l]) > lanes[l] ? fabsf(x[j + l]) : lanes[l];
    for (; j < n; j++) lanes[0] = fabsf(x[j]) > lanes[0] ? fabsf(x[j]) : lanes[0];
    float top = lanes[0];
    for (int l = 1; l < LANES; l++) top = lanes[l] > top ? lanes[l] : top;
    return top;
}

#endif
