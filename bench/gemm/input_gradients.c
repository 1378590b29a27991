// Dev-time microbenchmark: the own GEMM on the calls a MiniLM training step makes for input
// gradients, one thread, against OpenBLAS on the same calls. Operands are flushed from cache and
// the activation-side operand touched again first, as in situ (it was just written).
//   qkv: dx = dq·Wq, += dk·Wk, += dv·Wv (three accumulating products; rows strided when dq/dk/dv
//        are column slices of one (N, 3C) buffer), against contiguous rows without accumulation;
//   fc2: dx = (dy·W + du·A) ⊙ slope with the slope multiplied in the store, against no slope.
// clang -O3 -I Sources/CEmbedTuneAVX2/include -I /usr/include/x86_64-linux-gnu/openblas-pthread \
//   bench/gemm/input_gradients.c Sources/CEmbedTuneAVX2/*.c -lopenblas -lm -o /tmp/b && OPENBLAS_NUM_THREADS=1 /tmp/b [rows]
#include "embedtune_avx2.h"
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now() { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static float *random_floats(long n) {
    float *p = aligned_alloc(64, 4 * n);
    for (long i = 0; i < n; i++) p[i] = rand() / (float)RAND_MAX - .5f;
    return p;
}
static float *junk;
static void flush(void) { for (long q = 0; q < (16L << 20); q += 16) junk[q] += 1; }
static void touch(float *a, long n) { for (long q = 0; q < n; q += 16) a[q] *= 1.0000001f; }
#define BEST(slot, prepare, body) do { prepare; double t = now(); body; t = now() - t; if (t < best[slot]) best[slot] = t; } while (0)

int main(int argc, char **argv) {
    junk = random_floats(16L << 20);
    const int m = argc > 1 ? atoi(argv[1]) : 4250, C = 384, inter = 1536, r = 8;
    float *dqkv = random_floats((long)m * 3 * C), *dcont = random_floats((long)m * C), *w[3], *dx = random_floats((long)m * inter);
    for (int i = 0; i < 3; i++) w[i] = random_floats((long)C * C);
    float *dy = random_floats((long)m * C), *W = random_floats((long)C * inter), *du = random_floats((long)m * r);
    float *A = random_floats((long)r * inter), *slope = random_floats((long)m * inter);
    for (int rep = 0; rep < 3; rep++) {
        double best[6] = {1e9, 1e9, 1e9, 1e9, 1e9, 1e9};
        for (int it = 0; it < 5; it++) {
            BEST(0, (flush(), touch(dqkv, (long)m * 3 * C)),
                 for (int i = 0; i < 3; i++) embedtune_sgemm_avx2(false, m, C, C, 1, dqkv + i * C, 3 * C, w[i], false, C, i > 0, NULL, dx, C));
            BEST(1, (flush(), touch(dqkv, (long)m * 3 * C)),
                 for (int i = 0; i < 3; i++) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, C, C, 1, dqkv + i * C, 3 * C,
                                                         w[i], C, i > 0, dx, C));
            BEST(2, (flush(), touch(dcont, (long)m * C)),
                 for (int i = 0; i < 3; i++) embedtune_sgemm_avx2(false, m, C, C, 1, dcont, C, w[i], false, C, false, NULL, dx, C));
            BEST(3, (flush(), touch(dcont, (long)m * C)),
                 for (int i = 0; i < 3; i++) embedtune_sgemm_avx2(false, m, C, C, 1, dcont, C, w[i], false, C, i > 0, NULL, dx, C));
            BEST(4, (flush(), touch(dy, (long)m * C), touch(du, (long)m * r)),
                 embedtune_sgemm_sum_avx2(false, m, inter, C, dy, C, W, false, inter, false, r, 0.5f, du, r, A, inter, false, NULL, dx, inter, NULL, 0));
            BEST(5, (flush(), touch(dy, (long)m * C), touch(du, (long)m * r)),
                 embedtune_sgemm_sum_avx2(false, m, inter, C, dy, C, W, false, inter, false, r, 0.5f, du, r, A, inter, false, NULL, dx, inter, slope, inter));
        }
        const double qkv = 3 * 2.0 * m * C * C / 1e9, fc2 = 2.0 * m * inter * C / 1e9;
        printf("qkv dx, rows 3C apart, accumulating: own %.1f  openblas %.1f GFLOP/s | contiguous: own %.1f, accumulating %.1f\n",
               qkv / best[0], qkv / best[1], qkv / best[2], qkv / best[3]);
        printf("fc2 dx + du·A: %.2f ms (%.1f GFLOP/s), with the slope in the store %.2f ms\n", best[4] * 1e3, fc2 / best[4],
               best[5] * 1e3);
    }
}
