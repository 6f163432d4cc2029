# cython: language_level=3
"""Private framing kernels: sync search, length check, CRC-16/CCITT, resync.

Nothing here is public API; :mod:`demine.framing` wraps it.  The binary protocol
is described by an int64 parameter vector (see ``BinaryLayout.as_array``):

    0 sync0, 1 sync1, 2 header_len, 3 version_off, 4 version, 5 count_off,
    6 count_width, 7 count_min, 8 count_max, 9 base, 10 unit_const, 11 unit_off,
    12 unit_mask, 13 crc_start, 14 min_len

Counters (int64 vector, updated in place):

    0 crc_errors, 1 truncated, 2 bytes_skipped, 3 resyncs, 4 in_garbage (state),
    5 bad_headers
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int16_t, int32_t, int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memchr, memcpy
from libc.math cimport fabs, rint

import numpy as np

cimport numpy as cnp

cnp.import_array()

cdef uint16_t _ONE = 1
#: Whether this host is little-endian (the wire is): samples are then copied whole.
cdef bint _HOST_LE = (<uint8_t*>&_ONE)[0] == 1


cdef inline void _need(cnp.ndarray a, int nd, int typenum, str name) except *:
    """An array argument checked by hand (a typed memoryview would go through
    NumPy's buffer export, format string included, on every call)."""
    if (cnp.PyArray_NDIM(a) != nd or cnp.PyArray_TYPE(a) != typenum
            or not cnp.PyArray_IS_C_CONTIGUOUS(a)):
        raise ValueError(f"{name}: expected a contiguous {nd}-D array of NumPy type {typenum}")

cdef uint16_t _T[8][256]


cdef void _init_tables() noexcept nogil:
    cdef int i, j, k
    cdef uint16_t crc
    for i in range(256):
        crc = <uint16_t>(i << 8)
        for j in range(8):
            if crc & 0x8000:
                crc = <uint16_t>((crc << 1) ^ 0x1021)
            else:
                crc = <uint16_t>(crc << 1)
        _T[0][i] = crc
    # slicing tables: _T[k][i] = CRC of byte i followed by k zero bytes
    for k in range(1, 8):
        for i in range(256):
            crc = _T[k - 1][i]
            _T[k][i] = <uint16_t>((crc << 8) ^ _T[0][(crc >> 8) & 0xFF])


_init_tables()


cdef inline uint16_t _crc(const uint8_t* p, Py_ssize_t n, uint16_t crc) noexcept nogil:
    """CRC-16/CCITT-FALSE update, slicing-by-8."""
    cdef Py_ssize_t i = 0
    cdef uint16_t a
    while n - i >= 8:
        a = <uint16_t>(crc ^ ((<uint16_t>p[i] << 8) | p[i + 1]))
        crc = <uint16_t>(_T[7][a >> 8] ^ _T[6][a & 0xFF] ^ _T[5][p[i + 2]] ^ _T[4][p[i + 3]]
                         ^ _T[3][p[i + 4]] ^ _T[2][p[i + 5]] ^ _T[1][p[i + 6]]
                         ^ _T[0][p[i + 7]])
        i += 8
    while i < n:
        crc = <uint16_t>((crc << 8) ^ _T[0][((crc >> 8) ^ p[i]) & 0xFF])
        i += 1
    return crc


def crc16(const uint8_t[::1] buf, Py_ssize_t start=0, Py_ssize_t stop=-1,
          unsigned int init=0xFFFF):
    """CRC-16/CCITT-FALSE of ``buf[start:stop]`` (bounds checked by the caller)."""
    if stop < 0:
        stop = buf.shape[0]
    cdef uint16_t crc = <uint16_t>init
    if stop > start:
        with nogil:
            crc = _crc(&buf[start], stop - start, crc)
    return crc


def crc16_rows(const uint8_t[:, ::1] rows, Py_ssize_t start, Py_ssize_t stop,
               uint16_t[::1] out):
    """CRC of ``rows[i, start:stop]`` for every row, into ``out``."""
    cdef Py_ssize_t i, n = rows.shape[0]
    with nogil:
        for i in range(n):
            out[i] = _crc(&rows[i, start], stop - start, 0xFFFF)


cdef inline Py_ssize_t _frame_len(const uint8_t* b, const int64_t* P) noexcept nogil:
    """Frame length announced by the header at ``b``, or -1 if the header is invalid."""
    cdef int64_t count, unit
    cdef Py_ssize_t co = P[5]
    if b[P[3]] != P[4]:
        return -1
    if P[6] == 1:
        count = b[co]
    elif P[6] == 2:
        count = b[co] | (<int64_t>b[co + 1] << 8)
    else:
        count = (b[co] | (<int64_t>b[co + 1] << 8) | (<int64_t>b[co + 2] << 16)
                 | (<int64_t>b[co + 3] << 24))
    if count < P[7] or count > P[8]:
        return -1
    if P[11] >= 0:
        unit = b[P[11]]
        if unit > 62 or not ((P[12] >> unit) & 1):
            return -1
    else:
        unit = P[10]
    return <Py_ssize_t>(P[9] + count * unit)


cdef inline bint _crc_ok(const uint8_t* b, Py_ssize_t L, const int64_t* P) noexcept nogil:
    cdef uint16_t got = <uint16_t>(b[L - 2] | (<uint16_t>b[L - 1] << 8))
    return _crc(b + P[13], L - 2 - P[13], 0xFFFF) == got


cdef inline Py_ssize_t _find_sync(const uint8_t* buf, Py_ssize_t a, Py_ssize_t stop,
                                  uint8_t s0, uint8_t s1) noexcept nogil:
    """First position p in [a, stop-1) with buf[p:p+2] == sync, else -1."""
    cdef const uint8_t* q
    while a + 1 < stop:
        q = <const uint8_t*>memchr(buf + a, s0, stop - 1 - a)
        if q == NULL:
            return -1
        a = q - buf
        if buf[a + 1] == s1:
            return a
        a += 1
    return -1


cdef Py_ssize_t _nested_valid(const uint8_t* buf, Py_ssize_t a, Py_ssize_t b,
                              Py_ssize_t stop, const int64_t* P, bint final) noexcept nogil:
    """Start of the first complete, CRC-valid frame beginning in [a, b).

    Returns -1 if there is none, -2 if it cannot be decided yet because a candidate
    (sync word, plausible header) in [a, b) runs past ``stop``.
    """
    cdef Py_ssize_t q = a, L
    cdef bint undecided = False
    while q < b:
        q = _find_sync(buf, q, stop, <uint8_t>P[0], <uint8_t>P[1])
        if q < 0 or q >= b:
            break
        if q + P[2] > stop:
            undecided = True
            break
        L = _frame_len(buf + q, P)
        if L > 0:
            if q + L > stop:
                undecided = True
            elif _crc_ok(buf + q, L, P):
                return q
        q += 1
    if not undecided and b >= stop and buf[stop - 1] == <uint8_t>P[0]:
        undecided = True  # a sync word may start in the last byte
    return -2 if (undecided and not final) else -1


cdef inline void _skip(int64_t* C, Py_ssize_t nbytes) noexcept nogil:
    if nbytes <= 0:
        return
    C[2] += nbytes
    if not C[4]:
        C[3] += 1
        C[4] = 1


cdef inline void _truncated(int64_t* C, Py_ssize_t nbytes) noexcept nogil:
    """A truncated frame of ``nbytes`` skipped: counted once, not as garbage."""
    C[1] += 1
    C[4] = 1
    _skip(C, nbytes)


cdef Py_ssize_t _scan_binary(const uint8_t* b, Py_ssize_t start, Py_ssize_t stop,
                             const int64_t* P, int64_t* out_off, int64_t* out_len,
                             int64_t* C, bint final, Py_ssize_t* keep_out) noexcept nogil:
    """The scan of ``scan_binary`` (``b`` not NULL, ``stop > start``); returns the
    number of frames, ``keep`` in ``keep_out``."""
    cdef Py_ssize_t pos = start, p, L, q, n = 0, keep = stop
    cdef uint8_t s0 = <uint8_t>P[0], s1 = <uint8_t>P[1]
    while True:
        p = _find_sync(b, pos, stop, s0, s1)
        if p < 0:
            # no complete sync word left: keep a trailing first sync byte
            if b[stop - 1] == s0 and stop - 1 >= pos and not final:
                keep = stop - 1
            else:
                keep = stop
            _skip(C, keep - pos)
            break
        _skip(C, p - pos)
        L = -1  # (the header is not all here yet)
        if p + P[2] <= stop:
            L = _frame_len(b + p, P)
            if L < 0:
                C[5] += 1
                _skip(C, 1)
                pos = p + 1
                continue
            if p + L > stop:
                q = _nested_valid(b, p + 1, stop, stop, P, final)
                if q >= 0:
                    _truncated(C, q - p)
                    pos = q
                    continue
        if L < 0 or p + L > stop:
            # the frame runs past the data: wait for the rest, or at the end of
            # the stream count it truncated
            if final:
                _truncated(C, stop - p)
                keep = stop
            else:
                keep = p
            break
        if _crc_ok(b + p, L, P):
            # A truncated frame completed by the start of the next one can pass
            # the CRC by chance (1/256 when cut by one byte: its CRC high byte
            # meets the sync byte; 2^-16 otherwise).  An intact frame never
            # contains another valid frame, so one starting inside unmasks it.
            q = _nested_valid(b, p + 1, p + L, stop, P, final)
            if q == -2:
                keep = p
                break
            if q >= 0:
                _truncated(C, q - p)
                pos = q
                continue
            out_off[n] = p
            out_len[n] = L
            n += 1
            pos = p + L
            C[4] = 0
            continue
        q = _nested_valid(b, p + 1, p + L, stop, P, final)
        if q >= 0:
            _truncated(C, q - p)
            pos = q
            continue
        if q == -2:
            # a frame may start inside this one but is not complete yet: decide
            # (truncated or corrupt) when more bytes have come
            keep = p
            break
        # a complete frame with a bad CRC: count it, then search again one byte on
        C[0] += 1
        C[4] = 1
        _skip(C, 1)
        pos = p + 1
    keep_out[0] = keep
    return n


def scan_binary(const uint8_t[::1] buf, Py_ssize_t start, Py_ssize_t stop,
                const int64_t[::1] params, int64_t[::1] out_off, int64_t[::1] out_len,
                int64_t[::1] counters, bint final=False):
    """Find the good frames in ``buf[start:stop]``.

    Returns ``(n_frames, keep)``: the offsets and lengths of the good frames are in
    ``out_off[:n]``/``out_len[:n]``; bytes from ``keep`` on are an incomplete frame
    (or a lone first sync byte) to be kept for the next call.  ``out_*`` must hold
    at least ``(stop - start) // min_len + 1`` entries.  With ``final`` (end of the
    stream) nothing is kept: an incomplete frame is counted as truncated.
    """
    cdef const uint8_t* b = &buf[0] if buf.shape[0] > 0 else NULL
    cdef Py_ssize_t n, keep
    if b == NULL or stop <= start:
        return 0, start
    with nogil:
        n = _scan_binary(b, start, stop, &params[0], &out_off[0], &out_len[0],
                         &counters[0], final, &keep)
    return n, keep


def scan_frames(cnp.ndarray buf not None, cnp.ndarray params not None,
                cnp.ndarray counters not None, bint final=False):
    """``scan_binary`` over all of ``buf`` (a 1-D contiguous uint8 array, not
    empty) with output arrays of the exact size.

    Returns ``(offsets, lengths, keep, counted)``; ``counted`` tells whether a
    counter changed.  One call instead of two allocations, the scan, two slices
    and a read-back of the counters (``Framer`` per read).
    """
    cdef Py_ssize_t n_bytes, cap, n = 0, keep = 0, i
    cdef int64_t before[6]
    cdef const int64_t* P
    cdef int64_t* C
    cdef int64_t* tmp
    cdef cnp.npy_intp dim
    cdef cnp.ndarray off, lens
    cdef bint changed = False
    if (cnp.PyArray_NDIM(buf) != 1 or cnp.PyArray_TYPE(buf) != cnp.NPY_UINT8
            or not cnp.PyArray_IS_C_CONTIGUOUS(buf) or cnp.PyArray_DIM(buf, 0) == 0):
        raise ValueError("scan_frames needs a non-empty, contiguous 1-D uint8 array")
    _need(params, 1, cnp.NPY_INT64, "params")
    _need(counters, 1, cnp.NPY_INT64, "counters")
    if (cnp.PyArray_DIM(counters, 0) < 6 or cnp.PyArray_DIM(params, 0) < 15
            or not cnp.PyArray_ISWRITEABLE(counters)):
        raise ValueError("bad framing parameters or counters")
    P = <const int64_t*>cnp.PyArray_DATA(params)
    C = <int64_t*>cnp.PyArray_DATA(counters)
    if P[14] <= 0:
        raise ValueError("bad framing parameters or counters")
    n_bytes = cnp.PyArray_DIM(buf, 0)
    cap = n_bytes // P[14] + 2
    tmp = <int64_t*>malloc(2 * cap * sizeof(int64_t))
    if tmp == NULL:
        raise MemoryError()
    try:
        with nogil:
            for i in range(6):
                before[i] = C[i]
            n = _scan_binary(<const uint8_t*>cnp.PyArray_DATA(buf), 0, n_bytes, P,
                             tmp, tmp + cap, C, final, &keep)
            for i in range(6):
                if C[i] != before[i]:
                    changed = True
        dim = n
        off = cnp.PyArray_EMPTY(1, &dim, cnp.NPY_INT64, 0)
        lens = cnp.PyArray_EMPTY(1, &dim, cnp.NPY_INT64, 0)
        if n:
            memcpy(cnp.PyArray_DATA(off), tmp, n * sizeof(int64_t))
            memcpy(cnp.PyArray_DATA(lens), tmp + cap, n * sizeof(int64_t))
    finally:
        free(tmp)
    return off, lens, keep, changed


# --------------------------------------------------------------------------------------
# device clock -> host clock (demine.acquisition.ClockFit): the per-read arithmetic
# --------------------------------------------------------------------------------------
cdef struct _Scan:
    double lo, hi, dmin, xj, rj, x0, xl
    Py_ssize_t j


cdef inline void _clock_scan(const int64_t* dev, const int64_t* host, Py_ssize_t n,
                             int64_t ref_dev, int64_t ref_host, double a, double b,
                             bint fitted, _Scan* s) noexcept nogil:
    """The arithmetic of ``clock_scan`` (``n >= 1``)."""
    cdef Py_ssize_t i
    cdef double x, r, off, xp, r0
    s.x0 = <double>(dev[0] - ref_dev) * 1e-6
    r0 = <double>(host[0] - ref_host) * 1e-9 - s.x0
    s.lo = s.hi = (r0 - (a + b * s.x0)) if fitted else 0.0
    s.dmin = 0.0
    s.xj = xp = s.x0
    s.rj = r0
    s.j = 0
    for i in range(1, n):
        x = <double>(dev[i] - ref_dev) * 1e-6
        r = <double>(host[i] - ref_host) * 1e-9 - x
        off = (r - (a + b * x)) if fitted else (r - r0)
        if off < s.lo:
            s.lo = off
        if off > s.hi:
            s.hi = off
        if i == 1 or x - xp < s.dmin:
            s.dmin = x - xp
        if r < s.rj:
            s.rj = r
            s.xj = x
            s.j = i
        xp = x
    s.xl = xp


cdef inline void _clock_map(const int64_t* dev, Py_ssize_t n, int64_t ref_dev,
                            int64_t ref_host, double a, double b, int64_t* out) noexcept nogil:
    """The arithmetic of ``clock_map``."""
    cdef Py_ssize_t i
    cdef double scale = 1000.0 * (1.0 + b), shift = a * 1e9
    for i in range(n):
        out[i] = ref_host + <int64_t>rint(<double>(dev[i] - ref_dev) * scale + shift)


def clock_scan(const int64_t[::1] dev, const int64_t[::1] host, int64_t ref_dev,
               int64_t ref_host, double a, double b, bint fitted):
    """One pass over the frames of a read for ``ClockFit``, with its arithmetic:
    ``x = (dev - ref_dev) * 1e-6``, ``r = (host - ref_host) * 1e-9 - x`` and
    ``off = r - (a + b * x)`` (``r - r[0]`` before any fit).

    Returns ``(min off, max off, min diff(x), first argmin r, x[j], r[j], x[0],
    x[-1])``.
    """
    cdef Py_ssize_t n = dev.shape[0]
    cdef _Scan s
    if n == 0 or host.shape[0] != n:
        raise ValueError("clock_scan needs equal, non-empty arrays")
    with nogil:
        _clock_scan(&dev[0], &host[0], n, ref_dev, ref_host, a, b, fitted, &s)
    return s.lo, s.hi, s.dmin, s.j, s.xj, s.rj, s.x0, s.xl


def clock_map(const int64_t[::1] dev, int64_t ref_dev, int64_t ref_host, double a, double b,
              int64_t[::1] out):
    """``out = ref_host + rint((dev - ref_dev) * (1000 * (1 + b)) + a * 1e9)``, as
    ``ClockFit`` maps device microseconds to host nanoseconds."""
    cdef Py_ssize_t n = dev.shape[0]
    if out.shape[0] != n:
        raise ValueError("output length differs")
    if n:
        with nogil:
            _clock_map(&dev[0], n, ref_dev, ref_host, a, b, &out[0])


def clock_read(cnp.ndarray dev not None, int64_t t_ns, int64_t ref_dev, int64_t ref_host, double a,
               double b, bint fitted):
    """``clock_scan`` and ``clock_map`` of the frames of one read, all received at
    ``t_ns`` (``ClockFit.update_read``): one call instead of a host-time array,
    a scan, an output array and a mapping.

    ``dev`` must be a 1-D, C-contiguous int64 array with at least one frame.
    Returns ``(host, mapped, negative, min off, max off, min diff(x), j, x[j],
    r[j], x[0], x[-1])``: ``host`` is ``t_ns`` for every frame, ``mapped`` the
    device times mapped with ``(a, b)``; ``negative`` tells that some frame has
    no device clock (``dev < 0``), and then nothing else was computed
    (``mapped`` is left unfilled).
    """
    cdef cnp.npy_intp n
    cdef cnp.ndarray host, out
    cdef const int64_t* d
    cdef int64_t* h
    cdef Py_ssize_t i
    cdef bint neg = False
    cdef _Scan s
    if (cnp.PyArray_NDIM(dev) != 1 or cnp.PyArray_TYPE(dev) != cnp.NPY_INT64
            or not cnp.PyArray_IS_C_CONTIGUOUS(dev) or cnp.PyArray_DIM(dev, 0) == 0):
        raise ValueError("clock_read needs a non-empty, contiguous 1-D int64 array")
    n = cnp.PyArray_DIM(dev, 0)
    host = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT64, 0)
    out = cnp.PyArray_EMPTY(1, &n, cnp.NPY_INT64, 0)
    d = <const int64_t*>cnp.PyArray_DATA(dev)
    h = <int64_t*>cnp.PyArray_DATA(host)
    with nogil:
        for i in range(n):
            h[i] = t_ns
            if d[i] < 0:
                neg = True
        if not neg:
            _clock_scan(d, h, n, ref_dev, ref_host, a, b, fitted, &s)
            _clock_map(d, n, ref_dev, ref_host, a, b, <int64_t*>cnp.PyArray_DATA(out))
    if neg:
        return host, out, True, 0.0, 0.0, 0.0, 0, 0.0, 0.0, 0.0, 0.0
    return host, out, False, s.lo, s.hi, s.dmin, s.j, s.xj, s.rj, s.x0, s.xl


