"""16-row register blocks for the Numba kernels, the twins of ``csrc/_cblock.h`` and the ``*16``
functions of ``csrc/_cfast.h``, written as LLVM IR (Numba intrinsics).

A block is 16 consecutive rows ``off .. off + 16`` of a node-major work array (node ``i``, row
``r`` at ``i * R + r``), held in four vectors of four doubles while the loop runs over a node's
edges: one load per child and 4 rows, no accumulator load or store per edge, no loop set-up per
edge. Numba leaves the SLP vectorizer off and fully unrolls a 16-row loop before its loop
vectorizer sees it, so plain Python loops give scalar code here; the IR below is what the C
intrinsics are. Every lane does the scalar row loop's operations in the same order (IEEE
``fadd``/``fmul``/``fdiv`` without fast-math flags, ``a > b ? a : b`` for the max), so a block
gives the same bits as the row loops of :mod:`._numba_fast` and :mod:`._numba_up` and as the
Cython blocks. Callers take full blocks of 16 and leave the rest of the rows to those loops.

Arguments: 1-d C-contiguous arrays and integer offsets (row offsets into the arrays, not
checked: the callers' offsets stay inside ``n x R`` work arrays).
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

_D = ir.DoubleType()
_V = ir.VectorType(_D, 4)
_I64 = ir.IntType(64)
_NV = 4  # vectors of 4 doubles in a block of 16 rows


def _c1d(*tys) -> bool:
    return all(isinstance(t, types.Array) and t.ndim == 1 and t.layout == "C" for t in tys)


def _ints(*tys) -> bool:
    return all(isinstance(t, types.Integer) for t in tys)


def _data(context, builder, ty, val):
    return context.make_array(ty)(context, builder, val).data


def _i64(context, builder, sig, args, q):
    return context.cast(builder, args[q], sig.args[q], types.int64)


def _k(x: int):
    return ir.Constant(_I64, x)


def _vload(builder, base, idx):
    return builder.load(builder.bitcast(builder.gep(base, [idx]), _V.as_pointer()), align=8)


def _vstore(builder, base, idx, v) -> None:
    builder.store(v, builder.bitcast(builder.gep(base, [idx]), _V.as_pointer()), align=8)


def _splat(builder, x):
    v = ir.Constant(_V, None)
    for lane in range(4):
        v = builder.insert_element(v, x, ir.Constant(ir.IntType(32), lane))
    return v


def _accs(builder, init: float):
    return [cgutils.alloca_once_value(builder, ir.Constant(_V, [init] * 4)) for _ in range(_NV)]


def _edges(context, builder, a0, a1):
    return cgutils.for_range_slice(builder, a0, a1, _k(1), inc=True)


def _fold(op, init):
    """An intrinsic ``(cidx, a0, a1, A, R, off, o)``: A[o + j] = init op A[c_1 R + off + j]
    op A[c_2 R + off + j] ... (children in edge order), j < 16."""

    def blk(typingctx, cidx, a0, a1, A, R, off, o):
        if not (_c1d(cidx, A) and _ints(a0, a1, R, off, o)):
            return None

        def codegen(context, builder, sig, args):
            ci = _data(context, builder, sig.args[0], args[0])
            ap = _data(context, builder, sig.args[3], args[3])
            e0, e1, Rv, ov, out = (_i64(context, builder, sig, args, q) for q in (1, 2, 4, 5, 6))
            acc = _accs(builder, init)
            with _edges(context, builder, e0, e1) as (e, _):
                base = builder.add(builder.mul(builder.load(builder.gep(ci, [e])), Rv), ov)
                for k in range(_NV):
                    x = _vload(builder, ap, builder.add(base, _k(4 * k)))
                    builder.store(op(builder, builder.load(acc[k]), x), acc[k])
            for k in range(_NV):
                _vstore(builder, ap, builder.add(out, _k(4 * k)), builder.load(acc[k]))
            return context.get_dummy_value()
        return types.void(cidx, a0, a1, A, R, off, o), codegen
    return intrinsic(blk)


#: A product of plain probabilities (spmn_fprod16): 1 * p_c1 * p_c2 * ...
blk_prod = _fold(lambda b, acc, x: b.fmul(acc, x), 1.0)
#: A sum of log values or utilities (spmn_prod_add16): 0 + a_c1 + a_c2 + ...
blk_add = _fold(lambda b, acc, x: b.fadd(acc, x), 0.0)


@intrinsic
def blk_summax(typingctx, cidx, lw, a0, a1, M, R, off, o):
    """M[o + j] = max over edges of (lw[e] + M[c R + off + j]) from -inf (spmn_sum_max16:
    ``a > m ? a : m``), j < 16: a max-product sum node."""
    if not (_c1d(cidx, lw, M) and _ints(a0, a1, R, off, o)):
        return None

    def codegen(context, builder, sig, args):
        ci = _data(context, builder, sig.args[0], args[0])
        wp = _data(context, builder, sig.args[1], args[1])
        mp = _data(context, builder, sig.args[4], args[4])
        e0, e1, Rv, ov, out = (_i64(context, builder, sig, args, q) for q in (2, 3, 5, 6, 7))
        acc = _accs(builder, float("-inf"))
        with _edges(context, builder, e0, e1) as (e, _):
            base = builder.add(builder.mul(builder.load(builder.gep(ci, [e])), Rv), ov)
            w = _splat(builder, builder.load(builder.gep(wp, [e])))
            for k in range(_NV):
                a = builder.fadd(w, _vload(builder, mp, builder.add(base, _k(4 * k))))
                m = builder.load(acc[k])
                builder.store(builder.select(builder.fcmp_ordered(">", a, m), a, m), acc[k])
        for k in range(_NV):
            _vstore(builder, mp, builder.add(out, _k(4 * k)), builder.load(acc[k]))
        return context.get_dummy_value()
    return types.void(cidx, lw, a0, a1, M, R, off, o), codegen


@intrinsic
def blk_fsum(typingctx, cidx, w, a0, a1, V, R, off, o):
    """V[o + j] = 0 + w_e1 p_c1 + w_e2 p_c2 + ... (spmn_fsum16 without U), j < 16."""
    if not (_c1d(cidx, w, V) and _ints(a0, a1, R, off, o)):
        return None

    def codegen(context, builder, sig, args):
        ci = _data(context, builder, sig.args[0], args[0])
        wp = _data(context, builder, sig.args[1], args[1])
        vp = _data(context, builder, sig.args[4], args[4])
        e0, e1, Rv, ov, out = (_i64(context, builder, sig, args, q) for q in (2, 3, 5, 6, 7))
        acc = _accs(builder, 0.0)
        with _edges(context, builder, e0, e1) as (e, _):
            base = builder.add(builder.mul(builder.load(builder.gep(ci, [e])), Rv), ov)
            we = _splat(builder, builder.load(builder.gep(wp, [e])))
            for k in range(_NV):
                t = builder.fmul(we, _vload(builder, vp, builder.add(base, _k(4 * k))))
                builder.store(builder.fadd(builder.load(acc[k]), t), acc[k])
        for k in range(_NV):
            _vstore(builder, vp, builder.add(out, _k(4 * k)), builder.load(acc[k]))
        return context.get_dummy_value()
    return types.void(cidx, w, a0, a1, V, R, off, o), codegen


@intrinsic
def blk_fsum_u(typingctx, cidx, w, a0, a1, V, U, R, off, o):
    """spmn_fsum16 with U, j < 16: t = w_e p_c, s = 0 + t + ..., num = 0 + t U_c + ...;
    V[o + j] = s, U[o + j] = num / s where s > 0, else 0."""
    if not (_c1d(cidx, w, V, U) and _ints(a0, a1, R, off, o)):
        return None

    def codegen(context, builder, sig, args):
        ci = _data(context, builder, sig.args[0], args[0])
        wp = _data(context, builder, sig.args[1], args[1])
        vp = _data(context, builder, sig.args[4], args[4])
        up = _data(context, builder, sig.args[5], args[5])
        e0, e1, Rv, ov, out = (_i64(context, builder, sig, args, q) for q in (2, 3, 6, 7, 8))
        s = _accs(builder, 0.0)
        num = _accs(builder, 0.0)
        with _edges(context, builder, e0, e1) as (e, _):
            base = builder.add(builder.mul(builder.load(builder.gep(ci, [e])), Rv), ov)
            we = _splat(builder, builder.load(builder.gep(wp, [e])))
            for k in range(_NV):
                at = builder.add(base, _k(4 * k))
                t = builder.fmul(we, _vload(builder, vp, at))
                builder.store(builder.fadd(builder.load(s[k]), t), s[k])
                tu = builder.fmul(t, _vload(builder, up, at))
                builder.store(builder.fadd(builder.load(num[k]), tu), num[k])
        zero = ir.Constant(_V, [0.0] * 4)
        for k in range(_NV):
            sk = builder.load(s[k])
            at = builder.add(out, _k(4 * k))
            _vstore(builder, vp, at, sk)
            q = builder.fdiv(builder.load(num[k]), sk)
            _vstore(builder, up, at, builder.select(builder.fcmp_ordered(">", sk, zero), q, zero))
        return context.get_dummy_value()
    return types.void(cidx, w, a0, a1, V, U, R, off, o), codegen


@intrinsic
def blk_catprod(typingctx, cidx, a0, a1, var, tptr, tab, code, R, off, V, o):
    """V[o + j] = 1 * t_c1 * t_c2 * ... with t_c = tab[tptr[c] + code[var[c] R + off + j]]
    (spmn_fcatprod16: a product of categorical leaves read from their tables), j < 16."""
    if not (_c1d(cidx, var, tptr, tab, code, V) and _ints(a0, a1, R, off, o)):
        return None

    def codegen(context, builder, sig, args):
        ci = _data(context, builder, sig.args[0], args[0])
        vr = _data(context, builder, sig.args[3], args[3])
        tp = _data(context, builder, sig.args[4], args[4])
        tb = _data(context, builder, sig.args[5], args[5])
        cd = _data(context, builder, sig.args[6], args[6])
        vp = _data(context, builder, sig.args[9], args[9])
        e0, e1, Rv, ov, out = (_i64(context, builder, sig, args, q) for q in (1, 2, 7, 8, 10))
        acc = _accs(builder, 1.0)
        with _edges(context, builder, e0, e1) as (e, _):
            c = builder.load(builder.gep(ci, [e]))
            cbase = builder.add(builder.mul(builder.load(builder.gep(vr, [c])), Rv), ov)
            t0 = builder.load(builder.gep(tp, [c]))
            for k in range(_NV):
                g = ir.Constant(_V, None)
                for lane in range(4):
                    x = builder.load(builder.gep(cd, [builder.add(cbase, _k(4 * k + lane))]))
                    at = builder.add(t0, builder.sext(x, _I64))
                    g = builder.insert_element(g, builder.load(builder.gep(tb, [at])),
                                               ir.Constant(ir.IntType(32), lane))
                builder.store(builder.fmul(builder.load(acc[k]), g), acc[k])
        for k in range(_NV):
            _vstore(builder, vp, builder.add(out, _k(4 * k)), builder.load(acc[k]))
        return context.get_dummy_value()
    return types.void(cidx, a0, a1, var, tptr, tab, code, R, off, V, o), codegen


def _shuffle(builder, x, y, idx):
    return builder.shuffle_vector(x, y, ir.Constant(ir.VectorType(ir.IntType(32), 4), idx))


@intrinsic
def tr4(typingctx, A, src, ss, B, dst, ds):
    """B[dst + j ds + i] = A[src + i ss + j], i, j < 4: a 4 x 4 block of doubles transposed in
    registers (four loads, eight shuffles, four stores): the loaders' rows-to-variables copy."""
    if not (_c1d(A, B) and _ints(src, ss, dst, ds)):
        return None

    def codegen(context, builder, sig, args):
        ap = _data(context, builder, sig.args[0], args[0])
        bp = _data(context, builder, sig.args[3], args[3])
        s0, s1, d0, d1 = (_i64(context, builder, sig, args, q) for q in (1, 2, 4, 5))
        v = [_vload(builder, ap, builder.add(s0, builder.mul(s1, _k(i)))) for i in range(4)]
        t0 = _shuffle(builder, v[0], v[1], [0, 4, 2, 6])  # a0 b0 a2 b2
        t1 = _shuffle(builder, v[0], v[1], [1, 5, 3, 7])  # a1 b1 a3 b3
        t2 = _shuffle(builder, v[2], v[3], [0, 4, 2, 6])  # c0 d0 c2 d2
        t3 = _shuffle(builder, v[2], v[3], [1, 5, 3, 7])  # c1 d1 c3 d3
        cols = (_shuffle(builder, t0, t2, [0, 1, 4, 5]), _shuffle(builder, t1, t3, [0, 1, 4, 5]),
                _shuffle(builder, t0, t2, [2, 3, 6, 7]), _shuffle(builder, t1, t3, [2, 3, 6, 7]))
        for j in range(4):
            _vstore(builder, bp, builder.add(d0, builder.mul(d1, _k(j))), cols[j])
        return context.get_dummy_value()
    return types.void(A, src, ss, B, dst, ds), codegen


