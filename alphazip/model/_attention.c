/* The exact engine's attention in one pass per query row, over an int8 KV cache.
 *
 * It computes bit for bit what ExactEngine's torch path computes (alphazip/model/exact.py):
 * every float operation below is one exactly rounded IEEE operation in the same order, and
 * every sum is a sum of integers. So it must be built without -ffast-math and with
 * -ffp-contract=off (no fused multiply-add), and the two paths are tested against each other.
 *
 * Called through ctypes; the float32 constants come from Python so both paths share them.
 */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kernel.h"

/* exactmath.exp2_: clamp, split into integer and fraction, Horner polynomial, times 2^k.
 * Branch-free so that the loops calling it vectorize. */

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
#define TILE_ROWS 4     /* query rows whose integer products share each widened load of keys or values */
#define TILE_POSITIONS 4 /* positions per work item when a call holds many (packing) */

/* The cache's pair layout, per (sequence, kv head): keys [dim / 2][length][2], the values of
 * dimensions 2p and 2p + 1 side by side; values [length / 2][dim][2], keys 2i and 2i + 1 side by
 * side. Widened to int16, each adjacent pair meets a pair of query values or attention weights in
 * one pmaddwd lane: two exact products added into int32. */

/* Integer products of TILE_ROWS query rows: ``qpairs[r]`` holds row r's values as int16 pairs
 * (one int32 per pair of dimensions); dots[r][j - begin] = the row's dot product with key j for
 * j in [begin, end), multiples of the variant's lanes. */
#define QK_TILE_PARAMETERS int pairs, const int32_t *const *qpairs, const int8_t *keys, long length, int begin, \
    int end, int32_t *const *dots
/* acc[r][d] += the weights levels[r][j] times values[j][d] over key pairs jp in [first_pair, last_pair):
 * TILE_ROWS rows of int16 weights indexed by key, ``dim`` a multiple of the variant's lanes. */
#define AV_TILE_PARAMETERS int dim, const int16_t *const *levels, const int8_t *values, int first_pair, \
    int last_pair, int32_t *const *acc

/* Both products read the cache in the order it lies in memory, since at one position a step they
 * wait on memory more than they multiply (the sums are of integers: any order gives the same).
 * Dot products take two rows of keys (dimension pairs p, p + 1) at a time along the positions,
 * their query values held in registers and the four rows' sums in ``dots`` (in L1); weighted sums
 * take each pair of positions' values whole (D_GROUP vectors of dimensions) for the four rows. */
#define TILES(SUFFIX, TARGET, VEC, LANES_32, D_GROUP, ZERO, SET1, WIDEN, MADD_ADD, LOAD, STORE)            \
    TARGET static void qk_tile_##SUFFIX(QK_TILE_PARAMETERS) {                                               \
        for (int r = 0; r < TILE_ROWS; r++) memset(dots[r], 0, sizeof(int32_t) * (size_t)(end - begin));   \
        for (int p = 0; p < pairs; p += 2) {                                                                 \
            const int second = p + 1 < pairs; /* an odd count: the last row of keys alone */               \
            const int8_t *row = keys + (long)p * length * 2, *next = row + (second ? length * 2 : 0);       \
            VEC q[TILE_ROWS][2];                                                                             \
            for (int r = 0; r < TILE_ROWS; r++)                                                              \
                q[r][0] = SET1(qpairs[r][p]), q[r][1] = second ? SET1(qpairs[r][p + 1]) : ZERO;            \
            for (int j = begin; j < end; j += LANES_32) {                                                    \
                const VEC k = WIDEN(row + (long)j * 2), k_next = WIDEN(next + (long)j * 2);                  \
                for (int r = 0; r < TILE_ROWS; r++) {                                                        \
                    int32_t *at = dots[r] + j - begin;                                                       \
                    STORE(at, MADD_ADD(MADD_ADD(LOAD(at), q[r][0], k), q[r][1], k_next));                    \
                }                                                                                            \
            }                                                                                                \
        }                                                                                                    \
    }                                                                                                        \
    TARGET static void av_tile_##SUFFIX(AV_TILE_PARAMETERS) {                                               \
        int d = 0;                                                                                           \
        for (; d + D_GROUP * LANES_32 <= dim; d += D_GROUP * LANES_32) {                                     \
            VEC sums[TILE_ROWS][D_GROUP];                                                                    \
            for (int r = 0; r < TILE_ROWS; r++)                                                              \
                for (int v = 0; v < D_GROUP; v++) sums[r][v] = LOAD(acc[r] + d + v * LANES_32);             \
            for (int jp = first_pair; jp < last_pair; jp++) {                                                \
                const int8_t *at = values + ((long)jp * dim + d) * 2;                                        \
                VEC weight[TILE_ROWS];                                                                       \
                for (int r = 0; r < TILE_ROWS; r++) weight[r] = SET1(level_pair(levels[r], jp));            \
                for (int v = 0; v < D_GROUP; v++) {                                                          \
                    const VEC value = WIDEN(at + v * LANES_32 * 2);                                          \
                    for (int r = 0; r < TILE_ROWS; r++) sums[r][v] = MADD_ADD(sums[r][v], weight[r], value); \
                }                                                                                            \
            }                                                                                                \
            for (int r = 0; r < TILE_ROWS; r++)                                                              \
                for (int v = 0; v < D_GROUP; v++) STORE(acc[r] + d + v * LANES_32, sums[r][v]);            \
        }                                                                                                    \
        for (; d < dim; d += LANES_32) { /* dimensions beyond whole groups, one vector at a time */         \
            VEC sums[TILE_ROWS];                                                                             \
            for (int r = 0; r < TILE_ROWS; r++) sums[r] = LOAD(acc[r] + d);                                  \
            for (int jp = first_pair; jp < last_pair; jp++) {                                                \
                const VEC value = WIDEN(values + ((long)jp * dim + d) * 2);                                  \
                for (int r = 0; r < TILE_ROWS; r++)                                                          \
                    sums[r] = MADD_ADD(sums[r], SET1(level_pair(levels[r], jp)), value);                     \
            }                                                                                                \
            for (int r = 0; r < TILE_ROWS; r++) STORE(acc[r] + d, sums[r]);                                  \
        }                                                                                                    \
    }

