"""Package attributes loaded on first use: a module ``__getattr__`` (PEP 562) built from a name -> module map.

Why: some names a package re-exports pull in heavy dependencies (scipy for the statistics, the OpenTelemetry SDK for
``configure_telemetry``, numpy and scipy for an integration's pilot runner), and importing the package must stay
light (``import critic_guard`` loads none of them; tests/test_core_imports.py). Such a package maps each of those
names to the module that defines it and imports that module only when the name is first read.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package``: ``modules[name]`` is imported when ``name`` is first read.

    Use as ``__getattr__ = lazy_getattr(__name__, {"Name": "package.module"})``, with the same names imported under
    ``TYPE_CHECKING`` for type checkers. A name not in ``modules`` raises ``AttributeError`` as a module would.
    """

    def __getattr__(name: str) -> Any:
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return __getattr__
