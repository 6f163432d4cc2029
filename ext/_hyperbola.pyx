# cython: language_level=3
"""Private compiled kernels of the GPR hyperbola detector, wrapped by
:mod:`demine.hyperbola`.

``bin_traces``
    Sequentially averages radar traces into bins of equal path length along the
    antenna's track (handles irregular trace spacing, stops and reversals).  It
    carries its state (partial bin, last position, path length) in small arrays
    owned by the caller, so a line cut into any chunks gives bit-identical bins.

``column_order_stats``
    Two order statistics of every column of a float32 block (quickselect on a
    transposed copy): the selection behind the noise and clutter quantiles,
    several times cheaper than ``np.partition`` along axis 0.

``hyperbola_scan``
    For every candidate apex bin, every apex time and every velocity / flat-top
    width of a small grid, stacks the noise-normalised B-scan along the
    diffraction curve ``t(x) = t_s + sqrt(tau^2 + (2 max(|x - x0| - w, 0) / v)^2)``
    (a "hyperbola Hough transform" on amplitudes, i.e. a matched filter) and
    keeps the best template per apex bin.  Apex cells whose local energy is
    below the prescreen threshold are skipped.

State layout of ``bin_traces`` (``st``, float64, length 10):
    0 has a previous position  1 last x  2 last y  3 path length s
    4 current bin index  5 traces in bin  6 sum s  7 sum x  8 sum y  9 sum t
``acc`` (float64, n_samples): running sum of the traces of the current bin.
"""

from cython.parallel cimport prange, threadid
from libc.math cimport sqrt, fabs, floor, isfinite, NAN, INFINITY
from libc.stdlib cimport malloc, free

import numpy as np

cdef extern from *:
    """
    #include <math.h>
    /* The curve's sample times t_k = (t_s + sqrt(tau^2 + q2_i)) / dt of one
       template, in one loop the compiler vectorises (the scan's divider-bound
       part); chosen at load time for the CPU (AVX: four doubles per square
       root and division).  The same IEEE operations in any width, so the
       times are bit for bit those of the scalar loop: no fused multiply-add
       is enabled for this function. */
    #if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(__clang__)
    __attribute__((target_clones("avx", "default")))
    #endif
    static void demine_curve_times(const double* q2, Py_ssize_t n, double tau2,
                                   double t_surf, double dt, double* out) {
        for (Py_ssize_t i = 0; i < n; i++)
            out[i] = (t_surf + sqrt(tau2 + q2[i])) / dt;
    }
    """
    void _curve_times "demine_curve_times"(const double* q2, Py_ssize_t n, double tau2,
                                            double t_surf, double dt, double* out) noexcept nogil

NST = 10


def bin_traces(const float[:, ::1] tr, const double[::1] x, const double[::1] y,
               const double[::1] t, double ds, double[::1] st, double[::1] acc,
               float[:, ::1] out, double[:, ::1] meta, long long[::1] gidx):
    """Add traces to path-length bins; write each completed bin.

    ``out[m]`` is the mean trace of the m-th completed bin, ``meta[m]`` its mean
    (s, x, y, t) and ``gidx[m]`` its bin index ``floor(s / ds)``.  Returns the
    number of bins completed (at most ``len(tr)``).  Non-finite samples count 0.
    """
    cdef Py_ssize_t n = tr.shape[0], ns = tr.shape[1], i, k, m = 0
    cdef double dx, dy, s, g, c, inv
    cdef float v
    with nogil:
        for i in range(n):
            if st[0] != 0.0:
                dx = x[i] - st[1]
                dy = y[i] - st[2]
                st[3] = st[3] + sqrt(dx * dx + dy * dy)
            st[0] = 1.0
            st[1] = x[i]
            st[2] = y[i]
            s = st[3]
            g = floor(s / ds)
            if st[5] > 0.0 and g != st[4]:
                c = st[5]
                inv = 1.0 / c
                for k in range(ns):
                    out[m, k] = <float>(acc[k] * inv)
                    acc[k] = 0.0
                meta[m, 0] = st[6] * inv
                meta[m, 1] = st[7] * inv
                meta[m, 2] = st[8] * inv
                meta[m, 3] = st[9] * inv
                gidx[m] = <long long>st[4]
                m += 1
                st[5] = 0.0
                st[6] = 0.0
                st[7] = 0.0
                st[8] = 0.0
                st[9] = 0.0
            st[4] = g
            st[5] = st[5] + 1.0
            st[6] = st[6] + s
            st[7] = st[7] + x[i]
            st[8] = st[8] + y[i]
            st[9] = st[9] + t[i]
            for k in range(ns):
                v = tr[i, k]
                if isfinite(v):
                    acc[k] = acc[k] + v
    return m