/* The weights of keys 2 jp and 2 jp + 1 as one int32 (little-endian int16 pair). */
static inline int32_t level_pair(const int16_t *levels, int jp) {
    int32_t pair;
    memcpy(&pair, levels + 2 * (long)jp, sizeof pair);
    return pair;
}

/* Baseline x86-64 has SSE2 only: int8 -> int16 by unpacking each byte with itself and shifting. */
static inline __m128i widen_sse2(const int8_t *p) {
    const __m128i bytes = _mm_loadl_epi64((const __m128i *)p);
    return _mm_srai_epi16(_mm_unpacklo_epi8(bytes, bytes), 8);
}
#define LOAD_SSE2(p) _mm_loadu_si128((const __m128i *)(p))
#define STORE_SSE2(p, v) _mm_storeu_si128((__m128i *)(p), v)
#define MADD_ADD_SSE2(acc, a, b) _mm_add_epi32(acc, _mm_madd_epi16(a, b))
TILES(baseline, , __m128i, 4, 2, _mm_setzero_si128(), _mm_set1_epi32, widen_sse2, MADD_ADD_SSE2, LOAD_SSE2, STORE_SSE2)

#define TARGET_AVX2 __attribute__((target("avx2")))
#define WIDEN_AVX2(p) _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(p)))
#define LOAD_AVX2(p) _mm256_loadu_si256((const __m256i *)(p))
#define STORE_AVX2(p, v) _mm256_storeu_si256((__m256i *)(p), v)
#define MADD_ADD_AVX2(acc, a, b) _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
TILES(avx2, TARGET_AVX2, __m256i, 8, 2, _mm256_setzero_si256(), _mm256_set1_epi32, WIDEN_AVX2, MADD_ADD_AVX2, LOAD_AVX2,
      STORE_AVX2)

#define TARGET_V4 __attribute__((target("arch=x86-64-v4")))
#define WIDEN_V4(p) _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)(p)))
#define LOAD_V4(p) _mm512_loadu_si512((const void *)(p))
#define STORE_V4(p, v) _mm512_storeu_si512((void *)(p), v)
#define MADD_ADD_V4(acc, a, b) _mm512_add_epi32(acc, _mm512_madd_epi16(a, b))
TILES(v4, TARGET_V4, __m512i, 16, 4, _mm512_setzero_si512(), _mm512_set1_epi32, WIDEN_V4, MADD_ADD_V4, LOAD_V4, STORE_V4)

/* AVX-512 VNNI: VPDPWSSD adds the two int16 products of each lane to its int32 sum in one instruction
 * (wrapping, not saturating: the same integer as the multiply-add and the add above). */
#define TARGET_VNNI __attribute__((target("arch=x86-64-v4,avx512vnni")))
TILES(vnni, TARGET_VNNI, __m512i, 16, 4, _mm512_setzero_si512(), _mm512_set1_epi32, WIDEN_V4, _mm512_dpwssd_epi32,
      LOAD_V4, STORE_V4)

static void (*qk_tile)(QK_TILE_PARAMETERS) = qk_tile_baseline;
static void (*av_tile)(AV_TILE_PARAMETERS) = av_tile_baseline;
static int tile_lanes = 4; /* int32 lanes of the selected variant */

