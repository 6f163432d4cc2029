# cython: language_level=3
"""Private compiled GPR kernels of demine (wrapped by :mod:`demine.gpr`).

Layout: a B-scan chunk is ``(n_traces, n_samples)``, C-contiguous, one trace per
row.  Per-trace work (dewow, band-pass, gain, AGC, time-zero) runs on *tiles* of
``TILE`` traces transposed into a ``(n_samples, TILE)`` scratch block, so that the
inner loops run over independent traces (SIMD lanes) and the serial recurrences
of running sums and IIR filters hide their latency.  Background removal runs
across traces with a running window sum per sample (double precision), so it is
threaded by splitting the chunk into contiguous trace ranges; each thread first
rebuilds the window preceding its range ("warm-up"), which keeps one pass over
memory and makes the result independent of the chunking up to float rounding.

Missing-sample policy (shared by every kernel): a non-finite input sample
(NaN, +-inf) counts as 0 for the neighbours that use it and comes out as NaN at
its own position.  State therefore never holds a NaN and a stream recovers at
once.  Integer inputs cannot be missing and skip the checks.

Nothing here is public API; no argument is validated here.
"""

cimport cython
from cython.parallel cimport prange, parallel, threadid
from libc.math cimport sqrt, floor, NAN, isnan, isinf
from libc.stdlib cimport calloc, malloc, free
from libc.string cimport memset, memcpy
from libc.stdint cimport int64_t

cimport openmp

ctypedef fused num_t:
    short
    int
    float
    double

cdef enum:
    TILE = 32    # lanes of a tile; DM_TILE in the C block above must match


cdef extern from *:
    """
    /* 4x4 transposes between four trace rows and a tile block T[r*tile + c].
       SSE2 where the compiler targets it (every x86-64), plain C elsewhere. */
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    static inline void dm_tr_in_f32(const float* r0, const float* r1, const float* r2,
                                    const float* r3, float* T, int tile) {
        __m128 a = _mm_loadu_ps(r0), b = _mm_loadu_ps(r1);
        __m128 c = _mm_loadu_ps(r2), d = _mm_loadu_ps(r3);
        _MM_TRANSPOSE4_PS(a, b, c, d);
        _mm_storeu_ps(T, a); _mm_storeu_ps(T + tile, b);
        _mm_storeu_ps(T + 2 * tile, c); _mm_storeu_ps(T + 3 * tile, d);
    }
    static inline __m128 dm_i16x4(const short* p) {
        __m128i v = _mm_loadl_epi64((const __m128i*)p);
        return _mm_cvtepi32_ps(_mm_srai_epi32(_mm_unpacklo_epi16(v, v), 16));
    }
    static inline void dm_tr_in_i16(const short* r0, const short* r1, const short* r2,
                                    const short* r3, float* T, int tile) {
        __m128 a = dm_i16x4(r0), b = dm_i16x4(r1), c = dm_i16x4(r2), d = dm_i16x4(r3);
        _MM_TRANSPOSE4_PS(a, b, c, d);
        _mm_storeu_ps(T, a); _mm_storeu_ps(T + tile, b);
        _mm_storeu_ps(T + 2 * tile, c); _mm_storeu_ps(T + 3 * tile, d);
    }
    static inline void dm_tr_out(const float* T, int tile, float* q0, float* q1, float* q2,
                                 float* q3, const float* gain) {
        __m128 a = _mm_loadu_ps(T), b = _mm_loadu_ps(T + tile);
        __m128 c = _mm_loadu_ps(T + 2 * tile), d = _mm_loadu_ps(T + 3 * tile);
        _MM_TRANSPOSE4_PS(a, b, c, d);
        if (gain) {
            __m128 g = _mm_loadu_ps(gain);
            a = _mm_mul_ps(a, g); b = _mm_mul_ps(b, g);
            c = _mm_mul_ps(c, g); d = _mm_mul_ps(d, g);
        }
        _mm_storeu_ps(q0, a); _mm_storeu_ps(q1, b); _mm_storeu_ps(q2, c); _mm_storeu_ps(q3, d);
    }
    /* Same, with non-temporal stores (all four destinations 16-byte aligned):
       large outputs then skip the read-for-ownership of every line. */
    static inline void dm_tr_out_nt(const float* T, int tile, float* q0, float* q1,
                                    float* q2, float* q3, const float* gain) {
        __m128 a = _mm_loadu_ps(T), b = _mm_loadu_ps(T + tile);
        __m128 c = _mm_loadu_ps(T + 2 * tile), d = _mm_loadu_ps(T + 3 * tile);
        _MM_TRANSPOSE4_PS(a, b, c, d);
        if (gain) {
            __m128 g = _mm_loadu_ps(gain);
            a = _mm_mul_ps(a, g); b = _mm_mul_ps(b, g);
            c = _mm_mul_ps(c, g); d = _mm_mul_ps(d, g);
        }
        _mm_stream_ps(q0, a); _mm_stream_ps(q1, b); _mm_stream_ps(q2, c); _mm_stream_ps(q3, d);
    }
    static inline void dm_sfence(void) { _mm_sfence(); }
    #define DM_HAVE_NT 1
    #else
    #define DM_HAVE_NT 0
    static inline void dm_sfence(void) {}
    static inline void dm_tr_in_f32(const float* r0, const float* r1, const float* r2,
                                    const float* r3, float* T, int tile) {
        const float* r[4] = {r0, r1, r2, r3};
        for (int i = 0; i < 4; i++) for (int c = 0; c < 4; c++) T[i * tile + c] = r[c][i];
    }
    static inline void dm_tr_in_i16(const short* r0, const short* r1, const short* r2,
                                    const short* r3, float* T, int tile) {
        const short* r[4] = {r0, r1, r2, r3};
        for (int i = 0; i < 4; i++) for (int c = 0; c < 4; c++) T[i * tile + c] = (float)r[c][i];
    }
    static inline void dm_tr_out(const float* T, int tile, float* q0, float* q1, float* q2,
                                 float* q3, const float* gain) {
        float* q[4] = {q0, q1, q2, q3};
        for (int c = 0; c < 4; c++) for (int i = 0; i < 4; i++)
            q[c][i] = gain ? T[i * tile + c] * gain[i] : T[i * tile + c];
    }
    static inline void dm_tr_out_nt(const float* T, int tile, float* q0, float* q1,
                                    float* q2, float* q3, const float* gain) {
        dm_tr_out(T, tile, q0, q1, q2, q3, gain);
    }
    #endif
    /* Dewow of a 16-lane tile: D = T - centred running mean along time (window
       2*half+1, truncated at the ends); double sums, restrict pointers and a
       fixed lane count so that the compiler keeps the sums in vector registers. */
    #define DM_TILE 32
    static inline void dm_dewow(const float* __restrict T, float* __restrict D,
                                int ns, int half) {
        double s[DM_TILE];
        int j, k, lo, hi, jn, jo;
        for (k = 0; k < DM_TILE; k++) s[k] = 0.0;
        hi = half < ns - 1 ? half : ns - 1;
        for (j = 0; j <= hi; j++)
            for (k = 0; k < DM_TILE; k++) s[k] += T[j * DM_TILE + k];
        for (j = 0; j < ns; j++) {
            lo = j - half < 0 ? 0 : j - half;
            hi = j + half > ns - 1 ? ns - 1 : j + half;
            const double inv = 1.0 / (double)(hi - lo + 1);
            const float* __restrict t = T + j * DM_TILE;
            float* __restrict d = D + j * DM_TILE;
            for (k = 0; k < DM_TILE; k++) d[k] = (float)((double)t[k] - s[k] * inv);
            jn = j + half + 1;
            jo = j - half;
            if (jn < ns && jo >= 0) {
                const float* __restrict a = T + jn * DM_TILE;
                const float* __restrict b = T + jo * DM_TILE;
                for (k = 0; k < DM_TILE; k++) s[k] += (double)a[k] - (double)b[k];
            } else if (jn < ns) {
                const float* __restrict a = T + jn * DM_TILE;
                for (k = 0; k < DM_TILE; k++) s[k] += a[k];
            } else if (jo >= 0) {
                const float* __restrict b = T + jo * DM_TILE;
                for (k = 0; k < DM_TILE; k++) s[k] -= b[k];
            }
        }
    }
    """
    int DM_TILE
    void dm_dewow(const float* T, float* D, int ns, int half) noexcept nogil
    void dm_tr_in_f32(const float* r0, const float* r1, const float* r2, const float* r3,
                      float* T, int tile) noexcept nogil
    void dm_tr_in_i16(const short* r0, const short* r1, const short* r2, const short* r3,
                      float* T, int tile) noexcept nogil
    void dm_tr_out(const float* T, int tile, float* q0, float* q1, float* q2, float* q3,
                   const float* gain) noexcept nogil
    void dm_tr_out_nt(const float* T, int tile, float* q0, float* q1, float* q2, float* q3,
                      const float* gain) noexcept nogil
    void dm_sfence() noexcept nogil
    int DM_HAVE_NT


