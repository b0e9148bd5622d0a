/* Fixed-width row blocks for the compiled kernels (csrc/_cup.pxi).
 *
 * A block is SPMN_BW = 16 consecutive rows of a node-major work array (node i, row r at
 * i * R + r, R a multiple of 16), held in vector registers while the loop runs over a node's
 * edges: no per-edge loop set-up, alias checks or remainders. maxpd(a, b) is "a > b ? a : b"
 * lane by lane, the kernels' scalar rule (a NaN in either operand gives b), and every addition
 * is the scalar one in the same order, so a block gives the same bits as the row loops of
 * spmn/kernels/_numba_up.py. AVX: 4 x 4 lanes; SSE2: 8 x 2 lanes; otherwise plain C. */
#include <math.h>
#include <stdint.h>
#if defined(__AVX__)
#include <immintrin.h>
#define SPMN_V __m256d
#define SPMN_W 4
#define SPMN_SET1 _mm256_set1_pd
#define SPMN_LOAD _mm256_loadu_pd
#define SPMN_STORE _mm256_storeu_pd
#define SPMN_ADD _mm256_add_pd
#define SPMN_MAX _mm256_max_pd
#elif defined(__SSE2__)
#include <emmintrin.h>
#define SPMN_V __m128d
#define SPMN_W 2
#define SPMN_SET1 _mm_set1_pd
#define SPMN_LOAD _mm_loadu_pd
#define SPMN_STORE _mm_storeu_pd
#define SPMN_ADD _mm_add_pd
#define SPMN_MAX _mm_max_pd
#endif

#define SPMN_BW 16

/* out[k] = max over edges e in a0..a1 of (lw[e] + M[cidx[e] * R + off + k]), k < 16
 * (-inf without edges): a max-product sum node. */
static inline void spmn_sum_max16(const int64_t *cidx, const double *lw, int64_t a0, int64_t a1,
                                  const double *M, int64_t R, int64_t off, double *out) {
#ifdef SPMN_V
    SPMN_V x[SPMN_BW / SPMN_W];
    for (int k = 0; k < SPMN_BW / SPMN_W; k++) x[k] = SPMN_SET1(-INFINITY);
    for (int64_t e = a0; e < a1; e++) {
        const double *c = M + cidx[e] * R + off;
        SPMN_V w = SPMN_SET1(lw[e]);
        for (int k = 0; k < SPMN_BW / SPMN_W; k++)
            x[k] = SPMN_MAX(SPMN_ADD(w, SPMN_LOAD(c + SPMN_W * k)), x[k]);
    }
    for (int k = 0; k < SPMN_BW / SPMN_W; k++) SPMN_STORE(out + SPMN_W * k, x[k]);
#else
    double acc[SPMN_BW];
    for (int k = 0; k < SPMN_BW; k++) acc[k] = -INFINITY;
    for (int64_t e = a0; e < a1; e++) {
        const double *c = M + cidx[e] * R + off;
        double w = lw[e];
        for (int k = 0; k < SPMN_BW; k++) { double a = w + c[k]; acc[k] = a > acc[k] ? a : acc[k]; }
    }
    for (int k = 0; k < SPMN_BW; k++) out[k] = acc[k];
#endif
}

/* out[k] = 0 + A[cidx[a0] * R + off + k] + ... (children in edge order), k < 16: a product
 * node's log value (or the sum of its children's utilities). */
static inline void spmn_prod_add16(const int64_t *cidx, int64_t a0, int64_t a1, const double *A,
                                   int64_t R, int64_t off, double *out) {
#ifdef SPMN_V
    SPMN_V x[SPMN_BW / SPMN_W];
    for (int k = 0; k < SPMN_BW / SPMN_W; k++) x[k] = SPMN_SET1(0.0);
    for (int64_t e = a0; e < a1; e++) {
        const double *c = A + cidx[e] * R + off;
        for (int k = 0; k < SPMN_BW / SPMN_W; k++)
            x[k] = SPMN_ADD(x[k], SPMN_LOAD(c + SPMN_W * k));
    }
    for (int k = 0; k < SPMN_BW / SPMN_W; k++) SPMN_STORE(out + SPMN_W * k, x[k]);
#else
    double acc[SPMN_BW];
    for (int k = 0; k < SPMN_BW; k++) acc[k] = 0.0;
    for (int64_t e = a0; e < a1; e++) {
        const double *c = A + cidx[e] * R + off;
        for (int k = 0; k < SPMN_BW; k++) acc[k] += c[k];
    }
    for (int k = 0; k < SPMN_BW; k++) out[k] = acc[k];
#endif
}

/* A categorical leaf over a chunk: out[r] = tab[code[r]] (the leaf's table, see ckernels.pyx
 * _cat_tables: log p of each category, then the value for a NaN, whose code is k). */
static inline void spmn_cat_leaf(const int32_t *restrict code, const double *restrict tab,
                                 int64_t nr, double *restrict out) {
    for (int64_t r = 0; r < nr; r++) out[r] = tab[code[r]];
}