_I32 = ir.IntType(32)
_VI = ir.VectorType(_I32, 4)


def _c1d_dtype(ty, dtype) -> bool:
    return _c1d(ty) and ty.dtype == dtype


@intrinsic
def codes4(typingctx, A, src, ss, ck, v, nv, kk, Cd, dst, ds):
    """A 4 x 4 block of evidence, rows ``A[src + i ss + j]`` (i < 4, variables v + j): the
    evidence check of ``_numba_entry.rows_ok`` on each cell against the table ``ck`` (4 nv
    doubles: lowest, highest, 1 for a code, 1 where NaN is allowed) and the int32 codes
    (NaN: ``kk[v + j]``, else the value truncated) stored transposed, ``Cd[dst + j ds + i]``.
    Returns an int64, 0 when all 16 cells pass. Codes of cells that fail or of real-valued
    variables are whatever the conversion gives (never read)."""
    if not (_c1d(A, ck) and _c1d_dtype(kk, types.int32) and _c1d_dtype(Cd, types.int32)
            and _ints(src, ss, v, nv, dst, ds)):
        return None

    def codegen(context, builder, sig, args):
        ap = _data(context, builder, sig.args[0], args[0])
        cp = _data(context, builder, sig.args[3], args[3])
        kp = _data(context, builder, sig.args[6], args[6])
        op = _data(context, builder, sig.args[7], args[7])
        s0, s1, v0, nvv, d0, d1 = (_i64(context, builder, sig, args, q) for q in (1, 2, 4, 5, 8, 9))
        lo = _vload(builder, cp, v0)
        hi = _vload(builder, cp, builder.add(nvv, v0))
        ig = _vload(builder, cp, builder.add(builder.mul(nvv, _k(2)), v0))
        nk = _vload(builder, cp, builder.add(builder.mul(nvv, _k(3)), v0))
        kv = builder.load(builder.bitcast(builder.gep(kp, [v0]), _VI.as_pointer()), align=4)
        two52 = ir.Constant(_V, [4503599627370496.0] * 4)
        zero = ir.Constant(_V, [0.0] * 4)
        nan_ok = builder.fcmp_unordered("!=", nk, zero)  # chk != 0.0
        bad = ir.Constant(ir.VectorType(ir.IntType(1), 4), [0] * 4)
        rows = []
        for i in range(4):
            x = _vload(builder, ap, builder.add(s0, builder.mul(s1, _k(i))))
            inr = builder.and_(builder.fcmp_ordered(">=", x, lo), builder.fcmp_ordered("<=", x, hi))
            m = builder.select(builder.fcmp_ordered("<", x, two52), x, two52)
            di = builder.fmul(m, ig)
            whole = builder.fcmp_ordered("==", builder.fsub(builder.fadd(di, two52), two52), di)
            isnan = builder.fcmp_unordered("uno", x, x)
            ok = builder.or_(builder.and_(inr, whole), builder.and_(isnan, nan_ok))
            bad = builder.or_(bad, builder.not_(ok))
            rows.append(builder.select(isnan, kv, builder.fptosi(x, _VI)))
        t0 = _shuffle(builder, rows[0], rows[1], [0, 4, 2, 6])
        t1 = _shuffle(builder, rows[0], rows[1], [1, 5, 3, 7])
        t2 = _shuffle(builder, rows[2], rows[3], [0, 4, 2, 6])
        t3 = _shuffle(builder, rows[2], rows[3], [1, 5, 3, 7])
        cols = (_shuffle(builder, t0, t2, [0, 1, 4, 5]), _shuffle(builder, t1, t3, [0, 1, 4, 5]),
                _shuffle(builder, t0, t2, [2, 3, 6, 7]), _shuffle(builder, t1, t3, [2, 3, 6, 7]))
        for j in range(4):
            at = builder.gep(op, [builder.add(d0, builder.mul(d1, _k(j)))])
            builder.store(cols[j], builder.bitcast(at, _VI.as_pointer()), align=4)
        mask = builder.bitcast(bad, ir.IntType(4))
        return builder.zext(mask, _I64)
    return types.int64(A, src, ss, ck, v, nv, kk, Cd, dst, ds), codegen


