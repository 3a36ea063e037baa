/* Exact products of int8 matrices on AMX tiles (Intel Xeon since Sapphire Rapids), summed in int32.
 *
 * TDPBSSD multiplies signed int8 by signed int8 and adds groups of four products into int32: an
 * integer sum, so the result is the same as every other path's (intmm.py), only faster. The
 * weights are packed once per layer into the tiles' layout (below); activations are loaded as they
 * are, or from a zero-padded copy when their shape is not whole tiles.
 *
 * Linux hands out the tile registers only on request (arch_prctl ARCH_REQ_XCOMP_PERM), once per process.
 */
#define _GNU_SOURCE /* syscall */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "_kernel.h"

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

#define WEIGHT_GROUP 64 /* column blocks whose weights a linear layer's rows pass over together */
#define FEW_ROW_BLOCKS 4 /* up to this many blocks of 16 rows, each column block meets them all in turn */

typedef struct {
    uint8_t palette;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t bytes_per_row[16];
    uint8_t rows[16];
} __attribute__((packed, aligned(64))) TileConfig;

/* 1 where the CPU has AMX-INT8 and the kernel lets this process use its tiles, else 0. */
int alphazip_amx_available(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("amx-tile") || !__builtin_cpu_supports("amx-int8")) return 0;
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

/* Bytes of ``n`` weight rows of ``depth`` values once packed. */
long alphazip_amx_packed_size(int n, int depth) {
    const long column_tiles = (n + BLOCK_N - 1) / BLOCK_N * (BLOCK_N / TILE_N);
    return column_tiles * ((depth + TILE_K - 1) / TILE_K) * TILE_BYTES;
}

/* Weight rows w [n, depth] -> tiles [column tile][depth tile][16 rows][16 columns][4]: tile row r
 * holds depth values 4r..4r+3 of each of its 16 columns (the layout TDPBSSD reads its second
 * operand in). Columns and depth beyond the matrix are zero, to whole BLOCK_N columns. */
void alphazip_amx_pack(int n, int depth, const int8_t *w, int8_t *packed) {
    const int depth_tiles = (depth + TILE_K - 1) / TILE_K;
    memset(packed, 0, (size_t)alphazip_amx_packed_size(n, depth));
    for (int c = 0; c < n; c++)
        for (int k = 0; k < depth; k++) {
            const long tile = (long)(c / TILE_N) * depth_tiles + k / TILE_K;
            const int kk = k % TILE_K;
            packed[tile * TILE_BYTES + (kk / 4) * 64 + (c % TILE_N) * 4 + kk % 4] = w[(long)c * depth + k];
        }
}

/* The four output tiles of rows a[0..15] and a2[0..15] (``stride`` bytes apart) against column tiles
 * ``b`` and ``b`` + one column tile, over ``depth_tiles`` tiles of depth; into ``c`` (int32, ``ldc``
 * apart: a's rows, then a2's). If ``upcoming`` is not NULL, the next block's weights (as many bytes
 * as this block's) are fetched into the cache meanwhile: a tile load waits for its memory, so
 * weights coming from memory would otherwise be read one tile at a time. */
