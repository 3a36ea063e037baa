/* The exact engine's row-wise steps in one pass per row: what alphazip/model/exactmath.py computes
 * in a dozen torch operations, bit for bit (every float operation one exactly rounded IEEE operation
 * in the same order, every sum a sum of integers; built with -ffp-contract=off, no fast-math).
 * tests/test_exactmath.py and tests/test_exact_engine.py hold the two paths to each other. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "_kernel.h"

/* 2^k for k in float64's normal range, exactly. */
static inline double power_of_two_d(int k) {
    uint64_t bits = (uint64_t)(k + 1023) << 52;
    double out;
    memcpy(&out, &bits, sizeof out);
    return out;
}

/* exactmath.rms_norm of one row: the row scaled by the power of two that puts its largest magnitude
 * in [2^19, 2^20) and rounded to integers, whose squares sum exactly in double; then
 * factor = (float)(1 / sqrt(mean + eps)) and out = (x * factor) * weight. */
static inline __attribute__((always_inline)) void rms_norm_row_body(int width, const float *x, const float *weight,
                                                                     double eps, float *out) {
    const float top = largest_magnitude(x, width);
    int exponent;
    frexpf(top, &exponent); /* top < 2^exponent; exact */
    exponent = exponent < -100 ? -100 : exponent > 100 ? 100 : exponent;
    const int shift = 20 - exponent;
    const float scale = power_of_two(shift);
    double squares = 0.0; /* integers below 2^53 in all: the same in any order, so the loop may be reordered */
#pragma omp simd reduction(+ : squares)
    for (int c = 0; c < width; c++) {
        const double value = (double)round_even(x[c] * scale);
        squares += value * value;
    }
    const double mean = (squares * power_of_two_d(-2 * shift)) / (double)width;
    const float factor = (float)(1.0 / sqrt(mean + eps));
    for (int c = 0; c < width; c++) out[c] = (x[c] * factor) * weight[c];
}

#define NORM_PARAMETERS int width, const float *x, const float *weight, double eps, float *out
static void norm_baseline(NORM_PARAMETERS) { rms_norm_row_body(width, x, weight, eps, out); }
__attribute__((target("avx2"))) static void norm_avx2(NORM_PARAMETERS) { rms_norm_row_body(width, x, weight, eps, out); }
__attribute__((target("arch=x86-64-v4"))) static void norm_v4(NORM_PARAMETERS) { rms_norm_row_body(width, x, weight, eps, out); }
static void (*rms_norm_row)(NORM_PARAMETERS) = norm_baseline;

void alphazip_rms_norm(long rows, int width, const float *x, const float *weight, double eps, float *out,
                       int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * width >= SMALL_WORK)
    for (long r = 0; r < rows; r++) rms_norm_row(width, x + r * width, weight, eps, out + r * width);
}

/* exactmath.quantize_rows(x, 127) of one row of ``dim`` values: int8 values, returns the step. */
static inline __attribute__((always_inline)) float quantize_row(int dim, const float *x, int8_t *to, long to_stride) {
    float top = largest_magnitude(x, dim);
    if (!(top > 0.0f)) top = 1.0f;
    const float factor = (1.0f / top) * 127.0f; /* torch's 127 / top is reciprocal, then product */
    for (int d = 0; d < dim; d++) {
        float value = round_even(x[d] * factor);
        value = value < -127.0f ? -127.0f : value > 127.0f ? 127.0f : value;
        to[d * to_stride] = (int8_t)value;
    }
    return top / 127.0f;
}

/* RoPE (engine._rotate: x cos + rotate_half(x) sin, three rounded operations a value) on one row. */
static inline __attribute__((always_inline)) void rotate_row(int dim, const float *x, const float *cos,
                                                             const float *sin, float *out) {
    const int half = dim / 2;
    for (int d = 0; d < half; d++) out[d] = x[d] * cos[d] + (-x[d + half]) * sin[d];
    for (int d = half; d < dim; d++) out[d] = x[d] * cos[d] + x[d - half] * sin[d];
}

/* Row r of qkv (one head of one position: a query, a key or a value) for alphazip_rope_quantize. */
#define ROPE_ROW_PARAMETERS long r, int count, int heads, int kv_heads, int dim, int length, int start, \
    const float *qkv, const float *cos, const float *sin, float score_factor, int8_t *q, float *q_scale, \
    int8_t *keys, float *key_steps, int8_t *values, float *value_steps
#define ROPE_ROW_ARGUMENTS r, count, heads, kv_heads, dim, length, start, qkv, cos, sin, score_factor, q, q_scale, \
    keys, key_steps, values, value_steps