def _host_has_avx2() -> bool:
    try:
        from llvmlite import binding as llvm
        return "+avx2" in llvm.get_host_cpu_features().flatten().split(",")
    except Exception:  # pragma: no cover - no feature string: take the portable code
        return False


#: Whether the table lookups below use AVX2's ``vpermd`` (else one load per row).
PERMD = _host_has_avx2()
_V8 = ir.VectorType(_I32, 8)
_VL = ir.VectorType(_I64, 4)


def _lookup8(context, builder, tb, t0, cd, at):
    """The 4 doubles ``tb[t0 + code]`` for the 4 codes ``cd[at .. at + 4]`` (each < 8; the
    table's 8 doubles from ``t0`` are readable): two ``vpermd`` of the table's halves and a
    select on code >= 4, or (no AVX2) four loads."""
    if not PERMD:
        g = ir.Constant(_V, None)
        for lane in range(4):
            x = builder.load(builder.gep(cd, [builder.add(at, _k(lane))]))
            v = builder.load(builder.gep(tb, [builder.add(t0, builder.sext(x, _I64))]))
            g = builder.insert_element(g, v, ir.Constant(_I32, lane))
        return g
    permd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_V8, (_V8, _V8)),
                                           "llvm.x86.avx2.permd")
    lo = builder.bitcast(_vload(builder, tb, t0), _V8)
    hi = builder.bitcast(_vload(builder, tb, builder.add(t0, _k(4))), _V8)
    c4 = builder.load(builder.bitcast(builder.gep(cd, [at]), _VI.as_pointer()), align=4)
    c = builder.zext(c4, _VL)
    low = builder.and_(c, ir.Constant(_VL, [3] * 4))
    pair = builder.add(builder.mul(low, ir.Constant(_VL, [0x200000002] * 4)),
                       ir.Constant(_VL, [0x100000000] * 4))  # dwords 2c, 2c + 1 of double c
    idx = builder.bitcast(pair, _V8)
    a = builder.bitcast(builder.call(permd, (lo, idx)), _V)
    b = builder.bitcast(builder.call(permd, (hi, idx)), _V)
    return builder.select(builder.icmp_unsigned(">=", c, ir.Constant(_VL, [4] * 4)), b, a)


