/* The linear fast path of the (L, U) pass (csrc/_cscaled.pxi fast_chunk): plain probabilities
 * p, no exponent, for the rows where every node's value is 0 or lies in [T_i, 2^500].
 *
 * T_i (spmn.kernels._common.fast_thresholds, per node) is chosen so that in such a row no
 * operation under- or overflows: a product's factors are >= 2^(-1000/degree), so every partial
 * product is >= 2^-1000; a sum's terms w p_c are >= 2^-1022 or exactly 0, and a sum >= 2^-1000
 * makes any rounding of a term negligible (< 2^-74 relative). A row that breaks a bound at some
 * node is flagged (bad[r] += 1) and recomputed by the scaled pass (_cscaled.h), so results are
 * exact either way, and each row's result is the same whatever chunk it is in. Per edge: one
 * load, multiply and add, as in the max-product pass. Every lane runs the scalar row loop's
 * operations in the same order (spmn/kernels/_numba_fast.py): the backends agree bit for bit. */
#include "_cscaled.h"
#ifdef __AVX2__
#include <immintrin.h>

/* tb[cd[0..4]] for codes < 8 from a table of 8 doubles: two vpermd of its halves and a select
 * on code >= 4 (the same 4 doubles as 4 loads). */
static inline spmn_vd spmn_look8(const double *tb, const int32_t *cd) {
    __m256i lo = _mm256_loadu_si256((const __m256i *)tb);
    __m256i hi = _mm256_loadu_si256((const __m256i *)(tb + 4));
    __m256i c = _mm256_cvtepu32_epi64(_mm_loadu_si128((const __m128i *)cd));
    __m256i d = _mm256_slli_epi64(_mm256_and_si256(c, _mm256_set1_epi64x(3)), 1);
    __m256i d1 = _mm256_add_epi64(d, _mm256_set1_epi64x(1));  /* dwords 2c, 2c + 1 */
    __m256i idx = _mm256_or_si256(d, _mm256_slli_epi64(d1, 32));
    __m256d a = _mm256_castsi256_pd(_mm256_permutevar8x32_epi32(lo, idx));
    __m256d b = _mm256_castsi256_pd(_mm256_permutevar8x32_epi32(hi, idx));
    __m256d m = _mm256_castsi256_pd(_mm256_cmpgt_epi64(c, _mm256_set1_epi64x(3)));
    return (spmn_vd)_mm256_blendv_pd(a, b, m);
}
#endif

static const double SPMN_F_HUGE = 3.273390607896142e+150;  /* 2^500 */

/* A sum over rows off..off+nb: s = sum_e w_e p_c, U = sum_e (w_e p_c) U_c / s (0 when s = 0). */
SPMN_INLINE void spmn_fsum_(const int64_t *cidx, const double *w, int64_t a0, int64_t a1,
                            const double *V, const double *U, int64_t R, int64_t off, int nb,
                            double *oV, double *oU, int with_u) {
    double s[SPMN_SB], num[SPMN_SB];
    for (int j = 0; j < nb; j++) { s[j] = 0.0; num[j] = 0.0; }
    for (int64_t e = a0; e < a1; e++) {
        const double *vc = V + cidx[e] * R + off;
        double we = w[e];
        if (with_u) {
            const double *uc = U + cidx[e] * R + off;
            for (int j = 0; j < nb; j++) { double t = we * vc[j]; s[j] += t; num[j] += t * uc[j]; }
        } else {
            for (int j = 0; j < nb; j++) s[j] += we * vc[j];
        }
    }
    for (int j = 0; j < nb; j++) oV[j] = s[j];
    if (with_u)
        for (int j = 0; j < nb; j++) oU[j] = s[j] > 0.0 ? num[j] / s[j] : 0.0;
}