cdef inline bint _missing(double v) noexcept nogil:
    return isnan(v) or isinf(v)


if DM_TILE != TILE:  # pragma: no cover - a build-time inconsistency
    raise ImportError(f"demine GPR kernels: C tile width {DM_TILE} != Cython TILE {TILE}")


def max_threads():
    return openmp.omp_get_max_threads()


# --------------------------------------------------------------------------------------
# tile helpers: T[j * TILE + k] is sample j of trace k of the tile
# --------------------------------------------------------------------------------------

cdef enum:
    PAR_MIN = 512   # traces below which a kernel runs on one thread
    STREAM_MIN = 4194304  # output samples (16 MB) from which stores bypass the caches


cdef enum:
    JB = 16     # sample block of the blocked transposes


cdef inline void _load_tile(const num_t[:, ::1] x, Py_ssize_t r0, int nk, int ns, float* T,
                            unsigned char* miss, bint* any_miss) noexcept nogil:
    """Transpose rows r0..r0+nk of x into T (zero-filling missing samples, marking them).

    int16 and float32 rows go four at a time through 4x4 SIMD transposes; the
    rest, and other dtypes, element by element in blocks of JB samples."""
    cdef int j, k, jb, je, k4, j4, i
    cdef float v
    cdef const num_t* p
    any_miss[0] = False
    k4 = 0
    j4 = ns & ~3
    if num_t is short or num_t is float:
        k4 = nk & ~3
        k = 0
        while k < k4:
            j = 0
            while j < j4:
                if num_t is short:
                    dm_tr_in_i16(&x[r0 + k, j], &x[r0 + k + 1, j], &x[r0 + k + 2, j],
                                 &x[r0 + k + 3, j], T + j * TILE + k, TILE)
                else:
                    dm_tr_in_f32(&x[r0 + k, j], &x[r0 + k + 1, j], &x[r0 + k + 2, j],
                                 &x[r0 + k + 3, j], T + j * TILE + k, TILE)
                j += 4
            for j in range(j4, ns):
                for i in range(4):
                    T[j * TILE + k + i] = <float>x[r0 + k + i, j]
            k += 4
    jb = 0
    while jb < ns:
        je = jb + JB if jb + JB < ns else ns
        for k in range(k4, nk):
            p = &x[r0 + k, 0]
            for j in range(jb, je):
                T[j * TILE + k] = <float>p[j]
        for k in range(nk, TILE):
            for j in range(jb, je):
                T[j * TILE + k] = 0.0
        jb += JB
    if num_t is float or num_t is double:
        for i in range(ns * TILE):
            v = T[i]
            if _missing(v):
                any_miss[0] = True
                miss[i] = 1
                T[i] = 0.0
            else:
                miss[i] = 0


