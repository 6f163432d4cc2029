# cython: language_level=3
"""The GPR kernels of ``_gpr.pyx`` compiled for x86-64 CPUs with AVX2 and FMA.

Same source (included below), built with GCC's ``target("avx2,fma")`` so that
the tile loops run eight float lanes per instruction with fused multiply-adds.
:mod:`demine.gpr` imports this module only after checking that the CPU has both
extensions; elsewhere (other compilers, other architectures) the pragma is
absent and this module is a plain second copy of ``_gpr``.
"""

cdef extern from *:
    """
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
    #pragma GCC target("avx2,fma")
    #define DEMINE_GPR_AVX2 1
    #else
    #define DEMINE_GPR_AVX2 0
    #endif
    """
    int DEMINE_GPR_AVX2

include "_gpr.pyx"

#: True when this copy was really compiled for AVX2 + FMA
COMPILED_FOR_AVX2 = bool(DEMINE_GPR_AVX2)
