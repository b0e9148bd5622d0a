/* The scaled (L, U) pass (csrc/_cscaled.pxi): probabilities in linear space with an exponent.
 *
 * Each node and row holds p = m 2^k: a mantissa m (0, or in [1, 2)) and an exponent k (an
 * integer-valued double; -inf when m = 0). A product multiplies mantissas and adds exponents; a
 * sum scales each term exactly by 2^(k - K), a power of two built from bits, so no exp or log
 * runs per edge and nothing underflows however deep the circuit; the log is taken only where a
 * result leaves the pass (spmn_tolog, as accurate as a log of p itself). Every block function
 * runs rows off..off+nb of node-major arrays (node i, row r at i * R + r); nb = 16 gives a block
 * gcc keeps in vector registers, a smaller nb the tail of a chunk: the same operations per row in
 * the same order either way, and the same as spmn/kernels/_numba_scaled.py, so the Cython and
 * Numba backends agree bit for bit. No FMA contraction (-ffp-contract=off). */
#ifndef SPMN_CSCALED_H
#define SPMN_CSCALED_H
#include <math.h>
#include <stdint.h>

#pragma GCC diagnostic ignored "-Wpsabi"  /* vector values never cross a call: inlined */

#define SPMN_SB 16      /* rows of a block */
#define SPMN_PSEG 1000  /* a product renormalizes every PSEG children: m < 2^PSEG stays finite */

typedef union { double d; int64_t i; uint64_t u; } spmn_bits;

static const double SPMN_S_BIAS = 4503599627371519.0;    /* 2^52 + 1023 */
static const double SPMN_S_TINY = 1.1754943508222875e-271; /* 2^-900: group sums in range */
static const double SPMN_S_HUGE = 8.452712498170644e+270;  /* 2^900 */
static const double SPMN_S_BIG = 1125899906842624.0;     /* 2^50: |k| above it taken as is */

#define SPMN_INLINE static inline __attribute__((always_inline))

/* 2^d for an integer-valued d in [-1023, 1023] (2^-1023 gives 0): d + 2^52 + 1023 holds
 * d + 1023 in its low bits, shifted into the exponent field. */
SPMN_INLINE double spmn_pow2(double d) {
    spmn_bits t;
    t.d = d + SPMN_S_BIAS;
    t.u = t.u << 52;
    return t.d;
}

/* floor(log2 p) and p / 2^floor(log2 p) in [1, 2), for a normal p > 0 (read off the bits). */
SPMN_INLINE double spmn_expo(double p) {
    spmn_bits b, e;
    b.d = p;
    e.i = ((b.i >> 52) & 0x7FF) | 0x4330000000000000LL;
    return e.d - SPMN_S_BIAS;
}

SPMN_INLINE double spmn_mant(double p) {
    spmn_bits b;
    b.d = p;
    b.i = (b.i & 0x000FFFFFFFFFFFFFLL) | 0x3FF0000000000000LL;
    return b.d;
}

/* exp(r) for |r| <= ln2 / 2: the degree 13 Taylor polynomial (Estrin's scheme) of fexp. */
SPMN_INLINE double spmn_exp_poly(double r) {
    double r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    double q0 = (1.0 + 1.0 * r) + (0.5 + 0.16666666666666666 * r) * r2;
    double q1 = ((0.041666666666666664 + 0.008333333333333333 * r) +
                 (0.001388888888888889 + 0.0001984126984126984 * r) * r2);
    double q2 = ((2.48015873015873e-05 + 2.7557319223985893e-06 * r) +
                 (2.755731922398589e-07 + 2.505210838544172e-08 * r) * r2);
    double q3 = 2.08767569878681e-09 + 1.6059043836821613e-10 * r;
    return (q0 + q1 * r4) + (q2 + q3 * r4) * r8;
}

/* (m, k) of p = exp(x): k = round(x / ln2), m = exp(x - k ln2) moved into [1, 2); x = -inf
 * gives (0, -inf); for |x / ln2| >= 2^50 (p beyond any double) k = x / ln2 rounded to an
 * integer (a multiple of 4 below 2^54) and m = 1. */
