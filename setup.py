"""The optional C extension; everything else about the package is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # optional: without a compiler the build goes on and autosmime uses the pure-Python scans.
        Extension("autosmime.smime._speedups", ["autosmime/smime/_speedups.c"], optional=True,
                  extra_compile_args=["-O2"]),
    ],
)
