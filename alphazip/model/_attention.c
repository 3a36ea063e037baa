/* The exact engine's attention in one pass per query row, over an int8 KV cache.
 *
 * It computes bit for bit what ExactEngine's torch path computes (alphazip/model/exact.py):
 * every float operation below is one exactly rounded IEEE operation in the same order, and
 * every sum is a sum of integers. So it must be built without -ffast-math and with
 * -ffp-contract=off (no fused multiply-add), and the two paths are tested against each other.
 *
 * Called through ctypes; the float32 constants come from Python so both paths share them.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kernel.h"

/* exactmath.exp2_: clamp, split into integer and fraction, Horner polynomial, times 2^k.
 * Branch-free so that the loops calling it vectorize. */
#define EXP2_TERMS 7 /* exactmath's float32 polynomial degree; fixed here so the loops unroll and vectorize */

static inline float exp2_exact(float y, const float *c) {
    y = y < -126.0f ? -126.0f : y; /* -inf clamps low */
    y = y > 127.0f ? 127.0f : y;
    float k = round_even(y);
    float f = y - k;
    float p = f * c[7];
    p = (p + c[6]) * f;
    p = (p + c[5]) * f;
    p = (p + c[4]) * f;
    p = (p + c[3]) * f;
    p = (p + c[2]) * f;
    p = (p + c[1]) * f;
    return (p + 1.0f) * power_of_two((int)k);
}

#define SUM_PIECE 1024 /* keys summed in int32 at a time: 1024 * 2^20 and 1024 * 16383 * 127 < 2^31 */

/* The ``group`` query rows of one position against keys first..last of one (sequence, kv head):
 * see alphazip_attend. ``q`` and ``out`` hold the rows ``stride`` values apart, ``row_scale`` stride / dim.
 * Inlined into one variant per instruction set (below). */
static inline __attribute__((always_inline)) void attend_position_body(const int8_t *q, const float *row_scale, long stride, int group, int first, int last,
                            int dim, int length, const int8_t *keys_t, const float *kstep, const int8_t *values,
                            const float *vstep, float *out, const float *constants, float *scores,
                            int32_t *integers, int32_t *acc32, int64_t *acc) {
    const float unit = constants[0], levels_max = constants[1];
    const float *coefficients = constants + 2;
    const int n = last - first + 1;
    kstep += first, vstep += first, values += (long)first * dim;
    /* Dot products along contiguous keys (the cache holds them transposed), every row at once. */
    memset(integers, 0, sizeof(int32_t) * (size_t)n * group);
    for (int d = 0; d < dim; d++) {
        const int8_t *column = keys_t + (long)d * length + first;
        for (int g = 0; g < group; g++) {
            const int32_t factor = q[g * stride + d];
            int32_t *dots = integers + (long)g * n;
            for (int j = 0; j < n; j++) dots[j] += factor * (int32_t)column[j];
        }
    }
    for (int g = 0; g < group; g++) {
        int32_t *ints = integers + (long)g * n;
        float *row = scores + (long)g * n;
        const float scale = row_scale[(long)g * (stride / dim)];
        for (int j = 0; j < n; j++) row[j] = ((float)ints[j] * kstep[j]) * scale;
        const float top = largest(row, n);
        for (int j = 0; j < n; j++) {
            float e = exp2_exact(row[j] - top, coefficients);
            ints[j] = (int32_t)round_even(e * unit);
            row[j] = e * vstep[j];
        }
        int64_t units = 0;
        for (int piece = 0; piece < n; piece += SUM_PIECE) {
            const int end = piece + SUM_PIECE < n ? piece + SUM_PIECE : n; /* a plain bound: the loop vectorizes */
            int32_t sum = 0;
            for (int j = piece; j < end; j++) sum += ints[j];
            units += sum;
        }
        float weight_top = largest(row, n);
        if (!(weight_top > 0.0f)) weight_top = 1.0f;
        const float reciprocal = 1.0f / weight_top;
        const float to_levels = reciprocal * levels_max;
        for (int j = 0; j < n; j++) ints[j] = (int32_t)round_even(row[j] * to_levels);
        memset(acc, 0, sizeof(int64_t) * (size_t)dim);
        for (int piece = 0; piece < n; piece += SUM_PIECE) {
            memset(acc32, 0, sizeof(int32_t) * (size_t)dim);
            for (int j = piece; j < n && j < piece + SUM_PIECE; j++) {
                const int32_t level = ints[j];
                if (level == 0) continue;
                const int8_t *value = values + (long)j * dim;
                for (int d = 0; d < dim; d++) acc32[d] += level * (int32_t)value[d];
            }
            for (int d = 0; d < dim; d++) acc[d] += acc32[d];
        }
        const double factor = ((double)weight_top / (double)levels_max) / ((double)units / (double)unit);
        float *target = out + g * stride;
        for (int d = 0; d < dim; d++) target[d] = (float)((double)acc[d] * factor);
    }
}