SPMN_INLINE void spmn_to_mk(double x, double *om, double *ok) {
    double y = x * 1.4426950408889634;
    double kf = (y + 6755399441055744.0) - 6755399441055744.0;
    int big = !(y > -SPMN_S_BIG && y < SPMN_S_BIG);
    kf = big ? (y + 27021597764222976.0) - 27021597764222976.0 : kf;  /* 1.5 2^54: integral */
    double r = (x - kf * 0.6931471803691238) - kf * 1.9082149292705877e-10;
    r = big ? 0.0 : r;
    double p = spmn_exp_poly(r);
    int lo = p < 1.0;
    double m = lo ? p * 2.0 : p;
    double k = lo ? kf - 1.0 : kf;
    *om = x == -INFINITY ? 0.0 : m;
    *ok = x == -INFINITY ? -INFINITY : k;
}

/* log(m 2^ef) for m in [sqrt(1/2), sqrt(2)]: ef ln2 + 2 atanh((m-1)/(m+1)) by its series to
 * f^19 (flog of csrc/_cmath.pxi ends with it). */
SPMN_INLINE double spmn_log_series(double mm, double ef) {
    double f = (mm - 1.0) / (mm + 1.0);
    double s = f * f;
    double q = 0.05263157894736842;
    q = q * s + 0.058823529411764705;
    q = q * s + 0.06666666666666667;
    q = q * s + 0.07692307692307693;
    q = q * s + 0.09090909090909091;
    q = q * s + 0.1111111111111111;
    q = q * s + 0.14285714285714285;
    q = q * s + 0.2;
    q = q * s + 0.3333333333333333;
    double f2 = 2.0 * f;
    return ef * 0.6931471803691238 + (f2 + f2 * (s * q) + ef * 1.9082149292705877e-10);
}

/* log(m 2^k): the series on m with k added to its exponent. */
SPMN_INLINE double spmn_tolog(double m, double k) {
    int hi = m > 1.4142135623730951;
    double out = spmn_log_series(hi ? m * 0.5 : m, hi ? k + 1.0 : k);
    return m == 0.0 ? -INFINITY : out;
}

/* p 2^k renormalized: (0, -inf) for p = 0. */
#define SPMN_NORM(p, k, om, ok) do { double p_ = (p), k_ = (k); \
    (om) = p_ == 0.0 ? 0.0 : spmn_mant(p_); \
    (ok) = p_ == 0.0 ? -INFINITY : k_ + spmn_expo(p_); } while (0)

/* A sum node over rows off..off+nb: K = max_e (wk_e + k_c) (0 when -inf),
 * s = sum_e (wm_e m_c) 2^(wk_e + k_c - K) (terms below 2^-1022 of the largest are 0),
 * p = s 2^K, U = sum_e q_e U_c / s (0 when s = 0); w_e = wm_e 2^wk_e. s >= 1 unless every term
 * is 0, so the result is exact for any weights. */
SPMN_INLINE void spmn_ssum_(const int64_t *cidx, const double *wm, const double *wk, int64_t a0,
                            int64_t a1, const double *M, const double *Kx, const double *U,
                            int64_t R, int64_t off, int nb, double *oM, double *oK, double *oU,
                            int with_u) {
    double K[SPMN_SB], s[SPMN_SB], num[SPMN_SB];
    for (int j = 0; j < nb; j++) K[j] = -INFINITY;
    for (int64_t e = a0; e < a1; e++) {
        const double *kc = Kx + cidx[e] * R + off;
        double we = wk[e];
        for (int j = 0; j < nb; j++) { double a = we + kc[j]; K[j] = a > K[j] ? a : K[j]; }
    }
    for (int j = 0; j < nb; j++) { K[j] = K[j] > -INFINITY ? K[j] : 0.0; s[j] = 0.0; num[j] = 0.0; }
    for (int64_t e = a0; e < a1; e++) {
        const double *mc = M + cidx[e] * R + off;
        const double *kc = Kx + cidx[e] * R + off;
        double we = wk[e], wme = wm[e];
        if (with_u) {
            const double *uc = U + cidx[e] * R + off;
            for (int j = 0; j < nb; j++) {
                double d = (we + kc[j]) - K[j];
                d = d < -1023.0 ? -1023.0 : d;
                double q = (wme * mc[j]) * spmn_pow2(d);
                s[j] += q;
                num[j] += q * uc[j];
            }
        } else {
            for (int j = 0; j < nb; j++) {
                double d = (we + kc[j]) - K[j];
                d = d < -1023.0 ? -1023.0 : d;
                s[j] += (wme * mc[j]) * spmn_pow2(d);
            }
        }
    }
    for (int j = 0; j < nb; j++) {
        double sr = s[j];
        SPMN_NORM(sr, K[j], oM[j], oK[j]);
        if (with_u) oU[j] = sr > 0.0 ? num[j] / sr : 0.0;
    }
}

