# cython: language_level=3
"""Private: a serial port drained by a native loop that never holds the GIL.

A tty holds a few KiB (N_TTY 4 KiB, a pseudo-terminal about 20 KiB; a USB
adapter little more): at a radar's 0.4-0.8 MB/s, 25-50 ms of data.  A Python
reader thread that cannot run for longer than that (the interpreter busy in
another thread: an HDF5 flush, a detector, a garbage collection, a loaded
machine) loses frames in the kernel, for good.  :class:`PortDrain` moves the
port's bytes into a large ring (16 MiB by default: 20 s of radar) from a loop
that runs without the GIL, and stamps each read with the host clock, so the
Python reader takes them when it can, with the times they arrived.

One producer (the loop in :meth:`PortDrain.run`, in a thread of its own) and
one consumer (:meth:`PortDrain.take`): the byte counts are published with
release/acquire atomics.  Nothing here is public API;
:class:`demine.acquisition.DeviceReader` uses it for local ports on POSIX.
"""

from libc.stdint cimport int64_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

import numpy as np

cimport numpy as cnp

cnp.import_array()

cdef extern from *:
    """
    #include <errno.h>
    #include <stddef.h>
    #include <stdint.h>
    #ifdef _WIN32
    #define DRAIN_AVAILABLE 0
    static int drain_poll(int fd, int timeout_ms) { return -ENOSYS; }
    static long drain_read(int fd, void *buf, size_t n) { return -ENOSYS; }
    static int64_t drain_now_ns(void) { return 0; }
    static void drain_sleep_us(long us) { }
    static size_t drain_load(size_t *p) { return *(volatile size_t *)p; }
    static void drain_store(size_t *p, size_t v) { *(volatile size_t *)p = v; }
    static int drain_load_int(int *p) { return *(volatile int *)p; }
    static void drain_store_int(int *p, int v) { *(volatile int *)p = v; }
    #else
    #define DRAIN_AVAILABLE 1
    #include <poll.h>
    #include <time.h>
    #include <unistd.h>
    /* 1: readable, hung up or failed (the read tells which); 0: nothing within
       the timeout (or a signal); < 0: -errno */
    static int drain_poll(int fd, int timeout_ms) {
        struct pollfd p;
        int r;
        p.fd = fd; p.events = POLLIN; p.revents = 0;
        r = poll(&p, 1, timeout_ms);
        if (r < 0) return errno == EINTR ? 0 : -errno;
        if (r == 0) return 0;
        if (p.revents & POLLNVAL) return -EBADF;
        return 1;
    }
    /* bytes read; 0 end of file (hung up); DRAIN_AGAIN nothing now; < 0 -errno */
    #define DRAIN_AGAIN (-1000000L)
    static long drain_read(int fd, void *buf, size_t n) {
        ssize_t r = read(fd, buf, n);
        if (r < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return DRAIN_AGAIN;
            return -(long)errno;
        }
        return (long)r;
    }
    static int64_t drain_now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
    }
    static void drain_sleep_us(long us) {
        struct timespec ts;
        ts.tv_sec = us / 1000000; ts.tv_nsec = (us % 1000000) * 1000;
        nanosleep(&ts, NULL);
    }
    static size_t drain_load(size_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static void drain_store(size_t *p, size_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static int drain_load_int(int *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static void drain_store_int(int *p, int v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    #endif
    #ifndef DRAIN_AGAIN
    #define DRAIN_AGAIN (-1000000L)
    #endif
    """
    int DRAIN_AVAILABLE
    long DRAIN_AGAIN
    int drain_poll(int fd, int timeout_ms) nogil
    long drain_read(int fd, void *buf, size_t n) nogil
    int64_t drain_now_ns() nogil
    void drain_sleep_us(long us) nogil
    size_t drain_load(size_t *p) nogil
    void drain_store(size_t *p, size_t v) nogil
    int drain_load_int(int *p) nogil
    void drain_store_int(int *p, int v) nogil

#: Whether this platform has the native drain (POSIX poll/read).
AVAILABLE = bool(DRAIN_AVAILABLE)
#: :attr:`PortDrain.error` of a port that reported data and gave none (hung up).
DEF _HANGUP = -1
HANGUP = _HANGUP