cdef inline void _restore_missing(float* T, int ns, unsigned char* miss) noexcept nogil:
    cdef int i
    for i in range(ns * TILE):
        if miss[i]:
            T[i] = NAN


cdef enum:
    MAXSEC = 8


cdef inline void _sos_pass(float* E, int L, bint backward, int nsec, const float* c,
                           const double* zi, const float* x0) noexcept nogil:
    """One pass of the whole SOS cascade over the TILE lanes of E, in place.

    All sections advance together sample by sample, so the OoO core overlaps
    their recurrences.  c holds b0 b1 b2 a1 a2 per section.
    """
    cdef float z0[MAXSEC][TILE]
    cdef float z1[MAXSEC][TILE]
    cdef float xv, yv, b0, b1, b2, a1, a2
    cdef float* p
    cdef int j, k, s
    for s in range(nsec):
        for k in range(TILE):
            z0[s][k] = <float>zi[2 * s] * x0[k]
            z1[s][k] = <float>zi[2 * s + 1] * x0[k]
    for j in range(L):
        if backward:
            p = E + (L - 1 - j) * TILE
        else:
            p = E + j * TILE
        for s in range(nsec):
            b0 = c[5 * s]
            b1 = c[5 * s + 1]
            b2 = c[5 * s + 2]
            a1 = c[5 * s + 3]
            a2 = c[5 * s + 4]
            for k in range(TILE):
                xv = p[k]
                yv = b0 * xv + z0[s][k]
                z0[s][k] = b1 * xv - a1 * yv + z1[s][k]
                z1[s][k] = b2 * xv - a2 * yv
                p[k] = yv


cdef inline void _sos_tile(float* E, int L, int nsec, const double* sos,
                           const double* zi) noexcept nogil:
    """Zero-phase (forward-backward) SOS filter of the TILE lanes of E (length L).

    sos rows are b0 b1 b2 a0 a1 a2 (a0 == 1); zi is sosfilt_zi (nsec x 2);
    the state of each pass starts at zi times the first sample of that pass, as
    in scipy.signal.sosfiltfilt.
    """
    cdef float x0[TILE]
    cdef float c[5 * MAXSEC]
    cdef int k, s
    for s in range(nsec):
        c[5 * s] = <float>sos[6 * s]
        c[5 * s + 1] = <float>sos[6 * s + 1]
        c[5 * s + 2] = <float>sos[6 * s + 2]
        c[5 * s + 3] = <float>sos[6 * s + 4]
        c[5 * s + 4] = <float>sos[6 * s + 5]
    for k in range(TILE):
        x0[k] = E[k]
    _sos_pass(E, L, False, nsec, c, zi, x0)
    for k in range(TILE):
        x0[k] = E[(L - 1) * TILE + k]
    _sos_pass(E, L, True, nsec, c, zi, x0)


cdef inline void _bandpass_tile(float* E, int ns, int nsec, const double* sos,
                                const double* zi, int padlen, unsigned char* miss,
                                bint may_miss) noexcept nogil:
    """In-place zero-phase band-pass of the tile at E + padlen*TILE (ns samples);
    E has room for padlen samples of odd extension on each side."""
    cdef int j, k, L
    cdef bint have_miss = False
    cdef float v
    cdef float* T = E + padlen * TILE
    # missing samples count as 0; they are put back afterwards
    if may_miss:
        for j in range(ns * TILE):
            v = T[j]
            if _missing(v):
                miss[j] = 1
                T[j] = 0.0
                have_miss = True
            else:
                miss[j] = 0
    L = ns + 2 * padlen
    for j in range(padlen):
        for k in range(TILE):
            E[j * TILE + k] = 2.0 * T[k] - T[(padlen - j) * TILE + k]
            E[(padlen + ns + j) * TILE + k] = (2.0 * T[(ns - 1) * TILE + k]
                                               - T[(ns - 2 - j) * TILE + k])
    _sos_tile(E, L, nsec, sos, zi)
    if have_miss:
        _restore_missing(T, ns, miss)


cdef inline void _store_tile(float* T, int ns, int nk, float[:, ::1] out, Py_ssize_t r0,
                             const float* gain, bint stream=False) noexcept nogil:
    """Transpose the first nk lanes of T into rows r0.. of out (times gain): 4x4 SIMD
    transposes, the remainder element by element.  With ``stream`` (the caller has
    checked that rows are 16-byte aligned and will issue dm_sfence) the 4x4 blocks
    use non-temporal stores."""
    cdef int j, k, k4, j4, i
    cdef float* q
    k4 = nk & ~3
    j4 = ns & ~3
    k = 0
    while k < k4:
        j = 0
        if stream:
            while j < j4:
                dm_tr_out_nt(T + j * TILE + k, TILE, &out[r0 + k, j], &out[r0 + k + 1, j],
                             &out[r0 + k + 2, j], &out[r0 + k + 3, j],
                             gain + j if gain != NULL else NULL)
                j += 4
        else:
            while j < j4:
                dm_tr_out(T + j * TILE + k, TILE, &out[r0 + k, j], &out[r0 + k + 1, j],
                          &out[r0 + k + 2, j], &out[r0 + k + 3, j],
                          gain + j if gain != NULL else NULL)
                j += 4
        k += 4
    for k in range(k4):
        q = &out[r0 + k, 0]
        for j in range(j4, ns):
            q[j] = T[j * TILE + k] * gain[j] if gain != NULL else T[j * TILE + k]
    for k in range(k4, nk):
        q = &out[r0 + k, 0]
        for j in range(ns):
            q[j] = T[j * TILE + k] * gain[j] if gain != NULL else T[j * TILE + k]


cdef inline void _add_trace(double* S, const float* d, int ns, double sign) noexcept nogil:
    cdef int j
    cdef float v
    for j in range(ns):
        v = d[j]
        if not _missing(v):
            S[j] += sign * v