/* A product over rows off..off+nb: m = prod m_c, k = sum k_c (children in edge order), then
 * renormalized (also every SPMN_PSEG children). */
SPMN_INLINE void spmn_sprod_(const int64_t *cidx, int64_t a0, int64_t a1, const double *M,
                             const double *Kx, int64_t R, int64_t off, int nb, double *oM,
                             double *oK) {
    double m[SPMN_SB], k[SPMN_SB];
    int64_t seg = 0;
    for (int j = 0; j < nb; j++) { m[j] = 1.0; k[j] = 0.0; }
    for (int64_t e = a0; e < a1; e++) {
        const double *mc = M + cidx[e] * R + off;
        const double *kc = Kx + cidx[e] * R + off;
        for (int j = 0; j < nb; j++) { m[j] = m[j] * mc[j]; k[j] = k[j] + kc[j]; }
        if (++seg == SPMN_PSEG) {
            seg = 0;
            for (int j = 0; j < nb; j++) SPMN_NORM(m[j], k[j], m[j], k[j]);
        }
    }
    for (int j = 0; j < nb; j++) SPMN_NORM(m[j], k[j], oM[j], oK[j]);
}

/* Sum group: members mem[0..g) share the child list of mem[0] (see _cup.pxi's sum_group).
 * K = max_c k_c (0 when -inf), q_c = m_c 2^(k_c - K) once per child and row (qb: deg x 16,
 * qu = q U_c when with_u), then per member s = sum_c W_c q_c, p = s 2^K, U = sum_c W_c qu_c / s.
 * In a row where s leaves [2^-900, 2^900] the member takes the exact spmn_ssum_ result. */
