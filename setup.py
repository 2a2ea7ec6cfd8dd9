"""Builds the optional C fast paths (the bundle decoder's scanner, the payload pipeline's
per-bundle steps, the Reed-Solomon table kernel); without a compiler dtn runs in pure Python,
with the same results."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("dtn.bundle._scan", ["dtn/bundle/_scan.c"], optional=True),
        Extension("dtn.payload._fastpath", ["dtn/payload/_fastpath.c"], optional=True),
        Extension("dtn.fec._xor", ["dtn/fec/_xor.c"], optional=True),
    ]
)
