# cython: language_level=3
"""Private compiled EMI kernels (n_frames x n_gates), wrapped by :mod:`demine.emi`.

Every kernel processes one chunk and carries its state in small NumPy arrays
owned by the caller, so a stream cut into any chunks gives bit-identical output
to one call.  Arithmetic is float64 whatever the input dtype (float32 or
float64); outputs have the input dtype.

Missing-value policy (shared by all kernels): a non-finite input value (NaN or
+-inf) is treated as missing.  It never enters any state; the outputs that
depend on it are NaN; the frames after it are processed as if it were absent.

Integer state layout (``istate``, int64):
    baseline: [n_seen, hold_left, frozen_run]
    detect:   [n_seen, skipped]
    matched:  [n_seen, skipped, n_prev, n_ring, pos]
    soil_learn: [frames in the block, blocks seen, blocks learnt from,
                 consecutive rejected blocks (blocks of the warm-up while it lasts), warm-up done]
"""

from libc.math cimport sqrt, fabs, isfinite, NAN, INFINITY, copysign
from libc.stdint cimport int64_t, uint8_t

import numpy as np

ctypedef fused real:
    float
    double

cdef extern from *:
    """
    /* The matched statistic's per-reading step: z_g = x_g / max(sig_g, floor)
       (0 where that is not positive) into the ring's row, and the running sum
       (less the row it replaces once the ring is full).  The division is by 1
       where the scale is not positive and its result is then selected, so the
       compiler vectorises the loop (IEEE division: the same values as dividing
       gate by gate). */
    #if defined(_MSC_VER)
    #define DM_RESTRICT __restrict
    #else
    #define DM_RESTRICT __restrict__
    #endif
    #define DM_ZACC(NAME, T) \
    static inline void NAME(const T* DM_RESTRICT x, const double* DM_RESTRICT sig, \
                            double floor_, double* DM_RESTRICT acc, \
                            double* DM_RESTRICT ring, Py_ssize_t ng, int full) { \
        Py_ssize_t g; \
        if (full) { \
            for (g = 0; g < ng; g++) { \
                double d = sig[g] > floor_ ? sig[g] : floor_; \
                double z = (double)x[g] / (d > 0.0 ? d : 1.0); \
                z = d > 0.0 ? z : 0.0; \
                acc[g] += z - ring[g]; \
                ring[g] = z; \
            } \
        } else { \
            for (g = 0; g < ng; g++) { \
                double d = sig[g] > floor_ ? sig[g] : floor_; \
                double z = (double)x[g] / (d > 0.0 ? d : 1.0); \
                z = d > 0.0 ? z : 0.0; \
                acc[g] += z; \
                ring[g] = z; \
            } \
        } \
    }
    DM_ZACC(dm_zacc_f32, float)
    DM_ZACC(dm_zacc_f64, double)
    """
    void dm_zacc_f32(const float* x, const double* sig, double floor_, double* acc,
                     double* ring, Py_ssize_t ng, int full) noexcept nogil
    void dm_zacc_f64(const double* x, const double* sig, double floor_, double* acc,
                     double* ring, Py_ssize_t ng, int full) noexcept nogil


# sqrt(pi/2): E|x| * sqrt(pi/2) = sigma for a zero-mean normal variable.
cdef double MAD_TO_SIGMA = 1.2533141373155003


cdef inline bint _row_finite(const real[:, ::1] x, Py_ssize_t i, Py_ssize_t ng) noexcept nogil:
    cdef Py_ssize_t g
    for g in range(ng):
        if not isfinite(x[i, g]):
            return False
    return True


cdef inline bint _soil_fit_row(const real[:, ::1] x, real[:, ::1] out,
                               const double[:, ::1] coef, double[:, ::1] amp,
                               double* acc, Py_ssize_t i, Py_ssize_t ng,
                               Py_ssize_t nk) noexcept nogil:
    """The soil amplitudes ``acc = coef @ x[i]`` (also into ``amp[i]``); a row
    with a non-finite value gets NaN output and amplitudes and returns False."""
    cdef Py_ssize_t g, k
    cdef double a
    if not _row_finite(x, i, ng):
        for g in range(ng):
            out[i, g] = <real>NAN
        for k in range(nk):
            amp[i, k] = NAN
        return False
    for k in range(nk):
        a = 0.0
        for g in range(ng):
            a = a + coef[k, g] * x[i, g]
        acc[k] = a
        amp[i, k] = a
    return True