static inline void spmn_fsum16(const int64_t *cidx, const double *w, int64_t a0, int64_t a1,
                               const double *V, const double *U, int64_t R, int64_t off,
                               double *oV, double *oU, int with_u) {
    spmn_vd s[SPMN_NV], num[SPMN_NV];
    for (int v = 0; v < SPMN_NV; v++) { s[v] = SPMN_SPLAT(0.0); num[v] = SPMN_SPLAT(0.0); }
    if (with_u) {
        for (int64_t e = a0; e < a1; e++) {
            const double *vc = V + cidx[e] * R + off, *uc = U + cidx[e] * R + off;
            spmn_vd we = SPMN_SPLAT(w[e]);
            for (int v = 0; v < SPMN_NV; v++) {
                spmn_vd t = we * SPMN_LD(vc + 4 * v);
                s[v] = s[v] + t;
                num[v] = num[v] + t * SPMN_LD(uc + 4 * v);
            }
        }
    } else {
        for (int64_t e = a0; e < a1; e++) {
            const double *vc = V + cidx[e] * R + off;
            spmn_vd we = SPMN_SPLAT(w[e]);
            for (int v = 0; v < SPMN_NV; v++) s[v] = s[v] + we * SPMN_LD(vc + 4 * v);
        }
    }
    for (int v = 0; v < SPMN_NV; v++) {
        SPMN_ST(oV + 4 * v, s[v]);
        if (with_u) SPMN_ST(oU + 4 * v, SPMN_SEL(s[v] > SPMN_SPLAT(0.0), num[v] / s[v],
                                                  SPMN_SPLAT(0.0)));
    }
}

/* A product over rows off..off+nb: p = 1 * p_c1 * p_c2 * ... (edge order). */
SPMN_INLINE void spmn_fprod_(const int64_t *cidx, int64_t a0, int64_t a1, const double *V,
                             int64_t R, int64_t off, int nb, double *oV) {
    double m[SPMN_SB];
    for (int j = 0; j < nb; j++) m[j] = 1.0;
    for (int64_t e = a0; e < a1; e++) {
        const double *vc = V + cidx[e] * R + off;
        for (int j = 0; j < nb; j++) m[j] = m[j] * vc[j];
    }
    for (int j = 0; j < nb; j++) oV[j] = m[j];
}

static inline void spmn_fprod16(const int64_t *cidx, int64_t a0, int64_t a1, const double *V,
                                int64_t R, int64_t off, double *oV) {
    spmn_vd m[SPMN_NV];
    for (int v = 0; v < SPMN_NV; v++) m[v] = SPMN_SPLAT(1.0);
    for (int64_t e = a0; e < a1; e++) {
        const double *vc = V + cidx[e] * R + off;
        for (int v = 0; v < SPMN_NV; v++) m[v] = m[v] * SPMN_LD(vc + 4 * v);
    }
    for (int v = 0; v < SPMN_NV; v++) SPMN_ST(oV + 4 * v, m[v]);
}

/* A product of categorical leaves read straight from their tables (tab + tptr[c], indexed by
 * the chunk's codes of var[c]): p = 1 * t_c1 * t_c2 * ..., the values the leaves would give. */
SPMN_INLINE void spmn_fcatprod_(const int64_t *cidx, int64_t a0, int64_t a1, const int64_t *var,
                                const int64_t *tptr, const double *tab, const int32_t *code,
                                int64_t R, int64_t off, int nb, double *oV) {
    double m[SPMN_SB];
    for (int j = 0; j < nb; j++) m[j] = 1.0;
    for (int64_t e = a0; e < a1; e++) {
        int64_t c = cidx[e];
        const int32_t *cd = code + var[c] * R + off;
        const double *tb = tab + tptr[c];
        for (int j = 0; j < nb; j++) m[j] = m[j] * tb[cd[j]];
    }
    for (int j = 0; j < nb; j++) oV[j] = m[j];
}

static inline void spmn_fcatprod16(const int64_t *cidx, int64_t a0, int64_t a1,
                                   const int64_t *var, const int64_t *tptr, const double *tab,
                                   const int32_t *code, int64_t R, int64_t off, double *oV,
                                   int cat8) {
    spmn_vd m[SPMN_NV];
    for (int v = 0; v < SPMN_NV; v++) m[v] = SPMN_SPLAT(1.0);
#ifdef __AVX2__
    if (cat8) {
        for (int64_t e = a0; e < a1; e++) {
            int64_t c = cidx[e];
            const int32_t *cd = code + var[c] * R + off;
            const double *tb = tab + tptr[c];
            for (int v = 0; v < SPMN_NV; v++) m[v] = m[v] * spmn_look8(tb, cd + 4 * v);
        }
        for (int v = 0; v < SPMN_NV; v++) SPMN_ST(oV + 4 * v, m[v]);
        return;
    }
#endif
    (void)cat8;
    for (int64_t e = a0; e < a1; e++) {
        int64_t c = cidx[e];
        const int32_t *cd = code + var[c] * R + off;
        const double *tb = tab + tptr[c];
        for (int v = 0; v < SPMN_NV; v++) {
            spmn_vd g = {tb[cd[4 * v]], tb[cd[4 * v + 1]], tb[cd[4 * v + 2]], tb[cd[4 * v + 3]]};
            m[v] = m[v] * g;
        }
    }
    for (int v = 0; v < SPMN_NV; v++) SPMN_ST(oV + 4 * v, m[v]);
}

