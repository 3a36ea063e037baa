/* Exact products of int8 matrices on AVX-512 VNNI, over the weights packed for AMX tiles (_amx.c):
 * the products of a step's one-call layer on CPUs with VNNI but no AMX (Xeons before Sapphire
 * Rapids, AMD Zen 4, and Xeons whose hypervisor does not pass the tiles through).
 *
 * VPDPBUSD multiplies unsigned by signed bytes and adds groups of four products into int32. The
 * activation halves are signed, so each byte is offset by 128 (x ^ 0x80) and 128 times the column's
 * weight sum is taken off again: integer arithmetic, so the sums are every other path's (intmm.py)
 * and the layer's bits do not change. A packed tile row (16 columns x 4 depth values, 64 bytes) is
 * one register in the very layout VPDPBUSD reads, so the AMX packing serves both.
 */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kernel.h"

#define ROW_GROUP 4     /* rows whose highs and lows (16 accumulators) meet each weight load */

#define TARGET_VNNI __attribute__((target("arch=x86-64-v4,avx512vnni")))

/* 128 x each column's weight sum, for the two column tiles at ``b`` and ``b + next``, over ``quads``
 * groups of four depth values: what the offset of 128 adds to every row's sums. */
TARGET_VNNI static void offsets(int quads, const int8_t *b, long next, __m512i *offset) {
    const __m512i half = _mm512_set1_epi8((char)0x80);
    offset[0] = offset[1] = _mm512_setzero_si512();
    for (int q = 0; q < quads; q++) {
        offset[0] = _mm512_dpbusd_epi32(offset[0], half, _mm512_loadu_si512(b + 64L * q));
        offset[1] = _mm512_dpbusd_epi32(offset[1], half, _mm512_loadu_si512(b + next + 64L * q));
    }
}

/* Sums of ROW_GROUP rows' highs and lows (offset bytes, ``rows[i]`` and ``rows[i] + lows``) against
 * the two column tiles at ``b`` and ``b + next``, less ``offset``; row i's highs go to sums + i *
 * BLOCK_N, its lows 16 rows further, as alphazip_combine_block reads them. */
TARGET_VNNI static void group_product(int quads, const uint8_t *const *rows, long lows, const int8_t *b, long next,
                                      const __m512i *offset, int count, int32_t *sums) {
    __m512i acc[2 * ROW_GROUP][2];
    for (int i = 0; i < 2 * ROW_GROUP; i++) acc[i][0] = acc[i][1] = _mm512_setzero_si512();
    for (int q = 0; q < quads; q++) {
        const __m512i b0 = _mm512_loadu_si512(b + 64L * q), b1 = _mm512_loadu_si512(b + next + 64L * q);
        for (int i = 0; i < 2 * ROW_GROUP; i++) {
            const uint8_t *row = rows[i % ROW_GROUP] + (i < ROW_GROUP ? 0 : lows);
            int32_t four;
            memcpy(&four, row + 4L * q, sizeof four);
            const __m512i a = _mm512_set1_epi32(four);
            acc[i][0] = _mm512_dpbusd_epi32(acc[i][0], a, b0);
            acc[i][1] = _mm512_dpbusd_epi32(acc[i][1], a, b1);
        }
    }
    for (int i = 0; i < 2 * ROW_GROUP; i++) {
        if (i % ROW_GROUP >= count) continue;
        int32_t *target = sums + (i < ROW_GROUP ? i : 16 + i - ROW_GROUP) * BLOCK_N;
        _mm512_storeu_si512(target, _mm512_sub_epi32(acc[i][0], offset[0]));
        _mm512_storeu_si512(target + 16, _mm512_sub_epi32(acc[i][1], offset[1]));
    }
}

/* alphazip_amx_linear on VNNI: the same arguments, the same bits. Returns 0, or -1 if memory ran out. */
TARGET_VNNI int alphazip_vnni_linear(int m, int n, int depth, const int8_t *halves, const int8_t *packed,
                                     const float *scale, const float *steps, float *out, int threads) {
    const int depth_tiles = (depth + TILE_K - 1) / TILE_K, quads = (depth + 3) / 4, padded = 4 * quads;
    const int column_blocks = (n + BLOCK_N - 1) / BLOCK_N;
    /* Both halves offset to unsigned bytes, each row padded to whole groups of four (the packed
     * weights there are zero). */
    uint8_t *shifted = malloc((size_t)2 * m * padded + 1);
    if (!shifted) return -1;
    for (long r = 0; r < 2L * m; r++) {
        for (int k = 0; k < depth; k++) shifted[r * padded + k] = (uint8_t)halves[r * depth + k] ^ 0x80;
        for (int k = depth; k < padded; k++) shifted[r * padded + k] = 0x80;
    }
    const long next = (long)depth_tiles * TILE_BYTES, lows = (long)m * padded;
    int failed = 0;
#pragma omp parallel num_threads(threads) if ((long)m * n * depth >= SMALL_PRODUCT)
    {
        int32_t *sums = aligned_alloc(64, sizeof(int32_t) * 32 * BLOCK_N); /* 16 rows of highs, then of lows */
        if (!sums) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int block = 0; block < column_blocks; block++) {
            if (!sums) continue;
            const int8_t *b = packed + 2L * block * next;
            const int first_column = block * BLOCK_N, columns = n - first_column < BLOCK_N ? n - first_column : BLOCK_N;
            __m512i offset[2];
            offsets(quads, b, next, offset);
            for (int first_row = 0; first_row < m; first_row += 16) {
                const int block_rows = m - first_row < 16 ? m - first_row : 16;
                for (int group = 0; group < block_rows; group += ROW_GROUP) {
                    const int count = block_rows - group < ROW_GROUP ? block_rows - group : ROW_GROUP;
                    const uint8_t *rows[ROW_GROUP];
                    for (int i = 0; i < ROW_GROUP; i++) /* a short group repeats its last row */
                        rows[i] = shifted + (long)(first_row + group + (i < count ? i : count - 1)) * padded;
                    group_product(quads, rows, lows, b, next, offset, count, sums + group * BLOCK_N);
                }
                alphazip_combine_block(block_rows, columns, sums, scale + first_column, steps + first_row,
                                       out + (long)first_row * n + first_column, n);
            }
        }
        free(sums);
    }
    free(shifted);
    return failed ? -1 : 0;
}