/* The same sums without vectors, for head dimensions that are not a multiple of the lanes. */
static void av_tile_scalar(AV_TILE_PARAMETERS) {
    for (int r = 0; r < TILE_ROWS; r++)
        for (int jp = first_pair; jp < last_pair; jp++)
            for (int d = 0; d < dim; d++) {
                const int8_t *pair = values + ((long)jp * dim + d) * 2;
                acc[r][d] += levels[r][2 * jp] * (int32_t)pair[0] + levels[r][2 * jp + 1] * (int32_t)pair[1];
            }
}

/* The sum of n exp() values in units of 2^-20 (``ints``), in int32 pieces of SUM_PIECE keys. */
static inline __attribute__((always_inline)) int64_t unit_sum(const int32_t *ints, int n) {
    int64_t units = 0;
    for (int piece = 0; piece < n; piece += SUM_PIECE) {
        const int end = piece + SUM_PIECE < n ? piece + SUM_PIECE : n; /* a plain bound: the loop vectorizes */
        int32_t sum = 0;
        for (int j = piece; j < end; j++) sum += ints[j];
        units += sum;
    }
    return units;
}

/* One query row's softmax, from its integer dot products with keys first..last (``dots``, indexed
 * from key first): the float steps exactly as exact.py's torch path takes them. Writes the
 * weights as 14-bit integers into ``levels`` (indexed by key), returns the denominator in units of
 * 2^-20 and the largest weight in ``weight_top``. */
static inline __attribute__((always_inline)) int64_t softmax_row_body(int n, const int32_t *dots, float scale,
        const float *kstep, const float *vstep, const float *constants, float *row, int32_t *ints, int16_t *levels,
        float *weight_top) {
    const float unit = constants[0], levels_max = constants[1];
    const float *coefficients = constants + 2;
    for (int j = 0; j < n; j++) row[j] = ((float)dots[j] * kstep[j]) * scale;
    const float top = largest(row, n);
    for (int j = 0; j < n; j++) {
        float e = exp2_exact(row[j] - top, coefficients);
        ints[j] = (int32_t)round_even(e * unit);
        row[j] = e * vstep[j];
    }
    const int64_t units = unit_sum(ints, n);
    float most = largest(row, n);
    if (!(most > 0.0f)) most = 1.0f;
    const float to_levels = (1.0f / most) * levels_max;
    for (int j = 0; j < n; j++) levels[j] = (int16_t)round_even(row[j] * to_levels);
    *weight_top = most;
    return units;
}

#define SOFTMAX_PARAMETERS int n, const int32_t *dots, float scale, const float *kstep, const float *vstep, \
    const float *constants, float *row, int32_t *ints, int16_t *levels, float *weight_top
#define SOFTMAX_ARGUMENTS n, dots, scale, kstep, vstep, constants, row, ints, levels, weight_top
static int64_t softmax_baseline(SOFTMAX_PARAMETERS) { return softmax_row_body(SOFTMAX_ARGUMENTS); }
TARGET_AVX2 static int64_t softmax_avx2(SOFTMAX_PARAMETERS) { return softmax_row_body(SOFTMAX_ARGUMENTS); }
TARGET_V4 static int64_t softmax_v4(SOFTMAX_PARAMETERS) { return softmax_row_body(SOFTMAX_ARGUMENTS); }
static int64_t (*softmax_row)(SOFTMAX_PARAMETERS) = softmax_baseline;

/* Learning's softmax (attention_backward.py's _softmax) of one row of base-2 scores, in place:
 * over its first n keys (those it sees), 0 for the rest of its width; the float steps as the
 * torch path takes them, the denominator a sum of integers. ``ints``: scratch of n. */
static inline __attribute__((always_inline)) void probabilities_row_body(int n, int width, float *row, int32_t *ints,
                                                                        const float *constants) {
    const float unit = constants[0];
    const float *coefficients = constants + 2;
    const float top = largest(row, n);
    for (int j = 0; j < n; j++) {
        const float e = exp2_exact(row[j] - top, coefficients);
        ints[j] = (int32_t)round_even(e * unit);
        row[j] = e;
    }
    const float denominator = (float)((double)unit_sum(ints, n) / (double)unit);
    for (int j = 0; j < n; j++) row[j] = row[j] / denominator;
    for (int j = n; j < width; j++) row[j] = 0.0f;
}

#define PROBABILITIES_PARAMETERS int n, int width, float *row, int32_t *ints, const float *constants
#define PROBABILITIES_ARGUMENTS n, width, row, ints, constants
static void probabilities_baseline(PROBABILITIES_PARAMETERS) { probabilities_row_body(PROBABILITIES_ARGUMENTS); }
TARGET_AVX2 static void probabilities_avx2(PROBABILITIES_PARAMETERS) { probabilities_row_body(PROBABILITIES_ARGUMENTS); }
TARGET_V4 static void probabilities_v4(PROBABILITIES_PARAMETERS) { probabilities_row_body(PROBABILITIES_ARGUMENTS); }
static void (*probabilities_row)(PROBABILITIES_PARAMETERS) = probabilities_baseline;

