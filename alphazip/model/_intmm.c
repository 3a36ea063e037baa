/* Exact products of int8 matrices, summed in int32: the exact engine's integer matrix product where
 * torch._int_mm is not exact (alphazip/model/intmm.py says when).
 *
 * Integer sums are the same in any order, so each instruction-set variant below gives the same
 * integers; they differ only in speed. Both sides are widened to int16 (zero-padded to a multiple of
 * 32 values) and multiplied with pmaddwd, which adds pairs of int16 products into int32 lanes: exact
 * while depth * 128 * 128 < 2^31.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#include "_kernel.h"

#define ROWS_TILE 4
#define COLUMN_BLOCK 64 /* weight rows widened at a time by each thread: 64 * depth * 2 bytes */
#define PAD 32          /* the widest variant's int16 lanes */

/* ``rows`` rows of ``depth`` int8 values -> int16 rows of ``padded`` values, the tail zero. */
static void widen(long rows, int depth, int padded, const int8_t *from, int16_t *to) {
    for (long r = 0; r < rows; r++) {
        for (int k = 0; k < depth; k++) to[r * padded + k] = from[r * depth + k];
        for (int k = depth; k < padded; k++) to[r * padded + k] = 0;
    }
}

/* One tile: the ROWS_TILE rows ``a`` against the COLS weight rows ``w`` over ``padded`` int16 values;
 * edge tiles repeat their last row or column and write only the first ``rows`` x ``cols`` sums. */
#define TILE_BODY(VEC, ZERO, LOAD, MADD, ADD, WIDTH, COLS, SUM)                                      \
    VEC acc[ROWS_TILE][COLS];                                                                         \
    for (int i = 0; i < ROWS_TILE; i++)                                                               \
        for (int j = 0; j < COLS; j++) acc[i][j] = ZERO;                                              \
    for (int k = 0; k < padded; k += WIDTH) {                                                         \
        VEC wv[COLS];                                                                                 \
        for (int j = 0; j < COLS; j++) wv[j] = LOAD(w[j] + k);                                       \
        for (int i = 0; i < ROWS_TILE; i++) {                                                         \
            const VEC av = LOAD(a[i] + k);                                                            \
            for (int j = 0; j < COLS; j++) acc[i][j] = ADD(acc[i][j], MADD(av, wv[j]));               \
        }                                                                                             \
    }                                                                                                 \
    for (int i = 0; i < rows; i++)                                                                    \
        for (int j = 0; j < cols; j++) out[i * out_stride + j] = SUM(acc[i][j]);

#define TILE_PARAMETERS int rows, int cols, int padded, const int16_t *const *a, const int16_t *const *w, \
    int32_t *out, long out_stride

static inline int32_t sum128(__m128i v) {
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4e));
    v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xb1));
    return _mm_cvtsi128_si32(v);
}
#define LOAD128(p) _mm_loadu_si128((const __m128i *)(p))
static void tile_baseline(TILE_PARAMETERS) {
    TILE_BODY(__m128i, _mm_setzero_si128(), LOAD128, _mm_madd_epi16, _mm_add_epi32, 8, 2, sum128)
}

__attribute__((target("avx2"))) static inline int32_t sum256(__m256i v) {
    return sum128(_mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}
#define LOAD256(p) _mm256_loadu_si256((const __m256i *)(p))
__attribute__((target("avx2"))) static void tile_avx2(TILE_PARAMETERS) {
    TILE_BODY(__m256i, _mm256_setzero_si256(), LOAD256, _mm256_madd_epi16, _mm256_add_epi32, 16, 2, sum256)
}

#define LOAD512(p) _mm512_loadu_si512((const void *)(p))
__attribute__((target("arch=x86-64-v4"))) static void tile_v4(TILE_PARAMETERS) {
    TILE_BODY(__m512i, _mm512_setzero_si512(), LOAD512, _mm512_madd_epi16, _mm512_add_epi32, 32, 4,
              _mm512_reduce_add_epi32)
}

static void (*tile)(TILE_PARAMETERS) = tile_baseline;
static int tile_columns = 2;

/* Called by alphazip_select_isa with the level it settled on (0 baseline, 1 AVX2, 2 AVX-512). */
void alphazip_int_matmul_select_isa(int level) {
    tile = level == 2 ? tile_v4 : level == 1 ? tile_avx2 : tile_baseline;
    tile_columns = level == 2 ? 4 : 2;
}

/* out [m, n] int32, rows ``out_stride`` apart = a [m, depth] int8 times the transpose of w [n, depth]
 * int8 (a linear layer's weight rows). depth < 2^31 / 2^14. Returns 0, or -1 if memory ran out. */
int alphazip_int_matmul(int m, int n, int depth, const int8_t *a, const int8_t *w, int32_t *out, long out_stride,
                        int threads) {
    const int padded = (depth + PAD - 1) / PAD * PAD;
    int16_t *a16 = malloc(sizeof(int16_t) * (size_t)m * padded);
    if (!a16) return -1;
    widen(m, depth, padded, a, a16);
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        int16_t *w16 = malloc(sizeof(int16_t) * (size_t)COLUMN_BLOCK * padded);
        if (!w16) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int first = 0; first < n; first += COLUMN_BLOCK) {
            if (!w16) continue;
            const int block = n - first < COLUMN_BLOCK ? n - first : COLUMN_BLOCK;
            widen(block, depth, padded, w + (long)first * depth, w16);
            for (int r = 0; r < m; r += ROWS_TILE) {
                const int rows = m - r < ROWS_TILE ? m - r : ROWS_TILE;
                const int16_t *a_rows[ROWS_TILE];
                for (int i = 0; i < ROWS_TILE; i++) a_rows[i] = a16 + (long)(r + (i < rows ? i : rows - 1)) * padded;
                for (int c = 0; c < block; c += tile_columns) {
                    const int cols = block - c < tile_columns ? block - c : tile_columns;
                    const int16_t *w_rows[4];
                    for (int j = 0; j < 4; j++) w_rows[j] = w16 + (long)(c + (j < cols ? j : cols - 1)) * padded;
                    tile(rows, cols, padded, a_rows, w_rows, out + (long)r * out_stride + first + c, out_stride);
                }
            }
        }
        free(w16);
    }
    free(a16);
    return failed ? -1 : 0;
}