static inline __attribute__((always_inline)) void rope_quantize_body(ROPE_ROW_PARAMETERS) {
    const int all = heads + 2 * kv_heads;
    const int head = (int)(r % all);
    const long bt = r / all;
    const int b = (int)(bt / count), t = (int)(bt % count);
    const float *x = qkv + r * dim;
    float rotated[1024];
    if (head < heads) {
        rotate_row(dim, x, cos + (long)t * dim, sin + (long)t * dim, rotated);
        const long row = ((long)b * heads + head) * count + t;
        q_scale[row] = quantize_row(dim, rotated, q + row * dim, 1) * score_factor;
    } else if (head < heads + kv_heads) {
        const long pair = (long)b * kv_heads + (head - heads), j = start + t;
        int8_t key[1024];
        rotate_row(dim, x, cos + (long)t * dim, sin + (long)t * dim, rotated);
        key_steps[pair * length + j] = quantize_row(dim, rotated, key, 1);
        int8_t *to = keys + pair * dim * length + j * 2; /* dimension d at ((d / 2) length + j) 2 + d % 2 */
        for (int d = 0; d < dim; d++) to[(long)(d / 2) * length * 2 + d % 2] = key[d];
    } else {
        const long pair = (long)b * kv_heads + (head - heads - kv_heads), j = start + t;
        value_steps[pair * length + j] = quantize_row(dim, x, values + pair * length * dim + (j / 2) * dim * 2 + j % 2, 2);
    }
}

static void rope_baseline(ROPE_ROW_PARAMETERS) { rope_quantize_body(ROPE_ROW_ARGUMENTS); }
__attribute__((target("avx2"))) static void rope_avx2(ROPE_ROW_PARAMETERS) { rope_quantize_body(ROPE_ROW_ARGUMENTS); }
__attribute__((target("arch=x86-64-v4"))) static void rope_v4(ROPE_ROW_PARAMETERS) { rope_quantize_body(ROPE_ROW_ARGUMENTS); }
static void (*rope_quantize_row)(ROPE_ROW_PARAMETERS) = rope_baseline;

/* The exact engine's attention inputs for ``count`` positions from ``start`` (exact.py _attention):
 * from the projections ``qkv`` [batch, count, (heads + 2 kv_heads) dim], queries and keys rotated by
 * the tables' rows ``cos``/``sin`` [count, dim], then every row quantized to int8. Queries go to
 * ``q`` [batch, heads, count, dim] with ``q_scale`` [batch, heads, count] = step * score_factor; keys
 * and values to the cache in its pair layout (_attention.c): ``keys`` [batch, kv_heads, dim / 2,
 * length, 2], ``values`` [batch, kv_heads, length / 2, dim, 2], their steps to [batch, kv_heads, length]. */
void alphazip_rope_quantize(int batch, int count, int heads, int kv_heads, int dim, int length, int start,
                            const float *qkv, const float *cos, const float *sin, float score_factor, int8_t *q,
                            float *q_scale, int8_t *keys, float *key_steps, int8_t *values, float *value_steps,
                            int threads) {
    const long rows = (long)batch * count * (heads + 2 * kv_heads);
    /* Each key row is written to dim / 2 cache lines a cache length apart, mostly not in cache: worth
     * a second thread at far fewer values than the other row-wise kernels. */
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * dim >= SMALL_WORK / 8)
    for (long r = 0; r < rows; r++) rope_quantize_row(ROPE_ROW_ARGUMENTS);
}

/* The rank stage's order (alphazip/ranks.py): the rank of tokens[r] in logit row r is the number of
 * logits above its own, plus those equal to it at lower ids; -1 for ids at or beyond the width.
 * Counts, so the same on every CPU; one pass per row instead of torch's two comparisons and sums. */
static inline __attribute__((always_inline)) int64_t rank_body(int width, const float *row, int64_t token) {
    if (token < 0 || token >= width) return -1;
    const float own = row[token];
    int32_t counts[LANES] = {0}; /* in lanes, so that the loop vectorizes */
    int j = 0;
    for (; j + LANES <= width; j += LANES)
        for (int l = 0; l < LANES; l++)
            counts[l] += (row[j + l] > own) | ((row[j + l] == own) & (j + l < token));
    int64_t ahead = 0;
    for (; j < width; j++) ahead += (row[j] > own) | ((row[j] == own) & (j < token));
    for (int l = 0; l < LANES; l++) ahead += counts[l];
    return ahead;
}

#define RANK_PARAMETERS int width, const float *row, int64_t token
static int64_t rank_baseline(RANK_PARAMETERS) { return rank_body(width, row, token); }
__attribute__((target("avx2"))) static int64_t rank_avx2(RANK_PARAMETERS) { return rank_body(width, row, token); }
__attribute__((target("arch=x86-64-v4"))) static int64_t rank_v4(RANK_PARAMETERS) { return rank_body(width, row, token); }
static int64_t (*rank_of_row)(RANK_PARAMETERS) = rank_baseline;