/* Scratch of one thread: room for ``rows`` query rows over ``span`` keys of ``dim`` values. */
typedef struct {
    int32_t *qpairs, *dots, *ints, *acc32, *spare, *spare_dots;
    int64_t *acc, *units;
    int16_t *levels;
    float *row, *weight_top;
    int *firsts, *lasts; /* each row's keys */
    long *heads;         /* each row's index in q, row_scale and out */
} Scratch;

static int scratch_alloc(Scratch *s, int rows, long span, int dim) {
    s->qpairs = malloc(sizeof(int32_t) * (size_t)rows * (dim / 2));
    s->dots = malloc(sizeof(int32_t) * (size_t)rows * span);
    s->ints = malloc(sizeof(int32_t) * (size_t)span);
    s->row = malloc(sizeof(float) * (size_t)span);
    s->levels = malloc(sizeof(int16_t) * (size_t)rows * span);
    s->acc32 = malloc(sizeof(int32_t) * (size_t)rows * dim);
    s->acc = malloc(sizeof(int64_t) * (size_t)rows * dim);
    s->units = malloc(sizeof(int64_t) * (size_t)rows);
    s->weight_top = malloc(sizeof(float) * (size_t)rows);
    s->spare = malloc(sizeof(int32_t) * (size_t)TILE_ROWS * dim);
    s->spare_dots = malloc(sizeof(int32_t) * (size_t)TILE_ROWS * span);
    s->firsts = malloc(sizeof(int) * (size_t)rows);
    s->lasts = malloc(sizeof(int) * (size_t)rows);
    s->heads = malloc(sizeof(long) * (size_t)rows);
    return s->qpairs && s->dots && s->ints && s->row && s->levels && s->acc32 && s->acc && s->units && s->weight_top
           && s->spare && s->spare_dots && s->firsts && s->lasts && s->heads;
}

static void scratch_free(Scratch *s) {
    free(s->qpairs), free(s->dots), free(s->ints), free(s->row), free(s->levels);
    free(s->acc32), free(s->acc), free(s->units), free(s->weight_top);
    free(s->spare), free(s->spare_dots), free(s->firsts), free(s->lasts), free(s->heads);
}

/* Rows [0, rows) in tiles of TILE_ROWS, the last tile repeating its last row (computed twice, the same). */
static void tile_rows(int rows, int tile, int picked[TILE_ROWS]) {
    for (int r = 0; r < TILE_ROWS; r++) picked[r] = tile + r < rows ? tile + r : rows - 1;
}

/* s.dots[r][j - begin] for every row r and key j in [begin, end): its query pairs (s.qpairs)
 * against the keys, TILE_ROWS rows per widened load. */
static void dot_products(Scratch *s, int rows, int dim, const int8_t *keys, int length, int begin, int end) {
    const int span = end - begin;
    for (int tile = 0; tile < rows; tile += TILE_ROWS) {
        int picked[TILE_ROWS];
        tile_rows(rows, tile, picked);
        const int32_t *qp[TILE_ROWS];
        int32_t *dots[TILE_ROWS];
        for (int r = 0; r < TILE_ROWS; r++) /* a repeated row's sums go to spare, not added twice */
            qp[r] = s->qpairs + (long)picked[r] * (dim / 2),
            dots[r] = tile + r < rows ? s->dots + (long)picked[r] * span : s->spare_dots + (long)r * span;
        qk_tile(dim / 2, qp, keys, length, begin, end, dots);
    }
}

/* s.acc[r][d]: every row's integer weights (s.levels, ``span`` a row, indexed from key ``begin``)
 * times the values over key pairs [first_pair, last_pair), summed in int32 over pieces of
 * SUM_PIECE keys, then in int64. */
static void weighted_sums(Scratch *s, int rows, int dim, void (*av)(AV_TILE_PARAMETERS), const int8_t *values,
                          int first_pair, int last_pair, int span, int begin) {
    memset(s->acc, 0, sizeof(int64_t) * (size_t)rows * dim);
    for (int piece = first_pair; piece < last_pair; piece += SUM_PIECE / 2) {
        const int piece_end = piece + SUM_PIECE / 2 < last_pair ? piece + SUM_PIECE / 2 : last_pair;
        memset(s->acc32, 0, sizeof(int32_t) * (size_t)rows * dim);
        for (int tile = 0; tile < rows; tile += TILE_ROWS) {
            int picked[TILE_ROWS];
            tile_rows(rows, tile, picked);
            const int16_t *levels[TILE_ROWS];
            int32_t *acc[TILE_ROWS];
            for (int r = 0; r < TILE_ROWS; r++) { /* a repeated row's sums go to spare, not added twice */
                levels[r] = s->levels + (long)picked[r] * span - begin;
                acc[r] = tile + r < rows ? s->acc32 + (long)picked[r] * dim : s->spare + (long)r * dim;
            }
            av(dim, levels, values, piece, piece_end, acc);
        }
        for (long k = 0; k < (long)rows * dim; k++) s->acc[k] += s->acc32[k];
    }
}

