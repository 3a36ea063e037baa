/* What the exact engine's kernels (_attention.c, _rows.c) share: exact rounding, powers of two
 * from their bits, maxima in lanes, and when a call is worth more than one thread. */
#ifndef ALPHAZIP_KERNEL_H
#define ALPHAZIP_KERNEL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define SMALL_WORK 65536 /* values below which a kernel runs on one thread: waking the others costs more */
#define SMALL_PRODUCT (4L * 1024 * 1024) /* the same for a packed product's multiply-adds (_amx.c, _vnni.c) */

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
 * LANES separate lanes, a loop of counts or integer sums vectorizes. */
#define LANES 16

/* The largest of x[0..n-1] (n >= 1, no NaN). A maximum is the same value in any order, so the
 * loop may be reordered (omp simd); only the sign of a zero maximum could follow the order, and
 * adding +0 makes it +0 (every caller subtracts it, where a zero's sign changes nothing). */
static inline float largest(const float *x, int n) {
    float top = x[0];
#pragma omp simd reduction(max : top)
    for (int j = 0; j < n; j++) top = x[j] > top ? x[j] : top;
    return top + 0.0f;
}

/* The largest |x[0..n-1]| (n >= 0, no NaN); 0 for an empty or zero row. */
static inline float largest_magnitude(const float *x, int n) {
    float top = 0.0f;
#pragma omp simd reduction(max : top)
    for (int j = 0; j < n; j++) top = fabsf(x[j]) > top ? fabsf(x[j]) : top;
    return top;
}

/* The packed weights' layout (alphazip_amx_pack; multiplied by _amx.c and _vnni.c): tiles of 16 rows
 * of 64 bytes, a row holding 4 depth values of each of 16 columns; a work item takes two column tiles. */
#define TILE_K 64       /* int8 values along the depth per tile row */
#define TILE_N 16       /* columns of a tile (int32 columns of an AMX output tile) */
#define BLOCK_N 32      /* output columns per work item: two tiles of 16 */
#define TILE_BYTES 1024 /* a tile: 16 rows of 16 columns x 4 depth values */

/* One block of a packed product's float outputs (_amx.c, _vnni.c) from its highs' and lows' int32
 * sums (row r's highs at sums + BLOCK_N r, its lows 16 rows further): ((highs * 256 + lows) * scale[c])
 * * steps[r], every operation exactly rounded in that order, no fused multiply-add
 * (-ffp-contract=off): the bits of alphazip_dequantize after any other path's product. */
__attribute__((target("arch=x86-64-v4"))) static inline void alphazip_combine_block(int rows, int columns,
        const int32_t *sums, const float *scale, const float *steps, float *out, long out_stride) {
    for (int r = 0; r < rows; r++) {
        const int32_t *highs = sums + r * BLOCK_N, *lows = highs + 16 * BLOCK_N;
        float *target = out + r * out_stride;
        const float step = steps[r];
        for (int c = 0; c < columns; c++) target[c] = (((float)highs[c] * 256.0f + (float)lows[c]) * scale[c]) * step;
    }
}

#define EXP2_TERMS 7 /* exactmath's float32 exp2 polynomial degree; fixed so that the loops unroll and vectorize */

/* Entry points that one kernel file calls in another (all built into one library): declared once
 * here, where the defining file's compiler checks them too. */
int alphazip_attend(int batch, int kv_heads, int group, int count, int dim, int length, int start, int window,
                    const int8_t *q, const float *row_scale, const int8_t *keys, const float *key_steps,
                    const int8_t *values, const float *value_steps, float *out, const float *constants, int terms,
                    int threads);
void alphazip_quantize_split(int rows, int width, const float *x, float levels, int8_t *halves, float *steps,
                             int threads);
void alphazip_gate_rows(long rows, int width, int kind, const float *gate_up, float *out, const float *constants,
                        int threads);
void alphazip_rms_norm(long rows, int width, const float *x, const float *weight, double eps, float *out, int threads);
void alphazip_rope_quantize(int batch, int count, int heads, int kv_heads, int dim, int length, int start,
                            const float *qkv, const float *cos, const float *sin, float score_factor, int8_t *q,
                            float *q_scale, int8_t *keys, float *key_steps, int8_t *values, float *value_steps,
                            int threads);
int alphazip_amx_linear(int m, int n, int depth, const int8_t *halves, const int8_t *packed, const float *scale,
                        const float *steps, float *out, int threads);
int alphazip_vnni_linear(int m, int n, int depth, const int8_t *halves, const int8_t *packed, const float *scale,
                         const float *steps, float *out, int threads);
void alphazip_int_matmul_select_isa(int level);
void alphazip_rows_select_isa(int level);

#endif