static void spmn_fcatprod(const int64_t *cidx, int64_t a0, int64_t a1, const int64_t *var,
                          const int64_t *tptr, const double *tab, const int32_t *code, int64_t R,
                          int64_t nr, double *oV, int cat8) {
    int64_t off = 0;
    for (; off + SPMN_SB <= nr; off += SPMN_SB)
        spmn_fcatprod16(cidx, a0, a1, var, tptr, tab, code, R, off, oV + off, cat8);
    if (off < nr)
        spmn_fcatprod_(cidx, a0, a1, var, tptr, tab, code, R, off, (int)(nr - off), oV + off);
}

static void spmn_fsum(const int64_t *cidx, const double *w, int64_t a0, int64_t a1,
                      const double *V, const double *U, int64_t R, int64_t nr, double *oV,
                      double *oU, int with_u) {
    int64_t off = 0;
    for (; off + SPMN_SB <= nr; off += SPMN_SB)
        spmn_fsum16(cidx, w, a0, a1, V, U, R, off, oV + off, oU + off, with_u);
    if (off < nr)
        spmn_fsum_(cidx, w, a0, a1, V, U, R, off, (int)(nr - off), oV + off, oU + off, with_u);
}

static void spmn_fprod(const int64_t *cidx, int64_t a0, int64_t a1, const double *V, int64_t R,
                       int64_t nr, double *oV) {
    int64_t off = 0;
    for (; off + SPMN_SB <= nr; off += SPMN_SB)
        spmn_fprod16(cidx, a0, a1, V, R, off, oV + off);
    if (off < nr)
        spmn_fprod_(cidx, a0, a1, V, R, off, (int)(nr - off), oV + off);
}

/* p = exp(x) through spmn_to_mk (the exponent clamped to [-1023, 1023]): the same bits as the
 * scaled pass's (m, k) would give where p is a normal double. */
SPMN_INLINE double spmn_lin(double x) {
    double m, k;
    spmn_to_mk(x, &m, &k);
    k = k < -1023.0 ? -1023.0 : (k > 1023.0 ? 1023.0 : k);
    return m * spmn_pow2(k);
}

/* A leaf's log densities L[0..nr) turned into probabilities in place. */
static void spmn_lin_rows(double *L, int64_t nr) {
    for (int64_t r = 0; r < nr; r++) L[r] = spmn_lin(L[r]);
}

/* A categorical leaf: out[r] = tab[code[r]] (the leaf's probabilities, then 1 for a NaN). */
static void spmn_fcat_leaf(const int32_t *restrict code, const double *restrict tab, int64_t nr,
                           double *restrict out, int cat8) {
    int64_t r = 0;
#ifdef __AVX2__
    if (cat8)  /* a table of 8 doubles: 4 rows per spmn_look8 */
        for (; r + 4 <= nr; r += 4) SPMN_ST(out + r, spmn_look8(tab, code + r));
#endif
    (void)cat8;
    for (; r < nr; r++) out[r] = tab[code[r]];
}

/* bad[r] += 1 where the node's value leaves {0} U [t, 2^500] (or its U, when checked, is not
 * finite). */
static void spmn_fcheck(const double *V, const double *U, double t, int64_t nr, double *bad,
                        int check_u) {
    for (int64_t r = 0; r < nr; r++) {
        double v = V[r];
        int ok = v == 0.0 || (v >= t && v <= SPMN_F_HUGE);
        bad[r] += ok ? 0.0 : 1.0;
    }
    if (check_u)
        for (int64_t r = 0; r < nr; r++) {
            double u = U[r];
            bad[r] += (u - u == 0.0) ? 0.0 : 1.0;
        }
}