/* Attention of every query row of every (sequence, kv head) pair.
 *
 * q          int8  [batch, kv_heads, group, count, dim]   queries' int8 values
 * row_scale  float [batch, kv_heads, group, count]        query step * score scale * log2(e)
 * keys       int8  [batch, kv_heads, dim / 2, length, 2]  and key_steps float [batch, kv_heads, length]
 * values     int8  [batch, kv_heads, length / 2, dim, 2]  and value_steps float [batch, kv_heads, length]
 * out        float [batch, kv_heads, group, count, dim]
 * The row at position start + i sees keys j <= start + i, and j > start + i - window if window > 0.
 * ``dim`` is even, ``length`` a multiple of 64. constants: [0] 2^20 (softmax unit), [1] 16383
 * (weight levels), [2..] the exp2 coefficients c_0..c_terms. Returns 0, or -1 if memory ran out.
 *
 * Work items are (pair, a tile of positions): the rows of all its positions and the whole group
 * share each widened load of keys and values. */
int alphazip_attend(int batch, int kv_heads, int group, int count, int dim, int length, int start, int window,
                    const int8_t *q, const float *row_scale, const int8_t *keys, const float *key_steps,
                    const int8_t *values, const float *value_steps, float *out, const float *constants, int terms,
                    int threads) {
    if (terms != EXP2_TERMS || dim % 2 || length % 64) return -1; /* the Python side checks these first */
    const long pairs = (long)batch * kv_heads;
    const int tiles = (count + TILE_POSITIONS - 1) / TILE_POSITIONS, most_rows = TILE_POSITIONS * group;
    const int lanes = tile_lanes;
    const float unit = constants[0], levels_max = constants[1];
    void (*const av)(AV_TILE_PARAMETERS) = dim % lanes ? av_tile_scalar : av_tile;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        Scratch s;
        if (!scratch_alloc(&s, most_rows, (long)length + 2 * lanes, dim)) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (long item = 0; item < pairs * tiles; item++) {
            if (failed) continue;
            const long pair = item / tiles;
            const int first_position = (int)(item % tiles) * TILE_POSITIONS;
            const int positions = count - first_position < TILE_POSITIONS ? count - first_position : TILE_POSITIONS;
            const int rows = positions * group;
            const int8_t *pair_keys = keys + pair * length * dim, *pair_values = values + pair * length * dim;
            const float *kstep = key_steps + pair * length, *vstep = value_steps + pair * length;
            /* Row r is (position first_position + r / group, g = r % group); its keys first..last. */
            int *firsts = s.firsts, *lasts = s.lasts;
            long *heads = s.heads;
            int low = length, high = 0;
            for (int r = 0; r < rows; r++) {
                const int i = first_position + r / group, g = r % group, position = start + i;
                firsts[r] = window > 0 && position - window + 1 > 0 ? position - window + 1 : 0;
                lasts[r] = position;
                heads[r] = (pair * group + g) * count + i;
                low = firsts[r] < low ? firsts[r] : low;
                high = lasts[r] > high ? lasts[r] : high;
                const int8_t *row_q = q + heads[r] * dim;
                for (int p = 0; p < dim / 2; p++)
                    s.qpairs[(long)r * (dim / 2) + p] = (int32_t)(uint16_t)(int16_t)row_q[2 * p]
                                                        | (int32_t)((uint32_t)(uint16_t)(int16_t)row_q[2 * p + 1] << 16);
            }
            /* Dot products over whole vectors of keys around low..high (inside the cache's length). */
            const int begin = low / lanes * lanes, end = (high + lanes) / lanes * lanes, span = end - begin;
            dot_products(&s, rows, dim, pair_keys, length, begin, end);
            /* Each row's softmax; its weights as integers over the key pairs low / 2 .. high / 2, zero
             * outside its own keys (those pairs lie within begin..end). */
            const int first_pair = low / 2, last_pair = high / 2 + 1;
            for (int r = 0; r < rows; r++) {
                int16_t *levels = s.levels + (long)r * span - begin; /* indexed by key */
                for (int j = 2 * first_pair; j < 2 * last_pair; j++) levels[j] = 0;
                const int n = lasts[r] - firsts[r] + 1;
                const float scale = row_scale[heads[r]];
                s.units[r] = softmax_row(n, s.dots + (long)r * span + firsts[r] - begin, scale, kstep + firsts[r],
                                         vstep + firsts[r], constants, s.row, s.ints, levels + firsts[r],
                                         s.weight_top + r);
            }
            weighted_sums(&s, rows, dim, av, pair_values, first_pair, last_pair, span, begin);
            for (int r = 0; r < rows; r++) {
                const double factor = ((double)s.weight_top[r] / (double)levels_max) / ((double)s.units[r] / (double)unit);
                float *target = out + heads[r] * dim;
                const int64_t *sums = s.acc + (long)r * dim;
                for (int d = 0; d < dim; d++) target[d] = (float)((double)sums[d] * factor);
            }
        }
        scratch_free(&s);
    }
    return failed ? -1 : 0;
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