cdef inline void _tile_to_rows(const float* T, int nk, int ns, float** rows) noexcept nogil:
    """Lanes 0..nk-1 of tile T into the rows (4x4 SIMD transposes where possible)."""
    cdef int j, k, i
    cdef int k4 = nk & ~3
    cdef int j4 = ns & ~3
    k = 0
    while k < k4:
        j = 0
        while j < j4:
            dm_tr_out(T + j * TILE + k, TILE, rows[k] + j, rows[k + 1] + j, rows[k + 2] + j,
                      rows[k + 3] + j, NULL)
            j += 4
        for i in range(4):
            for j in range(j4, ns):
                rows[k + i][j] = T[j * TILE + k + i]
        k += 4
    for k in range(k4, nk):
        for j in range(ns):
            rows[k][j] = T[j * TILE + k]


cdef inline void _rows_to_tile(float** rows, int nk, int ns, float* T) noexcept nogil:
    """Rows into lanes 0..nk-1 of tile T; lanes nk.. are zeroed."""
    cdef int j, k, i
    cdef int k4 = nk & ~3
    cdef int j4 = ns & ~3
    k = 0
    while k < k4:
        j = 0
        while j < j4:
            dm_tr_in_f32(rows[k] + j, rows[k + 1] + j, rows[k + 2] + j, rows[k + 3] + j,
                         T + j * TILE + k, TILE)
            j += 4
        for i in range(4):
            for j in range(j4, ns):
                T[j * TILE + k + i] = rows[k + i][j]
        k += 4
    for k in range(k4, nk):
        for j in range(ns):
            T[j * TILE + k] = rows[k][j]
    for k in range(nk, TILE):
        for j in range(ns):
            T[j * TILE + k] = 0.0


cdef inline void _bg_update(double* S, const float* new, const float* old, int ns,
                            bint may_miss) noexcept nogil:
    """S += new - old (old may be NULL); missing samples are skipped."""
    cdef int j
    cdef float vn, vo
    if may_miss:
        for j in range(ns):
            vn = new[j]
            if not _missing(vn):
                S[j] += vn
            if old != NULL:
                vo = old[j]
                if not _missing(vo):
                    S[j] -= vo
    elif old != NULL:
        for j in range(ns):
            S[j] += <double>new[j] - <double>old[j]
    else:
        for j in range(ns):
            S[j] += new[j]


cdef inline int _bg_tile(double* S, float* R, int rn, int w, int delay, Py_ssize_t g0,
                         Py_ssize_t ws, const float* D, float* T, int nk, int ns,
                         bint may_miss, Py_ssize_t* ostart, float* O) noexcept nogil:
    """Moving-window background of the nk traces g0.. of tile D, in row layout.

    The ring R has rn >= w + TILE rows (trace g in row g % rn), so the tile's new
    traces never overwrite the ones leaving the window.  The dewowed traces are
    transposed into the ring; then, trace by trace, S += d_g - d_{g-w} (the
    dropped trace only if it was added, g - w >= ws) and, if o = g - delay >= 0,
    d_o - S / min(g + 1, w) goes to the next row of O; O is transposed into
    tile T.  Returns the number of traces written; ostart is the first (or -1).
    """
    cdef int j, k, kk
    cdef Py_ssize_t g, o
    cdef double inv
    cdef float* rows[TILE]
    cdef float* orows[TILE]
    cdef const float* src
    cdef float* q
    for k in range(nk):
        rows[k] = R + ((g0 + k) % rn) * ns
    _tile_to_rows(D, nk, ns, rows)
    kk = 0
    ostart[0] = -1
    for k in range(nk):
        g = g0 + k
        _bg_update(S, rows[k], R + ((g - w) % rn) * ns if g - w >= ws else NULL, ns,
                   may_miss)
        o = g - delay
        if o < 0:
            continue
        if ostart[0] < 0:
            ostart[0] = o
        src = R + (o % rn) * ns
        inv = 1.0 / (g + 1 if g + 1 < w else w)
        q = O + kk * ns
        for j in range(ns):
            q[j] = <float>(src[j] - S[j] * inv)
        orows[kk] = q
        kk += 1
    _rows_to_tile(orows, kk, ns, T)
    return kk


def chain(const num_t[:, ::1] x, float[:, ::1] hist, Py_ssize_t seen, float[:, ::1] out,
          int dewow_half, int bg_window, int bg_delay,
          double[:, ::1] sos, double[:, ::1] zi, int padlen,
          float[::1] gain, int nthreads):
    """Run the chain on the new traces ``x`` of a stream.

    hist : the last ``min(seen, bg_window - 1)`` dewowed traces before ``x`` (oldest
           first); ``seen`` is the global index of ``x[0]``.
    out  : one row per output trace ``g - bg_delay`` for ``g`` in the chunk with
           ``g >= bg_delay``; rows are written in order.
    bg_window 0 disables background removal (then bg_delay must be 0); sos with
    0 rows disables the band-pass; gain of length 0 disables the gain.
    Returns nothing; the caller updates ``hist``.
    """
    cdef Py_ssize_t n = x.shape[0]
    cdef int ns = <int>x.shape[1]
    cdef int nsec = <int>sos.shape[0]
    cdef int nhist = <int>hist.shape[0]
    cdef int w = bg_window
    cdef int ring_n = w + TILE if w > 0 else 1
    cdef const double* sosp = NULL
    cdef const double* zip_ = NULL
    cdef const float* gp = NULL
    cdef Py_ssize_t first_out = 0
    cdef int nt
    cdef bint stream
    cdef int* nomem   # one flag per thread: its work tiles could not be allocated
    cdef bint failed = False
    cdef Py_ssize_t t
    if n == 0:
        return
    if nsec > 0:
        sosp = &sos[0, 0]
        zip_ = &zi[0, 0]
    if gain.shape[0] > 0:
        gp = &gain[0]
    # local index of the first input whose output falls in this chunk
    if seen < bg_delay:
        first_out = bg_delay - seen
    nt = nthreads if nthreads > 0 else openmp.omp_get_max_threads()
    if n < PAR_MIN:
        nt = 1
    nomem = <int*>calloc(nt, sizeof(int))
    if nomem == NULL:
        raise MemoryError("GPR chain: no memory for its thread flags")
    # non-temporal stores for outputs far larger than the caches, rows 16-byte aligned
    stream = (DM_HAVE_NT and out.shape[0] * ns >= STREAM_MIN and ns % 4 == 0
              and (<size_t>&out[0, 0]) % 16 == 0) if out.shape[0] > 0 else False
    if nt == 1:
        # a live chunk of a few traces: the calling thread alone (outside a
        # parallel region _chain_part is thread 0 of 1), no team to start
        with nogil:
            _chain_part(x, hist, seen, out, dewow_half, w, bg_delay, nsec, sosp, zip_, padlen,
                        gp, ring_n, first_out, stream, nomem)
    else:
        with nogil, parallel(num_threads=nt):
            _chain_part(x, hist, seen, out, dewow_half, w, bg_delay, nsec, sosp, zip_, padlen,
                        gp, ring_n, first_out, stream, nomem)
    for t in range(nt):
        failed = failed or nomem[t] != 0
    free(nomem)
    if failed:
        raise MemoryError(f"GPR chain: no memory for the work tiles of {ns} samples")