# --------------------------------------------------------------------------------------
# sequence numbers (demine.framing.Framer._sequence): the usual case in one pass
# --------------------------------------------------------------------------------------
def sequence_steps_one(cnp.ndarray seq_arr not None, int64_t prev, bint has_prev):
    """Whether every step of ``seq`` (a contiguous 1-D int64 array) is +1
    modulo 2**32: from ``prev`` to ``seq[0]`` when ``has_prev``, and between
    neighbours (NumPy: ``np.all(np.diff(seq, prepend=prev) % 2**32 == 1)``, with
    ``prev = seq[0] - 1`` without one)."""
    _need(seq_arr, 1, cnp.NPY_INT64, "seq")
    cdef Py_ssize_t i, n = cnp.PyArray_DIM(seq_arr, 0)
    cdef const int64_t* seq = <const int64_t*>cnp.PyArray_DATA(seq_arr)
    cdef int64_t p, low32 = 0xFFFFFFFF
    cdef bint ok = True
    if n == 0:
        return True
    with nogil:
        p = prev if has_prev else seq[0] - 1
        for i in range(n):
            # floor modulo 2**32 of an int64 difference is its low 32 bits
            if ((seq[i] - p - 1) & low32) != 0:
                ok = False
                break
            p = seq[i]
    return ok