/* Learning's backward pass through the SiLU gate (alphazip/model/learning.py): from the gradient d
 * at silu(g) * u, the gate's d u s' and the up's d (g s), with s = 1 / (2^(-g log2 e) + 1) and
 * s' = ((1 - s) g + 1) s. constants: as for the gate. */
static inline __attribute__((always_inline)) void gate_backward_body(long first, long last, const float *gate,
        const float *up, const float *gradient, float *gate_out, float *up_out, const float *constants) {
    const float *coefficients = constants + 3;
    for (long i = first; i < last; i++) {
        const float g = gate[i], d = gradient[i];
        const float s = 1.0f / (exp2_exact((-g) * constants[0], coefficients) + 1.0f);
        const float slope = ((1.0f - s) * g + 1.0f) * s;
        gate_out[i] = (d * up[i]) * slope;
        up_out[i] = d * (g * s);
    }
}

#define GATE_BACKWARD_PARAMETERS long first, long last, const float *gate, const float *up, const float *gradient, \
    float *gate_out, float *up_out, const float *constants
#define GATE_BACKWARD_ARGUMENTS first, last, gate, up, gradient, gate_out, up_out, constants
static void gate_backward_baseline(GATE_BACKWARD_PARAMETERS) { gate_backward_body(GATE_BACKWARD_ARGUMENTS); }
__attribute__((target("avx2"))) static void gate_backward_avx2(GATE_BACKWARD_PARAMETERS) {
    gate_backward_body(GATE_BACKWARD_ARGUMENTS);
}
__attribute__((target("arch=x86-64-v4"))) static void gate_backward_v4(GATE_BACKWARD_PARAMETERS) {
    gate_backward_body(GATE_BACKWARD_ARGUMENTS);
}
static void (*gate_backward_rows)(GATE_BACKWARD_PARAMETERS) = gate_backward_baseline;

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

/* The ``ac`` coder's adaptive log-space bias (alphazip/coding/bias.py): one gradient step on the coded
 * token's code length, b -= rate * p for every id, then b[token] += rate, where p = f / total are the
 * integer frequencies of the biased row (``biased`` = logits + b). Each element is a few exactly
 * rounded operations: f in int32 (at most 2^30 + 1), f * (rate / total) in double, rounded to
 * float, subtracted; so every variant writes the same bits. */
static inline __attribute__((always_inline)) void bias_learn_body(int width, const float *biased, int64_t total,
        int token, float rate, float *bias, const float *constants) {
    if (token >= width) return; /* escaped: the model's ids learn nothing */
    const float top = largest(biased, width);
    const double scale = (double)rate / (double)total;
    for (int j = 0; j < width; j++) {
        const int32_t f = (int32_t)(exp2_exact((biased[j] - top) * constants[0], constants + 2) * constants[1]) + 1;
        bias[j] = bias[j] - (float)((double)f * scale);
    }
    bias[token] = bias[token] + rate;
}

#define BIAS_PARAMETERS int width, const float *biased, int64_t total, int token, float rate, float *bias, \
    const float *constants
#define BIAS_ARGUMENTS width, biased, total, token, rate, bias, constants
static void bias_baseline(BIAS_PARAMETERS) { bias_learn_body(BIAS_ARGUMENTS); }
__attribute__((target("avx2"))) static void bias_avx2(BIAS_PARAMETERS) { bias_learn_body(BIAS_ARGUMENTS); }
__attribute__((target("arch=x86-64-v4"))) static void bias_v4(BIAS_PARAMETERS) { bias_learn_body(BIAS_ARGUMENTS); }
static void (*bias_rows)(BIAS_PARAMETERS) = bias_baseline;

/* Packing's step for one biased row y (its largest value ``top``), the token known: the row's integer
 * frequencies, kept in f, give alphazip_frequencies' facts of the token (of id 0 for an escaped one),
 * then bias_learn_body's step from the same f: the same integers and roundings, one exp2 pass. */
static inline __attribute__((always_inline)) void coded_step_body(int width, const float *y, float top,
        int64_t token, float rate, float *b, int32_t *f, int64_t *cum, int64_t *own, int64_t *total,
        const float *constants) {
    for (int j = 0; j < width; j++)
        f[j] = (int32_t)(exp2_exact((y[j] - top) * constants[0], constants + 2) * constants[1]) + 1;
    const int at = token < width ? (int)token : 0;
    int64_t before = 0, after = 0;
    for (int j = 0; j < at; j++) before += f[j];
    for (int j = at + 1; j < width; j++) after += f[j];
    *cum = before, *own = f[at], *total = before + f[at] + after;
    if (token >= width) return; /* escaped: the model's ids learn nothing */
    const double scale = (double)rate / (double)*total;
    for (int j = 0; j < width; j++) b[j] = b[j] - (float)((double)f[j] * scale);
    b[token] = b[token] + rate;
}

