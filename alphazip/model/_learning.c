/* The learning step's elementwise work (alphazip/model/learning.py): one Adam step of a linear
 * layer's float32 master weights and the int8 weights requantized from them, in one pass per row
 * instead of a dozen torch operations over the whole matrix; the same bits (every float operation
 * one exactly rounded IEEE operation in the same order, built with -ffp-contract=off, no
 * fast-math). tests/test_learning.py holds the two paths to each other. */
#include <math.h>
#include <stdint.h>

#include "_kernel.h"

/* constants: mean, beta1, 1 - beta1, beta2, 1 - beta2, 1 / sqrt(1 - beta2^t), epsilon, step size.
 * The gradient of weight (r, c) is ((float)products[r, c] * row_steps[r]) * col_steps[c] * mean. */
void alphazip_adam_step(int rows, int cols, const int32_t *products, const float *row_steps, const float *col_steps,
                        const float *constants, float *master, float *first, float *second, int8_t *weight,
                        float *scale, int threads) {
    const float mean = constants[0], beta1 = constants[1], rest1 = constants[2], beta2 = constants[3];
    const float rest2 = constants[4], inverse_root = constants[5], epsilon = constants[6], size = constants[7];
#pragma omp parallel for num_threads(threads) schedule(static) if ((long)rows * cols >= SMALL_WORK)
    for (int r = 0; r < rows; r++) {
        const long at = (long)r * cols;
        float *w = master + at, *m = first + at, *v = second + at;
        float top = 0.0f;
#pragma omp simd reduction(max : top)
        for (int c = 0; c < cols; c++) {
            const float g = (((float)products[at + c] * row_steps[r]) * col_steps[c]) * mean;
            m[c] = m[c] * beta1 + g * rest1;
            v[c] = v[c] * beta2 + (g * g) * rest2;
            const float denominator = sqrtf(v[c]) * inverse_root + epsilon;
            w[c] = w[c] - (m[c] / denominator) * size;
            top = fabsf(w[c]) > top ? fabsf(w[c]) : top;
        }
        if (!(top > 0.0f)) top = 1.0f;
        const float factor = 127.0f / top;
        for (int c = 0; c < cols; c++) {
            float value = round_even(w[c] * factor);
            value = value < -127.0f ? -127.0f : value > 127.0f ? 127.0f : value;
            weight[at + c] = (int8_t)value;
        }
        scale[r] = top / 127.0f;
    }
}

/* exactmath.quantize_rows(x.T, levels) for x [rows, cols]: each column quantized over all rows to
 * integers in [-levels, levels] (factor (1 / top) * levels, as torch computes levels / top), written
 * transposed to out [cols, rows] as int8; steps[c] = top / levels. */
void alphazip_quantize_columns(int rows, int cols, const float *x, float levels, int8_t *out, float *steps,
                               int threads) {
    float *tops = steps; /* the column maxima first, then the steps in their place */
    for (int c = 0; c < cols; c++) tops[c] = 0.0f;
    for (int r = 0; r < rows; r++) {
        const float *row = x + (long)r * cols;
        for (int c = 0; c < cols; c++) tops[c] = fabsf(row[c]) > tops[c] ? fabsf(row[c]) : tops[c];
    }
#pragma omp parallel for num_threads(threads) schedule(static) if ((long)rows * cols >= SMALL_WORK)
    for (int c = 0; c < cols; c++) {
        const float top = tops[c] > 0.0f ? tops[c] : 1.0f;
        const float factor = (1.0f / top) * levels;
        int8_t *to = out + (long)c * rows;
        for (int r = 0; r < rows; r++) {
            float value = round_even(x[(long)r * cols + c] * factor);
            value = value < -levels ? -levels : value > levels ? levels : value;
            to[r] = (int8_t)value;
        }
        steps[c] = top / levels;
    }
}