# --------------------------------------------------------------------------------------
# decoding of fixed-layout binary frames (demine.drivers: emi-pi, gpr): the good frames
# found by scan_binary, gathered into columns in one pass (the drivers' NumPy gather,
# structured view and casts, without a NumPy call per column)
# --------------------------------------------------------------------------------------
# wire types of a column (little-endian on the wire, whatever the host)
WIRE_U1 = 1
WIRE_U2 = 2
WIRE_U4 = 3
WIRE_U8 = 4
WIRE_I2 = 5
WIRE_I4 = 6
WIRE_F4 = 7


cdef inline uint64_t _le(const uint8_t* p, int width) noexcept nogil:
    cdef uint64_t v = 0
    cdef int k
    for k in range(width):
        v |= (<uint64_t>p[k]) << (8 * k)
    return v


cdef inline int _width(int64_t wire) noexcept nogil:
    if wire == 1:
        return 1
    if wire == 2 or wire == 5:
        return 2
    if wire == 3 or wire == 6 or wire == 7:
        return 4
    if wire == 4:
        return 8
    return 0


cdef inline void _store(char* out, int64_t typenum, const uint8_t* p, int64_t wire) noexcept nogil:
    """Convert one little-endian wire value at ``p`` into the array item at ``out``
    (an integer wire value cast to the output integer type as NumPy's astype does,
    i.e. modulo its width; a float32 wire value copied)."""
    cdef uint64_t u = _le(p, _width(wire))
    cdef int64_t v
    cdef uint32_t u32
    cdef float f
    if wire == 7:
        u32 = <uint32_t>u
        memcpy(&f, &u32, 4)
        (<float*>out)[0] = f
        return
    if wire == 5:
        v = <int16_t>(<uint16_t>u)
    elif wire == 6:
        v = <int32_t>(<uint32_t>u)
    else:
        v = <int64_t>u
    if typenum == cnp.NPY_INT64:
        (<int64_t*>out)[0] = v
    elif typenum == cnp.NPY_INT32:
        (<int32_t*>out)[0] = <int32_t>v
    elif typenum == cnp.NPY_UINT16:
        (<uint16_t*>out)[0] = <uint16_t>v
    elif typenum == cnp.NPY_INT16:
        (<int16_t*>out)[0] = <int16_t>v
    elif typenum == cnp.NPY_UINT32:
        (<uint32_t*>out)[0] = <uint32_t>v
    elif typenum == cnp.NPY_UINT8:
        (<uint8_t*>out)[0] = <uint8_t>v
    else:  # NPY_UINT64
        (<uint64_t*>out)[0] = <uint64_t>v