/* Each hot loop is compiled three times, for baseline x86-64, AVX2 and x86-64-v4 (AVX-512); integer
 * sums and elementwise IEEE operations give the same bits on each (no FMA: -ffp-contract=off).
 * alphazip_select_isa picks one, following torch's own choice (ATEN_CPU_CAPABILITY included), so
 * that one machine can run, and test, every variant. */
#define ATTEND_PARAMETERS const int8_t *q, const float *row_scale, long stride, int group, int first, int last, \
    int dim, int length, const int8_t *keys_t, const float *kstep, const int8_t *values, const float *vstep, \
    float *out, const float *constants, float *scores, int32_t *integers, int32_t *acc32, int64_t *acc
#define ATTEND_ARGUMENTS q, row_scale, stride, group, first, last, dim, length, keys_t, kstep, values, vstep, out, \
    constants, scores, integers, acc32, acc
static void attend_baseline(ATTEND_PARAMETERS) { attend_position_body(ATTEND_ARGUMENTS); }
__attribute__((target("avx2"))) static void attend_avx2(ATTEND_PARAMETERS) { attend_position_body(ATTEND_ARGUMENTS); }
__attribute__((target("arch=x86-64-v4"))) static void attend_v4(ATTEND_PARAMETERS) { attend_position_body(ATTEND_ARGUMENTS); }
static void (*attend_position)(ATTEND_PARAMETERS) = attend_baseline;

/* Attention of every query row of every (sequence, kv head) pair.
 *
 * q          int8  [batch, kv_heads, group, count, dim]   queries' int8 values
 * row_scale  float [batch, kv_heads, group, count]        query step * score scale * log2(e)
 * keys_t     int8  [batch, kv_heads, dim, length]  (keys transposed), key_steps float [batch, kv_heads, length]
 * values     int8  [batch, kv_heads, length, dim], value_steps float [batch, kv_heads, length]
 * out        float [batch, kv_heads, group, count, dim]
 * The row at position start + i sees keys j <= start + i, and j > start + i - window if window > 0.
 * constants: [0] 2^20 (softmax unit), [1] 16383 (weight levels), [2..] the exp2 coefficients c_0..c_terms.
 */
void alphazip_attend(int batch, int kv_heads, int group, int count, int dim, int length, int start, int window,
                     const int8_t *q, const float *row_scale, const int8_t *keys_t, const float *key_steps,
                     const int8_t *values, const float *value_steps, float *out, const float *constants, int terms,
                     int threads) {
    if (terms != EXP2_TERMS) return; /* the Python side checks this before calling */
    const long pairs = (long)batch * kv_heads, stride = (long)count * dim;
#pragma omp parallel num_threads(threads)
    {
        const size_t most = (size_t)(start + count) * (size_t)group;
        float *scores = malloc(sizeof(float) * most);
        int32_t *integers = malloc(sizeof(int32_t) * most), *acc32 = malloc(sizeof(int32_t) * (size_t)dim);
        int64_t *acc = malloc(sizeof(int64_t) * (size_t)dim);
#pragma omp for schedule(dynamic, 4)
        for (long index = 0; index < pairs * count; index++) {
            const long pair = index / count;
            const int i = (int)(index % count), position = start + i;
            const int first = window > 0 && position - window + 1 > 0 ? position - window + 1 : 0;
            const long head = pair * group * count + i; /* row (pair, g = 0, i) */
            attend_position(q + head * dim, row_scale + head, stride, group, first, position, dim, length,
                            keys_t + pair * length * dim, key_steps + pair * length, values + pair * length * dim,
                            value_steps + pair * length, out + head * dim, constants, scores, integers,
                            acc32, acc);
        }
        free(scores);
        free(integers);
        free(acc32);
        free(acc);
    }
}