#define CODED_STEP_PARAMETERS int width, const float *y, float top, int64_t token, float rate, float *b, int32_t *f, \
    int64_t *cum, int64_t *own, int64_t *total, const float *constants
#define CODED_STEP_ARGUMENTS width, y, top, token, rate, b, f, cum, own, total, constants
static void coded_step_baseline(CODED_STEP_PARAMETERS) { coded_step_body(CODED_STEP_ARGUMENTS); }
__attribute__((target("avx2"))) static void coded_step_avx2(CODED_STEP_PARAMETERS) { coded_step_body(CODED_STEP_ARGUMENTS); }
__attribute__((target("arch=x86-64-v4"))) static void coded_step_v4(CODED_STEP_PARAMETERS) { coded_step_body(CODED_STEP_ARGUMENTS); }
static void (*coded_step)(CODED_STEP_PARAMETERS) = coded_step_baseline;

/* Use the variants for ``level``: 0 baseline x86-64, 1 AVX2, 2 x86-64-v4 (AVX-512), 3 the same with
 * VNNI for attention's integer products, lowered to what this CPU has. Returns the level in use;
 * the other kernels take 3 as 2. */
int alphazip_select_isa(int level) {
    __builtin_cpu_init();
    if (level >= 3 && !__builtin_cpu_supports("avx512vnni")) level = 2;
    if (level >= 2 && !(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
                        && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")))
        level = 1;
    if (level >= 1 && !__builtin_cpu_supports("avx2")) level = 0;
    const int vnni = level == 3;
    level = vnni ? 2 : level;
    qk_tile = vnni ? qk_tile_vnni : level == 2 ? qk_tile_v4 : level == 1 ? qk_tile_avx2 : qk_tile_baseline;
    av_tile = vnni ? av_tile_vnni : level == 2 ? av_tile_v4 : level == 1 ? av_tile_avx2 : av_tile_baseline;
    softmax_row = level == 2 ? softmax_v4 : level == 1 ? softmax_avx2 : softmax_baseline;
    probabilities_row = level == 2 ? probabilities_v4 : level == 1 ? probabilities_avx2 : probabilities_baseline;
    tile_lanes = level == 2 ? 16 : level == 1 ? 8 : 4;
    gate_rows = level == 2 ? gate_v4 : level == 1 ? gate_avx2 : gate_baseline;
    gate_backward_rows = level == 2 ? gate_backward_v4 : level == 1 ? gate_backward_avx2 : gate_backward_baseline;
    split_rows = level == 2 ? split_v4 : level == 1 ? split_avx2 : split_baseline;
    frequencies_rows = level == 2 ? frequencies_v4 : level == 1 ? frequencies_avx2 : frequencies_baseline;
    bias_rows = level == 2 ? bias_v4 : level == 1 ? bias_avx2 : bias_baseline;
    coded_step = level == 2 ? coded_step_v4 : level == 1 ? coded_step_avx2 : coded_step_baseline;
    alphazip_int_matmul_select_isa(level);
    alphazip_rows_select_isa(level);
    return vnni ? 3 : level;
}

/* The same on rows of gate and up side by side, [rows, 2 width] -> out [rows, width]: exact.py's
 * split of the gate/up product's output, without copying the halves apart. */
void alphazip_gate_rows(long rows, int width, int kind, const float *gate_up, float *out, const float *constants,
                        int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * width >= SMALL_WORK / 4)
    for (long r = 0; r < rows; r++)
        gate_rows(0, width, kind, gate_up + r * 2 * width, gate_up + r * 2 * width + width, out + r * width, constants);
}



/* gate_up [rows, 2 width] (gate, then up, per row), gradient [rows, width] -> out [rows, 2 width]. */
void alphazip_gate_backward(long rows, int width, const float *gate_up, const float *gradient, float *out,
                            const float *constants, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * width >= SMALL_WORK / 4)
    for (long r = 0; r < rows; r++) {
        const float *row = gate_up + r * 2 * width;
        float *to = out + r * 2 * width;
        gate_backward_rows(0, width, row, row + width, gradient + r * width, to, to + width, constants);
    }
}

/* scores [rows, width] base-2, in place -> learning's softmax over the first visible[r] keys of
 * each row (1 <= visible[r] <= width), 0 beyond. constants: the forward pass's (unit, levels,
 * the exp2 polynomial). Returns nonzero if out of memory. */
