"""Build the private compiled core of demine.

Every ``ext/_name.pyx`` is compiled into the private module ``demine._name``.
Metadata, dependencies and packages live in ``pyproject.toml``; this file only
declares the extensions.  A kernel that fails to compile fails the build: there
is no pure-Python fallback.
"""

import os
import sys
from pathlib import Path

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

HERE = Path(__file__).parent
EXT_DIR = "ext"

if sys.platform == "win32":
    compile_args = ["/O2", "/openmp"]
    link_args: list[str] = []
else:
    compile_args = ["-O3", "-fopenmp", "-ffp-contract=fast", "-fno-math-errno",
                    "-fno-trapping-math"]
    link_args = ["-fopenmp"]
if os.environ.get("DEMINE_NO_OPENMP"):
    compile_args = [a for a in compile_args if "openmp" not in a]
    link_args = [a for a in link_args if "openmp" not in a]

extensions = [
    Extension(
        f"demine.{pyx.stem}",
        [f"{EXT_DIR}/{pyx.name}"],
        include_dirs=[np.get_include(), EXT_DIR],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    for pyx in sorted((HERE / EXT_DIR).glob("_*.pyx"))
]

setup(
    ext_modules=cythonize(
        extensions,
        language_level=3,
        compiler_directives={
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    ),
)
