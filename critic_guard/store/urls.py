"""Store URLs: which backend a URL names, checked without opening anything.

A module of its own that imports nothing, so that :mod:`critic_guard.config` can validate ``GuardConfig.store``
with it from inside its validator: importing the config then imports no store module (the store imports the
lifecycle, whose guard record is built from a config), and there is no import circle.
"""

from __future__ import annotations

__all__ = ["parse_store_url"]

_SCHEMES = {"sqlite": "sqlite", "postgresql": "postgres", "postgres": "postgres"}


def parse_store_url(url: str) -> tuple[str, str]:
    """Split a store URL into (backend, target) without opening anything; raise ``ValueError`` if malformed.

    ``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` and ``sqlite:///:memory:`` give a file path (as in
    SQLAlchemy); ``postgresql://...`` is passed to the PostgreSQL backend unchanged.
    """
    scheme, sep, rest = url.partition("://")
    backend = _SCHEMES.get(scheme.lower()) if sep else None
    if backend is None:
        raise ValueError(
            f"unsupported store URL {url!r}: expected 'sqlite:///path.db', 'sqlite:///:memory:' or "
            "'postgresql://user@host/db' (or None to persist nothing)"
        )
    if backend == "sqlite":
        if not rest.startswith("/") or len(rest) < 2:
            raise ValueError(
                f"SQLite store URL needs three slashes and a path, e.g. 'sqlite:///critic_guard.db'; got {url!r}"
            )
        return backend, rest[1:]
    return backend, url
