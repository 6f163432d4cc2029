# cython: language_level=3
"""Private compiled detection kernels, wrapped by :mod:`demine.detect`.

``hysteresis_run`` turns a detection statistic into events (runs of frames
above an adaptive, CFAR-style threshold with hysteresis) and the peaks inside
them (local maxima separated by a dip of a given ratio).  It processes one
chunk and carries its state in small NumPy arrays owned by the caller, so a
stream cut into any chunks gives bit-identical output to one call.

Float state layout (``f``, float64, length NFS):
    0 bg mean   1 bg variance   2 warm-up mean   3 warm-up sum of squared
    deviations from it (Welford's update: no cancellation for a statistic far
    from zero, as the mean of squares minus the squared mean had)
    event: 4 max s  5 max x  6 max y  7 max t  8 path length  9 sum s
           10 last x  11 last y  12 hi threshold at start  13 bg mean at start
           14 xmin  15 xmax  16 ymin  17 ymax  18 start t  19 end t  20 bg sd at start
    peaks: 21 candidate peak s  22 its x  23 its y  24 its t  25 valley s
Integer state layout (``st``, int64, length NIS):
    0 frames in background  1 next frame index  2 in event  3 start index
    4 max index  5 frames in event  6 gap (frames below lo)  7 end index
    8 event has a last position  9 max time (int64)
    peaks: 10 mode (0 rising to a peak, 1 falling to a valley)
           11 candidate peak index  12 candidate peak time (int64)
    13 age of the event: frames with a statistic since its first frame
Event rows: ``seg_f[k]`` = max s, max x, max y, max t, length, sum s,
hi threshold, bg mean, xmin, xmax, ymin, ymax, start t, end t, bg sd;
``seg_i[k]`` = start index, end index, max index, frames, max time, aborted (1 when
the event outlasted ``max_frames``: a change of background, not a target).
Peak rows: ``pk_f[k]`` = s, x, y, t; ``pk_i[k]`` = event start index, peak
index, peak time.
"""

from libc.math cimport sqrt, isfinite, NAN
from libc.stdint cimport int64_t

NFS = 26
NIS = 14
NSF = 15
NSI = 6
NPF = 4
NPI = 3


cdef inline void _emit(double[::1] f, int64_t[::1] st, double[:, ::1] seg_f,
                       int64_t[:, ::1] seg_i, Py_ssize_t k) noexcept nogil:
    cdef Py_ssize_t c
    for c in range(4):
        seg_f[k, c] = f[4 + c]
    seg_f[k, 4] = f[8]
    seg_f[k, 5] = f[9]
    seg_f[k, 6] = f[12]
    seg_f[k, 7] = f[13]
    for c in range(4):
        seg_f[k, 8 + c] = f[14 + c]
    seg_f[k, 12] = f[18]
    seg_f[k, 13] = f[19]
    seg_f[k, 14] = f[20]
    seg_i[k, 0] = st[3]
    seg_i[k, 1] = st[7]
    seg_i[k, 2] = st[4]
    seg_i[k, 3] = st[5]
    seg_i[k, 4] = st[9]
    seg_i[k, 5] = 0


cdef inline void _emit_peak(double[::1] f, int64_t[::1] st, double[:, ::1] pk_f,
                            int64_t[:, ::1] pk_i, Py_ssize_t k) noexcept nogil:
    pk_f[k, 0] = f[21]
    pk_f[k, 1] = f[22]
    pk_f[k, 2] = f[23]
    pk_f[k, 3] = f[24]
    pk_i[k, 0] = st[3]
    pk_i[k, 1] = st[11]
    pk_i[k, 2] = st[12]


cdef inline void _candidate(double[::1] f, int64_t[::1] st, double si, double xi, double yi,
                            double ti, int64_t idx, int64_t tni) noexcept nogil:
    f[21] = si
    f[22] = xi
    f[23] = yi
    f[24] = ti
    st[11] = idx
    st[12] = tni


