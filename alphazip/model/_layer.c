/* A Llama decoder layer of the exact engine in one call, where its products run on packed weights
 * (AMX tiles, _amx.c, or AVX-512 VNNI, _vnni.c).
 *
 * The same kernels exact.py calls one by one from Python (norms, the quantized products, RoPE and
 * the cache, attention, the gate), in the same order on the same values, so the same bits: what
 * changes is a dozen Python calls, tensor allocations and thread wake-ups a layer, which at
 * unpacking's one position a step cost as much as a kernel. Elementwise float additions (the
 * residual stream) are single IEEE operations, as in torch.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kernel.h"

/* The layer's weights, in this order: norm1, norm2 (float [hidden]); then for qkv, o, gate_up and
 * down, the packed int8 weights and their float scales. */
enum { NORM1, NORM2, QKV, QKV_SCALE, O, O_SCALE, GATE_UP, GATE_UP_SCALE, DOWN, DOWN_SCALE };

/* Which product multiplies the packed weights, passed by the caller (native.py, which knows the
 * CPU and the instruction-set setting) with every call. */
enum { PACKED_VNNI = 1, PACKED_AMX = 2 };

/* A quantized linear layer's float32 output from its int8 halves [2m, depth] (highs, then lows) and
 * steps [m], on the packed weights multiplied by ``product``: the bits of alphazip_dequantize after
 * any path's product. Returns 0, -1 if memory ran out, -2 for an unknown product. */
int alphazip_packed_linear(int product, int m, int n, int depth, const int8_t *halves, const int8_t *packed,
                           const float *scale, const float *steps, float *out, int threads) {
    if (product == PACKED_AMX) return alphazip_amx_linear(m, n, depth, halves, packed, scale, steps, out, threads);
    if (product == PACKED_VNNI) return alphazip_vnni_linear(m, n, depth, halves, packed, scale, steps, out, threads);
    return -2;
}

/* The same from float32 rows ``x`` [m, depth], quantized and split as QuantLinear does
 * (alphazip_quantize_split) in the same call. */
int alphazip_packed_linear_rows(int product, int m, int n, int depth, const float *x, float levels,
                                const int8_t *packed, const float *scale, float *out, int threads) {
    int8_t *halves = malloc((size_t)2 * m * depth + 1);
    float *steps = malloc(sizeof(float) * (size_t)m + 1);
    int status = -1;
    if (halves && steps) {
        alphazip_quantize_split(m, depth, x, levels, halves, steps, threads);
        status = alphazip_packed_linear(product, m, n, depth, halves, packed, scale, steps, out, threads);
    }
    free(halves);
    free(steps);
    return status;
}

static void add_into(long count, float *x, const float *y) {
    for (long i = 0; i < count; i++) x[i] = x[i] + y[i];
}

/* x [batch, count, hidden] (the residual stream, updated in place) through one layer at positions
 * start..start + count - 1; its keys and values go to the layer's cache (length positions a
 * sequence). cos/sin: the RoPE table's rows for those positions [count, dim]. ``product``: what
 * multiplies the packed weights (PACKED_VNNI or PACKED_AMX). Returns 0, or -1 if memory ran out. */
int alphazip_llama_layer(int batch, int count, int hidden, int heads, int kv_heads, int dim, int intermediate,
                         int length, int start, int window, double eps, float levels, float score_factor,
                         const void *const *weights, const float *cos, const float *sin, int8_t *keys,
                         float *key_steps, int8_t *values, float *value_steps, const float *attend_constants,
                         const float *gate_constants, float *x, int product, int threads) {
    const long rows = (long)batch * count, width = (long)heads * dim, qkv_width = width + 2L * kv_heads * dim;
    float *normed = malloc(sizeof(float) * rows * hidden), *qkv = malloc(sizeof(float) * rows * qkv_width);
    float *attended = malloc(sizeof(float) * rows * width), *by_position = malloc(sizeof(float) * rows * width);
    float *projected = malloc(sizeof(float) * rows * hidden);
    float *gate_up = malloc(sizeof(float) * rows * 2 * intermediate), *gated = malloc(sizeof(float) * rows * intermediate);
    int8_t *q = malloc((size_t)rows * width);
    float *q_scale = malloc(sizeof(float) * rows * heads);
    int status = -1;
    if (!(normed && qkv && attended && by_position && projected && gate_up && gated && q && q_scale)) goto done;

    alphazip_rms_norm(rows, hidden, x, weights[NORM1], eps, normed, threads);
    if (alphazip_packed_linear_rows(product, (int)rows, (int)qkv_width, hidden, normed, levels, weights[QKV],
                                    weights[QKV_SCALE], qkv, threads)) goto done;
    alphazip_rope_quantize(batch, count, heads, kv_heads, dim, length, start, qkv, cos, sin, score_factor, q, q_scale,
                           keys, key_steps, values, value_steps, threads);
    if (alphazip_attend(batch, kv_heads, heads / kv_heads, count, dim, length, start, window, q, q_scale, keys,
                        key_steps, values, value_steps, attended, attend_constants, EXP2_TERMS, threads)) goto done;
    /* [batch, heads, count, dim] -> [batch, count, heads, dim]: each position's heads side by side */
    for (long b = 0; b < batch; b++)
        for (int h = 0; h < heads; h++)
            for (int t = 0; t < count; t++)
                memcpy(by_position + ((b * count + t) * heads + h) * dim, attended + ((b * heads + h) * count + t) * dim,
                       sizeof(float) * dim);
    if (alphazip_packed_linear_rows(product, (int)rows, hidden, (int)width, by_position, levels, weights[O],
                                    weights[O_SCALE], projected, threads)) goto done;
    add_into(rows * hidden, x, projected);

    alphazip_rms_norm(rows, hidden, x, weights[NORM2], eps, normed, threads);
    if (alphazip_packed_linear_rows(product, (int)rows, 2 * intermediate, hidden, normed, levels, weights[GATE_UP],
                                    weights[GATE_UP_SCALE], gate_up, threads)) goto done;
    alphazip_gate_rows(rows, intermediate, 0, gate_up, gated, gate_constants, threads);
    if (alphazip_packed_linear_rows(product, (int)rows, hidden, intermediate, gated, levels, weights[DOWN],
                                    weights[DOWN_SCALE], projected, threads)) goto done;
    add_into(rows * hidden, x, projected);
    status = 0;
done:
    free(normed), free(qkv), free(attended), free(by_position), free(projected);
    free(gate_up), free(gated), free(q), free(q_scale);
    return status;
}
