# cython: language_level=3
# The same kernels as ckernels.pyx, compiled by setup.py with -mavx2 into
# spmn.kernels._ckernels_avx2; spmn.kernels.cython loads it when the CPU has AVX2. Only the
# vector width differs (no FMA, no fast-math), so the results are the same bits.
include "ckernels.pyx"
