/* Maxima of float rows in independent lanes, shared by the exact engine's kernels.
 *
 * Without fast-math GCC does not vectorize a float reduction (it may not reorder it); kept in
 * LANES separate lanes, the loop vectorizes, and a maximum is the same in any order. */
#ifndef ALPHAZIP_LANES_H
#define ALPHAZIP_LANES_H

#include <math.h>

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