cdef void _chain_part(const num_t[:, ::1] x, float[:, ::1] hist, Py_ssize_t seen,
                      float[:, ::1] out, int dewow_half, int w, int delay, int nsec,
                      const double* sos, const double* zi, int padlen, const float* gain,
                      int ring_n, Py_ssize_t first_out, bint stream,
                      int* nomem) noexcept nogil:
    """The share of one thread: a contiguous range [a, b) of the chunk's traces.
    Sets its own flag ``nomem[thread id]`` (and does nothing) when its work tiles
    cannot be allocated."""
    cdef int tid = threadid()
    cdef int nthr = openmp.omp_get_num_threads()
    cdef Py_ssize_t n = x.shape[0]
    cdef Py_ssize_t part = (n + nthr - 1) // nthr
    cdef int ns = <int>x.shape[1]
    cdef int nhist = <int>hist.shape[0]
    cdef Py_ssize_t a = tid * part
    cdef Py_ssize_t b = a + part
    cdef Py_ssize_t i, i0, g, ws, r0, ostart
    cdef int j, k, nk, kk, L
    cdef bint may_miss = num_t is float or num_t is double
    cdef float* T      # raw tile
    cdef float* D      # dewowed tile (may be the work tile)
    cdef float* E      # work tile with band-pass padding; W = E + padlen*TILE
    cdef float* W
    cdef float* R
    cdef float* O
    cdef float* dst
    cdef double* S
    cdef unsigned char* miss
    cdef unsigned char* miss2
    if b > n:
        b = n
    if a >= b:
        return
    L = ns + 2 * padlen
    T = <float*>malloc(ns * TILE * sizeof(float))
    D = <float*>malloc(ns * TILE * sizeof(float))
    E = <float*>malloc(L * TILE * sizeof(float))
    W = E + padlen * TILE
    R = <float*>malloc(<size_t>ring_n * ns * sizeof(float))
    O = <float*>malloc(ns * TILE * sizeof(float))
    S = <double*>malloc(ns * sizeof(double))
    miss = <unsigned char*>malloc(ns * TILE)
    miss2 = <unsigned char*>malloc(ns * TILE)
    if (T == NULL or D == NULL or E == NULL or R == NULL or O == NULL or S == NULL
            or miss == NULL or miss2 == NULL):
        nomem[tid] = 1
        free(T); free(D); free(E); free(R); free(O); free(S); free(miss); free(miss2)
        return
    memset(miss, 0, ns * TILE)
    memset(S, 0, ns * sizeof(double))
    ws = 0

    if w > 0:
        # warm-up: rebuild the dewowed traces g in [ws, seen + a) in the ring, with
        # ws = max(0, seen + a - (w - 1)), and their sum S.
        ws = seen + a - (w - 1)
        if ws < 0:
            ws = 0
        g = ws
        while g < seen + a:
            if g < seen:
                memcpy(R + (g % ring_n) * ns, &hist[nhist - (seen - g), 0], ns * sizeof(float))
                g += 1
            else:
                i0 = g - seen
                nk = <int>((seen + a) - g)
                if nk > TILE:
                    nk = TILE
                _prep_tile(x, i0, nk, ns, dewow_half, T, D, miss)
                for k in range(nk):
                    dst = R + ((g + k) % ring_n) * ns
                    for j in range(ns):
                        dst[j] = D[j * TILE + k]
                g += nk
        g = ws
        while g < seen + a:
            _add_trace(S, R + (g % ring_n) * ns, ns, 1.0)
            g += 1

    if w > 0 and dewow_half < 0 and nsec == 0:
        # background (and gain) only: stay in row layout, no transposes
        _bg_rows(x, a, b, seen, out, w, ring_n, delay, ws, first_out, R, S, gain, may_miss)
        i = b
    else:
        i = a
    while i < b:
        nk = <int>(b - i)
        if nk > TILE:
            nk = TILE
        if w > 0:
            _prep_tile(x, i, nk, ns, dewow_half, T, D, miss)
            kk = _bg_tile(S, R, ring_n, w, delay, seen + i, ws, D, W, nk, ns, may_miss,
                          &ostart, O)
            if kk == 0:
                i += nk
                continue
            # output row of trace o: o minus the first output trace of the chunk
            r0 = ostart - (seen + first_out - delay)
        else:
            _prep_tile(x, i, nk, ns, dewow_half, T, W, miss)
            kk = nk
            r0 = i
        if nsec > 0:
            _bandpass_tile(E, ns, nsec, sos, zi, padlen, miss2, may_miss)
        _store_tile(W, ns, kk, out, r0, gain, stream)
        i += nk
    if stream:
        dm_sfence()

    free(T); free(D); free(E); free(R); free(O); free(S); free(miss); free(miss2)


