"""Build of the compiled inference core (Cython, OpenMP) from csrc/.

The extension is optional when no C compiler is present (the pure-Python backends still work)
and mandatory when SPMN_REQUIRE_CYTHON=1 (CI sets it).
"""
import os
import platform
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

REQUIRE = os.environ.get("SPMN_REQUIRE_CYTHON", "") == "1"
openmp = [] if sys.platform == "darwin" else ["-fopenmp"]

# -fno-trapping-math lets gcc if-convert (and so vectorize) the compare-selects of the exp/log
# kernels; like LLVM's default it changes no value, only the trap model
FLAGS = ["-O3", "-ffp-contract=off", "-fno-trapping-math", *openmp]
X86 = platform.machine().lower() in ("x86_64", "amd64") and sys.platform != "win32"


def kernel_extension(name, source, extra=()):
    return Extension(
        name,
        [source],
        include_dirs=[numpy.get_include(), "csrc"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        # no -ffast-math / -march=native: results must equal the Numba kernels bit for bit
        extra_compile_args=[*FLAGS, *extra],
        extra_link_args=openmp,
    )


extensions = [kernel_extension("spmn.kernels._ckernels", "csrc/ckernels.pyx")]
if X86:  # the same kernels with 4-wide vectors, loaded at run time on CPUs with AVX2
    extensions.append(kernel_extension("spmn.kernels._ckernels_avx2", "csrc/ckernels_avx2.pyx",
                                       ["-mavx2"]))
ext_modules = cythonize(
    extensions,
    compiler_directives={"language_level": 3, "boundscheck": False, "wraparound": False,
                         "cdivision": True, "initializedcheck": False},
)
for ext in ext_modules:  # cythonize() returns new objects: set the flag after it
    ext.optional = not REQUIRE or ext.name.endswith("_avx2")

setup(ext_modules=ext_modules)
