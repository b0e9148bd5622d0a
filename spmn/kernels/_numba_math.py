"""exp and log for the Numba kernels, written with +, -, *, / and bit casts only.

The Cython kernels (``csrc/_cmath.pxi``) evaluate the very same operations in the same order,
so both backends agree bit for bit whatever libm or vector library each compiler would pick,
and the row loops that call them vectorize. Accuracy: ``fexp`` within about 2 ulp and ``flog``
within about 2 ulp of the correctly rounded result (tests/test_kernels.py checks it).

``fexp``: ``x = k ln2 + r`` with ``k = round(x / ln2)`` (the 1.5·2^52 shift trick), ``|r| <=
ln2 / 2`` (ln2 split in a high part with 21 zero bits and a low part), ``exp(r)`` by its degree
13 Taylor polynomial (Estrin's scheme), then ``2^k`` applied as two exact power-of-two factors so that
subnormal results round once. ``x`` is clamped to [-746, 710]: ``fexp(-inf) = 0``.

``flog``: ``x = 2^e m`` with ``m`` in [√½, √2) from the bit pattern (subnormals pre-scaled by
2^54), ``log m = 2 atanh(f)``, ``f = (m - 1) / (m + 1)``, by its series to ``f^19``;
``flog(0) = -inf``. Only positive finite arguments occur in the kernels.
"""
from __future__ import annotations

import math

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

LN2_HI = 0.6931471803691238
LN2_LO = 1.9082149292705877e-10
LOG2E = 1.4426950408889634
SHIFT = 6755399441055744.0          # 1.5 * 2^52
SHIFT_BITS = 4843621399236968448    # its bit pattern
SQRT2 = 1.4142135623730951
TWO52_PLUS_BIAS = 4503599627371519.0  # 2^52 + 1023
DBL_MIN = 2.2250738585072014e-308
TWO54 = 18014398509481984.0


@intrinsic
def as_f64(typingctx, x):
    """Reinterpret the bits of an int64 as a float64."""
    if not isinstance(x, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def as_i64(typingctx, x):
    """Reinterpret the bits of a float64 as an int64."""
    if not isinstance(x, types.Float):
        return None

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.IntType(64))
    return types.int64(types.float64), codegen


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def exp_poly(r: float) -> float:
    """exp(r) for |r| <= ln2 / 2: the degree 13 Taylor polynomial, Estrin's scheme."""
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    q0 = (1.0 + 1.0 * r) + (0.5 + 0.16666666666666666 * r) * r2
    q1 = (0.041666666666666664 + 0.008333333333333333 * r) + \
        (0.001388888888888889 + 0.0001984126984126984 * r) * r2
    q2 = (2.48015873015873e-05 + 2.7557319223985893e-06 * r) + \
        (2.755731922398589e-07 + 2.505210838544172e-08 * r) * r2
    q3 = 2.08767569878681e-09 + 1.6059043836821613e-10 * r
    return (q0 + q1 * r4) + (q2 + q3 * r4) * r8


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def log_series(m: float, ef: float) -> float:
    """log(m 2^ef) for m in [√½, √2]: ef ln2 + 2 atanh((m-1)/(m+1)) by its series to f^19."""
    f = (m - 1.0) / (m + 1.0)
    s = f * f
    q = 0.05263157894736842
    q = q * s + 0.058823529411764705
    q = q * s + 0.06666666666666667
    q = q * s + 0.07692307692307693
    q = q * s + 0.09090909090909091
    q = q * s + 0.1111111111111111
    q = q * s + 0.14285714285714285
    q = q * s + 0.2
    q = q * s + 0.3333333333333333
    f2 = 2.0 * f
    return ef * LN2_HI + (f2 + f2 * (s * q) + ef * LN2_LO)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def fexp(x: float) -> float:
    """exp(x), about 2 ulp, identical to the Cython ``fexp``."""
    x = -746.0 if x < -746.0 else x
    x = 710.0 if x > 710.0 else x
    t = x * LOG2E + SHIFT
    kf = t - SHIFT
    r = (x - kf * LN2_HI) - kf * LN2_LO
    p = exp_poly(r)
    k = as_i64(t) - SHIFT_BITS
    k1 = as_i64(kf * 0.5 + SHIFT) - SHIFT_BITS
    k2 = k - k1
    s1 = as_f64((k1 + 1023) << 52)
    s2 = as_f64((k2 + 1023) << 52)
    return (p * s1) * s2


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def flog(x: float) -> float:
    """log(x) for x >= 0, about 2 ulp, identical to the Cython ``flog``."""
    adj = 54.0 if x < DBL_MIN else 0.0
    x = x * TWO54 if x < DBL_MIN else x
    b = as_i64(x)
    ef = as_f64((b >> 52) | 0x4330000000000000) - TWO52_PLUS_BIAS
    m = as_f64((b & 0x000FFFFFFFFFFFFF) | 0x3FF0000000000000)
    ef = ef + 1.0 if m > SQRT2 else ef
    m = m * 0.5 if m > SQRT2 else m
    ef = ef - adj
    out = log_series(m, ef)
    return -math.inf if x == 0.0 else out