SPMN_INLINE void spmn_sgroup_(const int64_t *cptr, const int64_t *cidx, const double *W,
                              const double *wm, const double *wk, const int64_t *mem, int64_t g,
                              double *M, double *Kx, double *U, int64_t R, int64_t off, int nb,
                              double *qb, double *qu, int with_u) {
    int64_t h = mem[0], a0 = cptr[h], deg = cptr[h + 1] - a0;
    double K[SPMN_SB], s[SPMN_SB], num[SPMN_SB], fM[SPMN_SB], fK[SPMN_SB], fU[SPMN_SB];
    for (int j = 0; j < nb; j++) K[j] = -INFINITY;
    for (int64_t c = 0; c < deg; c++) {
        const double *kc = Kx + cidx[a0 + c] * R + off;
        for (int j = 0; j < nb; j++) { double a = kc[j]; K[j] = a > K[j] ? a : K[j]; }
    }
    for (int j = 0; j < nb; j++) K[j] = K[j] > -INFINITY ? K[j] : 0.0;
    for (int64_t c = 0; c < deg; c++) {
        const double *mc = M + cidx[a0 + c] * R + off;
        const double *kc = Kx + cidx[a0 + c] * R + off;
        double *qc = qb + c * SPMN_SB;
        for (int j = 0; j < nb; j++) {
            double d = kc[j] - K[j];
            d = d < -1023.0 ? -1023.0 : d;
            qc[j] = mc[j] * spmn_pow2(d);
        }
        if (with_u) {
            const double *uc = U + cidx[a0 + c] * R + off;
            double *quc = qu + c * SPMN_SB;
            for (int j = 0; j < nb; j++) quc[j] = qc[j] * uc[j];
        }
    }
    for (int64_t t = 0; t < g; t++) {
        int64_t node = mem[t], b0 = cptr[node];
        double *oM = M + node * R + off, *oK = Kx + node * R + off, *oU = U + node * R + off;
        int nbad = 0;
        for (int j = 0; j < nb; j++) { s[j] = 0.0; num[j] = 0.0; }
        if (with_u) {
            for (int64_t c = 0; c < deg; c++) {
                double w = W[b0 + c];
                const double *qc = qb + c * SPMN_SB, *quc = qu + c * SPMN_SB;
                for (int j = 0; j < nb; j++) { s[j] += w * qc[j]; num[j] += w * quc[j]; }
            }
        } else {
            for (int64_t c = 0; c < deg; c++) {
                double w = W[b0 + c];
                const double *qc = qb + c * SPMN_SB;
                for (int j = 0; j < nb; j++) s[j] += w * qc[j];
            }
        }
        for (int j = 0; j < nb; j++) {
            double sr = s[j];
            oM[j] = spmn_mant(sr);
            oK[j] = K[j] + spmn_expo(sr);
            nbad += !(sr >= SPMN_S_TINY && sr <= SPMN_S_HUGE);
        }
        if (with_u)
            for (int j = 0; j < nb; j++) oU[j] = num[j] / s[j];
        if (nbad) {  /* exact sum for the rows out of range (results are row by row) */
            spmn_ssum_(cidx, wm, wk, b0, cptr[node + 1], M, Kx, U, R, off, nb, fM, fK, fU,
                       with_u);
            for (int j = 0; j < nb; j++) {
                int ok = s[j] >= SPMN_S_TINY && s[j] <= SPMN_S_HUGE;
                oM[j] = ok ? oM[j] : fM[j];
                oK[j] = ok ? oK[j] : fK[j];
            }
            if (with_u)
                for (int j = 0; j < nb; j++) {
                    int ok = s[j] >= SPMN_S_TINY && s[j] <= SPMN_S_HUGE;
                    oU[j] = ok ? oU[j] : fU[j];
                }
        }
    }
}

/* The same three node kinds for a full block of 16 rows in GCC vector registers (4 x 4 lanes,
 * split into SSE2 halves where AVX2 is absent): every lane runs the scalar operations above in
 * the same order; a select "a > b ? a : b" is a compare mask and bit blend. */
typedef double spmn_vd __attribute__((vector_size(32)));
typedef int64_t spmn_vi __attribute__((vector_size(32)));
typedef double spmn_vdu __attribute__((vector_size(32), aligned(8)));
#define SPMN_NV 4
#define SPMN_SPLAT(x) ((spmn_vd){(x), (x), (x), (x)})
#define SPMN_LD(p) ((spmn_vd)(*(const spmn_vdu *)(p)))
#define SPMN_ST(p, v) (*(spmn_vdu *)(p) = (v))
#define SPMN_SEL(mask, a, b) ((spmn_vd)(((spmn_vi)(a) & (mask)) | ((spmn_vi)(b) & ~(mask))))

SPMN_INLINE spmn_vd spmn_vpow2(spmn_vd d) {
    spmn_vi t = (spmn_vi)(d + SPMN_SPLAT(SPMN_S_BIAS));
    return (spmn_vd)(t << 52);
}

SPMN_INLINE spmn_vd spmn_vexpo(spmn_vd p) {
    spmn_vi e = (((spmn_vi)p >> 52) & 0x7FF) | 0x4330000000000000LL;
    return (spmn_vd)e - SPMN_SPLAT(SPMN_S_BIAS);
}

SPMN_INLINE spmn_vd spmn_vmant(spmn_vd p) {
    return (spmn_vd)(((spmn_vi)p & 0x000FFFFFFFFFFFFFLL) | 0x3FF0000000000000LL);
}

