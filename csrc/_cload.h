/* The int32 codes of one categorical variable in 4 adjacent rows (csrc/_cload.pxi load_chunk):
 * x points at the first row, nv doubles a row; NaN is the code k. NaN is replaced by 0 before
 * the conversion, so only the checked whole numbers of the variable's range are converted. */
#ifndef SPMN_CLOAD_H
#define SPMN_CLOAD_H
#include <stdint.h>

typedef double spmn_ld4 __attribute__((vector_size(32)));
typedef int64_t spmn_lm4 __attribute__((vector_size(32)));
typedef int32_t spmn_li4 __attribute__((vector_size(16)));

static inline void spmn_codes4(const double *x, int64_t nv, int32_t k, int32_t *o) {
    spmn_ld4 d = {x[0], x[nv], x[2 * nv], x[3 * nv]};
    spmn_lm4 nan = d != d;
    spmn_ld4 z = (spmn_ld4)((spmn_lm4)d & ~nan);
    spmn_li4 m = __builtin_convertvector(nan, spmn_li4);
    spmn_li4 c = __builtin_convertvector(z, spmn_li4);
    spmn_li4 kv = {k, k, k, k};
    c = (c & ~m) | (kv & m);
    __builtin_memcpy(o, &c, sizeof c);
}
#endif
