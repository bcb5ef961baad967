"""Loading the optional native accelerators (see setup.py), with one switch for all of them.

Each accelerator is a C extension with a pure-Python twin that makes the same bytes; callers
fall back to the twin when :func:`load` answers None. ``IDNODE_NATIVE=0`` makes every
:func:`load` answer None (to measure or test the pure-Python paths); ``IDNODE_REQUIRE_NATIVE=1``
makes a missing or broken build raise ImportError instead of falling back silently (the test
script sets it, so a build that quietly failed cannot pass CI as "native").
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType


def enabled() -> bool:
    """Whether native accelerators may be used in this process (``IDNODE_NATIVE`` is not 0)."""
    return os.environ.get("IDNODE_NATIVE", "1") != "0"


def load(name: str) -> ModuleType | None:
    """The extension module ``name`` (e.g. ``"resolver._hotpath"``), or None when native code is
    off or the extension was not built. Raises ImportError when it is missing and
    ``IDNODE_REQUIRE_NATIVE=1``."""
    if not enabled():
        return None
    try:
        return importlib.import_module(name)
    except ImportError:
        if os.environ.get("IDNODE_REQUIRE_NATIVE") == "1":
            raise
        return None