cdef class PortDrain:
    """The bytes of one port's descriptor ``fd``, read without the GIL.

    Parameters
    ----------
    fd : int
        The open port's descriptor (non-blocking, as pyserial leaves it).  It
        must stay open until :meth:`run` has returned.
    capacity : int
        Bytes the ring holds.  When it is full the loop waits for
        :meth:`take` (counted in :attr:`full_waits`): the port's own buffer
        then fills, as without the drain.
    max_reads : int
        Reads whose times are kept separately; beyond, a read's bytes join the
        previous read's, with the later time.
    """

    cdef uint8_t *buf
    cdef size_t cap
    cdef size_t head  # bytes written (ever)
    cdef size_t tail  # bytes taken (ever)
    cdef int64_t *ends  # per read: head after it
    cdef int64_t *times  # per read: host time (ns since the epoch) after it
    cdef size_t nmax
    cdef size_t rhead  # reads recorded (ever)
    cdef size_t rtail  # reads taken (ever)
    cdef int fd
    cdef int stopping
    cdef int err
    cdef readonly int64_t full_waits
    cdef readonly int64_t reads

    def __cinit__(self, int fd, size_t capacity=16 << 20, size_t max_reads=8192):
        if capacity < 1 or max_reads < 2:
            raise ValueError("capacity must be >= 1 and max_reads >= 2")
        self.buf = <uint8_t *>malloc(capacity)
        self.ends = <int64_t *>malloc(max_reads * sizeof(int64_t))
        self.times = <int64_t *>malloc(max_reads * sizeof(int64_t))
        if self.buf == NULL or self.ends == NULL or self.times == NULL:
            raise MemoryError(f"no memory for a drain of {capacity} bytes")
        self.cap = capacity
        self.nmax = max_reads
        self.fd = fd
        self.head = self.tail = self.rhead = self.rtail = 0
        self.stopping = 0
        self.err = 0
        self.full_waits = 0
        self.reads = 0

    def __dealloc__(self):
        free(self.buf)
        free(self.ends)
        free(self.times)

    @property
    def error(self) -> int:
        """0 while the port reads; :data:`HANGUP`, or an ``errno`` > 0, once
        the loop stopped on the port's failure (the bytes before it can still
        be taken)."""
        return drain_load_int(&self.err)

    @property
    def pending(self) -> int:
        """Bytes read and not yet taken."""
        return drain_load(&self.head) - drain_load(&self.tail)

    def stop(self) -> None:
        """Ask :meth:`run` to return (within its poll interval)."""
        drain_store_int(&self.stopping, 1)

    def run(self, double min_interval=0.002, int poll_ms=20) -> None:
        """The loop (call it in a thread of its own): wait for bytes, read all
        the port holds into the ring, then rest ``min_interval`` s so that the
        reads are few and large; return on :meth:`stop` or on the port's
        failure (:attr:`error`)."""
        cdef long rest_us = <long>(min_interval * 1e6) if min_interval > 0 else 0
        cdef int r
        cdef long n
        cdef size_t h, t, room, at, want
        cdef bint got
        if not DRAIN_AVAILABLE:
            raise OSError("no native port drain on this platform")
        with nogil:
            while drain_load_int(&self.stopping) == 0:
                r = drain_poll(self.fd, poll_ms)
                if r < 0:
                    drain_store_int(&self.err, -r)
                    break
                if r == 0:
                    continue
                got = False
                while True:
                    h = self.head
                    t = drain_load(&self.tail)
                    room = self.cap - (h - t)
                    if room == 0:
                        self.full_waits += 1
                        drain_sleep_us(1000)
                        if drain_load_int(&self.stopping) != 0:
                            break
                        continue
                    at = h % self.cap
                    want = self.cap - at
                    if want > room:
                        want = room
                    n = drain_read(self.fd, self.buf + at, want)
                    if n == DRAIN_AGAIN:
                        break
                    if n < 0:
                        drain_store_int(&self.err, <int>-n)
                        break
                    if n == 0:
                        if not got:  # readable, yet no byte: hung up
                            drain_store_int(&self.err, _HANGUP)
                        break
                    got = True
                    self._record(h + <size_t>n, drain_now_ns())
                    drain_store(&self.head, h + <size_t>n)
                    self.reads += 1
                if drain_load_int(&self.err) != 0:
                    break
                if rest_us > 0:
                    drain_sleep_us(rest_us)

    cdef inline void _record(self, size_t end, int64_t t_ns) noexcept nogil:
        cdef size_t rh = self.rhead
        cdef size_t k
        if rh - drain_load(&self.rtail) >= self.nmax:
            k = (rh - 1) % self.nmax  # (full: joins the last read)
            self.ends[k] = <int64_t>end
            self.times[k] = t_ns
            return
        k = rh % self.nmax
        self.ends[k] = <int64_t>end
        self.times[k] = t_ns
        drain_store(&self.rhead, rh + 1)

    def take(self, size_t limit):
        """Up to ``limit`` bytes read, in order, and where each read's bytes
        end in them with the host time of that read.

        Returns
        -------
        data : bytes
        ends : numpy.ndarray of int64
            Offsets in ``data`` where a read's bytes end (the last is
            ``len(data)``; a read cut by ``limit`` ends there too).
        times : numpy.ndarray of int64
            Host time (ns since the epoch) of each of those reads.
        """
        cdef size_t h = drain_load(&self.head)
        cdef size_t t = self.tail
        cdef size_t n = h - t
        cdef size_t at, first
        cdef size_t rh, rt, k, m
        cdef int64_t e
        if n > limit:
            n = limit
        if n == 0:
            return b"", np.zeros(0, np.int64), np.zeros(0, np.int64)
        out = bytearray(n)
        cdef uint8_t[::1] o = out
        at = t % self.cap
        first = self.cap - at
        if first > n:
            first = n
        memcpy(&o[0], self.buf + at, first)
        if n > first:
            memcpy(&o[first], self.buf, n - first)
        rh = drain_load(&self.rhead)
        rt = self.rtail
        ends = []
        times = []
        m = 0
        while rt + m < rh:
            k = (rt + m) % self.nmax
            e = self.ends[k]
            if <size_t>e > t + n:  # (this read's bytes go on past what is taken)
                ends.append(<int64_t>n)
                times.append(self.times[k])
                break
            ends.append(e - <int64_t>t)
            times.append(self.times[k])
            m += 1
            if <size_t>e == t + n:
                break
        drain_store(&self.rtail, rt + m)
        drain_store(&self.tail, t + n)
        return bytes(out), np.asarray(ends, np.int64), np.asarray(times, np.int64)