cdef int _itemsize(int64_t typenum) noexcept nogil:
    if typenum == cnp.NPY_INT64 or typenum == cnp.NPY_UINT64:
        return 8
    if typenum == cnp.NPY_INT32 or typenum == cnp.NPY_UINT32 or typenum == cnp.NPY_FLOAT32:
        return 4
    if typenum == cnp.NPY_INT16 or typenum == cnp.NPY_UINT16:
        return 2
    if typenum == cnp.NPY_UINT8:
        return 1
    return 0


def decode_columns(cnp.ndarray buf not None, cnp.ndarray off not None,
                   cnp.ndarray lens not None, Py_ssize_t n, cnp.ndarray fields not None,
                   Py_ssize_t head, Py_ssize_t tail, Py_ssize_t unit_off,
                   Py_ssize_t unit_const, cnp.ndarray sample_wire not None):
    """Gather the columns of the frames ``buf[off[i]:off[i] + lens[i]]``, ``i < n``.

    ``buf`` is a contiguous 1-D uint8 array, ``off``, ``lens`` and
    ``sample_wire`` contiguous 1-D int64 arrays, ``fields`` a contiguous (k, 3)
    int64 array: ``fields[k] = (byte offset, wire type, output NumPy type
    number)``, one header column each.  The samples start at ``head`` and end
    ``tail`` bytes before the frame's end; their width (bytes) is the header
    byte at ``unit_off`` (or ``unit_const`` when ``unit_off < 0``) and their
    wire type ``sample_wire[width]`` (int16, int32 or float32 out).  Frames
    must have passed ``scan_binary`` with the same layout (their length and
    width are then valid).

    Returns one tuple ``(lo, hi, samples, column 0, column 1, ...)`` per run of
    consecutive frames with equal length and sample width, in stream order.
    """
    cdef Py_ssize_t lo = 0, hi, i, j, k, m, L, w, nf, nb, nw
    cdef const uint8_t* b
    cdef const uint8_t* p
    cdef const int64_t* po
    cdef const int64_t* pl
    cdef const int64_t* pf
    cdef const int64_t* sw
    cdef int64_t wire, tn
    cdef int sz
    cdef char* dst
    cdef cnp.npy_intp dims[2]
    cdef cnp.ndarray arr
    cdef list out = [], cols
    _need(buf, 1, cnp.NPY_UINT8, "buf")
    _need(off, 1, cnp.NPY_INT64, "offsets")
    _need(lens, 1, cnp.NPY_INT64, "lengths")
    _need(fields, 2, cnp.NPY_INT64, "fields")
    _need(sample_wire, 1, cnp.NPY_INT64, "sample_wire")
    if cnp.PyArray_DIM(fields, 1) != 3:
        raise ValueError("fields: expected rows of (offset, wire type, type number)")
    if n > cnp.PyArray_DIM(off, 0) or n > cnp.PyArray_DIM(lens, 0):
        raise ValueError("more frames than offsets")
    if n == 0:
        return out
    nb = cnp.PyArray_DIM(buf, 0)
    nf = cnp.PyArray_DIM(fields, 0)
    nw = cnp.PyArray_DIM(sample_wire, 0)
    b = <const uint8_t*>cnp.PyArray_DATA(buf)
    po = <const int64_t*>cnp.PyArray_DATA(off)
    pl = <const int64_t*>cnp.PyArray_DATA(lens)
    pf = <const int64_t*>cnp.PyArray_DATA(fields)
    sw = <const int64_t*>cnp.PyArray_DATA(sample_wire)
    for i in range(n):
        if po[i] < 0 or pl[i] < head + tail or po[i] + pl[i] > nb \
                or (unit_off >= 0 and unit_off >= pl[i]):
            raise ValueError(f"frame {i} outside the buffer or shorter than its header")
    while lo < n:
        L = pl[lo]
        w = b[po[lo] + unit_off] if unit_off >= 0 else unit_const
        hi = lo + 1
        while hi < n and pl[hi] == L and (
                (b[po[hi] + unit_off] if unit_off >= 0 else unit_const) == w):
            hi += 1
        if w <= 0 or w >= nw or sw[w] <= 0 or (L - head - tail) % w:
            raise ValueError(f"frames {lo}..{hi - 1}: no sample type for width {w}")
        wire = sw[w]
        m = (L - head - tail) // w
        tn = (cnp.NPY_FLOAT32 if wire == 7 else cnp.NPY_INT16 if wire == 5
              else cnp.NPY_INT32)
        sz = _itemsize(tn)
        if wire not in (5, 6, 7) or sz != w:
            raise ValueError(f"frames {lo}..{hi - 1}: sample wire type {wire} for width {w}")
        dims[0] = hi - lo
        dims[1] = m
        arr = cnp.PyArray_EMPTY(2, dims, <int>tn, 0)
        cols = [lo, hi, arr]
        dst = <char*>cnp.PyArray_DATA(arr)
        with nogil:
            if _HOST_LE:  # the wire's bytes are the array's
                for i in range(lo, hi):
                    memcpy(dst, b + po[i] + head, m * w)
                    dst += m * w
            else:
                for i in range(lo, hi):
                    p = b + po[i] + head
                    for j in range(m):
                        _store(dst, tn, p + j * w, wire)
                        dst += sz
        for k in range(nf):
            wire = pf[3 * k + 1]
            tn = pf[3 * k + 2]
            sz = _itemsize(tn)
            j = pf[3 * k]
            if sz == 0 or _width(wire) == 0 or j < 0 or j + _width(wire) > L:
                raise ValueError(f"bad column {k}: {(j, wire, tn)}")
            arr = cnp.PyArray_EMPTY(1, dims, <int>tn, 0)
            dst = <char*>cnp.PyArray_DATA(arr)
            with nogil:
                for i in range(lo, hi):
                    _store(dst, tn, b + po[i] + j, wire)
                    dst += sz
            cols.append(arr)
        out.append(tuple(cols))
        lo = hi
    return out


