# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Private compiled per-frame feature kernels, wrapped by :mod:`demine.features`.

``decay_frames`` describes the decay curve of every EMI reading (one row of
background-subtracted gate amplitudes) in a few shape numbers that do not
depend on the amplitude scale or on how many gates the detector has:

    out[i, 0]  noise-normalised amplitude sqrt(sum_g (r_g / noise_g)^2)
    out[i, 1]  log-log slope d log r / d log t over the gates where r > snr * noise
    out[i, 2]  curvature of log r against log t (quadratic coefficient, per ln^2 t),
               0 when fewer than 4 gates are valid
    out[i, 3]  fraction of gates with r > snr * noise
    out[i, 4]  polarity: sum r / sum |r|  (+1 a purely positive decay)
    out[i, 5]  log time of the last valid gate (NaN when none)

The fits are ordinary least squares in u = ln t - mean(ln t over valid gates),
solved from the normal equations (2x2 or 3x3).  A plain NumPy twin lives in the
tests.
"""

import numpy as np

from libc.math cimport sqrt, log, fabs, NAN


cdef void _fit(const double[::1] u, const double[::1] v, const unsigned char[::1] ok,
               Py_ssize_t g, double* slope, double* curv) noexcept nogil:
    cdef Py_ssize_t j
    cdef double n = 0, su = 0, mu, a, s11 = 0, s12 = 0, s22 = 0, s1v = 0, s2v = 0
    cdef double sv = 0, det, uu
    for j in range(g):
        if ok[j]:
            n += 1
            su += u[j]
            sv += v[j]
    if n < 2:
        slope[0] = NAN
        curv[0] = 0.0
        return
    mu = su / n
    sv = sv / n
    for j in range(g):
        if ok[j]:
            a = u[j] - mu
            uu = a * a
            s11 += uu
            s12 += uu * a
            s22 += uu * uu
            s1v += a * (v[j] - sv)
            s2v += uu * (v[j] - sv)
    if s11 <= 0:
        slope[0] = NAN
        curv[0] = 0.0
        return
    if n < 4:
        slope[0] = s1v / s11
        curv[0] = 0.0
        return
    # quadratic fit v = c0 + c1 a + c2 (a^2 - m2), m2 = s11/n keeps c1 the mean slope
    cdef double m2 = s11 / n
    cdef double q22 = s22 - n * m2 * m2
    cdef double q12 = s12
    det = s11 * q22 - q12 * q12
    if det <= 1e-12 * s11 * q22 or q22 <= 0:
        slope[0] = s1v / s11
        curv[0] = 0.0
        return
    slope[0] = (s1v * q22 - q12 * s2v) / det
    curv[0] = (s11 * s2v - q12 * s1v) / det


def decay_frames(const double[:, ::1] resid, const double[::1] log_t,
                 const double[::1] noise, double snr, double[:, ::1] out):
    """Per-frame decay descriptors of background-subtracted EMI readings (see module)."""
    cdef Py_ssize_t n = resid.shape[0], g = resid.shape[1], i, j
    if log_t.shape[0] != g or noise.shape[0] != g:
        raise ValueError("decay_frames: gate arrays do not match the readings")
    if out.shape[0] != n or out.shape[1] < 6:
        raise ValueError("decay_frames: output must be (n, 6)")
    cdef double[::1] v = np.zeros(max(g, 1), dtype=np.float64)
    cdef double[::1] u = np.zeros(max(g, 1), dtype=np.float64)
    cdef unsigned char[::1] ok = np.zeros(max(g, 1), dtype=np.uint8)
    cdef double e, r, s, sa, nv, lastu, slope = 0, curv = 0
    with nogil:
        for i in range(n):
            e = 0
            s = 0
            sa = 0
            nv = 0
            lastu = NAN
            for j in range(g):
                r = resid[i, j]
                e += (r / noise[j]) * (r / noise[j])
                s += r
                sa += fabs(r)
                if r > snr * noise[j]:
                    ok[j] = 1
                    v[j] = log(r)
                    u[j] = log_t[j]
                    nv += 1
                    lastu = log_t[j]
                else:
                    ok[j] = 0
                    v[j] = 0
                    u[j] = log_t[j]
            _fit(u, v, ok, g, &slope, &curv)
            out[i, 0] = sqrt(e)
            out[i, 1] = slope
            out[i, 2] = curv
            out[i, 3] = nv / g if g else 0.0
            out[i, 4] = s / sa if sa > 0 else 0.0
            out[i, 5] = lastu


def orientation_histogram(const double[:, ::1] patch, Py_ssize_t bins, double[::1] out):
    """Gradient-orientation histogram of a 2-D patch (edge histogram descriptor).

    Central-difference gradients; each interior pixel votes its gradient
    magnitude into the bin of its orientation folded to [0, pi) (edges, not
    their sign).  ``out`` (length ``bins``) receives the votes, unnormalised.
    """
    cdef Py_ssize_t h = patch.shape[0], w = patch.shape[1], i, j, b
    cdef double gx, gy, mag, ang
    cdef double pi = 3.141592653589793
    if out.shape[0] != bins or bins < 1:
        raise ValueError("orientation_histogram: out must have length bins >= 1")
    with nogil:
        for b in range(bins):
            out[b] = 0
        for i in range(1, h - 1):
            for j in range(1, w - 1):
                gy = 0.5 * (patch[i + 1, j] - patch[i - 1, j])
                gx = 0.5 * (patch[i, j + 1] - patch[i, j - 1])
                mag = sqrt(gx * gx + gy * gy)
                if mag <= 0:
                    continue
                ang = _atan2(gy, gx)
                if ang < 0:
                    ang += pi
                if ang >= pi:
                    ang -= pi
                b = <Py_ssize_t>(ang / pi * bins)
                if b >= bins:
                    b = bins - 1
                out[b] += mag


cdef extern from "math.h" nogil:
    double _atan2 "atan2"(double, double)
