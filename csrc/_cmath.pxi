# exp and log from +, -, *, / and bit casts only: the same operations, in the same order, as
# spmn/kernels/_numba_math.py (see its docstring), so Cython and Numba agree bit for bit.

cdef union DI:
    double d
    int64_t i

cdef extern from *:
    """
    static const double SPMN_LN2_HI = 0.6931471803691238;
    static const double SPMN_LN2_LO = 1.9082149292705877e-10;
    static const double SPMN_LOG2E = 1.4426950408889634;
    static const double SPMN_SHIFT = 6755399441055744.0;
    static const int64_t SPMN_SHIFT_BITS = 4843621399236968448LL;
    static const double SPMN_SQRT2 = 1.4142135623730951;
    static const double SPMN_TWO52_PLUS_BIAS = 4503599627371519.0;
    static const double SPMN_DBL_MIN_NORMAL = 2.2250738585072014e-308;
    static const double SPMN_TWO54 = 18014398509481984.0;
    static const int64_t SPMN_BITS_2P52 = 0x4330000000000000LL;
    static const int64_t SPMN_MANT_MASK = 0x000FFFFFFFFFFFFFLL;
    static const int64_t SPMN_BITS_ONE = 0x3FF0000000000000LL;
    static const double SPMN_TIE_RTOL = 1e-12;
    """
    const double LN2_HI "SPMN_LN2_HI"
    const double LN2_LO "SPMN_LN2_LO"
    const double LOG2E "SPMN_LOG2E"
    const double SHIFT "SPMN_SHIFT"
    const int64_t SHIFT_BITS "SPMN_SHIFT_BITS"
    const double SQRT2 "SPMN_SQRT2"
    const double TWO52_PLUS_BIAS "SPMN_TWO52_PLUS_BIAS"
    const double DBL_MIN_NORMAL "SPMN_DBL_MIN_NORMAL"
    const double TWO54 "SPMN_TWO54"
    const int64_t BITS_2P52 "SPMN_BITS_2P52"
    const int64_t MANT_MASK "SPMN_MANT_MASK"
    const int64_t BITS_ONE "SPMN_BITS_ONE"
    const double TIE_RTOL "SPMN_TIE_RTOL"


cdef inline double fexp(double x) noexcept nogil:
    """exp(x), about 2 ulp (degree 13 Taylor polynomial, Estrin's scheme)."""
    cdef DI t, h, s1, s2
    cdef double kf, r, r2, r4, r8, q0, q1, q2, q3, p
    cdef int64_t k, k1, k2
    x = -746.0 if x < -746.0 else x
    x = 710.0 if x > 710.0 else x
    t.d = x * LOG2E + SHIFT
    kf = t.d - SHIFT
    r = (x - kf * LN2_HI) - kf * LN2_LO
    r2 = r * r
    r4 = r2 * r2
    r8 = r4 * r4
    q0 = (1.0 + 1.0 * r) + (0.5 + 0.16666666666666666 * r) * r2
    q1 = ((0.041666666666666664 + 0.008333333333333333 * r) +
          (0.001388888888888889 + 0.0001984126984126984 * r) * r2)
    q2 = ((2.48015873015873e-05 + 2.7557319223985893e-06 * r) +
          (2.755731922398589e-07 + 2.505210838544172e-08 * r) * r2)
    q3 = 2.08767569878681e-09 + 1.6059043836821613e-10 * r
    p = (q0 + q1 * r4) + (q2 + q3 * r4) * r8
    k = t.i - SHIFT_BITS
    h.d = kf * 0.5 + SHIFT
    k1 = h.i - SHIFT_BITS
    k2 = k - k1
    s1.i = (k1 + 1023) << 52
    s2.i = (k2 + 1023) << 52
    return (p * s1.d) * s2.d


cdef inline double flog(double x) noexcept nogil:
    """log(x) for x >= 0, about 2 ulp (2 atanh((m-1)/(m+1)) series to f^19)."""
    cdef DI b, e, mm
    cdef double adj, ef, m, f, s, q, f2, out
    adj = 54.0 if x < DBL_MIN_NORMAL else 0.0
    x = x * TWO54 if x < DBL_MIN_NORMAL else x
    b.d = x
    e.i = (b.i >> 52) | BITS_2P52
    ef = e.d - TWO52_PLUS_BIAS
    mm.i = (b.i & MANT_MASK) | BITS_ONE
    m = mm.d
    ef = ef + 1.0 if m > SQRT2 else ef
    m = m * 0.5 if m > SQRT2 else m
    ef = ef - adj
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
    out = ef * LN2_HI + (f2 + f2 * (s * q) + ef * LN2_LO)
    return -INFINITY if x == 0.0 else out
