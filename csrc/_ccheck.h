/* The schema's evidence check over rows lo..lo+nr of a row-major (rows, nv) array, run by each
 * thread on its chunk just before the kernels read it (spmn.schema.Schema.check_table, the twin
 * of Schema.valid_values; spmn/kernels/_numba_entry.py rows_ok is the same test). Per column v:
 * chk[v] the lowest value, chk[nv + v] the highest, chk[2 nv + v] 1 for an integer code,
 * chk[3 nv + v] 1 where NaN (unobserved) is allowed. A cell is valid when it is NaN and NaN is
 * allowed, or when it lies in [lo, hi] and, for a code, is a whole number: (d + 2^52) - 2^52
 * rounds d >= 0 to the nearest integer (exact without fast-math), every double >= 2^52 is one,
 * and di = min(d, 2^52) x (1 for a code, 0 for a real) is 0 for a finite real. Branch-free (the
 * factor, not a select, lets gcc vectorize it over the columns). Returns 1 when every cell is
 * valid. */
#ifndef SPMN_CCHECK_H
#define SPMN_CCHECK_H
#include <stdint.h>

static inline int spmn_rows_ok(const double *X, int64_t nv, int64_t lo, int64_t nr,
                               const double *chk) {
    const double *a = chk, *b = chk + nv, *ig = chk + 2 * nv, *nk = chk + 3 * nv;
    const double TWO52 = 4503599627370496.0;
    int64_t bad = 0;
    for (int64_t r = 0; r < nr; r++) {
        const double *x = X + (lo + r) * nv;
        for (int64_t v = 0; v < nv; v++) {
            double d = x[v];
            int64_t in = (d >= a[v]) & (d <= b[v]);         /* false for NaN */
            double di = (d < TWO52 ? d : TWO52) * ig[v];
            int64_t whole = ((di + TWO52) - TWO52) == di;
            int64_t nan_ok = (d != d) & (nk[v] != 0.0);
            bad |= !((in & whole) | nan_ok);
        }
    }
    return !bad;
}
#endif