#define SPMN_VNORM(p, k, om, ok) do { spmn_vd p_ = (p), k_ = (k); \
    spmn_vi z_ = p_ == SPMN_SPLAT(0.0); \
    (om) = SPMN_SEL(z_, SPMN_SPLAT(0.0), spmn_vmant(p_)); \
    (ok) = SPMN_SEL(z_, SPMN_SPLAT(-INFINITY), k_ + spmn_vexpo(p_)); } while (0)

static inline void spmn_sprod16(const int64_t *cidx, int64_t a0, int64_t a1, const double *M,
                                const double *Kx, int64_t R, int64_t off, double *oM,
                                double *oK) {
    spmn_vd m[SPMN_NV], k[SPMN_NV];
    int64_t seg = 0;
    for (int v = 0; v < SPMN_NV; v++) { m[v] = SPMN_SPLAT(1.0); k[v] = SPMN_SPLAT(0.0); }
    for (int64_t e = a0; e < a1; e++) {
        const double *mc = M + cidx[e] * R + off;
        const double *kc = Kx + cidx[e] * R + off;
        for (int v = 0; v < SPMN_NV; v++) {
            m[v] = m[v] * SPMN_LD(mc + 4 * v);
            k[v] = k[v] + SPMN_LD(kc + 4 * v);
        }
        if (++seg == SPMN_PSEG) {
            seg = 0;
            for (int v = 0; v < SPMN_NV; v++) SPMN_VNORM(m[v], k[v], m[v], k[v]);
        }
    }
    for (int v = 0; v < SPMN_NV; v++) {
        spmn_vd om, ok;
        SPMN_VNORM(m[v], k[v], om, ok);
        SPMN_ST(oM + 4 * v, om);
        SPMN_ST(oK + 4 * v, ok);
    }
}

static inline void spmn_ssum16(const int64_t *cidx, const double *wm, const double *wk,
                               int64_t a0, int64_t a1, const double *M, const double *Kx,
                               const double *U, int64_t R, int64_t off, double *oM, double *oK,
                               double *oU, int with_u) {
    spmn_vd K[SPMN_NV], s[SPMN_NV], num[SPMN_NV];
    for (int v = 0; v < SPMN_NV; v++) K[v] = SPMN_SPLAT(-INFINITY);
    for (int64_t e = a0; e < a1; e++) {
        const double *kc = Kx + cidx[e] * R + off;
        spmn_vd we = SPMN_SPLAT(wk[e]);
        for (int v = 0; v < SPMN_NV; v++) {
            spmn_vd a = we + SPMN_LD(kc + 4 * v);
            K[v] = SPMN_SEL(a > K[v], a, K[v]);
        }
    }
    for (int v = 0; v < SPMN_NV; v++) {
        K[v] = SPMN_SEL(K[v] > SPMN_SPLAT(-INFINITY), K[v], SPMN_SPLAT(0.0));
        s[v] = SPMN_SPLAT(0.0);
        num[v] = SPMN_SPLAT(0.0);
    }
    spmn_vd lo = SPMN_SPLAT(-1023.0);
    for (int64_t e = a0; e < a1; e++) {
        const double *mc = M + cidx[e] * R + off;
        const double *kc = Kx + cidx[e] * R + off;
        spmn_vd we = SPMN_SPLAT(wk[e]), wme = SPMN_SPLAT(wm[e]);
        if (with_u) {
            const double *uc = U + cidx[e] * R + off;
            for (int v = 0; v < SPMN_NV; v++) {
                spmn_vd d = (we + SPMN_LD(kc + 4 * v)) - K[v];
                d = SPMN_SEL(d < lo, lo, d);
                spmn_vd q = (wme * SPMN_LD(mc + 4 * v)) * spmn_vpow2(d);
                s[v] = s[v] + q;
                num[v] = num[v] + q * SPMN_LD(uc + 4 * v);
            }
        } else {
            for (int v = 0; v < SPMN_NV; v++) {
                spmn_vd d = (we + SPMN_LD(kc + 4 * v)) - K[v];
                d = SPMN_SEL(d < lo, lo, d);
                s[v] = s[v] + (wme * SPMN_LD(mc + 4 * v)) * spmn_vpow2(d);
            }
        }
    }
    for (int v = 0; v < SPMN_NV; v++) {
        spmn_vd om, ok;
        SPMN_VNORM(s[v], K[v], om, ok);
        SPMN_ST(oM + 4 * v, om);
        SPMN_ST(oK + 4 * v, ok);
        if (with_u) SPMN_ST(oU + 4 * v, SPMN_SEL(s[v] > SPMN_SPLAT(0.0), num[v] / s[v],
                                                  SPMN_SPLAT(0.0)));
    }
}