/* QuantLinear's input side (intmm.py): each row quantized symmetrically to +-levels and split
 * into int8 halves, value = 256 high + low; ``halves`` is [2 rows, width] (highs, then lows).
 * high = floor((value + 128) / 256) is an arithmetic shift of the integer value + 128. */
static inline __attribute__((always_inline)) void quantize_split_body(int first, int last, int rows, int width,
        const float *x, float levels, int8_t *halves, float *steps) {
    for (int r = first; r < last; r++) {
        const float *row = x + (long)r * width;
        float top = largest_magnitude(row, width);
        if (!(top > 0.0f)) top = 1.0f;
        const float reciprocal = 1.0f / top;
        const float factor = reciprocal * levels;
        int8_t *high = halves + (long)r * width, *low = halves + ((long)rows + r) * width;
        for (int c = 0; c < width; c++) {
            float value = round_even(row[c] * factor);
            value = value < -levels ? -levels : value;
            value = value > levels ? levels : value;
            const int32_t integer = (int32_t)value;
            const int32_t upper = (integer + 128) >> 8;
            high[c] = (int8_t)upper;
            low[c] = (int8_t)(integer - upper * 256);
        }
        steps[r] = top / levels;
    }
}

#define SPLIT_PARAMETERS int first, int last, int rows, int width, const float *x, float levels, int8_t *halves, \
    float *steps
#define SPLIT_ARGUMENTS first, last, rows, width, x, levels, halves, steps
static void split_baseline(SPLIT_PARAMETERS) { quantize_split_body(SPLIT_ARGUMENTS); }
__attribute__((target("avx2"))) static void split_avx2(SPLIT_PARAMETERS) { quantize_split_body(SPLIT_ARGUMENTS); }
__attribute__((target("arch=x86-64-v4"))) static void split_v4(SPLIT_PARAMETERS) { quantize_split_body(SPLIT_ARGUMENTS); }
static void (*split_rows)(SPLIT_PARAMETERS) = split_baseline;

void alphazip_quantize_split(int rows, int width, const float *x, float levels, int8_t *halves, float *steps,
                             int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if ((long)rows * width >= SMALL_WORK)
    for (int r = 0; r < rows; r++) split_rows(r, r + 1, rows, width, x, levels, halves, steps);
}

/* QuantLinear's output side: the two halves' int32 products combined and scaled, in torch's order,
 * into rows ``out_stride`` floats apart (a block of columns of a wider output). */
void alphazip_dequantize(int rows, int cols, const int32_t *products, const float *scale, const float *steps,
                         float *out, long out_stride, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if ((long)rows * cols >= SMALL_WORK)
    for (int r = 0; r < rows; r++) {
        const int32_t *high = products + (long)r * cols, *low = products + ((long)rows + r) * cols;
        float *target = out + (long)r * out_stride;
        const float step = steps[r];
        for (int c = 0; c < cols; c++) target[c] = (((float)high[c] * 256.0f + (float)low[c]) * scale[c]) * step;
    }
}

/* The MLP's gate times up, as exactmath computes it: kind 0 SiLU, x / (2^(-x log2 e) + 1);
 * kind 1 GELU (tanh), x / (2^((-2 u) log2 e) + 1) with u = (x + x^3 c) sqrt(2/pi).
 * constants: [0] log2 e, [1] 0.044715, [2] sqrt(2/pi), [3..] the exp2 coefficients c_0..c_7. */
static inline __attribute__((always_inline)) void gate_rows_body(long first, long last, int kind, const float *gate,
                                                                 const float *up, float *out, const float *constants) {
    const float *coefficients = constants + 3;
    if (kind == 0) { /* two loops, not a branch in one: a loop with control flow does not vectorize */
        for (long i = first; i < last; i++) {
            const float x = gate[i];
            out[i] = (x / (exp2_exact((-x) * constants[0], coefficients) + 1.0f)) * up[i];
        }
    } else {
        for (long i = first; i < last; i++) {
            const float x = gate[i];
            const float u = (x + ((x * x) * x) * constants[1]) * constants[2];
            out[i] = (x / (exp2_exact((u * -2.0f) * constants[0], coefficients) + 1.0f)) * up[i];
        }
    }
}

