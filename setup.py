"""The one thing pyproject.toml cannot declare without an "experimental" warning: the
worker's C extension (operator/ferry/worker/_copyrows.c says why it exists)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("ferry.worker._copyrows", ["operator/ferry/worker/_copyrows.c"])])