static inline void spmn_sgroup16(const int64_t *cptr, const int64_t *cidx, const double *W,
                                 const double *wm, const double *wk, const int64_t *mem,
                                 int64_t g, double *M, double *Kx, double *U, int64_t R,
                                 int64_t off, double *qb, double *qu, int with_u) {
    int64_t h = mem[0], a0 = cptr[h], deg = cptr[h + 1] - a0;
    spmn_vd K[SPMN_NV], s[SPMN_NV], num[SPMN_NV];
    double fM[SPMN_SB], fK[SPMN_SB], fU[SPMN_SB], sb[SPMN_SB];
    spmn_vd lo = SPMN_SPLAT(-1023.0);
    for (int v = 0; v < SPMN_NV; v++) K[v] = SPMN_SPLAT(-INFINITY);
    for (int64_t c = 0; c < deg; c++) {
        const double *kc = Kx + cidx[a0 + c] * R + off;
        for (int v = 0; v < SPMN_NV; v++) {
            spmn_vd a = SPMN_LD(kc + 4 * v);
            K[v] = SPMN_SEL(a > K[v], a, K[v]);
        }
    }
    for (int v = 0; v < SPMN_NV; v++)
        K[v] = SPMN_SEL(K[v] > SPMN_SPLAT(-INFINITY), K[v], SPMN_SPLAT(0.0));
    for (int64_t c = 0; c < deg; c++) {
        const double *mc = M + cidx[a0 + c] * R + off;
        const double *kc = Kx + cidx[a0 + c] * R + off;
        double *qc = qb + c * SPMN_SB;
        for (int v = 0; v < SPMN_NV; v++) {
            spmn_vd d = SPMN_LD(kc + 4 * v) - K[v];
            d = SPMN_SEL(d < lo, lo, d);
            SPMN_ST(qc + 4 * v, SPMN_LD(mc + 4 * v) * spmn_vpow2(d));
        }
        if (with_u) {
            const double *uc = U + cidx[a0 + c] * R + off;
            double *quc = qu + c * SPMN_SB;
            for (int v = 0; v < SPMN_NV; v++)
                SPMN_ST(quc + 4 * v, SPMN_LD(qc + 4 * v) * SPMN_LD(uc + 4 * v));
        }
    }
    for (int64_t t = 0; t < g; t++) {
        int64_t node = mem[t], b0 = cptr[node];
        double *oM = M + node * R + off, *oK = Kx + node * R + off, *oU = U + node * R + off;
        int nbad = 0;
        for (int v = 0; v < SPMN_NV; v++) { s[v] = SPMN_SPLAT(0.0); num[v] = SPMN_SPLAT(0.0); }
        if (with_u) {
            for (int64_t c = 0; c < deg; c++) {
                spmn_vd w = SPMN_SPLAT(W[b0 + c]);
                const double *qc = qb + c * SPMN_SB, *quc = qu + c * SPMN_SB;
                for (int v = 0; v < SPMN_NV; v++) {
                    s[v] = s[v] + w * SPMN_LD(qc + 4 * v);
                    num[v] = num[v] + w * SPMN_LD(quc + 4 * v);
                }
            }
        } else {
            for (int64_t c = 0; c < deg; c++) {
                spmn_vd w = SPMN_SPLAT(W[b0 + c]);
                const double *qc = qb + c * SPMN_SB;
                for (int v = 0; v < SPMN_NV; v++) s[v] = s[v] + w * SPMN_LD(qc + 4 * v);
            }
        }
        for (int v = 0; v < SPMN_NV; v++) {
            SPMN_ST(oM + 4 * v, spmn_vmant(s[v]));
            SPMN_ST(oK + 4 * v, K[v] + spmn_vexpo(s[v]));
            SPMN_ST(sb + 4 * v, s[v]);
            if (with_u) SPMN_ST(oU + 4 * v, num[v] / s[v]);
        }
        for (int j = 0; j < SPMN_SB; j++) nbad += !(sb[j] >= SPMN_S_TINY && sb[j] <= SPMN_S_HUGE);
        if (nbad) {  /* exact sum for the rows out of range */
            spmn_ssum_(cidx, wm, wk, b0, cptr[node + 1], M, Kx, U, R, off, SPMN_SB, fM, fK, fU,
                       with_u);
            for (int j = 0; j < SPMN_SB; j++) {
                int ok = sb[j] >= SPMN_S_TINY && sb[j] <= SPMN_S_HUGE;
                oM[j] = ok ? oM[j] : fM[j];
                oK[j] = ok ? oK[j] : fK[j];
                if (with_u) oU[j] = ok ? oU[j] : fU[j];
            }
        }
    }
}