cdef inline double _sumsq_scaled(const double* r, const double* inv,
                                 Py_ssize_t ng) noexcept nogil:
    """sum_g (r_g * inv_g)^2 with four partial sums (fixed order: deterministic)."""
    cdef double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0, t0, t1, t2, t3
    cdef Py_ssize_t g = 0
    while g + 4 <= ng:
        t0 = r[g] * inv[g]
        t1 = r[g + 1] * inv[g + 1]
        t2 = r[g + 2] * inv[g + 2]
        t3 = r[g + 3] * inv[g + 3]
        s0 += t0 * t0
        s1 += t1 * t1
        s2 += t2 * t2
        s3 += t3 * t3
        g += 4
    while g < ng:
        t0 = r[g] * inv[g]
        s0 += t0 * t0
        g += 1
    return (s0 + s1) + (s2 + s3)


cdef inline Py_ssize_t _inverse(const double* sig, double floor, double* inv,
                                Py_ssize_t ng) noexcept nogil:
    """inv_g = 1 / max(sig_g, floor), 0 where that is 0; returns how many are 0."""
    cdef Py_ssize_t g, nzero = 0
    cdef double d
    for g in range(ng):
        d = sig[g] if sig[g] > floor else floor
        inv[g] = 1.0 / d if d > 0.0 else 0.0
        nzero += d <= 0.0
    return nzero


