"""The one thing pyproject.toml cannot declare without an "experimental" warning: the
worker's C extension (operator/ferry/worker/_copyrows.c says why it exists)."""

from setuptools import Extension, setup

# optional: without a C compiler the build goes on without it (a warning says so), so the
# kubectl plugin installs anywhere; ferry-worker needs it (the images have a compiler).
setup(ext_modules=[Extension("ferry.worker._copyrows", ["operator/ferry/worker/_copyrows.c"],
                             optional=True)])