/* Row-range drivers: full 16-row blocks (constant nb: unrolled and vectorized), then the tail. */
static void spmn_ssum(const int64_t *cidx, const double *wm, const double *wk, int64_t a0,
                      int64_t a1, const double *M, const double *Kx, const double *U, int64_t R,
                      int64_t nr, double *oM, double *oK, double *oU, int with_u) {
    int64_t off = 0;
    for (; off + SPMN_SB <= nr; off += SPMN_SB)
        spmn_ssum16(cidx, wm, wk, a0, a1, M, Kx, U, R, off, oM + off, oK + off, oU + off,
                    with_u);
    if (off < nr)
        spmn_ssum_(cidx, wm, wk, a0, a1, M, Kx, U, R, off, (int)(nr - off), oM + off, oK + off,
                   oU + off, with_u);
}

static void spmn_sprod(const int64_t *cidx, int64_t a0, int64_t a1, const double *M,
                       const double *Kx, int64_t R, int64_t nr, double *oM, double *oK) {
    int64_t off = 0;
    for (; off + SPMN_SB <= nr; off += SPMN_SB)
        spmn_sprod16(cidx, a0, a1, M, Kx, R, off, oM + off, oK + off);
    if (off < nr)
        spmn_sprod_(cidx, a0, a1, M, Kx, R, off, (int)(nr - off), oM + off, oK + off);
}

static void spmn_sgroup(const int64_t *cptr, const int64_t *cidx, const double *W,
                        const double *wm, const double *wk, const int64_t *mem, int64_t g,
                        double *M, double *Kx, double *U, int64_t R, int64_t nr, double *qb,
                        double *qu, int with_u) {
    int64_t off = 0;
    for (; off + SPMN_SB <= nr; off += SPMN_SB)
        spmn_sgroup16(cptr, cidx, W, wm, wk, mem, g, M, Kx, U, R, off, qb, qu, with_u);
    if (off < nr)
        spmn_sgroup_(cptr, cidx, W, wm, wk, mem, g, M, Kx, U, R, off, (int)(nr - off), qb, qu,
                     with_u);
}

/* A leaf's log densities L[0..nr) turned in place into mantissas, exponents into oK. */
static void spmn_to_mk_rows(double *L, double *oK, int64_t nr) {
    for (int64_t r = 0; r < nr; r++) {
        double m, k;
        spmn_to_mk(L[r], &m, &k);
        L[r] = m;
        oK[r] = k;
    }
}

/* A categorical leaf: out[r] = tab[code[r]] for its mantissa and exponent tables. */
static void spmn_scat_leaf(const int32_t *restrict code, const double *restrict tm,
                           const double *restrict tk, int64_t nr, double *restrict oM,
                           double *restrict oK) {
    for (int64_t r = 0; r < nr; r++) { oM[r] = tm[code[r]]; oK[r] = tk[code[r]]; }
}
#endif
