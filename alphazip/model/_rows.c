/* The exact engine's row-wise steps in one pass per row: what alphazip/model/exactmath.py computes
 * in a dozen torch operations, bit for bit (every float operation one exactly rounded IEEE operation
 * in the same order, every sum a sum of integers; built with -ffp-contract=off, no fast-math).
 * tests/test_native.py holds the two paths to each other. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define ROUNDER 12582912.0f /* 1.5 * 2^23: (x + ROUNDER) - ROUNDER rounds |x| < 2^22 to nearest even */

static inline float power_of_two_f(int k) {
    uint32_t bits = (uint32_t)(k + 127) << 23;
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

static inline double power_of_two_d(int k) {
    uint64_t bits = (uint64_t)(k + 1023) << 52;
    double out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

#define LANES 16 /* independent maxima and sums, so that the loops vectorize without reordering a float sum */

/* exactmath.rms_norm of one row: the row scaled by the power of two that puts its largest magnitude
 * in [2^19, 2^20) and rounded to integers, whose squares sum exactly in double; then
 * factor = (float)(1 / sqrt(mean + eps)) and out = (x * factor) * weight. */
static void rms_norm_row(int width, const float *x, const float *weight, double eps, float *out) {
    float tops[LANES] = {0.0f};
    int c = 0;
    for (; c + LANES <= width; c += LANES)
        for (int l = 0; l < LANES; l++) tops[l] = fabsf(x[c + l]) > tops[l] ? fabsf(x[c + l]) : tops[l];
    for (; c < width; c++) tops[0] = fabsf(x[c]) > tops[0] ? fabsf(x[c]) : tops[0];
    float top = tops[0];
    for (int l = 1; l < LANES; l++) top = tops[l] > top ? tops[l] : top;
    int exponent;
    frexpf(top, &exponent); /* top < 2^exponent; exact */
    exponent = exponent < -100 ? -100 : exponent > 100 ? 100 : exponent;
    const int shift = 20 - exponent;
    const float scale = power_of_two_f(shift);
    double sums[LANES] = {0.0}; /* integers below 2^53 in all: the same in any order */
    c = 0;
    for (; c + LANES <= width; c += LANES)
        for (int l = 0; l < LANES; l++) {
            const double value = (double)((x[c + l] * scale + ROUNDER) - ROUNDER);
            sums[l] += value * value;
        }
    for (; c < width; c++) {
        const double value = (double)((x[c] * scale + ROUNDER) - ROUNDER);
        sums[0] += value * value;
    }
    double squares = 0.0;
    for (int l = 0; l < LANES; l++) squares += sums[l];
    const double mean = (squares * power_of_two_d(-2 * shift)) / (double)width;
    const float factor = (float)(1.0 / sqrt(mean + eps));
    for (c = 0; c < width; c++) out[c] = (x[c] * factor) * weight[c];
}

void alphazip_rms_norm(long rows, int width, const float *x, const float *weight, double eps, float *out,
                       int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * width >= 65536)
    for (long r = 0; r < rows; r++) rms_norm_row(width, x + r * width, weight, eps, out + r * width);
}