# --------------------------------------------------------------------------------------
# ClockFit._fit: the robust line through the block minima (Theil-Sen slope, median
# intercept, inliers by the median absolute residual), compiled; the same values as
# NumPy's triu_indices / median / abs arithmetic
# --------------------------------------------------------------------------------------
cdef double _select(double* v, Py_ssize_t n, Py_ssize_t k) noexcept nogil:
    """The k-th smallest of v[:n] (v is reordered); no NaN in v."""
    cdef Py_ssize_t lo = 0, hi = n - 1, i, j, mid
    cdef double pivot, t
    while hi > lo:
        mid = lo + (hi - lo) // 2
        # median of three as pivot
        if v[mid] < v[lo]:
            t = v[mid]; v[mid] = v[lo]; v[lo] = t
        if v[hi] < v[lo]:
            t = v[hi]; v[hi] = v[lo]; v[lo] = t
        if v[hi] < v[mid]:
            t = v[hi]; v[hi] = v[mid]; v[mid] = t
        pivot = v[mid]
        i = lo
        j = hi
        while i <= j:
            while v[i] < pivot:
                i += 1
            while pivot < v[j]:
                j -= 1
            if i <= j:
                t = v[i]; v[i] = v[j]; v[j] = t
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return v[k]
    return v[k]