cdef inline void _bg_rows(const num_t[:, ::1] x, Py_ssize_t a, Py_ssize_t b, Py_ssize_t seen,
                          float[:, ::1] out, int w, int rn, int delay, Py_ssize_t ws,
                          Py_ssize_t first_out, float* R, double* S, const float* gain,
                          bint may_miss) noexcept nogil:
    """Moving-window background of rows a..b in row layout (see _bg_tile); the ring
    R has rn >= w rows, trace g in row g % rn."""
    cdef int ns = <int>x.shape[1]
    cdef Py_ssize_t i, g, o
    cdef int j
    cdef bint drop
    cdef float vn, vo
    cdef double inv
    cdef float* dst
    cdef const float* old
    cdef const float* src
    cdef float* q
    cdef const num_t* p
    for i in range(a, b):
        g = seen + i
        dst = R + (g % rn) * ns
        drop = g - w >= ws
        old = R + ((g - w) % rn) * ns if drop else NULL
        p = &x[i, 0]
        if may_miss:
            for j in range(ns):
                vn = <float>p[j]
                if drop:
                    vo = old[j]
                    if not _missing(vo):
                        S[j] -= vo
                if _missing(vn):
                    vn = NAN
                else:
                    S[j] += vn
                dst[j] = vn
        elif drop:
            for j in range(ns):
                vn = <float>p[j]
                S[j] += <double>vn - <double>old[j]
                dst[j] = vn
        else:
            for j in range(ns):
                vn = <float>p[j]
                S[j] += vn
                dst[j] = vn
        o = g - delay
        if o < 0:
            continue
        src = R + (o % rn) * ns
        inv = 1.0 / (g + 1 if g + 1 < w else w)
        q = &out[o - (seen + first_out - delay), 0]
        if gain != NULL:
            for j in range(ns):
                q[j] = <float>(src[j] - S[j] * inv) * gain[j]
        else:
            for j in range(ns):
                q[j] = <float>(src[j] - S[j] * inv)


cdef inline void _prep_tile(const num_t[:, ::1] x, Py_ssize_t i0, int nk, int ns, int dewow_half,
                            float* T, float* D, unsigned char* miss) noexcept nogil:
    """Load rows i0..i0+nk into D (dewowed if dewow_half >= 0), missing samples NaN."""
    cdef bint any_miss = False
    if dewow_half >= 0:
        _load_tile(x, i0, nk, ns, T, miss, &any_miss)
        dm_dewow(T, D, ns, dewow_half)
    else:
        _load_tile(x, i0, nk, ns, D, miss, &any_miss)
    if any_miss:
        _restore_missing(D, ns, miss)


def chain_finish(float[:, ::1] hist, Py_ssize_t seen, float[:, ::1] out, int bg_window,
                 int bg_delay, double[:, ::1] sos, double[:, ::1] zi, int padlen,
                 float[::1] gain):
    """Release the last ``bg_delay`` traces of a stream of ``seen`` traces.

    hist holds the last ``min(seen, bg_window - 1)`` dewowed traces; output trace o
    (for o in ``seen - bg_delay .. seen - 1``, clipped at 0) is hist's trace o minus
    the mean of the traces ``max(0, o + bg_delay - bg_window + 1) .. seen - 1``.
    """
    cdef int ns = <int>hist.shape[1]
    cdef int nhist = <int>hist.shape[0]
    cdef int nsec = <int>sos.shape[0]
    cdef Py_ssize_t o0 = seen - bg_delay
    cdef Py_ssize_t o, g, lo
    cdef int j, k, nk, L
    cdef double inv
    cdef double* S
    cdef float* E
    cdef float* W
    cdef float* row
    cdef unsigned char* miss
    cdef const double* sosp = NULL
    cdef const double* zip_ = NULL
    cdef const float* gp = NULL
    if o0 < 0:
        o0 = 0
    if seen - o0 <= 0:
        return
    if nsec > 0:
        sosp = &sos[0, 0]
        zip_ = &zi[0, 0]
    if gain.shape[0] > 0:
        gp = &gain[0]
    L = ns + 2 * padlen
    S = <double*>malloc(ns * sizeof(double))
    E = <float*>malloc(L * TILE * sizeof(float))
    W = E + padlen * TILE
    miss = <unsigned char*>malloc(ns * TILE)
    if S == NULL or E == NULL or miss == NULL:
        free(S); free(E); free(miss)
        raise MemoryError(f"GPR chain: no memory for the work tiles of {ns} samples")
    with nogil:
        o = o0
        while o < seen:
            nk = <int>(seen - o)
            if nk > TILE:
                nk = TILE
            memset(W, 0, ns * TILE * sizeof(float))
            for k in range(nk):
                lo = o + k + bg_delay - bg_window + 1
                if lo < 0:
                    lo = 0
                memset(S, 0, ns * sizeof(double))
                g = lo
                while g < seen:
                    _add_trace(S, &hist[nhist - (seen - g), 0], ns, 1.0)
                    g += 1
                inv = 1.0 / (seen - lo)
                row = &hist[nhist - (seen - (o + k)), 0]
                for j in range(ns):
                    W[j * TILE + k] = <float>(row[j] - S[j] * inv)
            if nsec > 0:
                _bandpass_tile(E, ns, nsec, sosp, zip_, padlen, miss, True)
            _store_tile(W, ns, nk, out, o - o0, gp)
            o += nk
    free(S); free(E); free(miss)