def flush_bin(double[::1] st, double[::1] acc, float[:, ::1] out, double[:, ::1] meta,
              long long[::1] gidx):
    """Emit the partial bin (end of line); returns 0 or 1."""
    cdef Py_ssize_t k, ns = acc.shape[0]
    cdef double inv
    if st[5] <= 0.0:
        return 0
    inv = 1.0 / st[5]
    for k in range(ns):
        out[0, k] = <float>(acc[k] * inv)
        acc[k] = 0.0
    meta[0, 0] = st[6] * inv
    meta[0, 1] = st[7] * inv
    meta[0, 2] = st[8] * inv
    meta[0, 3] = st[9] * inv
    gidx[0] = <long long>st[4]
    for k in range(5, NST):
        st[k] = 0.0
    return 1


cdef inline void _swap(float* x, Py_ssize_t i, Py_ssize_t j) noexcept nogil:
    cdef float t = x[i]
    x[i] = x[j]
    x[j] = t


cdef float _select(float* x, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """The k-th smallest of ``x[:n]`` (NaN-free), reordering ``x`` so that
    ``x[:k] <= x[k] <= x[k+1:]``.

    Quickselect with a median-of-three pivot and a branch-free Lomuto
    partition (on noise, the branches of a classic partition are mispredicted
    half the time, which made it slower than NumPy's vectorised select); a
    range with nothing below the pivot is split once more at ``== pivot``, so
    runs of equal values (zeros) stay linear."""
    cdef Py_ssize_t lo = 0, hi = n - 1, i, j, mid
    cdef float p, v
    if k == 0 and n > 0:
        # the smallest (the upper neighbour of a quantile, selected from the
        # values above the lower one): one scan, no partitioning
        j = 0
        for i in range(1, n):
            if x[i] < x[j]:
                j = i
        _swap(x, 0, j)
        return x[0]
    while hi > lo:
        mid = lo + (hi - lo) // 2
        if x[mid] < x[lo]:
            _swap(x, mid, lo)
        if x[hi] < x[lo]:
            _swap(x, hi, lo)
        if x[mid] < x[hi]:
            _swap(x, hi, mid)
        # now x[lo] <= x[hi] <= x[mid]: the median of three is the pivot, at hi
        p = x[hi]
        i = lo
        for j in range(lo, hi):
            v = x[j]
            x[j] = x[i]
            x[i] = v
            i += v < p
        _swap(x, i, hi)
        # x[lo:i] < p == x[i] <= x[i+1:hi+1]
        if k == i:
            return p
        if k < i:
            hi = i - 1
            continue
        if i == lo:
            # nothing below the pivot: gather the values equal to it
            i = lo + 1
            for j in range(lo + 1, hi + 1):
                v = x[j]
                x[j] = x[i]
                x[i] = v
                i += v == p
            if k < i:
                return p
        else:
            i += 1
        lo = i
    return x[k]


def column_order_stats(const float[:, ::1] a, Py_ssize_t k0, Py_ssize_t k1,
                       float[::1] out0, float[::1] out1):
    """``out0[c]``, ``out1[c]``: the ``k0``-th and ``k1``-th smallest values
    (0-based, ``0 <= k0 <= k1 < n``) of column ``c`` of ``a``; NaN for a column
    that holds a NaN (as ``np.quantile``/``np.median`` give).  Exact order
    statistics, so the result does not depend on the selection algorithm."""
    cdef Py_ssize_t n = a.shape[0], m = a.shape[1], r, c, c0, c1, ld
    cdef Py_ssize_t T = 16   # columns per tile: the transposed tile stays in L1
    cdef float* buf
    cdef float* x
    cdef float v
    cdef char bad[16]
    if not (0 <= k0 <= k1 < n):
        raise ValueError(f"order statistics {k0}, {k1} of {n} values")
    if out0.shape[0] != m or out1.shape[0] != m:
        raise ValueError("output length differs from the number of columns")
    ld = n + 1 + (16 - n % 16)   # no power-of-two stride between the columns
    buf = <float*>malloc(T * ld * sizeof(float))
    if buf == NULL:
        raise MemoryError()
    with nogil:
        c0 = 0
        while c0 < m:
            c1 = c0 + T if c0 + T < m else m
            for c in range(c1 - c0):
                bad[c] = 0
            for r in range(n):   # transpose a tile: each column contiguous
                for c in range(c0, c1):
                    v = a[r, c]
                    if v != v:
                        bad[c - c0] = 1
                    buf[(c - c0) * ld + r] = v
            for c in range(c0, c1):
                if bad[c - c0]:
                    out0[c] = NAN
                    out1[c] = NAN
                    continue
                x = buf + (c - c0) * ld
                out0[c] = _select(x, n, k0)
                if k1 == k0:
                    out1[c] = out0[c]
                else:
                    out1[c] = _select(x + k0 + 1, n - k0 - 1, k1 - k0 - 1)
            c0 = c1
    free(buf)


cdef void _quantile_at(Py_ssize_t n, double q, Py_ssize_t* k0, Py_ssize_t* k1,
                       double* gamma) noexcept nogil:
    """The order statistics and weight of NumPy's "linear" quantile ``q`` of
    ``n`` values (``np.quantile``'s virtual index and neighbours)."""
    cdef double vi = (n - 1) * q
    cdef Py_ssize_t prev = <Py_ssize_t>floor(vi)
    cdef Py_ssize_t nxt = prev + 1
    if vi >= n - 1:
        prev = -1
        nxt = -1
    elif vi < 0:
        prev = 0
        nxt = 0
    gamma[0] = vi - prev
    k0[0] = prev % n if prev >= 0 else n + prev
    k1[0] = nxt % n if nxt >= 0 else n + nxt


cdef inline float _lerp(float lo, float hi, double gamma) noexcept nogil:
    """NumPy's quantile interpolation between two float32 order statistics
    (weights rounded to float32, as a Python-float weight is)."""
    cdef float d = hi - lo
    if gamma >= 0.5:
        return hi - d * <float>(1.0 - gamma)
    return lo + d * <float>gamma


cdef inline float _fmax(float a, float b) noexcept nogil:
    """``np.maximum`` (a NaN in either wins)."""
    if a != a:
        return a
    if b != b:
        return b
    return a if a >= b else b


cdef Py_ssize_t _split(float* x, Py_ssize_t n, float g) noexcept nogil:
    """Reorder ``x[:n]`` (NaN-free) so that ``x[:i] <= g < x[i:]``; return ``i``."""
    cdef Py_ssize_t i = 0, j
    cdef float v
    for j in range(n):
        v = x[j]
        x[j] = x[i]
        x[i] = v
        i += v <= g
    return i


cdef float _pair(float* x, Py_ssize_t n, Py_ssize_t k0, Py_ssize_t k1, float g,
                 float* upper) noexcept nogil:
    """The ``k0``-th smallest of ``x[:n]`` (NaN-free), and the ``k1``-th
    (``k1`` is ``k0`` or ``k0 + 1``) in ``upper``.  ``g`` (NaN: none) is a guess
    of the ``k1``-th, e.g. the previous window's: the values are first split
    around it, so the selection runs on the ~``k1`` values at or below it and
    the ``k1``-th is the smallest of the few between.  Exact order statistics
    whatever the guess (a bad one costs one pass more)."""
    cdef Py_ssize_t i = -1
    cdef float lo, hi
    if g == g and n >= 32:
        i = _split(x, n, g)
        if k0 < i:
            lo = _select(x, i, k0)
        else:
            lo = _select(x + i, n - i, k0 - i)
    else:
        lo = _select(x, n, k0)
    hi = lo
    if k1 != k0:
        if k0 + 1 < i:
            # x[k0 + 1:i] <= g < x[i:]: the next value is the smallest of those
            hi = _select(x + k0 + 1, i - k0 - 1, 0)
        else:
            hi = _select(x + k0 + 1, n - k0 - 1, 0)
    upper[0] = hi
    return lo


cdef float _pick(float* x, Py_ssize_t n, Py_ssize_t k0, Py_ssize_t k1,
                 double gamma, float* guess) noexcept nogil:
    """The interpolated quantile of ``x[:n]`` (NaN-free) from its order
    statistics ``k0 <= k1 <= k0 + 1`` (reorders ``x``); ``guess[0]``: a guess
    of the ``k1``-th (see ``_pair``), replaced by it."""
    cdef float hi
    cdef float lo = _pair(x, n, k0, k1, guess[0], &hi)
    guess[0] = hi
    return _lerp(lo, hi, gamma)


cdef struct _Rows:
    # the rows of a block: row r is rows[r][c] for columns outside the zone
    # [z0, z1), and zrows[r][c - z0] inside it (nz = 0: no zone)
    const float** rows
    const float** zrows
    Py_ssize_t z0
    Py_ssize_t z1


cdef inline Py_ssize_t _segment(Py_ssize_t c0, Py_ssize_t c1, Py_ssize_t z0, Py_ssize_t z1,
                                Py_ssize_t seg, Py_ssize_t* a, Py_ssize_t* b) noexcept nogil:
    """Part ``seg`` (0: before the zone, 1: in it, 2: after it) of the columns
    ``[c0, c1)``, in ``[a, b)``; returns the column offset of its values (0, or
    ``z0`` in the zone)."""
    if seg == 0:
        a[0] = c0
        b[0] = c1 if c1 < z0 else z0
        return 0
    if seg == 1:
        a[0] = c0 if c0 > z0 else z0
        b[0] = c1 if c1 < z1 else z1
        return z0
    a[0] = c0 if c0 > z1 else z1
    b[0] = c1
    return 0


cdef int _window_scales(_Rows blk, Py_ssize_t nb, _Rows cl, Py_ssize_t nc, Py_ssize_t ns,
                        double q, double noise_scale, double clutter_scale, bint robust,
                        double flat_level, Py_ssize_t half, const float* zone, bint has_zone,
                        double noise_floor, float* out, float* g0, float* g1,
                        float* g2) except -1:
    """The body of ``window_scales`` on blocks given by their rows (see
    ``_Rows``): the same values in the same places, whichever way the caller
    holds them.  ``g0``, ``g1``, ``g2``: the 3 rows of guesses."""
    cdef Py_ssize_t r, c, c0, c1, ld, nd, j, lo_j, hi_j, seg, sa, sb, off
    cdef Py_ssize_t T = 16
    cdef Py_ssize_t nk0 = 0, nk1 = 0, ck0 = 0, ck1 = 0, mk0 = 0, mk1 = 0
    cdef double ngam = 0.0, cgam = 0.0, fl
    cdef float v, mx = 0.0, med, lo, hi, s, floor32
    cdef bint anynan = False
    cdef char bad[16]
    cdef float* buf
    cdef float* x
    cdef float* snoise
    cdef float* sclut
    cdef const float** P
    cdef const float* row
    cdef const float* row1
    nd = nb - 1
    ld = (nd if nd > nc else nc) + 1
    ld = ld + (16 - ld % 16)
    buf = <float*>malloc((T * ld + 2 * ns) * sizeof(float))
    if buf == NULL:
        raise MemoryError()
    snoise = buf + T * ld
    sclut = snoise + ns
    with nogil:
        if nd > 0:
            _quantile_at(nd, q, &nk0, &nk1, &ngam)
        if nc > 0:
            _quantile_at(nc, q, &ck0, &ck1, &cgam)
            mk1 = nc // 2
            mk0 = mk1 - 1 if nc % 2 == 0 else mk1
        # the largest |blk| (NaN if any)
        for r in range(nb):
            for seg in range(3):
                off = _segment(0, ns, blk.z0, blk.z1, seg, &sa, &sb)
                if sb <= sa:
                    continue
                row = (blk.zrows if seg == 1 else blk.rows)[r]
                for c in range(sa, sb):
                    v = fabs(row[c - off])
                    if v != v:
                        anynan = True
                    elif v > mx:
                        mx = v
        c0 = 0
        while c0 < ns:
            c1 = c0 + T if c0 + T < ns else ns
            # (1) noise: |differences| of neighbouring rows
            if nd > 0:
                for c in range(c1 - c0):
                    bad[c] = 0
                for seg in range(3):
                    off = _segment(c0, c1, blk.z0, blk.z1, seg, &sa, &sb)
                    if sb <= sa:
                        continue
                    P = blk.zrows if seg == 1 else blk.rows
                    for r in range(nd):
                        row = P[r]
                        row1 = P[r + 1]
                        for c in range(sa, sb):
                            v = fabs(row1[c - off] - row[c - off])
                            if v != v:
                                bad[c - c0] = 1
                            buf[(c - c0) * ld + r] = v
                for c in range(c0, c1):
                    if bad[c - c0]:
                        snoise[c] = NAN
                    else:
                        snoise[c] = _pick(buf + (c - c0) * ld, nd, nk0, nk1, ngam,
                                          &g0[c]) * <float>noise_scale
            else:
                for seg in range(3):
                    off = _segment(c0, c1, blk.z0, blk.z1, seg, &sa, &sb)
                    if sb <= sa:
                        continue
                    row = (blk.zrows if seg == 1 else blk.rows)[0]
                    for c in range(sa, sb):
                        snoise[c] = <float>fabs(row[c - off]) * <float>clutter_scale
            # (2) clutter level
            if nc > 0:
                for c in range(c1 - c0):
                    bad[c] = 0
                for seg in range(3):
                    off = _segment(c0, c1, cl.z0, cl.z1, seg, &sa, &sb)
                    if sb <= sa:
                        continue
                    P = cl.zrows if seg == 1 else cl.rows
                    for r in range(nc):
                        row = P[r]
                        for c in range(sa, sb):
                            v = row[c - off]
                            if v != v:
                                bad[c - c0] = 1
                            buf[(c - c0) * ld + r] = v if robust else fabs(v)
                for c in range(c0, c1):
                    if bad[c - c0]:
                        sclut[c] = NAN
                        continue
                    x = buf + (c - c0) * ld
                    if robust:
                        lo = _pair(x, nc, mk0, mk1, g1[c], &hi)
                        g1[c] = hi
                        if mk1 != mk0:
                            med = (lo + hi) / <float>2.0
                        else:
                            med = lo
                        # the deviations, in place (their order does not matter)
                        for r in range(nc):
                            x[r] = fabs(x[r] - med)
                        s = _pick(x, nc, ck0, ck1, cgam, &g2[c]) * <float>clutter_scale
                        sclut[c] = _fmax(s, <float>flat_level * <float>fabs(med))
                    else:
                        sclut[c] = _pick(x, nc, ck0, ck1, cgam, &g2[c]) * <float>clutter_scale
            c0 = c1
        fl = noise_floor * <double>(NAN if anynan else mx)
        floor32 = <float>fl
        for c in range(ns):
            s = snoise[c]
            if nc > 0:
                # the largest clutter level within +- half rows (edges repeated)
                lo_j = c - half
                hi_j = c + half
                v = sclut[0 if lo_j < 0 else lo_j]
                for j in range(lo_j + 1, hi_j + 1):
                    v = _fmax(v, sclut[0 if j < 0 else (ns - 1 if j >= ns else j)])
                if has_zone:
                    v = v * zone[c]
                s = _fmax(s, v)
            s = _fmax(s, floor32)
            out[c] = s if s > 0 else <float>INFINITY
    free(buf)
    return 0


def window_scales(const float[:, ::1] blk, const float[:, ::1] cl, double q,
                  double noise_scale, double clutter_scale, bint robust,
                  double flat_level, Py_ssize_t half, const float[::1] zone,
                  double noise_floor, float[::1] out, float[:, ::1] guess):
    """Noise scale of every time row (column) of one window of the detector,
    as ``GPRDetector._window`` computes it with NumPy, in one pass:

    * noise: the ``q`` quantile of ``|blk[i + 1] - blk[i]|`` (np.quantile's
      "linear" method) times ``noise_scale`` (``|blk[0]| * clutter_scale``
      for a single row);
    * clutter (``cl`` with rows; none when it has no rows): the ``q``
      quantile of ``|cl - median(cl)|`` times ``clutter_scale``, at least
      ``flat_level * |median|`` (``robust``), or of ``|cl|`` times
      ``clutter_scale``; then the largest over ``half`` rows either side
      (edges repeated) and times ``zone`` (when it has values);
    * ``out`` = the larger of the two and ``noise_floor * max |blk|``, and
      ``inf`` where that is not positive (NaN included).

    Every step is the float32 arithmetic of NumPy's, so the scales are the
    same bit for bit (the twin is ``demine.hyperbola._window_scales_numpy``).

    ``guess`` (3 x columns, NaN: none) holds guesses of the upper order
    statistic of the noise quantile, the clutter median and the clutter
    quantile of every column, and receives this window's (pass the same array
    from window to window: neighbouring windows share most of their values,
    and the selection then runs on a few of them); any guess gives the same
    scales.
    """
    cdef Py_ssize_t nb = blk.shape[0], ns = blk.shape[1], nc = cl.shape[0], r
    cdef _Rows b, k
    if nb < 1:
        raise ValueError("window_scales: no rows")
    if out.shape[0] != ns or (nc > 0 and cl.shape[1] != ns):
        raise ValueError("window_scales: column counts differ")
    if zone.shape[0] != 0 and zone.shape[0] != ns:
        raise ValueError("window_scales: zone length differs from the number of columns")
    if guess.shape[0] != 3 or guess.shape[1] != ns:
        raise ValueError("window_scales: guess must have 3 rows of one value per column")
    b.rows = <const float**>malloc((nb + nc + 1) * sizeof(float*))
    if b.rows == NULL:
        raise MemoryError()
    k.rows = b.rows + nb
    b.zrows = k.zrows = NULL
    b.z0 = b.z1 = k.z0 = k.z1 = 0
    for r in range(nb):
        b.rows[r] = &blk[r, 0]
    for r in range(nc):
        k.rows[r] = &cl[r, 0]
    try:
        _window_scales(b, nb, k, nc, ns, q, noise_scale, clutter_scale, robust, flat_level,
                       half, &zone[0] if zone.shape[0] else NULL, zone.shape[0] != 0,
                       noise_floor, &out[0], &guess[0, 0], &guess[1, 0], &guess[2, 0])
    finally:
        free(b.rows)


def window_scales_rows(const float[:, ::1] a, Py_ssize_t lo, Py_ssize_t hi,
                       const long long[::1] cl_rows, Py_ssize_t z0,
                       const float[:, ::1] zb, const float[:, ::1] zc, double q,
                       double noise_scale, double clutter_scale, bint robust,
                       double flat_level, Py_ssize_t half, const float[::1] zone,
                       double noise_floor, float[::1] out, float[:, ::1] guess):
    """``window_scales`` of the block of rows ``a[lo:hi]`` and the clutter rows
    ``a[cl_rows]``, each with its columns ``[z0, z0 + zb.shape[1])`` taken from
    ``zb`` (a row per block row) and ``zc`` (a row per clutter row) instead:
    the detector's windows without copying them (only the surface zone, which
    the detector projects per window, is given apart).  The same scales, bit
    for bit, as ``window_scales`` of the blocks put together."""
    cdef Py_ssize_t ns = a.shape[1], nb = hi - lo, nc = cl_rows.shape[0], nz = zb.shape[1]
    cdef Py_ssize_t r, ri
    cdef _Rows b, k
    if not (0 <= lo < hi <= a.shape[0]):
        raise ValueError("window_scales_rows: no rows, or rows beyond the array")
    if out.shape[0] != ns or guess.shape[0] != 3 or guess.shape[1] != ns:
        raise ValueError("window_scales_rows: out and guess need one value per column")
    if zone.shape[0] != 0 and zone.shape[0] != ns:
        raise ValueError("window_scales_rows: zone length differs from the number of columns")
    if nz and (not (0 <= z0 and z0 + nz <= ns) or zb.shape[0] != nb
               or (nc and (zc.shape[0] != nc or zc.shape[1] != nz))):
        raise ValueError("window_scales_rows: the zone's rows or columns do not match")
    for r in range(nc):
        if not (0 <= cl_rows[r] < a.shape[0]):
            raise ValueError("window_scales_rows: a clutter row beyond the array")
    b.rows = <const float**>malloc(2 * (nb + nc + 1) * sizeof(float*))
    if b.rows == NULL:
        raise MemoryError()
    k.rows = b.rows + nb
    b.zrows = k.rows + nc
    k.zrows = b.zrows + nb
    b.z0 = k.z0 = z0 if nz else 0
    b.z1 = k.z1 = z0 + nz if nz else 0
    for r in range(nb):
        b.rows[r] = &a[lo + r, 0]
        if nz:
            b.zrows[r] = &zb[r, 0]
    for r in range(nc):
        ri = cl_rows[r]
        k.rows[r] = &a[ri, 0]
        if nz:
            k.zrows[r] = &zc[r, 0]
    try:
        _window_scales(b, nb, k, nc, ns, q, noise_scale, clutter_scale, robust, flat_level,
                       half, &zone[0] if zone.shape[0] else NULL, zone.shape[0] != 0,
                       noise_floor, &out[0], &guess[0, 0], &guess[1, 0], &guess[2, 0])
    finally:
        free(b.rows)


cdef inline bint _less(double a, double b) noexcept nogil:
    """NumPy's sort order of doubles (NaN last)."""
    return a < b or (b != b and a == a)


cdef Py_ssize_t _search_d(const double* x, Py_ssize_t n, double key, bint right) noexcept nogil:
    """``np.searchsorted(x[:n], key, side)`` for one key: NumPy's own bisection."""
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = lo + ((hi - lo) >> 1)
        if (not _less(key, x[mid])) if right else _less(x[mid], key):
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef Py_ssize_t _search_i(const long long* x, Py_ssize_t n, long long key,
                          bint right) noexcept nogil:
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = lo + ((hi - lo) >> 1)
        if (x[mid] <= key) if right else (x[mid] < key):
            lo = mid + 1
        else:
            hi = mid
    return lo


def scan_ranges(const long long[::1] g, const double[::1] pos, Py_ssize_t j0, Py_ssize_t j1,
                long long wa, long long wp, double dx, long long[:, ::1] idx):
    """The bin ranges ``hyperbola_scan`` takes, for apex bins ``j0 <= j < j1``
    of the first ``n = len(pos)`` bins (bin indices ``g``, positions ``pos``):
    ``idx[0, j]:idx[1, j]`` the bins with ``|g - g[j]| <= wa`` and
    ``idx[2, j]:idx[3, j]`` those of them within ``wp`` bins whose position is
    within ``dx`` (+ 1e-12) of bin j's; each the ``np.searchsorted`` the
    detector did (on the bins of ``wp``, whose positions bisect as NumPy's)."""
    cdef Py_ssize_t n = pos.shape[0], j, a, b
    if g.shape[0] < n or idx.shape[0] != 4 or idx.shape[1] < n or not (0 <= j0 <= j1 <= n):
        raise ValueError("scan_ranges: inconsistent sizes")
    if n == 0:
        return
    with nogil:
        for j in range(j0, j1):
            idx[0, j] = _search_i(&g[0], n, g[j] - wa, False)
            idx[1, j] = _search_i(&g[0], n, g[j] + wa, True)
            a = _search_i(&g[0], n, g[j] - wp, False)
            b = _search_i(&g[0], n, g[j] + wp, True)
            idx[2, j] = a + _search_d(&pos[a], b - a, pos[j] - dx - 1e-12, False)
            idx[3, j] = a + _search_d(&pos[a], b - a, pos[j] + dx + 1e-12, True)


cdef inline double _interp(const float* a, Py_ssize_t ns, Py_ssize_t i,
                           double tk) noexcept nogil:
    cdef Py_ssize_t k0 = <Py_ssize_t>tk
    cdef double f = tk - k0
    return (1.0 - f) * a[i * ns + k0] + f * a[i * ns + k0 + 1]


cdef void _scan_bin(Py_ssize_t j, const float* a, Py_ssize_t ns, const double* pos,
                    const long long* lo, const long long* hi, const double* vel,
                    Py_ssize_t nv, const double* widths, Py_ssize_t nw, double t_surf,
                    double dt, Py_ssize_t k_lo, Py_ssize_t k_hi, double tan_ap,
                    double ap_min, double ap_max, const long long* plo,
                    const long long* phi, Py_ssize_t pre_dk, double pre_thr,
                    Py_ssize_t min_n, double flat_penalty, double* orow,
                    double* dab, double* colsq) noexcept nogil:
    """The best template of apex bin ``j`` into ``orow`` (8 values); ``dab``:
    scratch of ``(nv * nw + 2) * (hi[j] - lo[j])`` doubles, ``colsq`` of
    ``ns``."""
    cdef Py_ssize_t k, iv, iw, i, kk, cnt, n, ii, m, base, nrow, kmin, kmax, kk0, kk1
    cdef double tau, z, v, w, ap, d, tk, val, sm, sq, S, e, best, p0, q2, fl, thr, ea
    cdef double b_s, b_k, b_v, b_w, b_sem, b_n, b_tau
    cdef double tmax = <double>(ns - 1) - 1e-9
    cdef double* q2s
    cdef double* tks
    cdef Py_ssize_t ia, ib
    cdef bint ready
    best = 0.0
    b_s = 0.0
    b_k = -1.0
    b_v = -1.0
    b_w = -1.0
    b_sem = 0.0
    b_n = 0.0
    b_tau = 0.0
    p0 = pos[j]
    m = hi[j] - lo[j]
    q2s = dab + m
    tks = q2s + nv * nw * m
    ready = False
    # the prescreen's squares summed over its bins, per sample: a window's
    # energy is then a sum of 2 pre_dk + 1 of them (in another order than the
    # exact sum below, which decides the cells near the threshold)
    nrow = phi[j] - plo[j]
    kmin = k_lo - pre_dk if k_lo - pre_dk > 0 else 0
    kmax = k_hi + pre_dk if k_hi + pre_dk < ns else ns
    for kk in range(kmin, kmax):
        colsq[kk] = 0.0
    for i in range(plo[j], phi[j]):
        for kk in range(kmin, kmax):
            colsq[kk] = colsq[kk] + a[i * ns + kk] * a[i * ns + kk]
    for k in range(k_lo, k_hi):
        # prescreen: local energy around the apex cell
        kk0 = k - pre_dk if k - pre_dk > 0 else 0
        kk1 = k + pre_dk + 1 if k + pre_dk + 1 < ns else ns
        if nrow <= 0 or kk1 <= kk0:
            continue
        thr = pre_thr * pre_thr * (nrow * (kk1 - kk0))
        ea = 0.0
        for kk in range(kk0, kk1):
            ea = ea + colsq[kk]
        # sums of the same non-negative terms in two orders differ by far
        # less than 1e-6 relative: only a cell that close to the threshold
        # needs the exact sum (the one the alarms were validated with)
        if ea < thr * (1.0 - 1e-6):
            continue
        if not (ea >= thr * (1.0 + 1e-6)):
            e = 0.0
            cnt = 0
            for i in range(plo[j], phi[j]):
                for kk in range(k - pre_dk, k + pre_dk + 1):
                    if kk >= 0 and kk < ns:
                        e = e + a[i * ns + kk] * a[i * ns + kk]
                        cnt = cnt + 1
            if cnt == 0 or e < pre_thr * pre_thr * cnt:
                continue
        tau = k * dt - t_surf
        if tau <= 0.0:
            continue
        if not ready:
            for ii in range(m):
                dab[ii] = fabs(pos[lo[j] + ii] - p0)
            for iv in range(nv):
                v = vel[iv]
                for iw in range(nw):
                    w = widths[iw]
                    base = (iv * nw + iw) * m
                    for ii in range(m):
                        d = dab[ii] - w
                        if d < 0.0:
                            d = 0.0
                        q2 = 2.0 * d / v
                        q2s[base + ii] = q2 * q2
            ready = True
        for iv in range(nv):
            v = vel[iv]
            z = 0.5 * v * tau
            for iw in range(nw):
                w = widths[iw]
                # the limbs: at least as wide as the flat top, so that a
                # flat event scores no better than it is penalised
                ap = z * tan_ap
                if ap < ap_min:
                    ap = ap_min
                if ap < w:
                    ap = w
                if ap > ap_max:
                    ap = ap_max
                ap = ap + w
                sm = 0.0
                sq = 0.0
                fl = 0.0
                n = 0
                base = (iv * nw + iw) * m
                # the curve's times for the bins from the first to the last
                # within the aperture, then the sums in the original order
                ia = 0
                while ia < m and dab[ia] > ap:
                    ia = ia + 1
                ib = m
                while ib > ia and dab[ib - 1] > ap:
                    ib = ib - 1
                _curve_times(q2s + base + ia, ib - ia, tau * tau, t_surf, dt, tks + ia)
                for ii in range(ia, ib):
                    if dab[ii] > ap:
                        continue
                    i = lo[j] + ii
                    tk = tks[ii]
                    if tk >= tmax:
                        continue
                    if dab[ii] > w:
                        fl = fl + a[i * ns + k]
                    val = _interp(a, ns, i, tk)
                    sm = sm + val
                    sq = sq + val * val
                    n = n + 1
                if n < min_n:
                    continue
                S = sm / sqrt(<double>n)
                # evidence for a diffraction over a flat (specular) event:
                # remove what a horizontal line at the apex time collects
                e = fabs(sm)
                if flat_penalty != 0.0:
                    fl = fl if sm >= 0.0 else -fl
                    if fl > 0.0:
                        e = e - flat_penalty * fl
                e = e / sqrt(<double>n)
                if e > best:
                    best = e
                    b_s = S
                    b_k = k
                    b_v = iv
                    b_w = iw
                    b_sem = sm * sm / (n * sq) if sq > 0.0 else 0.0
                    b_n = n
                    b_tau = tau
    orow[0] = best
    orow[1] = b_s
    orow[2] = b_k
    orow[3] = b_v
    orow[4] = b_w
    orow[5] = b_sem
    orow[6] = b_n
    orow[7] = b_tau


def hyperbola_scan(const float[:, ::1] a, const double[::1] pos,
                   const long long[::1] lo, const long long[::1] hi,
                   Py_ssize_t j0, Py_ssize_t j1,
                   const double[::1] vel, const double[::1] widths,
                   double t_surf, double dt, Py_ssize_t k_lo, Py_ssize_t k_hi,
                   double tan_ap, double ap_min, double ap_max,
                   const long long[::1] plo, const long long[::1] phi,
                   Py_ssize_t pre_dk, double pre_thr, Py_ssize_t min_n,
                   double flat_penalty, double[:, ::1] out, int nthreads=0):
    """Best hyperbola template per apex bin ``j`` in ``[j0, j1)``.

    ``a`` (bins x samples) is the noise-normalised B-scan, ``pos`` the bins'
    path positions (m), ``lo[j]:hi[j]`` the bins within ``ap_max`` of bin j and
    ``plo[j]:phi[j]`` those of its prescreen window.  The aperture is the flat
    top plus limbs of ``min(max(z * tan_ap, ap_min, w), ap_max)`` on each side
    (``lo``/``hi`` must cover ``ap_max + max(widths)``).  Templates are ranked by
    ``(|sum| - flat_penalty * max(0, sign(sum) * flat)) / sqrt(n)`` where
    ``flat`` sums the same traces beyond the flat top (``|x - x0| > w``) along a
    horizontal line at the apex time (the aperture reaches at least ``w`` past
    the flat top):
    a diffraction (hyperbola) scores, a flat specular event (layer,
    ground-bounce or ringing residue) does not.  Apex samples are
    ``k_lo <= k < k_hi``; a cell is scanned when the mean square of ``a`` over
    the prescreen window (those bins, ``k +- pre_dk`` samples) reaches
    ``pre_thr ** 2``.  Row ``out[j - j0]`` receives: |S|, S, apex sample,
    velocity index, width index, semblance, traces used, apex time ``tau``
    (s after ``t_surf``), where S = sum(a along the curve) / sqrt(n); column 0
    holds the ranking score above (|S| when ``flat_penalty`` is 0).
    """
    cdef Py_ssize_t ns = a.shape[1], nv = vel.shape[0], nw = widths.shape[0]
    cdef Py_ssize_t j, mmax = 1, stride
    cdef double* buf
    cdef int nt = nthreads if nthreads > 0 else 1
    # per thread: |x - x0| of the aperture bins and, per (velocity, width), the
    # squared limb term (2 max(|x - x0| - w, 0) / v)^2: they do not depend on
    # the apex time, so they are computed once per apex bin, not per time
    for j in range(j0, j1):
        if hi[j] - lo[j] > mmax:
            mmax = hi[j] - lo[j]
    stride = (nv * nw + 2) * mmax + ns
    if j1 - j0 < 2 * nt:
        nt = 1   # a few bins (the live detector): no thread team to wake
    buf = <double*>malloc(nt * stride * sizeof(double))
    if buf == NULL:
        raise MemoryError()
    if j1 <= j0:
        free(buf)
        return 0
    if nt == 1:
        with nogil:
            for j in range(j0, j1):
                _scan_bin(j, &a[0, 0], ns, &pos[0], &lo[0], &hi[0], &vel[0], nv, &widths[0],
                          nw, t_surf, dt, k_lo, k_hi, tan_ap, ap_min, ap_max, &plo[0],
                          &phi[0], pre_dk, pre_thr, min_n, flat_penalty, &out[j - j0, 0],
                          buf + ns, buf)
    else:
        for j in prange(j0, j1, nogil=True, schedule="dynamic", num_threads=nt):
            _scan_bin(j, &a[0, 0], ns, &pos[0], &lo[0], &hi[0], &vel[0], nv, &widths[0],
                      nw, t_surf, dt, k_lo, k_hi, tan_ap, ap_min, ap_max, &plo[0],
                      &phi[0], pre_dk, pre_thr, min_n, flat_penalty, &out[j - j0, 0],
                      buf + threadid() * stride + ns, buf + threadid() * stride)
    free(buf)
    return 0