__attribute__((target("amx-tile,amx-int8"))) static void block_product(int depth_tiles, const int8_t *a,
        const int8_t *a2, long stride, const int8_t *b, int32_t *c, long ldc, const int8_t *upcoming) {
    const long next_column_tile = (long)depth_tiles * TILE_BYTES;
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int t = 0; t < depth_tiles; t++) {
        if (upcoming)
            for (int line = 0; line < 2 * TILE_BYTES; line += 64)
                _mm_prefetch((const char *)upcoming + 2L * t * TILE_BYTES + line, _MM_HINT_T0);
        _tile_loadd(4, a + t * TILE_K, stride);
        _tile_loadd(5, a2 + t * TILE_K, stride);
        _tile_loadd(6, b + (long)t * TILE_BYTES, 64);
        _tile_loadd(7, b + next_column_tile + (long)t * TILE_BYTES, 64);
        _tile_dpbssd(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbssd(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    _tile_stored(0, c, ldc * 4);
    _tile_stored(1, c + TILE_N, ldc * 4);
    _tile_stored(2, c + 16 * ldc, ldc * 4);
    _tile_stored(3, c + 16 * ldc + TILE_N, ldc * 4);
}

__attribute__((target("amx-tile"))) static void load_config(void) {
    TileConfig config;
    memset(&config, 0, sizeof config);
    config.palette = 1;
    for (int t = 0; t < 8; t++) config.rows[t] = 16, config.bytes_per_row[t] = 64;
    __asm__ volatile("" : : "r"(&config) : "memory"); /* GCC 12 does not see ldtilecfg read it and drops the stores */
    _tile_loadconfig(&config);
}

__attribute__((target("amx-tile"))) static void release(void) { _tile_release(); }

/* QuantLinear in one call (intmm.py; the same bits as alphazip_dequantize after a product): ``halves``
 * [2m, depth] holds each row's high int8 halves, then its low ones; out [m, n] float32 =
 * ((high products * 256 + low products) * scale[c]) * steps[r], every operation exactly rounded in
 * that order. A work item takes 16 rows' highs and lows together, so the int32 sums stay in its
 * own buffer. Returns 0, or -1 if memory ran out. */
int alphazip_amx_linear(int m, int n, int depth, const int8_t *halves, const int8_t *packed, const float *scale,
                        const float *steps, float *out, int threads) {
    const int depth_tiles = (depth + TILE_K - 1) / TILE_K, padded_depth = depth_tiles * TILE_K;
    const int row_blocks = (m + 15) / 16, column_blocks = (n + BLOCK_N - 1) / BLOCK_N;
    const long padded_rows = (long)row_blocks * 16;
    const int8_t *high = halves, *low = halves + (long)m * depth;
    int8_t *copy = NULL;
    if (m % 16 || depth % TILE_K) { /* whole tiles only: zero-padded copies of both halves */
        copy = calloc((size_t)(2 * padded_rows * padded_depth), 1);
        if (!copy) return -1;
        for (long r = 0; r < 2L * m; r++)
            memcpy(copy + (r < m ? r : padded_rows + r - m) * padded_depth, halves + r * depth, (size_t)depth);
        high = copy, low = copy + padded_rows * padded_depth;
    }
    const long column_block_bytes = 2L * depth_tiles * TILE_BYTES;
    int failed = 0;
#pragma omp parallel num_threads(threads) if ((long)m * n * depth >= SMALL_PRODUCT)
    {
        int32_t *sums = aligned_alloc(64, sizeof(int32_t) * 32 * BLOCK_N); /* 16 rows of highs, then of lows */
        if (!sums) {
#pragma omp atomic write
            failed = 1;
        }
        load_config();
        /* Columns in groups of WEIGHT_GROUP blocks, every row block within a group: a group's weights
         * (2,048 columns) stay in the cache while the rows pass over them. A few rows (stepping) go
         * the other way round: each column block's weights, once loaded, meet every row block. */
        const int few_rows = row_blocks <= FEW_ROW_BLOCKS;
        const long per_group = (long)row_blocks * WEIGHT_GROUP;
        const long items = few_rows ? (long)column_blocks * row_blocks
                                    : (column_blocks + WEIGHT_GROUP - 1) / WEIGHT_GROUP * per_group;
#pragma omp for schedule(static)
        for (long item = 0; item < items; item++) {
            const int row_block = few_rows ? (int)(item % row_blocks) : (int)(item % per_group / WEIGHT_GROUP);
            const int column_block = few_rows ? (int)(item / row_blocks)
                                              : (int)(item / per_group * WEIGHT_GROUP + item % WEIGHT_GROUP);
            if (!sums || column_block >= column_blocks) continue;
            const int first_row = row_block * 16, first_column = column_block * BLOCK_N;
            /* The first row block to meet a column block fetches the next one's weights (the others
             * find them in the cache). */
            const int8_t *upcoming = row_block == 0 && column_block + 1 < column_blocks
                                     ? packed + (column_block + 1) * column_block_bytes : NULL;
            block_product(depth_tiles, high + (long)first_row * padded_depth, low + (long)first_row * padded_depth,
                          padded_depth, packed + column_block * column_block_bytes, sums, BLOCK_N, upcoming);
            const int rows = m - first_row < 16 ? m - first_row : 16;
            const int columns = n - first_column < BLOCK_N ? n - first_column : BLOCK_N;
            alphazip_combine_block(rows, columns, sums, scale + first_column, steps + first_row,
                                   out + (long)first_row * n + first_column, n);
        }
        release();
        free(sums);
    }
    free(copy);
    return failed ? -1 : 0;
}