def dewow_rows(const num_t[:, ::1] x, float[:, ::1] out, int half, int nthreads):
    """Dewow every row of x into out (used to keep the chain's history)."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef int ns = <int>x.shape[1]
    cdef int k, nk
    cdef float* T
    cdef float* D
    cdef unsigned char* miss
    cdef Py_ssize_t ntiles = (n + TILE - 1) // TILE, ti
    cdef int nt = nthreads if nthreads > 0 else openmp.omp_get_max_threads()
    cdef int nomem = 0
    if n < PAR_MIN:
        nt = 1
    with nogil, parallel(num_threads=nt):
        T = <float*>malloc(ns * TILE * sizeof(float))
        D = <float*>malloc(ns * TILE * sizeof(float))
        miss = <unsigned char*>malloc(ns * TILE)
        for ti in prange(ntiles, schedule="static"):
            if T == NULL or D == NULL or miss == NULL:
                nomem += 1   # (a reduction: counted over the threads)
                continue
            i = ti * TILE
            nk = <int>(n - i) if (n - i) < TILE else TILE
            _prep_tile(x, i, nk, ns, half, T, D, miss)
            _store_tile(D, ns, nk, out, i, NULL)
        free(T); free(D); free(miss)
    if nomem:
        raise MemoryError(f"dewow: no memory for the work tiles of {ns} samples")


# --------------------------------------------------------------------------------------
# exponential background removal (serial over traces, threads over sample blocks)
# --------------------------------------------------------------------------------------

def background_exp(const num_t[:, ::1] x, double[::1] bg, float[:, ::1] out, double alpha,
                   bint started, int nthreads):
    """bg <- bg + alpha (x - bg) per trace (missing samples skip the update);
    out = x - bg (after the update).  If not started, bg starts at the first trace."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef int ns = <int>x.shape[1]
    cdef int j, j0, j1, blk, nb
    cdef double v, bv
    cdef int nt = nthreads if nthreads > 0 else openmp.omp_get_max_threads()
    if n == 0:
        return
    if not started:
        for j in range(ns):
            v = <double>x[0, j]
            bg[j] = 0.0 if _missing(v) else v
    nb = (ns + 63) // 64
    with nogil:
        for blk in prange(nb, schedule="static", num_threads=nt):
            j0 = blk * 64
            j1 = j0 + 64
            if j1 > ns:
                j1 = ns
            for i in range(n):
                for j in range(j0, j1):
                    v = <double>x[i, j]
                    bv = bg[j]
                    if _missing(v):
                        out[i, j] = NAN
                    else:
                        bv = bv + alpha * (v - bv)
                        bg[j] = bv
                        out[i, j] = <float>(v - bv)


# --------------------------------------------------------------------------------------
# per-trace kernels: AGC, time-zero, stacking, interpolation
# --------------------------------------------------------------------------------------

def agc(const num_t[:, ::1] x, float[:, ::1] out, int half, double eps, int nthreads):
    """out = x / (RMS of x over a centred window of 2*half+1 samples + eps)."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef int ns = <int>x.shape[1]
    cdef int j, lo, hi
    cdef double s, v, rms
    cdef double* sq
    cdef int nt = nthreads if nthreads > 0 else openmp.omp_get_max_threads()
    cdef int nomem = 0
    if n < PAR_MIN:
        nt = 1
    with nogil, parallel(num_threads=nt):
        sq = <double*>malloc(ns * sizeof(double))
        for i in prange(n, schedule="static"):
            if sq == NULL:
                nomem += 1   # (a reduction: counted over the threads)
                continue
            for j in range(ns):
                v = <double>x[i, j]
                if _missing(v):
                    sq[j] = 0.0
                else:
                    sq[j] = v * v
            s = 0.0
            hi = half if half < ns - 1 else ns - 1
            for j in range(hi + 1):
                s = s + sq[j]
            for j in range(ns):
                lo = j - half
                hi = j + half
                if lo < 0:
                    lo = 0
                if hi > ns - 1:
                    hi = ns - 1
                rms = sqrt((s if s > 0.0 else 0.0) / (hi - lo + 1))
                v = <double>x[i, j]
                if _missing(v):
                    out[i, j] = NAN
                else:
                    out[i, j] = <float>(v / (rms + eps))
                if j + half + 1 < ns:
                    s = s + sq[j + half + 1]
                if j - half >= 0:
                    s = s - sq[j - half]
        free(sq)
    if nomem:
        raise MemoryError(f"AGC: no memory for a row of {ns} samples")


def time_zero_picks(const num_t[:, ::1] x, int64_t[::1] picks, double threshold, int search,
                    bint peak, int nthreads):
    """First sample whose |x| reaches threshold * max|x| within the first ``search``
    samples (missing samples count as 0); with ``peak`` the pick then moves on to
    the next local maximum of |x|.  A trace of zeros picks 0."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef int ns = <int>x.shape[1]
    cdef int j, p, m
    cdef double v, a, amax, lim
    cdef int nt = nthreads if nthreads > 0 else openmp.omp_get_max_threads()
    m = search if 0 < search < ns else ns
    if n < PAR_MIN:
        nt = 1
    with nogil:
        for i in prange(n, schedule="static", num_threads=nt):
            amax = 0.0
            for j in range(m):
                v = <double>x[i, j]
                if not _missing(v):
                    a = v if v >= 0 else -v
                    if a > amax:
                        amax = a
            p = 0
            if amax > 0:
                lim = threshold * amax
                for j in range(m):
                    v = <double>x[i, j]
                    if _missing(v):
                        continue
                    a = v if v >= 0 else -v
                    if a >= lim:
                        p = j
                        break
                if peak:
                    while p + 1 < m:
                        v = <double>x[i, p + 1]
                        if _missing(v):
                            break
                        a = v if v >= 0 else -v
                        v = <double>x[i, p]
                        if a <= (v if v >= 0 else -v):
                            break
                        p = p + 1
            picks[i] = p


