"""Builds the losses' C kernel into platform wheels (everything else is in pyproject.toml).

The kernel is plain C loaded with ctypes (no Python or PyTorch headers): two builds of
``lovaszseg/losses/_native.c``, with OpenMP (its runtime left unlinked: it binds to PyTorch's
when loaded) and without. A machine without a C compiler still builds a wheel, without them;
the kernel is then compiled on first use (``lovaszseg/losses/native.py``).
"""

import hashlib
import os
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

SOURCE = "lovaszseg/losses/_native.c"
DIGEST = hashlib.sha256(Path(SOURCE).read_bytes()).hexdigest()[:16]
FLAGS = ["-O3", "-std=c11", "-fno-trapping-math"]  # native.COMPILE_FLAGS, less -fPIC (added)


class KernelBuild(build_ext):
    """One temporary folder per build (both compile the same source)."""

    def build_extension(self, ext):
        root = self.build_temp
        self.build_temp = os.path.join(root, ext.name)
        try:
            super().build_extension(ext)
        finally:
            self.build_temp = root


def kernel(variant, flags):
    return Extension(
        f"lovaszseg.losses._lovasz_{variant}",
        [SOURCE],
        define_macros=[("LOVASZ_SOURCE_HASH", f'"{DIGEST}"')],
        extra_compile_args=[*FLAGS, *flags],
        optional=True,
    )


setup(
    ext_modules=[kernel("openmp", ["-fopenmp"]), kernel("serial", [])],
    cmdclass={"build_ext": KernelBuild},
)
