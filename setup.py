"""Builds the optional C fast path of the bundle decoder; without a compiler dtn runs in pure
Python (the same results, slower decoding)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("dtn.bundle._scan", ["dtn/bundle/_scan.c"], optional=True)])