def shift_rows(const num_t[:, ::1] x, int64_t[::1] shift, float[:, ::1] out, double fill,
               int nthreads):
    """out[i, j] = x[i, j + shift[i]] (fill outside the trace); missing stay NaN."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef int ns = <int>x.shape[1]
    cdef int j, jj
    cdef int64_t sh
    cdef int nt = nthreads if nthreads > 0 else openmp.omp_get_max_threads()
    if n < PAR_MIN:
        nt = 1
    with nogil:
        for i in prange(n, schedule="static", num_threads=nt):
            sh = shift[i]
            for j in range(ns):
                jj = <int>(j + sh)
                if jj < 0 or jj >= ns:
                    out[i, j] = <float>fill
                else:
                    out[i, j] = <float>x[i, jj]


def apply_gain(const num_t[:, ::1] x, float[::1] gain, float[:, ::1] out, int nthreads):
    """out[i, j] = x[i, j] * gain[j]."""
    cdef Py_ssize_t n = x.shape[0], i
    cdef int ns = <int>x.shape[1]
    cdef int j
    cdef int nt = nthreads if nthreads > 0 else openmp.omp_get_max_threads()
    if n < PAR_MIN:
        nt = 1
    with nogil:
        for i in prange(n, schedule="static", num_threads=nt):
            for j in range(ns):
                out[i, j] = <float>x[i, j] * gain[j]


def stack_rows(const num_t[:, ::1] x, double[::1] acc, int have, int fold, float[:, ::1] out,
               int nthreads):
    """Mean of consecutive groups of ``fold`` traces.

    ``acc`` holds the sum of the ``have`` traces of the group left open by the
    previous chunk; on return it holds the open group of this chunk.  A missing
    sample makes the output sample of its group NaN (acc keeps NaN for that).
    Returns the new ``have``.
    """
    cdef Py_ssize_t n = x.shape[0], i, m, nout = out.shape[0], first_len
    cdef int ns = <int>x.shape[1]
    cdef int j, q
    cdef double sacc
    cdef Py_ssize_t start, tail, st
    cdef int nt = nthreads if nthreads > 0 else openmp.omp_get_max_threads()
    # group m of this chunk covers rows [start_m, start_m + fold) with the first
    # group completing the open one
    first_len = fold - have
    if nout > 0:
        with nogil:
            for m in prange(nout, schedule="static", num_threads=nt):
                for j in range(ns):
                    if m == 0:
                        sacc = acc[j]
                        for q in range(<int>first_len):
                            sacc = sacc + <double>x[q, j]
                    else:
                        sacc = 0.0
                        st = first_len + (m - 1) * fold
                        for q in range(fold):
                            sacc = sacc + <double>x[st + q, j]
                    out[m, j] = <float>(sacc / fold)
        start = first_len + (nout - 1) * fold
        for j in range(ns):
            acc[j] = 0.0
        have = 0
    else:
        start = 0
    tail = n - start
    for i in range(start, n):
        for j in range(ns):
            acc[j] = acc[j] + <double>x[i, j]
    return have + <int>tail


def interp_rows(const float[:, ::1] x, int64_t[::1] i0, double[::1] frac, float[:, ::1] out,
                int nthreads):
    """out[m] = (1 - frac[m]) x[i0[m]] + frac[m] x[i0[m] + 1] (frac 0 reads only i0)."""
    cdef Py_ssize_t n = out.shape[0], m
    cdef int ns = <int>x.shape[1]
    cdef int j
    cdef float f, g
    cdef int64_t a
    cdef int nt = nthreads if nthreads > 0 else openmp.omp_get_max_threads()
    if n < PAR_MIN:
        nt = 1
    with nogil:
        for m in prange(n, schedule="static", num_threads=nt):
            a = i0[m]
            f = <float>frac[m]
            g = 1.0 - f
            if f == 0.0:
                for j in range(ns):
                    out[m, j] = x[a, j]
            else:
                for j in range(ns):
                    out[m, j] = g * x[a, j] + f * x[a + 1, j]


# --------------------------------------------------------------------------------------
# Kirchhoff migration (diffraction summation), sample positions computed directly
# --------------------------------------------------------------------------------------

def kirchhoff(const float[:, ::1] d, float[:, ::1] out, double dt, double dx, double velocity,
              int aperture, int t0, int nthreads):
    """out[x0, i] = sum_x cos(theta) d[x, t(x)] / (2 pi v), linearly interpolated.

    d is the time derivative of the section (n_traces, n_samples); sample i is at
    time (i - t0) dt after time zero; the two-way time to trace x is
    t = sqrt(tau^2 + (2 (x - x0) dx / v)^2) with tau = (i - t0) dt; cos(theta) = tau/t.
    Traces farther than ``aperture`` traces from x0 are not summed.
    """
    cdef Py_ssize_t nx = d.shape[0], x0, x, xa, xb
    cdef int ns = <int>d.shape[1]
    cdef int i, k, imax
    cdef double c = 1.0 / (6.283185307179586 * velocity)
    cdef double h, h2, tau, t, f, tmax2, fi
    cdef double inv_dt = 1.0 / dt
    cdef float acc
    cdef int nt = nthreads if nthreads > 0 else openmp.omp_get_max_threads()
    tmax2 = (ns - 1 - t0) * dt
    tmax2 = tmax2 * tmax2
    with nogil:
        for x0 in prange(nx, schedule="dynamic", num_threads=nt):
            xa = x0 - aperture
            xb = x0 + aperture
            if xa < 0:
                xa = 0
            if xb > nx - 1:
                xb = nx - 1
            for x in range(xa, xb + 1):
                h = 2.0 * (x - x0) * dx / velocity
                h2 = h * h
                if h2 > tmax2:
                    continue
                # largest tau with t <= tmax
                imax = <int>(sqrt(tmax2 - h2) * inv_dt) + t0
                if imax > ns - 1:
                    imax = ns - 1
                for i in range(t0 + 1, imax + 1):
                    tau = (i - t0) * dt
                    t = sqrt(tau * tau + h2)
                    fi = t * inv_dt + t0
                    k = <int>fi
                    f = fi - k
                    if k >= ns - 1:
                        if k == ns - 1 and f == 0.0:
                            out[x0, i] += <float>(c * (tau / t) * d[x, k])
                        continue
                    out[x0, i] += <float>(c * (tau / t) * ((1.0 - f) * d[x, k] + f * d[x, k + 1]))