#define GATE_PARAMETERS long first, long last, int kind, const float *gate, const float *up, float *out, \
    const float *constants
#define GATE_ARGUMENTS first, last, kind, gate, up, out, constants
static void gate_baseline(GATE_PARAMETERS) { gate_rows_body(GATE_ARGUMENTS); }
__attribute__((target("avx2"))) static void gate_avx2(GATE_PARAMETERS) { gate_rows_body(GATE_ARGUMENTS); }
__attribute__((target("arch=x86-64-v4"))) static void gate_v4(GATE_PARAMETERS) { gate_rows_body(GATE_ARGUMENTS); }
static void (*gate_rows)(GATE_PARAMETERS) = gate_baseline;

/* The arithmetic coder's integer frequencies of logit rows, as alphazip/coding/frequencies.py computes
 * them: f = floor(2^((x - max) log2 e) * 2^30) + 1. The product is at most 2^30, so truncation to
 * int32 is the floor and vectorizes; the sums are of integers, the same in any order.
 * constants: [0] log2 e, [1] 2^30, [2..] the exp2 coefficients c_0..c_7.
 * Per row: with ``tokens``, the frequencies before the token, its own, and the row's total; with
 * ``running``, the row's running sums (inclusive) and its total. */
static inline int64_t frequency(float x, float top, const float *constants) {
    return (int64_t)(int32_t)(exp2_exact((x - top) * constants[0], constants + 2) * constants[1]) + 1;
}

#define FREQUENCY_BLOCK 512 /* the decoder's sums per block of ids: it then scans one block, not the row */

/* Per row: with ``tokens``, the frequencies before the token, its own, and the row's total (packing);
 * without, the row's largest logit, its sums per FREQUENCY_BLOCK ids and its total (unpacking). */
static inline __attribute__((always_inline)) void frequencies_body(long first, long last, int width,
        const float *logits, const int64_t *tokens, int64_t *cums, int64_t *freqs, int64_t *totals,
        float *tops, int64_t *blocks, const float *constants) {
    const int block_count = (width + FREQUENCY_BLOCK - 1) / FREQUENCY_BLOCK;
    for (long r = first; r < last; r++) {
        const float *row = logits + r * (long)width;
        const float top = largest(row, width);
        int64_t total = 0;
        if (blocks) {
            tops[r] = top;
            for (int b = 0; b < block_count; b++) {
                const int end = (b + 1) * FREQUENCY_BLOCK < width ? (b + 1) * FREQUENCY_BLOCK : width;
                int64_t sum = 0;
                for (int j = b * FREQUENCY_BLOCK; j < end; j++) sum += frequency(row[j], top, constants);
                blocks[r * block_count + b] = sum;
                total += sum;
            }
        } else {
            const int token = (int)tokens[r];
            int64_t before = 0, after = 0;
            for (int j = 0; j < token; j++) before += frequency(row[j], top, constants);
            for (int j = token + 1; j < width; j++) after += frequency(row[j], top, constants);
            const int64_t own = frequency(row[token], top, constants);
            cums[r] = before;
            freqs[r] = own;
            total = before + own + after;
        }
        totals[r] = total;
    }
}

#define FREQUENCIES_PARAMETERS long first, long last, int width, const float *logits, const int64_t *tokens, \
    int64_t *cums, int64_t *freqs, int64_t *totals, float *tops, int64_t *blocks, const float *constants
#define FREQUENCIES_ARGUMENTS first, last, width, logits, tokens, cums, freqs, totals, tops, blocks, constants
static void frequencies_baseline(FREQUENCIES_PARAMETERS) { frequencies_body(FREQUENCIES_ARGUMENTS); }
__attribute__((target("avx2"))) static void frequencies_avx2(FREQUENCIES_PARAMETERS) { frequencies_body(FREQUENCIES_ARGUMENTS); }
__attribute__((target("arch=x86-64-v4"))) static void frequencies_v4(FREQUENCIES_PARAMETERS) { frequencies_body(FREQUENCIES_ARGUMENTS); }
static void (*frequencies_rows)(FREQUENCIES_PARAMETERS) = frequencies_baseline;