def _quiet_level(const double[:, ::1] readings, const double[::1] inv):
    """Per-gate median of the quietest readings: those whose noise-weighted
    mean over the gates lies in the shortest interval holding a quarter of
    them (the densest cluster: the ground between targets, which targets,
    each at its own level, do not form even when they are most of the
    readings)."""
    r = np.asarray(readings)
    v = r @ np.asarray(inv) / r.shape[1]
    srt = np.sort(v)
    k = max(1, r.shape[0] // 4)
    j = int(np.argmin(srt[k - 1:] - srt[:r.shape[0] - k + 1]))
    pick = (v >= srt[j]) & (v <= srt[j + k - 1])
    return np.median(r[pick], axis=0)


def baseline_run(const real[:, ::1] x, real[:, ::1] out,
                 double[::1] base, double[::1] sig, int64_t[::1] istate,
                 uint8_t[::1] frozen_out,
                 double alpha, double noise_alpha, double threshold,
                 int64_t hold, int64_t max_freeze, int64_t warmup, double clip,
                 double[:, ::1] fbuf):
    """Exponential baseline that freezes while an anomaly is active.

    For each frame: r = x - base is output; the statistic
    s = sqrt(mean_g (r_g / sig_g)^2) decides whether an anomaly is active
    (s > threshold after ``warmup`` frames; a zero sig_g with a non-zero r_g
    counts as infinite); the baseline and the noise scale are updated only
    when no anomaly is active and none was in the last ``hold`` frames.  A
    freeze longer than ``max_freeze`` frames (> 0) ends in a retune (noise
    scale kept): when ``fbuf`` has rows (``max_freeze`` x gates, part of the
    state: it holds the freeze's readings) the baseline is set to the level of
    the quietest of them (:func:`_quiet_level`); with none, to the current
    reading.
    ``frozen_out[i]`` is 1 where the baseline was held.
    """
    cdef Py_ssize_t n = x.shape[0], ng = x.shape[1], i, g, nzero, m
    cdef Py_ssize_t nbuf = fbuf.shape[0]
    cdef int64_t n_seen = istate[0], hold_left = istate[1], frozen_run = istate[2]
    cdef double rr, s, a, an, v, lim
    cdef bint frozen, anomalous
    cdef double[::1] rbuf = np.empty(ng, dtype=np.float64)
    cdef double[::1] inv = np.empty(ng, dtype=np.float64)
    cdef double* rp = &rbuf[0]
    cdef double* ip = &inv[0]
    cdef double* bp = &base[0]
    cdef double* sp = &sig[0]
    with nogil:
        nzero = _inverse(sp, 0.0, ip, ng)
        for i in range(n):
            if n_seen == 0:
                if not _row_finite(x, i, ng):
                    for g in range(ng):
                        out[i, g] = <real>NAN
                    frozen_out[i] = 0
                    continue
                for g in range(ng):
                    bp[g] = x[i, g]
                    sp[g] = 0.0
                    out[i, g] = 0
                nzero = _inverse(sp, 0.0, ip, ng)
                n_seen = 1
                frozen_out[i] = 0
                continue
            for g in range(ng):
                rr = x[i, g] - bp[g]
                rp[g] = rr
                out[i, g] = <real>rr
            s = _sumsq_scaled(rp, ip, ng)
            if s != s or s == INFINITY and not _row_finite(x, i, ng):
                # a missing value: NaN where it is, no state update
                if not _row_finite(x, i, ng):
                    for g in range(ng):
                        if not isfinite(x[i, g]):
                            out[i, g] = <real>NAN
                    frozen_out[i] = 0
                    continue
            if nzero:
                for g in range(ng):
                    if ip[g] == 0.0 and rp[g] != 0.0:
                        s = INFINITY
            s = sqrt(s / ng)
            anomalous = n_seen >= warmup and s > threshold
            if anomalous:
                hold_left = hold
                frozen = True
            elif hold_left > 0:
                hold_left -= 1
                frozen = True
            else:
                frozen = False
            if frozen:
                frozen_run += 1
                if max_freeze > 0 and frozen_run > max_freeze:
                    # retune: the freeze lasted longer than any pass over a
                    # target; re-null the baseline on the level of the
                    # quietest of the freeze's readings (the reading now may
                    # be on a target: in dense clutter a freeze often ends on
                    # one) or, the detector's way, on this reading
                    m = max_freeze if max_freeze < nbuf else nbuf
                    if m > 0:
                        with gil:  # a retune is rare (one per max_freeze frames at most)
                            level = _quiet_level(fbuf[:m], inv)
                            for g in range(ng):
                                bp[g] = level[g]
                    else:
                        for g in range(ng):
                            bp[g] = x[i, g]
                    hold_left = 0
                    frozen_run = 0
                    frozen_out[i] = 0
                    continue
                elif frozen_run <= nbuf:
                    for g in range(ng):
                        fbuf[frozen_run - 1, g] = x[i, g]
            else:
                frozen_run = 0
            frozen_out[i] = frozen
            if not frozen:
                a = 1.0 / (n_seen + 1)
                if a < alpha:
                    a = alpha
                an = 1.0 / n_seen
                if an < noise_alpha:
                    an = noise_alpha
                if n_seen >= warmup and clip > 0.0:
                    for g in range(ng):
                        rr = rp[g]
                        bp[g] += a * rr
                        v = fabs(rr) * MAD_TO_SIGMA
                        lim = clip * sp[g]
                        v = v if v < lim else lim
                        sp[g] += an * (v - sp[g])
                else:
                    for g in range(ng):
                        rr = rp[g]
                        bp[g] += a * rr
                        sp[g] += an * (fabs(rr) * MAD_TO_SIGMA - sp[g])
                nzero = _inverse(sp, 0.0, ip, ng)
                n_seen += 1
    istate[0] = n_seen
    istate[1] = hold_left
    istate[2] = frozen_run


def soil_run(const real[:, ::1] x, real[:, ::1] out,
             const double[:, ::1] coef, const double[:, ::1] basis,
             double[:, ::1] amp):
    """Project each frame onto the complement of the soil subspace.

    ``coef`` (k, G) is the least-squares solver (pinv of ``basis``), ``basis``
    (G, k) the soil components; out = x - basis @ (coef @ x).  ``amp`` (n, k)
    receives the fitted component amplitudes (NaN for a frame with a
    non-finite value, whose whole output row is NaN).
    """
    cdef Py_ssize_t n = x.shape[0], ng = x.shape[1], nk = coef.shape[0], i, g, k
    cdef double y
    cdef double acc[64]
    if nk > 64:
        raise ValueError("at most 64 soil components")
    with nogil:
        for i in range(n):
            if not _soil_fit_row(x, out, coef, amp, acc, i, ng, nk):
                continue
            for g in range(ng):
                y = x[i, g]
                for k in range(nk):
                    y = y - basis[g, k] * acc[k]
                out[i, g] = <real>y


def detect_run(const real[:, ::1] x, real[:, ::1] z, real[::1] stat,
               double[::1] sig, int64_t[::1] istate,
               double noise_alpha, double threshold, int64_t warmup, double clip,
               double min_noise, int64_t max_freeze):
    """Noise-normalised detection statistic.

    z_g = x_g / max(sig_g, min_noise) with sig_g a running robust noise scale
    (exponential average of sqrt(pi/2)|x_g|, each update clipped at
    ``clip`` * sig_g, and skipped while the statistic exceeds ``threshold`` so
    that a target does not inflate its own noise estimate); the statistic is
    s = sqrt(mean_g z_g^2).  During the first ``warmup`` frames the noise scale
    is the plain running mean including the current frame (no clipping, no
    skipping).  After ``max_freeze`` (> 0) consecutive skipped frames the
    (clipped) updates resume, so a lasting change of the noise level is
    learnt.  A zero scale with a non-zero value gives +-inf.
    """
    cdef Py_ssize_t n = x.shape[0], ng = x.shape[1], i, g
    cdef int64_t n_seen = istate[0], skipped = istate[1]
    cdef double r, d, s, a, v, lim, zz
    with nogil:
        for i in range(n):
            if not _row_finite(x, i, ng):
                for g in range(ng):
                    d = sig[g] if sig[g] > min_noise else min_noise
                    r = x[i, g]
                    if not isfinite(r):
                        z[i, g] = <real>NAN
                    elif d > 0.0:
                        z[i, g] = <real>(r / d)
                    elif r == 0.0:
                        z[i, g] = 0
                    else:
                        z[i, g] = <real>copysign(INFINITY, r)
                stat[i] = <real>NAN
                continue
            if n_seen < warmup:
                # cumulative mean including this frame, then normalise
                a = 1.0 / (n_seen + 1)
                for g in range(ng):
                    sig[g] += a * (fabs(x[i, g]) * MAD_TO_SIGMA - sig[g])
                n_seen += 1
                s = 0.0
                for g in range(ng):
                    r = x[i, g]
                    d = sig[g] if sig[g] > min_noise else min_noise
                    if d > 0.0:
                        zz = r / d
                    elif r == 0.0:
                        zz = 0.0
                    else:
                        zz = copysign(INFINITY, r)
                    z[i, g] = <real>zz
                    s += zz * zz
                stat[i] = <real>sqrt(s / ng)
                continue
            s = 0.0
            for g in range(ng):
                r = x[i, g]
                d = sig[g] if sig[g] > min_noise else min_noise
                if d > 0.0:
                    zz = r / d
                elif r == 0.0:
                    zz = 0.0
                else:
                    zz = copysign(INFINITY, r)
                z[i, g] = <real>zz
                s += zz * zz
            s = sqrt(s / ng)
            stat[i] = <real>s
            if s > threshold:
                skipped += 1
            if s <= threshold or (max_freeze > 0 and skipped > max_freeze):
                if s <= threshold:
                    skipped = 0
                for g in range(ng):
                    v = fabs(x[i, g]) * MAD_TO_SIGMA
                    if clip > 0.0:
                        lim = clip * sig[g]
                        if v > lim:
                            v = lim
                    sig[g] += noise_alpha * (v - sig[g])
                n_seen += 1
    istate[0] = n_seen
    istate[1] = skipped


# sqrt(pi/2) / sqrt(6): a second difference x[i] - 2 x[i-1] + x[i-2] of white
# noise has standard deviation sqrt(6) sigma.
cdef double D2_TO_SIGMA = 0.5116633539732443


def matched_run(const real[:, ::1] x, real[:] stat, double[::1] sig,
                double[:, ::1] prev, double[:, ::1] ring, double[::1] acc,
                int64_t[::1] istate, const double[:, ::1] proj, bint use_proj,
                double[::1] work, double noise_alpha, double threshold, int64_t warmup,
                double clip, double min_noise, int64_t max_freeze,
                real[:] nov, double[:, ::1] uring, int64_t[::1] dq_idx, double[::1] dq_val,
                int64_t[::1] nstate, bint want_nov):
    """Matched (integrating) detection statistic with a difference-based noise scale.

    Noise: sig_g is a running robust scale of the second difference
    ``x[i] - 2 x[i-1] + x[i-2]`` of each gate (exponential average of
    ``sqrt(pi/2) / sqrt(6) * |d2|``), which a target's smooth passage under the
    coil barely touches, so clutter and large objects do not inflate it.  The
    first ``warmup`` available differences give a plain running mean; then each
    update is clipped at ``clip * sig_g`` and skipped while the statistic
    exceeds ``threshold`` (updates resume after ``max_freeze`` consecutive
    skipped frames).

    Statistic: z_g = x_g / max(sig_g, min_noise) (0 where that scale is 0),
    summed over the last ``L = ring.shape[0]`` finite frames (a running sum
    ``acc``, recomputed exactly from the ring each time the ring position wraps
    to 0, so rounding never accumulates) and divided by sqrt(L) (sqrt of the
    frames held at the start): u_g, unit variance for white noise, a target's
    response integrated over its passage.  ``s = sqrt(sum(u**2) / G)``, or with
    ``use_proj`` ``w = proj @ u`` and ``s = sqrt(sum(w**2) / k)``.  Frames with
    a non-finite value give NaN and leave every state untouched.

    Shape novelty (``want_nov``): with ``W = uring.shape[0]``, the dominant frame
    is the one of highest ``s`` among the last ``W`` finite frames (this one
    included; the latest of equals), and ``nov`` is the RMS over the gates of
    the part of ``u`` orthogonal to the dominant frame's ``u``: 0 where this
    frame dominates, small over one object whose decay shape barely changes
    across its footprint, large where a second object with another decay adds
    to a stronger one's flank.  State: ``uring`` (W, G + 1) the recent ``u`` rows
    and their squared norms,
    a monotonic deque of frame counts and statistics (``dq_idx``, ``dq_val``,
    ``W + 1`` slots), ``nstate`` = [frames seen, deque head, deque length].
    """
    cdef Py_ssize_t n = x.shape[0], ng = x.shape[1], L = ring.shape[0]
    cdef Py_ssize_t nk = proj.shape[0], i, g, j, k
    cdef int64_t n_seen = istate[0], skipped = istate[1], n_prev = istate[2]
    cdef int64_t n_ring = istate[3], pos = istate[4]
    cdef double d, v, s, a, lim, scale, zz
    cdef Py_ssize_t W = uring.shape[0], cap = dq_idx.shape[0], slot, dslot, tail
    cdef int64_t nc = nstate[0], head = nstate[1], qlen = nstate[2]
    cdef double uu, du, dd, r
    slot = <Py_ssize_t>(nc % W) if want_nov else 0
    with nogil:
        for i in range(n):
            if not _row_finite(x, i, ng):
                stat[i] = <real>NAN
                if want_nov:
                    nov[i] = <real>NAN
                continue
            if real is float:
                dm_zacc_f32(&x[i, 0], &sig[0], min_noise, &acc[0], &ring[pos, 0], ng,
                            n_ring == L)
            else:
                dm_zacc_f64(&x[i, 0], &sig[0], min_noise, &acc[0], &ring[pos, 0], ng,
                            n_ring == L)
            pos += 1
            if pos == L:
                pos = 0
            if n_ring < L:
                n_ring += 1
            if pos == 0:
                # exact sum of the ring (oldest first), clearing rounding
                for g in range(ng):
                    acc[g] = 0.0
                for j in range(L):
                    for g in range(ng):
                        acc[g] += ring[j, g]
            scale = 1.0 / sqrt(<double>n_ring)
            s = 0.0
            if use_proj:
                for g in range(ng):
                    work[g] = acc[g] * scale
                for k in range(nk):
                    a = 0.0
                    for g in range(ng):
                        a += proj[k, g] * work[g]
                    s += a * a
                s = sqrt(s / nk)
            elif want_nov:
                # (u kept for the novelty as it is summed)
                for g in range(ng):
                    a = acc[g] * scale
                    uring[slot, g] = a
                    s += a * a
                uring[slot, ng] = s
                s = sqrt(s / ng)
            else:
                for g in range(ng):
                    a = acc[g] * scale
                    s += a * a
                s = sqrt(s / ng)
            stat[i] = <real>s
            if want_nov:
                # (no integer division per frame: the slot of the ring and the
                # deque's positions advance and wrap by comparison)
                if use_proj:
                    uu = 0.0
                    for g in range(ng):
                        a = work[g]
                        uring[slot, g] = a
                        uu += a * a
                    uring[slot, ng] = uu
                else:
                    uu = uring[slot, ng]
                tail = head + qlen - 1
                if tail >= cap:
                    tail -= cap
                while qlen > 0 and dq_val[tail] <= s:
                    qlen -= 1
                    tail -= 1
                    if tail < 0:
                        tail += cap
                tail += 1
                if tail >= cap:
                    tail -= cap
                dq_idx[tail] = nc
                dq_val[tail] = s
                qlen += 1
                while dq_idx[head] <= nc - W:
                    head += 1
                    if head == cap:
                        head = 0
                    qlen -= 1
                dslot = slot - <Py_ssize_t>(nc - dq_idx[head])
                if dslot < 0:
                    dslot += W
                du = 0.0
                for g in range(ng):
                    du += uring[slot, g] * uring[dslot, g]
                dd = uring[dslot, ng]
                r = uu - du * du / dd if dd > 0.0 else uu
                nov[i] = <real>sqrt((r if r > 0.0 else 0.0) / ng)
                nc += 1
                slot += 1
                if slot == W:
                    slot = 0
            if n_prev == 2:
                if n_seen < warmup:
                    for g in range(ng):
                        v = fabs(x[i, g] - 2.0 * prev[0, g] + prev[1, g]) * D2_TO_SIGMA
                        sig[g] += (v - sig[g]) / (n_seen + 1)
                    n_seen += 1
                else:
                    if s > threshold:
                        skipped += 1
                    else:
                        skipped = 0
                    if s <= threshold or (max_freeze > 0 and skipped > max_freeze):
                        for g in range(ng):
                            v = fabs(x[i, g] - 2.0 * prev[0, g] + prev[1, g]) * D2_TO_SIGMA
                            if clip > 0.0:
                                lim = clip * sig[g]
                                if v > lim:
                                    v = lim
                            sig[g] += noise_alpha * (v - sig[g])
                        n_seen += 1
            for g in range(ng):
                prev[1, g] = prev[0, g]
                prev[0, g] = x[i, g]
            if n_prev < 2:
                n_prev += 1
    istate[0] = n_seen
    istate[1] = skipped
    istate[2] = n_prev
    istate[3] = n_ring
    istate[4] = pos
    nstate[0] = nc
    nstate[1] = head
    nstate[2] = qlen


def notch_run(const real[:, ::1] x, real[:, ::1] out, const double[:, ::1] sos,
              double[:, :, ::1] zs, double[::1] last):
    """Cascade of biquads (rows of ``sos``: b0 b1 b2 a0 a1 a2 with a0 = 1),
    transposed direct form II, per gate.  State ``zs`` (n_sections, G, 2) and
    ``last`` (G,), the last finite input of each gate (NaN before the first).

    Each gate's filter starts in the steady state of its first finite value
    (every section has unit gain at DC), so a large DC level makes no
    transient.  A non-finite value outputs NaN and the filter is fed the last
    finite value of that gate instead.
    """
    cdef Py_ssize_t n = x.shape[0], ng = x.shape[1], ns = sos.shape[0], i, g, k
    cdef double u, y, b0, b1, b2, a1, a2
    cdef bint bad
    with nogil:
        for i in range(n):
            for g in range(ng):
                u = x[i, g]
                bad = not isfinite(u)
                if bad:
                    u = last[g]
                    if not isfinite(u):
                        out[i, g] = <real>NAN
                        continue
                elif not isfinite(last[g]):
                    for k in range(ns):
                        zs[k, g, 1] = (sos[k, 2] - sos[k, 5]) * u
                        zs[k, g, 0] = (sos[k, 1] - sos[k, 4]) * u + zs[k, g, 1]
                if not bad:
                    last[g] = u
                for k in range(ns):
                    b0 = sos[k, 0]
                    b1 = sos[k, 1]
                    b2 = sos[k, 2]
                    a1 = sos[k, 4]
                    a2 = sos[k, 5]
                    y = b0 * u + zs[k, g, 0]
                    zs[k, g, 0] = b1 * u - a1 * y + zs[k, g, 1]
                    zs[k, g, 1] = b2 * u - a2 * y
                    u = y
                out[i, g] = <real>NAN if bad else <real>u


cdef inline double _median_inplace(double* v, Py_ssize_t n) noexcept nogil:
    """Median of v[0:n] (n >= 1); sorts v in place (insertion sort, n is small)."""
    cdef Py_ssize_t i, j
    cdef double key
    for i in range(1, n):
        key = v[i]
        j = i - 1
        while j >= 0 and v[j] > key:
            v[j + 1] = v[j]
            j -= 1
        v[j + 1] = key
    if n % 2:
        return v[n // 2]
    return 0.5 * (v[n // 2 - 1] + v[n // 2])


# median of chi-square(1) (a squared standard normal): 0.45493642311957184;
# 1.482602218505602 = 1 / Phi^-1(3/4) turns a median |x| into a standard deviation
cdef double CHI2_1_MEDIAN = 0.45493642311957184
cdef double MAD_SD = 1.482602218505602

# rows of the learned-soil state ``vstate`` (7, G)
cdef enum:
    V_SY = 0      # block sum of the fixed-balanced reading
    V_PREV = 1    # previous block mean
    V_SYA = 2     # E[dy * da]
    V_SYY = 3     # E[dy^2]
    V_L = 4       # running level of the regression residual^2 (trimming)
    V_R = 5       # learned soil residue per unit first-component amplitude
    V_RAPP = 6    # the part of it applied (gain * R)
# ``dstate``: [block sum of a, previous block mean of a, E[da^2], scale of da,
#              snr, gain, |Rapp|^2]
# ``istate``: [frames in the current block, blocks seen, blocks learnt from,
#              consecutive rejected blocks (blocks of the warm-up while it lasts), warm-up done]


cdef void _learn_block(double[:, ::1] v, double[:, ::1] wbuf, double[::1] d,
                       int64_t[::1] ist, double* tmp, Py_ssize_t ng, int64_t block,
                       double a_win, int64_t min_used, double snr_thr, double trim,
                       double trim_amp, double clip, int64_t max_reject) noexcept nogil:
    """One learning step at the end of a block of ``block`` finite readings."""
    cdef Py_ssize_t g, j, nwarm = wbuf.shape[0]
    cdef double inv_b = 1.0 / block, my, ma, dy, da, res, e, al, expl, un, snr, gain
    cdef double lim, r2, vda
    cdef bint ok, forced
    cdef int64_t nb
    ma = d[0] * inv_b
    d[0] = 0.0
    ist[0] = 0
    ist[1] += 1
    nb = ist[1]
    if nb == 1:
        for g in range(ng):
            v[V_PREV, g] = v[V_SY, g] * inv_b
            v[V_SY, g] = 0.0
        d[1] = ma
        return
    da = ma - d[1]
    d[1] = ma
    for g in range(ng):
        my = v[V_SY, g] * inv_b
        v[V_SY, g] = 0.0
        tmp[g] = my - v[V_PREV, g]          # dy
        v[V_PREV, g] = my
    if not ist[4]:
        # warm-up: robust (median) scales of the block-to-block changes (their
        # residuals under the model learnt so far, none at the start) over the
        # last ``nwarm`` blocks, which a target under the coil for less than
        # half of them does not move; it lasts until every scale is > 0 (a head
        # held still over quantised readings changes nothing).  ist[3] counts
        # its blocks (at the start, or again after ``max_reject`` rejected
        # blocks in a row)
        ist[3] += 1
        j = (ist[3] - 1) % nwarm
        for g in range(ng):
            res = tmp[g] - v[V_R, g] * da
            wbuf[j, g] = res * res
        wbuf[j, ng] = fabs(da)
        if ist[3] >= nwarm:
            ok = True
            for g in range(ng + 1):
                for j in range(nwarm):
                    tmp[ng + 1 + j] = wbuf[j, g]
                if g < ng:
                    v[V_L, g] = _median_inplace(&tmp[ng + 1], nwarm) / CHI2_1_MEDIAN
                    ok = ok and v[V_L, g] > 0.0
                else:
                    d[3] = _median_inplace(&tmp[ng + 1], nwarm) * MAD_SD
                    ok = ok and d[3] > 0.0
            ist[4] = ok
            if ok:
                ist[3] = 0
        return
    # trimming: the block's change must be one the learnt model explains to
    # within ``trim`` times its usual residual, and an amplitude change no
    # larger than ``trim_amp`` times its usual scale (a target is neither)
    e = 0.0
    for g in range(ng):
        res = tmp[g] - v[V_R, g] * da
        r2 = res * res
        if v[V_L, g] > 0.0:
            e += r2 / v[V_L, g]
        elif r2 > 0.0:
            e = INFINITY
    e /= ng
    ok = e <= trim and fabs(da) <= trim_amp * d[3]
    forced = (not ok) and max_reject > 0 and ist[3] >= max_reject
    if ok:
        # the scales follow slowly, each update clipped
        al = a_win
        for g in range(ng):
            res = tmp[g] - v[V_R, g] * da
            r2 = res * res
            lim = clip * clip * v[V_L, g]
            if r2 > lim:
                r2 = lim
            v[V_L, g] += al * (r2 - v[V_L, g])
        vda = fabs(da) * MAD_TO_SIGMA
        if vda > clip * d[3]:
            vda = clip * d[3]
        d[3] += al * (vda - d[3])
    if ok:
        ist[3] = 0
        al = 1.0 / (ist[2] + 1)
        if al < a_win:
            al = a_win
        for g in range(ng):
            v[V_SYA, g] += al * (tmp[g] * da - v[V_SYA, g])
            v[V_SYY, g] += al * (tmp[g] * tmp[g] - v[V_SYY, g])
        d[2] += al * (da * da - d[2])
        ist[2] += 1
    elif forced:
        # ``max_reject`` rejected blocks in a row: the scales no longer fit
        # the lane (a head held still at the start gave scales of its noise
        # alone, and clipped updates grow them by 2 % at most): estimated
        # again as at the start, from the next blocks' medians
        ist[3] = 0
        ist[4] = 0
    else:
        ist[3] += 1
    # the regression and how much of the variance it explains
    snr = 0.0
    for g in range(ng):
        v[V_R, g] = v[V_SYA, g] / d[2] if d[2] > 0.0 else 0.0
        expl = v[V_R, g] * v[V_R, g] * d[2]
        un = v[V_SYY, g] - expl
        if expl > 0.0:
            snr += expl / un if un > 1e-12 * v[V_SYY, g] else 1e12
    snr /= ng
    d[4] = snr
    gain = 0.0
    if ist[2] >= min_used and snr_thr > 0.0:
        gain = 2.0 * (snr / snr_thr - 1.0)
        gain = 0.0 if gain < 0.0 else (1.0 if gain > 1.0 else gain)
    d[5] = gain
    expl = 0.0
    for g in range(ng):
        v[V_RAPP, g] = gain * v[V_R, g]
        expl += v[V_RAPP, g] * v[V_RAPP, g]
    d[6] = expl


def soil_learn_run(const real[:, ::1] x, real[:, ::1] out,
                   const double[:, ::1] coef, const double[:, ::1] basis,
                   const double[::1] w0, double kappa2,
                   double[:, ::1] amp, double[:, ::1] vstate, double[:, ::1] wbuf,
                   double[::1] dstate, int64_t[::1] istate, int64_t block, double a_win,
                   int64_t min_used, double snr_thr, double trim, double trim_amp,
                   double clip, int64_t max_reject):
    """Ground balance that learns the soil's residue from the lane.

    Each reading is balanced as in :func:`soil_run` (``y = x - basis @ a``,
    ``a = coef @ x``).  ``Rapp`` is the learnt change of ``y`` per unit of the
    first component's amplitude (times the gain), as it stood at the end of
    the last block (causal); the output is the least-squares residual of the
    reading against the basis whose first column is replaced by the learnt
    soil decay ``basis[:, 0] + Rapp``.  Since ``Rapp`` is orthogonal to the
    basis, that is ``out = y + (a[0] - d) w0 - d Rapp`` with
    ``d = (kappa2 a[0] + y.Rapp) / (kappa2 + |Rapp|^2)``, ``w0`` the first
    column's part orthogonal to the other columns and ``kappa2 = |w0|^2``
    (``out = y`` exactly while ``Rapp`` is zero).  After every ``block`` finite readings the block
    means of ``y`` and ``a[0]`` are differenced with the previous block's
    (which removes drift and static levels), ``dy`` is regressed on ``da``
    over the accepted blocks (exponential forgetting, weight ``a_win`` per
    block; a plain mean at the start), and ``Rapp = gain * R``, where the gain
    rises from 0 at ``snr = snr_thr`` to 1 at ``1.5 snr_thr``; ``snr`` is the
    mean over gates of explained / unexplained variance of ``dy``; the gain
    stays 0 until ``min_used`` blocks have been learnt from.  A block is
    accepted when its residual energy ``mean(res^2 / L)`` is at most ``trim``
    and ``|da|`` at most ``trim_amp`` times its running scale; the scales
    start at the medians over the first ``wbuf.shape[0]`` blocks (or the
    first such run of blocks that makes them all positive) and follow
    clipped (at ``clip``) exponential averages of the accepted blocks; after
    ``max_reject`` consecutive rejected blocks they are estimated again that
    way (medians of the residuals under the current model).  Frames with a
    non-finite value give NaN (output and amplitudes) and are skipped.
    """
    cdef Py_ssize_t n = x.shape[0], ng = x.shape[1], nk = coef.shape[0], i, g, k
    cdef double y, yr, d0, c0
    cdef double acc[64]
    if nk > 64:
        raise ValueError("at most 64 soil components")
    if vstate.shape[0] != 7 or vstate.shape[1] != ng or wbuf.shape[1] != ng + 1:
        raise ValueError("learned-soil state has the wrong shape")
    if dstate.shape[0] < 7 or istate.shape[0] < 5 or block < 1 or wbuf.shape[0] < 1:
        raise ValueError("learned-soil state has the wrong shape")
    if w0.shape[0] != ng or not kappa2 > 0.0:
        raise ValueError("w0 must have one value per gate and kappa2 be > 0")
    cdef double[::1] ybuf = np.empty(ng, dtype=np.float64)
    cdef double* yb = &ybuf[0]
    cdef double[::1] tmpbuf = np.empty(ng + 1 + wbuf.shape[0], dtype=np.float64)
    cdef double* tmp = &tmpbuf[0]
    with nogil:
        for i in range(n):
            if not _soil_fit_row(x, out, coef, amp, acc, i, ng, nk):
                continue
            yr = 0.0
            for g in range(ng):
                y = x[i, g]
                for k in range(nk):
                    y = y - basis[g, k] * acc[k]
                vstate[V_SY, g] += y
                yb[g] = y
                yr += y * vstate[V_RAPP, g]
            c0 = acc[0]
            if dstate[6] > 0.0:
                d0 = (kappa2 * c0 + yr) / (kappa2 + dstate[6])
                for g in range(ng):
                    out[i, g] = <real>(yb[g] + (c0 - d0) * w0[g] - d0 * vstate[V_RAPP, g])
            else:
                # nothing learnt (yet): the fixed balance, bit for bit
                for g in range(ng):
                    out[i, g] = <real>yb[g]
            dstate[0] += acc[0]
            istate[0] += 1
            if istate[0] >= block:
                _learn_block(vstate, wbuf, dstate, istate, tmp, ng, block, a_win, min_used,
                             snr_thr, trim, trim_amp, clip, max_reject)
