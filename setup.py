"""Native accelerators: optional C extensions with pure-Python twins.

Everything else is in pyproject.toml. Each extension is ``optional``: without a C compiler the
install still succeeds and the node runs its pure-Python code paths, which produce the same bytes
(tests/test_native.py compares the two). ``IDNODE_NATIVE=0`` turns the native paths off at run
time; ``IDNODE_REQUIRE_NATIVE=1`` (set by scripts/test.sh) makes a missing build an error.
"""

from setuptools import Extension, setup

SHARED = ["registry/native_wire.h"]
RUN_FORMAT = "registry/bulk/run_format.h"  # the run file layout, written by both bulk modules
NATIVE = [
    Extension("cache._sieve", ["cache/_sieve.c"], optional=True),
    Extension("resolver._hotpath", ["resolver/_hotpath.c"], depends=SHARED, optional=True),
    Extension(
        "registry.bulk._csvfast", ["registry/bulk/_csvfast.c"], depends=[*SHARED, RUN_FORMAT], optional=True
    ),
    Extension("registry.bulk._runs", ["registry/bulk/_runs.c"], depends=[RUN_FORMAT], optional=True),
    Extension("registry.bulk._lines", ["registry/bulk/_lines.c"], depends=SHARED, optional=True),
]

setup(ext_modules=NATIVE)