void alphazip_int_matmul_select_isa(int level); /* _intmm.c, built into the same library */

/* Use the variants for ``level``: 0 baseline x86-64, 1 AVX2, 2 x86-64-v4 (AVX-512), lowered to what
 * this CPU has. Returns the level in use. */
int alphazip_select_isa(int level) {
    __builtin_cpu_init();
    if (level >= 2 && !(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")))
        level = 1;
    if (level >= 1 && !__builtin_cpu_supports("avx2")) level = 0;
    attend_position = level == 2 ? attend_v4 : level == 1 ? attend_avx2 : attend_baseline;
    gate_rows = level == 2 ? gate_v4 : level == 1 ? gate_avx2 : gate_baseline;
    split_rows = level == 2 ? split_v4 : level == 1 ? split_avx2 : split_baseline;
    frequencies_rows = level == 2 ? frequencies_v4 : level == 1 ? frequencies_avx2 : frequencies_baseline;
    alphazip_int_matmul_select_isa(level);
    return level;
}

void alphazip_gate(long count, int kind, const float *gate, const float *up, float *out, const float *constants,
                   int threads) {
    const long piece = 4096;
#pragma omp parallel for num_threads(threads) schedule(static) if (count >= SMALL_WORK / 4) /* ~40 operations a value */
    for (long first = 0; first < count; first += piece)
        gate_rows(first, first + piece < count ? first + piece : count, kind, gate, up, out, constants);
}


void alphazip_frequencies(long rows, int width, const float *logits, const int64_t *tokens, int64_t *cums,
                          int64_t *freqs, int64_t *totals, float *tops, int64_t *blocks, const float *constants,
                          int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++)
        frequencies_rows(r, r + 1, width, logits, tokens, cums, freqs, totals, tops, blocks, constants);
}

/* For each query q: the token of row ``row_of[q]`` whose span [cum, cum + freq) holds targets[q] (width:
 * the escape after every id), from the block sums of alphazip_frequencies: whole blocks are skipped,
 * one is scanned. */
void alphazip_frequency_find(long queries, int width, const float *logits, const float *tops, const int64_t *blocks,
                             const int64_t *row_of, const int64_t *targets, int64_t *tokens, int64_t *cums,
                             int64_t *freqs, const float *constants) {
    const int block_count = (width + FREQUENCY_BLOCK - 1) / FREQUENCY_BLOCK;
    for (long q = 0; q < queries; q++) {
        const long r = row_of[q];
        const float *row = logits + r * (long)width;
        const int64_t *sums = blocks + r * block_count;
        int64_t below = 0;
        int b = 0;
        while (b < block_count && below + sums[b] <= targets[q]) below += sums[b++];
        tokens[q] = width, cums[q] = below, freqs[q] = 0;
        if (b == block_count) continue;
        const int end = (b + 1) * FREQUENCY_BLOCK < width ? (b + 1) * FREQUENCY_BLOCK : width;
        for (int j = b * FREQUENCY_BLOCK; j < end; j++) {
            const int64_t own = frequency(row[j], tops[r], constants);
            if (below + own > targets[q]) {
                tokens[q] = j, cums[q] = below, freqs[q] = own;
                break;
            }
            below += own;
        }
    }
}

/* For each query q: row ``row_of[q]``'s cumulative frequency before ids[q] and its own, from the
 * block sums of alphazip_frequencies: the blocks before it summed, its own block scanned up to it. */
void alphazip_frequency_at(long queries, int width, const float *logits, const float *tops, const int64_t *blocks,
                           const int64_t *row_of, const int64_t *ids, int64_t *cums, int64_t *freqs,
                           const float *constants) {
    const int block_count = (width + FREQUENCY_BLOCK - 1) / FREQUENCY_BLOCK;
    for (long q = 0; q < queries; q++) {
        const long r = row_of[q];
        const float *row = logits + r * (long)width;
        const int id = (int)ids[q], block = id / FREQUENCY_BLOCK;
        int64_t below = 0;
        for (int b = 0; b < block; b++) below += blocks[r * block_count + b];
        for (int j = block * FREQUENCY_BLOCK; j < id; j++) below += frequency(row[j], tops[r], constants);
        cums[q] = below;
        freqs[q] = frequency(row[id], tops[r], constants);
    }
}