cdef double _median(double* v, Py_ssize_t n) noexcept nogil:
    """``np.median`` of v[:n] (reordered): NaN if any is NaN, else the mean of
    the middle value or of the two middle ones as NumPy computes it (a sum
    from +0.0, so a -0.0 comes out as 0.0, then divided by the count)."""
    cdef Py_ssize_t i, k = n // 2
    cdef double hi_v, lo_v
    for i in range(n):
        if v[i] != v[i]:
            return v[i]
    hi_v = _select(v, n, k)
    if n % 2:
        return 0.0 + hi_v
    # the (k-1)-th smallest: the largest of the k values left of position k
    lo_v = v[0]
    for i in range(1, k):
        if v[i] > lo_v:
            lo_v = v[i]
    return ((0.0 + lo_v) + hi_v) / 2.0


def robust_line(const double[::1] bx, const double[::1] br):
    """Theil-Sen slope ``b0`` (median of the slopes between every pair of points),
    intercept ``a0 = median(br - b0 * bx)``, residuals ``res = br - (a0 + b0 *
    bx)``, ``mad = median(|res|)``; returns ``(a0, b0, ok, n_ok)`` with ``ok =
    |res| < 5 * mad + 1e-4`` (a bool array).  The arithmetic of ``ClockFit._fit``
    in NumPy, element for element (products kept apart from sums)."""
    cdef Py_ssize_t n = bx.shape[0], m, i, j, q = 0, n_ok = 0
    cdef double b0, a0, mad, lim
    cdef volatile double prod
    cdef cnp.npy_intp dim
    cdef cnp.ndarray ok
    cdef cnp.npy_bool* okp
    if br.shape[0] != n or n < 2:
        raise ValueError("robust_line needs two equal arrays of at least two points")
    m = n * (n - 1) // 2
    cdef double[::1] buf = np.empty(max(m, n), dtype=np.float64)
    cdef double[::1] res = np.empty(n, dtype=np.float64)
    dim = n
    ok = cnp.PyArray_EMPTY(1, &dim, cnp.NPY_BOOL, 0)
    okp = <cnp.npy_bool*>cnp.PyArray_DATA(ok)
    with nogil:
        for i in range(n):
            for j in range(i + 1, n):
                buf[q] = (br[j] - br[i]) / (bx[j] - bx[i])
                q += 1
        b0 = _median(&buf[0], m)
        for i in range(n):
            prod = b0 * bx[i]
            buf[i] = br[i] - prod
        a0 = _median(&buf[0], n)
        for i in range(n):
            prod = b0 * bx[i]
            res[i] = br[i] - (a0 + prod)
            buf[i] = fabs(res[i])
        mad = _median(&buf[0], n)
        prod = 5 * mad
        lim = prod + 1e-4
        for i in range(n):
            okp[i] = fabs(res[i]) < lim
            n_ok += okp[i]
    return a0, b0, ok, n_ok
