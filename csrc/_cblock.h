/* Fixed-width row blocks for the max-product pass (spmn kernels, see _cup.pxi mpe_up_blocked).
 *
 * acc[k] = max over edges e of (lw[e] + M[cidx[e] * R + off + k]) and the sum of children rows
 * for products, k = 0..7, in registers. maxpd(a, b) is "a > b ? a : b" lane by lane, the
 * kernels' scalar rule (a NaN in either operand gives b), and every addition is the scalar one,
 * so a block gives the same bits as the row loop. Without SSE2 (non-x86) the plain C loop. */
#include <math.h>
#include <stdint.h>
#if defined(__AVX__)
#include <immintrin.h>
#elif defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline void spmn_sum_max8(const int64_t *cidx, const double *lw, int64_t a0, int64_t a1,
                                 const double *M, int64_t R, int64_t off, double *out) {
#if defined(__AVX__)
    __m256d x0 = _mm256_set1_pd(-INFINITY), x1 = x0;
    for (int64_t e = a0; e < a1; e++) {
        const double *c = M + cidx[e] * R + off;
        __m256d w = _mm256_set1_pd(lw[e]);
        x0 = _mm256_max_pd(_mm256_add_pd(w, _mm256_loadu_pd(c)), x0);
        x1 = _mm256_max_pd(_mm256_add_pd(w, _mm256_loadu_pd(c + 4)), x1);
    }
    _mm256_storeu_pd(out, x0);
    _mm256_storeu_pd(out + 4, x1);
#elif defined(__SSE2__)
    __m128d x0 = _mm_set1_pd(-INFINITY), x1 = x0, x2 = x0, x3 = x0;
    for (int64_t e = a0; e < a1; e++) {
        const double *c = M + cidx[e] * R + off;
        __m128d w = _mm_set1_pd(lw[e]);
        x0 = _mm_max_pd(_mm_add_pd(w, _mm_loadu_pd(c)), x0);
        x1 = _mm_max_pd(_mm_add_pd(w, _mm_loadu_pd(c + 2)), x1);
        x2 = _mm_max_pd(_mm_add_pd(w, _mm_loadu_pd(c + 4)), x2);
        x3 = _mm_max_pd(_mm_add_pd(w, _mm_loadu_pd(c + 6)), x3);
    }
    _mm_storeu_pd(out, x0);
    _mm_storeu_pd(out + 2, x1);
    _mm_storeu_pd(out + 4, x2);
    _mm_storeu_pd(out + 6, x3);
#else
    double acc[8];
    for (int k = 0; k < 8; k++) acc[k] = -INFINITY;
    for (int64_t e = a0; e < a1; e++) {
        const double *c = M + cidx[e] * R + off;
        double w = lw[e];
        for (int k = 0; k < 8; k++) { double a = w + c[k]; acc[k] = a > acc[k] ? a : acc[k]; }
    }
    for (int k = 0; k < 8; k++) out[k] = acc[k];
#endif
}

static inline void spmn_prod_add8(const int64_t *cidx, int64_t a0, int64_t a1, const double *M,
                                  int64_t R, int64_t off, double *out) {
#if defined(__AVX__)
    __m256d x0 = _mm256_setzero_pd(), x1 = x0;
    for (int64_t e = a0; e < a1; e++) {
        const double *c = M + cidx[e] * R + off;
        x0 = _mm256_add_pd(x0, _mm256_loadu_pd(c));
        x1 = _mm256_add_pd(x1, _mm256_loadu_pd(c + 4));
    }
    _mm256_storeu_pd(out, x0);
    _mm256_storeu_pd(out + 4, x1);
#elif defined(__SSE2__)
    __m128d x0 = _mm_setzero_pd(), x1 = x0, x2 = x0, x3 = x0;
    for (int64_t e = a0; e < a1; e++) {
        const double *c = M + cidx[e] * R + off;
        x0 = _mm_add_pd(x0, _mm_loadu_pd(c));
        x1 = _mm_add_pd(x1, _mm_loadu_pd(c + 2));
        x2 = _mm_add_pd(x2, _mm_loadu_pd(c + 4));
        x3 = _mm_add_pd(x3, _mm_loadu_pd(c + 6));
    }
    _mm_storeu_pd(out, x0);
    _mm_storeu_pd(out + 2, x1);
    _mm_storeu_pd(out + 4, x2);
    _mm_storeu_pd(out + 6, x3);
#else
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int64_t e = a0; e < a1; e++) {
        const double *c = M + cidx[e] * R + off;
        for (int k = 0; k < 8; k++) acc[k] += c[k];
    }
    for (int k = 0; k < 8; k++) out[k] = acc[k];
#endif
}

/* A categorical leaf over a chunk: out[r] = tab[code[r]] (the leaf's table, see ckernels.pyx
 * _cat_tables: log p of each category, then the value for a NaN, whose code is k). */
static inline void spmn_cat_leaf(const int32_t *restrict code, const double *restrict tab,
                                 int64_t nr, double *restrict out) {
    for (int64_t r = 0; r < nr; r++) out[r] = tab[code[r]];
}
