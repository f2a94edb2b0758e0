"""setuptools shim: all metadata lives in pyproject.toml.

Compiled extensions (the exported C policy, built and checked against the Python policy) will be
declared here, in setup(ext_modules=[...]), because pyproject.toml cannot describe them.
"""
from setuptools import setup

setup()