@intrinsic
def blk_catprod8(typingctx, cidx, a0, a1, var, tptr8, tab8, code, R, off, V, o):
    """:func:`blk_catprod` on tables of 8 doubles per leaf (``tab8[tptr8[c]:]``, the leaf's
    k + 1 entries then padding; every leaf with k + 1 <= 8): the lookups by ``vpermd``, four
    rows at a time, the same products in the same order (the same bits)."""
    if not (_c1d(cidx, var, tptr8, tab8, code, V) and _ints(a0, a1, R, off, o)):
        return None

    def codegen(context, builder, sig, args):
        ci = _data(context, builder, sig.args[0], args[0])
        vr = _data(context, builder, sig.args[3], args[3])
        tp = _data(context, builder, sig.args[4], args[4])
        tb = _data(context, builder, sig.args[5], args[5])
        cd = _data(context, builder, sig.args[6], args[6])
        vp = _data(context, builder, sig.args[9], args[9])
        e0, e1, Rv, ov, out = (_i64(context, builder, sig, args, q) for q in (1, 2, 7, 8, 10))
        acc = _accs(builder, 1.0)
        with _edges(context, builder, e0, e1) as (e, _):
            c = builder.load(builder.gep(ci, [e]))
            cbase = builder.add(builder.mul(builder.load(builder.gep(vr, [c])), Rv), ov)
            t0 = builder.load(builder.gep(tp, [c]))
            for k in range(_NV):
                g = _lookup8(context, builder, tb, t0, cd, builder.add(cbase, _k(4 * k)))
                builder.store(builder.fmul(builder.load(acc[k]), g), acc[k])
        for k in range(_NV):
            _vstore(builder, vp, builder.add(out, _k(4 * k)), builder.load(acc[k]))
        return context.get_dummy_value()
    return types.void(cidx, a0, a1, var, tptr8, tab8, code, R, off, V, o), codegen


@intrinsic
def blk_catleaf8(typingctx, t0, tab8, code, x0, V, o):
    """V[o + j] = tab8[t0 + code[x0 + j]], j < 16: a categorical leaf's rows looked up as in
    :func:`blk_catprod8`."""
    if not (_c1d(tab8, code, V) and _ints(t0, x0, o)):
        return None

    def codegen(context, builder, sig, args):
        tb = _data(context, builder, sig.args[1], args[1])
        cd = _data(context, builder, sig.args[2], args[2])
        vp = _data(context, builder, sig.args[4], args[4])
        tv, xv, out = (_i64(context, builder, sig, args, q) for q in (0, 3, 5))
        for k in range(_NV):
            g = _lookup8(context, builder, tb, tv, cd, builder.add(xv, _k(4 * k)))
            _vstore(builder, vp, builder.add(out, _k(4 * k)), g)
        return context.get_dummy_value()
    return types.void(t0, tab8, code, x0, V, o), codegen