int alphazip_probabilities(long rows, int width, float *scores, const int32_t *visible, const float *constants,
                           int threads) {
    int failed = 0;
#pragma omp parallel num_threads(threads) if (rows * width >= SMALL_WORK)
    {
        int32_t *ints = malloc(sizeof(int32_t) * (size_t)width);
        if (ints == NULL) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (long r = 0; r < rows; r++)
            if (ints != NULL) probabilities_row(visible[r], width, scores + r * (long)width, ints, constants);
        free(ints);
    }
    return failed;
}

void alphazip_frequencies(long rows, int width, const float *logits, const int64_t *tokens, int64_t *cums,
                          int64_t *freqs, int64_t *totals, float *tops, int64_t *blocks, const float *constants,
                          int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++)
        frequencies_rows(r, r + 1, width, logits, tokens, cums, freqs, totals, tops, blocks, constants);
}

/* Learning's gradient of the loss at the logits, scaled per column by the head's scales
 * (alphazip/model/learning.py): (p_j - [j == target]) * scale[j] with p_j = (float)(f_j / total) in
 * double, f the coder's frequencies above. constants: as for alphazip_frequencies. */
void alphazip_loss_gradient(long rows, int width, const float *logits, const int64_t *targets, const float *scale,
                            float *out, const float *constants, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long r = 0; r < rows; r++) {
        const float *row = logits + r * (long)width;
        float *to = out + r * (long)width;
        const float top = largest(row, width);
        int64_t total = 0;
        for (int j = 0; j < width; j++) total += frequency(row[j], top, constants);
        const double whole = (double)total;
        for (int j = 0; j < width; j++) {
            const float p = (float)((double)frequency(row[j], top, constants) / whole);
            to[j] = (p - (j == targets[r] ? 1.0f : 0.0f)) * scale[j];
        }
    }
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

/* For each row r: the bias row ``which[r]`` of ``bias`` [chunks, width] learns from ``tokens[r]``
 * under ``biased`` [rows, width] whose frequencies total ``totals[r]`` (a token >= width, escaped,
 * teaches nothing). Rows name distinct bias rows. */
void alphazip_bias_learn(long rows, int width, const float *biased, const int64_t *totals, const int64_t *which,
                         const int64_t *tokens, float rate, float *bias, const float *constants, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * width >= SMALL_WORK)
    for (long r = 0; r < rows; r++)
        bias_rows(width, biased + r * (long)width, totals[r], (int)tokens[r], rate, bias + which[r] * (long)width,
                  constants);
}

/* logits + bias into out, and the first id of out's largest value (torch.argmax's choice). */
static inline int64_t add_bias_row(int width, const float *x, const float *b, float *out) {
#pragma omp simd
    for (int j = 0; j < width; j++) out[j] = x[j] + b[j];
    const float top = largest(out, width);
    int at = 0;
    while (out[at] != top) at++;
    return at;
}

/* For each row r: out[r] = logits row ``logit_rows[r]`` + bias row ``which[r]`` (float32 sums, exactly
 * rounded), and first[r] = the first id of out[r]'s largest value (unpacking's step). */
void alphazip_bias_add(long rows, int width, const float *logits, const int64_t *logit_rows, const float *bias,
                       const int64_t *which, float *out, int64_t *first, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * width >= SMALL_WORK)
    for (long r = 0; r < rows; r++)
        first[r] = add_bias_row(width, logits + logit_rows[r] * (long)width, bias + which[r] * (long)width,
                                out + r * (long)width);
}

/* Packing's step, each token known: per row r, the biased row (alphazip_bias_add's, in a scratch row
 * that stays in cache), its argmax, alphazip_frequencies' facts of tokens[r] (of id 0 for an escaped
 * token), then alphazip_bias_learn's step. One call instead of four passes over memory. */
void alphazip_bias_facts(long rows, int width, const float *logits, const int64_t *logit_rows, float *bias,
                         const int64_t *which, const int64_t *tokens, float rate, int64_t *cums, int64_t *freqs,
                         int64_t *totals, int64_t *first, const float *constants, int threads) {
    static _Thread_local float *scratch = NULL; /* each pool thread's biased row and its frequencies */
    static _Thread_local int scratch_width = 0;
    int failed = 0;
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * width >= SMALL_WORK) reduction(|| : failed)
    for (long r = 0; r < rows; r++) {
        if (scratch_width < width) {
            free(scratch);
            scratch = malloc(2 * (size_t)width * sizeof *scratch);
            scratch_width = scratch ? width : 0;
        }
        if (!scratch) {
            failed = 1;
            continue;
        }
        float *b = bias + which[r] * (long)width;
        const int64_t at = add_bias_row(width, logits + logit_rows[r] * (long)width, b, scratch);
        first[r] = at;
        coded_step(width, scratch, scratch[at] + 0.0f, tokens[r], rate, b, (int32_t *)(scratch + width), cums + r,
                   freqs + r, totals + r, constants);
    }
    if (failed) totals[0] = -1; /* no memory: the caller raises */
}