def hysteresis_run(const double[::1] s, const double[::1] x, const double[::1] y,
                   const double[::1] t, const int64_t[::1] tn, double[::1] thr_out,
                   double[::1] f, int64_t[::1] st,
                   double[:, ::1] seg_f, int64_t[:, ::1] seg_i,
                   double[:, ::1] pk_f, int64_t[:, ::1] pk_i,
                   double alpha, double k_hi, double k_lo, double floor_hi,
                   double floor_lo, double clip, int64_t warmup, int64_t hold,
                   double split, int64_t max_frames):
    """Hysteresis detection with an adaptive (CFAR-style) threshold, and peaks.

    Background: while no event is active, each frame below the high threshold
    updates a running level ``m`` and spread ``v`` of the statistic (plain
    mean/variance over the first ``warmup`` frames, by Welford's update, stable
    for a statistic with a large offset; then exponential with weight
    ``alpha``: the level from deviations clipped at ``clip`` standard
    deviations, the spread from the squared deviations below the level only,
    so that the tails of targets, which lie above it, do not inflate it).  Frames
    in or pending in an event never update it (censoring), so a target does not
    raise its own threshold.

    Thresholds: ``hi = max(floor_hi, m + k_hi * sd)``, ``lo = min(hi,
    max(floor_lo, m + k_lo * sd))``; during warm-up only the floors apply.  An
    event starts at a frame with ``s >= hi``, continues while ``s >= lo`` and
    ends after more than ``hold`` consecutive frames below ``lo``.

    Peaks: inside an event, a maximum is a peak once the statistic falls below
    ``max / split``; the next peak can start once it rises above ``valley *
    split``; the last maximum of an event is a peak when the event ends.

    An event still active ``max_frames`` frames with a statistic after its
    first frame is aborted there (written with the aborted flag; its peaks are
    to be discarded; that frame is used for nothing else): the statistic stayed
    high because the background changed (a soil patch, a level step), so the
    background level restarts from the event's mean.

    Non-finite statistics (missing readings) are skipped: they neither extend,
    end nor start an event, nor update the background, nor count towards
    ``hold`` or ``max_frames``, so a stream gives the events of the same stream
    with its missing frames cut out (at other frame indices); ``thr_out`` is
    NaN there.  Returns the numbers of events and of peaks completed in this
    chunk.
    """
    cdef Py_ssize_t n = s.shape[0], i, k = 0, kp = 0
    cdef double si, xi, yi, ti, hi, lo, sd, d, lim, dx, dy
    cdef int64_t idx
    cdef bint posok
    if f.shape[0] < NFS or st.shape[0] < NIS:
        raise ValueError(f"hysteresis_run: state arrays need {NFS} floats and {NIS} "
                         f"integers, got {f.shape[0]} and {st.shape[0]}")
    with nogil:
        for i in range(n):
            idx = st[1]
            st[1] += 1
            si = s[i]
            if not isfinite(si):
                thr_out[i] = NAN
                continue
            xi = x[i]
            yi = y[i]
            ti = t[i]
            posok = isfinite(xi) and isfinite(yi)
            if st[0] < warmup:
                hi = floor_hi
                lo = floor_lo
                sd = sqrt(f[1]) if st[0] > 0 else 0.0
            else:
                sd = sqrt(f[1])
                hi = f[0] + k_hi * sd
                if hi < floor_hi:
                    hi = floor_hi
                lo = f[0] + k_lo * sd
                if lo < floor_lo:
                    lo = floor_lo
            if lo > hi:
                lo = hi
            thr_out[i] = hi
            if st[2]:
                st[13] += 1
            if st[2] and max_frames > 0 and st[13] >= max_frames:
                _emit(f, st, seg_f, seg_i, k)
                seg_i[k, 5] = 1
                k += 1
                st[2] = 0
                f[0] = f[9] / st[5]
                continue
            if st[2]:
                if si >= lo:
                    st[6] = 0
                    st[5] += 1
                    f[9] += si
                    if posok:
                        if st[8]:
                            dx = xi - f[10]
                            dy = yi - f[11]
                            f[8] += sqrt(dx * dx + dy * dy)
                            if xi < f[14]:
                                f[14] = xi
                            if xi > f[15]:
                                f[15] = xi
                            if yi < f[16]:
                                f[16] = yi
                            if yi > f[17]:
                                f[17] = yi
                        else:
                            f[14] = xi
                            f[15] = xi
                            f[16] = yi
                            f[17] = yi
                        f[10] = xi
                        f[11] = yi
                        st[8] = 1
                    if si > f[4]:
                        f[4] = si
                        f[5] = xi
                        f[6] = yi
                        f[7] = ti
                        st[4] = idx
                        st[9] = tn[i]
                    # peak splitting
                    if st[10] == 0:
                        if si > f[21]:
                            _candidate(f, st, si, xi, yi, ti, idx, tn[i])
                        elif si * split < f[21]:
                            _emit_peak(f, st, pk_f, pk_i, kp)
                            kp += 1
                            st[10] = 1
                            f[25] = si
                    else:
                        if si < f[25]:
                            f[25] = si
                        elif si > f[25] * split:
                            st[10] = 0
                            _candidate(f, st, si, xi, yi, ti, idx, tn[i])
                    st[7] = idx
                    f[19] = ti
                    continue
                st[6] += 1
                if st[6] <= hold:
                    continue
                _emit(f, st, seg_f, seg_i, k)
                k += 1
                if st[10] == 0:
                    _emit_peak(f, st, pk_f, pk_i, kp)
                    kp += 1
                st[2] = 0
                # this frame is below lo: it falls through to the background update
            if si >= hi:
                st[2] = 1
                st[3] = idx
                st[4] = idx
                st[5] = 1
                st[6] = 0
                st[7] = idx
                st[9] = tn[i]
                st[10] = 0
                st[13] = 0
                _candidate(f, st, si, xi, yi, ti, idx, tn[i])
                f[4] = si
                f[5] = xi
                f[6] = yi
                f[7] = ti
                f[8] = 0.0
                f[9] = si
                f[12] = hi
                f[13] = f[0]
                f[20] = sd
                f[18] = ti
                f[19] = ti
                if posok:
                    f[10] = xi
                    f[11] = yi
                    f[14] = xi
                    f[15] = xi
                    f[16] = yi
                    f[17] = yi
                    st[8] = 1
                else:
                    f[14] = NAN
                    f[15] = NAN
                    f[16] = NAN
                    f[17] = NAN
                    st[8] = 0
                continue
            # background update
            if st[0] < warmup:
                # Welford: mean f[2] and squared deviations f[3] (each term
                # d * (si - new mean) = d**2 (n - 1) / n is >= 0)
                st[0] += 1
                d = si - f[2]
                f[2] += d / st[0]
                f[3] += d * (si - f[2])
                f[0] = f[2]
                f[1] = f[3] / st[0]
            else:
                d = si - f[0]
                # spread from the deviations below the level only (a target's
                # tail is above it), level from clipped deviations (Huber-like)
                if d < 0.0:
                    f[1] += alpha * (d * d - f[1])
                if clip > 0.0 and sd > 0.0:
                    lim = clip * sd
                    if d > lim:
                        d = lim
                    elif d < -lim:
                        d = -lim
                f[0] += alpha * d
                st[0] += 1
    return k, kp


def flush_event(double[::1] f, int64_t[::1] st, double[:, ::1] seg_f, int64_t[:, ::1] seg_i,
                double[:, ::1] pk_f, int64_t[:, ::1] pk_i):
    """End an event still active at the end of the stream; returns (events, peaks) written."""
    cdef int kp = 0
    if f.shape[0] < NFS or st.shape[0] < NIS:
        raise ValueError(f"flush_event: state arrays need {NFS} floats and {NIS} "
                         f"integers, got {f.shape[0]} and {st.shape[0]}")
    if not st[2]:
        return 0, 0
    _emit(f, st, seg_f, seg_i, 0)
    if st[10] == 0:
        _emit_peak(f, st, pk_f, pk_i, 0)
        kp = 1
    st[2] = 0
    st[6] = 0
    return 1, kp
