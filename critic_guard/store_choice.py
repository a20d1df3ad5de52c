"""Which store a guard uses: ``CriticGuard(critic, store=...)`` resolved once, to plain fields.

``store`` takes four kinds of value (docs/faults.md, docs/lifecycle.md):

* not given (:data:`FROM_CONFIG`): the ``GuardConfig.store`` URL, whose default is ``sqlite:///critic_guard.db``;
* a URL string: that store instead of the config's (opened, and closed with the guard);
* ``None``: persist nothing; runs, pairs and the lifecycle then live in a private in-memory SQLite database, with
  the same code and transactions as a real store (step rows are not kept there);
* a :class:`~critic_guard.store.Store`: used as it is, and left open at close (its owner closes it).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from critic_guard.config import GuardConfig
from critic_guard.store.base import Store, open_store
from critic_guard.store.sqlite import SQLiteStore

__all__ = ["FROM_CONFIG", "FromConfig", "GuardStores"]


class FromConfig(enum.Enum):
    """The type of :data:`FROM_CONFIG`."""

    FROM_CONFIG = "the GuardConfig's store"


FROM_CONFIG: Final = FromConfig.FROM_CONFIG
"""``store`` not given: the guard opens ``GuardConfig.store`` (the default URL unless the config says otherwise)."""


@dataclass(frozen=True, slots=True)
class GuardStores:
    """The stores of one guard.

    ``persistent``: where everything is kept (None: nothing is). ``records``: where runs, outcomes, pairs and the
    lifecycle go: ``persistent``, or the private in-memory database ``memory`` without one. ``owned``: the guard
    opened ``records`` and closes it.
    """

    persistent: Store | None
    records: Store
    memory: SQLiteStore | None
    owned: bool

    @classmethod
    def open(cls, store: Store | str | FromConfig | None, config: GuardConfig) -> GuardStores:
        """Open what ``store`` names (a URL or None was already folded into ``config.store`` by the guard)."""
        if isinstance(store, Store):
            return cls(persistent=store, records=store, memory=None, owned=False)
        persistent = open_store(config.store)
        if persistent is not None:
            return cls(persistent=persistent, records=persistent, memory=None, owned=True)
        memory = SQLiteStore(":memory:")
        return cls(persistent=None, records=memory, memory=memory, owned=True)
