"""Build of the compiled inference core (Cython, OpenMP) from csrc/.

The extension is optional when no C compiler is present (the pure-Python backends still work)
and mandatory when SPMN_REQUIRE_CYTHON=1 (CI sets it).
"""
import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

REQUIRE = os.environ.get("SPMN_REQUIRE_CYTHON", "") == "1"
openmp = [] if sys.platform == "darwin" else ["-fopenmp"]

extensions = [
    Extension(
        "spmn.kernels._ckernels",
        ["csrc/ckernels.pyx"],
        include_dirs=[numpy.get_include(), "csrc"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # no -ffast-math / -march=native: results must equal the Numba kernels bit for bit
        extra_compile_args=["-O3", "-ffp-contract=off", *openmp],
        extra_link_args=openmp,
    )
]
ext_modules = cythonize(
    extensions,
    compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False,
                         "cdivision": True, "initializedcheck": False},
)
for ext in ext_modules:  # cythonize() returns new objects: set the flag after it
    ext.optional = not REQUIRE

setup(ext_modules=ext_modules)
