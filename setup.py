"""Builds the exact engine's optional C kernels (_attention.c, _intmm.c, _rows.c, _amx.c, _vnni.c, _layer.c, _learning.c); everything else is in pyproject.toml.

The flags keep IEEE semantics (no fast-math, no fused multiply-add), which the kernel's
exactness relies on. If no C compiler is at hand the build is skipped and the engine computes
the same bits in torch, more slowly.
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension(
    "alphazip.model._attention", sources=["alphazip/model/_attention.c", "alphazip/model/_intmm.c", "alphazip/model/_rows.c",
                                          "alphazip/model/_amx.c", "alphazip/model/_vnni.c",
                                          "alphazip/model/_layer.c", "alphazip/model/_learning.c"],
    depends=["alphazip/model/_kernel.h"],
    extra_compile_args=["-O3", "-std=c11", "-fopenmp", "-fno-fast-math", "-ffp-contract=off", "-fno-math-errno"],
    extra_link_args=["-fopenmp"], optional=True)])
