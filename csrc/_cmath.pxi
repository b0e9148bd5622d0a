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


cdef extern from "_cscaled.h" nogil:
    double spmn_exp_poly(double r)
    double spmn_log_series(double m, double ef)


cdef inline double fexp(double x) noexcept nogil:
    """exp(x), about 2 ulp (degree 13 Taylor polynomial, Estrin's scheme)."""
    cdef DI t, h, s1, s2
    cdef double kf, r, p
    cdef int64_t k, k1, k2
    x = -746.0 if x < -746.0 else x
    x = 710.0 if x > 710.0 else x
    t.d = x * LOG2E + SHIFT
    kf = t.d - SHIFT
    r = (x - kf * LN2_HI) - kf * LN2_LO
    p = spmn_exp_poly(r)
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
    cdef double adj, ef, m, out
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
    out = spmn_log_series(m, ef)
    return -INFINITY if x == 0.0 else out