/* The token at ``rank`` in a logit row, under the same order (the inverse of rank_body): -1 if the
 * rank is not below the width. A shallow rank (nearly all) keeps the leading rank + 1 logits in
 * order during one pass, skipping blocks that cannot enter; a deep one's logit is found by bisecting
 * its order key (the float's bits made monotone, -0 counted as +0 as the comparisons count it) with
 * counting passes, then the ties at that logit are taken in id order. Comparisons and counts only,
 * so the same on every CPU. */
#define SHALLOW_RANKS 64
#define TOKEN_BLOCK 16

static inline uint32_t order_key(float x) {
    x = x + 0.0f; /* -0 becomes +0: the two compare equal */
    uint32_t bits;
    memcpy(&bits, &x, sizeof bits);
    return bits & 0x80000000u ? ~bits : bits | 0x80000000u;
}

/* The leading ``kept`` logits in order (higher first; equal ones by id, as they arrive): a new
 * logit enters after every kept one it does not exceed. Returns the last kept one's id. */
static inline __attribute__((always_inline)) int64_t shallow_token(int width, const float *row, int kept) {
    float values[SHALLOW_RANKS];
    int ids[SHALLOW_RANKS];
    int held = 0;
    for (int j = 0; j < width; j += TOKEN_BLOCK) {
        const int end = j + TOKEN_BLOCK < width ? j + TOKEN_BLOCK : width;
        if (held == kept && !(largest(row + j, end - j) > values[kept - 1])) continue;
        for (int i = j; i < end; i++) {
            const float x = row[i];
            if (held == kept && !(x > values[kept - 1])) continue;
            int at = held < kept ? held : kept - 1;
            while (at > 0 && values[at - 1] < x) values[at] = values[at - 1], ids[at] = ids[at - 1], at--;
            values[at] = x, ids[at] = i;
            held += held < kept;
        }
    }
    return ids[kept - 1];
}

static inline __attribute__((always_inline)) int64_t token_at_body(int width, const float *row, int64_t rank) {
    if (rank < 0 || rank >= width) return -1;
    if (rank < SHALLOW_RANKS) return shallow_token(width, row, (int)rank + 1);
    /* The largest key held by at least rank + 1 logits (counting those at or above it). */
    uint32_t low = 0, high = 0xFFFFFFFFu; /* count(low) >= rank + 1 > count(high + 1) */
    while (low < high) {
        const uint32_t middle = low + (high - low) / 2 + 1;
        int32_t counts[LANES] = {0}; /* in lanes, so that the loop vectorizes */
        int j = 0;
        for (; j + LANES <= width; j += LANES)
            for (int l = 0; l < LANES; l++) counts[l] += order_key(row[j + l]) >= middle;
        int64_t at_least = 0;
        for (; j < width; j++) at_least += order_key(row[j]) >= middle;
        for (int l = 0; l < LANES; l++) at_least += counts[l];
        if (at_least >= rank + 1) low = middle;
        else high = middle - 1;
    }
    int64_t above = 0;
    for (int j = 0; j < width; j++) above += order_key(row[j]) > low;
    for (int j = 0; j < width; j++) /* the (rank - above)-th logit at that key, in id order */
        if (order_key(row[j]) == low && above++ == rank) return j;
    return -1; /* not reached */
}

#define TOKEN_AT_PARAMETERS int width, const float *row, int64_t rank
static int64_t token_at_baseline(TOKEN_AT_PARAMETERS) { return token_at_body(width, row, rank); }
__attribute__((target("avx2"))) static int64_t token_at_avx2(TOKEN_AT_PARAMETERS) { return token_at_body(width, row, rank); }
__attribute__((target("arch=x86-64-v4"))) static int64_t token_at_v4(TOKEN_AT_PARAMETERS) { return token_at_body(width, row, rank); }
static int64_t (*token_at_rank)(TOKEN_AT_PARAMETERS) = token_at_baseline;

void alphazip_tokens_at(long rows, int width, const float *logits, const int64_t *ranks, int64_t *tokens,
                        int threads) {
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (rows > 1)
    for (long r = 0; r < rows; r++) tokens[r] = token_at_rank(width, logits + r * width, ranks[r]);
}

void alphazip_rows_select_isa(int level) {
    token_at_rank = level == 2 ? token_at_v4 : level == 1 ? token_at_avx2 : token_at_baseline;
    rank_of_row = level == 2 ? rank_v4 : level == 1 ? rank_avx2 : rank_baseline;
    rms_norm_row = level == 2 ? norm_v4 : level == 1 ? norm_avx2 : norm_baseline;
    rope_quantize_row = level == 2 ? rope_v4 : level == 1 ? rope_avx2 : rope_baseline;
}

void alphazip_ranks(long rows, int width, const float *logits, const int64_t *tokens, int64_t *ranks, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * width >= SMALL_WORK)
    for (long r = 0; r < rows; r++) ranks[r] = rank_of_row(width, logits + r * width, tokens[r]);
}
