# cython: language_level=3
"""Private compiled core shared by every stage: checksums and build facts.

Nothing here is public API; :mod:`demine.checksum` wraps it.
"""

from libc.stdint cimport uint8_t, uint16_t

cimport openmp

cdef uint16_t _CRC16_TABLE[256]


cdef void _init_table() noexcept nogil:
    cdef int i, j
    cdef uint16_t crc
    for i in range(256):
        crc = <uint16_t>(i << 8)
        for j in range(8):
            if crc & 0x8000:
                crc = <uint16_t>((crc << 1) ^ 0x1021)
            else:
                crc = <uint16_t>(crc << 1)
        _CRC16_TABLE[i] = crc


_init_table()


cdef inline uint16_t _crc16(const uint8_t[::1] buf, Py_ssize_t start, Py_ssize_t stop,
                            uint16_t crc) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(start, stop):
        crc = <uint16_t>((crc << 8) ^ _CRC16_TABLE[((crc >> 8) ^ buf[i]) & 0xFF])
    return crc


def crc16_ccitt(const uint8_t[::1] buf, Py_ssize_t start=0, Py_ssize_t stop=-1,
                unsigned int init=0xFFFF):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xor-out)
    of ``buf[start:stop]``; the caller has checked the bounds."""
    if stop < 0:
        stop = buf.shape[0]
    cdef uint16_t crc = <uint16_t>init
    with nogil:
        crc = _crc16(buf, start, stop, crc)
    return crc


def openmp_max_threads():
    """Threads OpenMP would use for a parallel kernel (1 without OpenMP)."""
    return openmp.omp_get_max_threads()
