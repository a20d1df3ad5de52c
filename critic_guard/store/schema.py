"""The store's schema, written once for both backends, and the migration step they share.

Why one schema: the tables, their columns and their order must be the same in SQLite and PostgreSQL (the shared SQL
selects them by position), so they are written once here and spelled per backend by a
:class:`~critic_guard.store.dialect.Dialect` (``REAL`` or ``DOUBLE PRECISION``, ``INTEGER`` or ``BOOLEAN``, ``TEXT``
or ``JSONB``). PostgreSQL's ``runs`` has one more column, ``seq``, that orders runs as inserted (SQLite has its
``rowid``). Each backend runs :func:`upgrade` under its own lock (SQLite ``BEGIN IMMEDIATE``, PostgreSQL an advisory
transaction lock), so replicas starting at the same time apply each version once.

A later release appends a version to :data:`_VERSIONS`; an applied version is never edited.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeAlias

from critic_guard.store.dialect import Dialect, spell

__all__ = ["Migrations", "migrations", "upgrade"]

Migrations: TypeAlias = tuple[tuple[int, tuple[str, ...]], ...]

_VERSIONS: Migrations = (
    (
        1,
        (
            """CREATE TABLE runs (
                {run_seq}
                run_id TEXT PRIMARY KEY,
                guard_key TEXT NOT NULL,
                agent_name TEXT NOT NULL,
                arm TEXT NOT NULL,
                task_id TEXT,
                task {json},
                parent_run_id TEXT,
                fork_step INTEGER,
                status TEXT NOT NULL,
                started_at {real} NOT NULL,
                ended_at {real}
            )""",
            "CREATE INDEX runs_by_guard ON runs (guard_key, started_at{by_seq})",
            "{runs_by_start}",
            """CREATE TABLE steps (
                id {serial_key},
                run_id TEXT NOT NULL,
                step INTEGER NOT NULL,
                attempt INTEGER NOT NULL,
                p_fail {real},
                label TEXT,
                rationale TEXT,
                flagged {boolean} NOT NULL,
                action TEXT NOT NULL,
                reason TEXT NOT NULL,
                critic_error TEXT,
                latency_s {real} NOT NULL,
                created_at {real} NOT NULL
            )""",
            "CREATE INDEX steps_by_run ON steps (run_id, step, attempt)",
            """CREATE TABLE outcomes (
                run_id TEXT PRIMARY KEY,
                success {boolean} NOT NULL,
                recorded_at {real} NOT NULL
            )""",
        ),
    ),
    (
        2,
        (
            """CREATE TABLE pairs (
                pair_id TEXT PRIMARY KEY,
                guard_key TEXT NOT NULL,
                kind TEXT NOT NULL CHECK (kind IN ('ab', 'aa')),
                design TEXT NOT NULL CHECK (design IN ('fork', 'full')),
                task_id TEXT,
                control_run_id TEXT NOT NULL,
                treatment_run_id TEXT NOT NULL,
                flagged {boolean} NOT NULL,
                fork_step INTEGER,
                fork_checkpoint_id TEXT,
                status TEXT NOT NULL CHECK (status IN ('open', 'complete', 'incomplete')),
                reason TEXT,
                control_success {boolean},
                treatment_success {boolean},
                created_at {real} NOT NULL,
                completed_at {real}
            )""",
            "CREATE INDEX pairs_by_guard ON pairs (guard_key, status, created_at)",
            "CREATE INDEX pairs_by_control_run ON pairs (control_run_id)",
            "CREATE INDEX pairs_by_treatment_run ON pairs (treatment_run_id)",
            """CREATE TABLE guards (
                guard_key TEXT PRIMARY KEY,
                state TEXT NOT NULL CHECK (state IN ('pilot', 'enabled', 'disabled')),
                monitor {json} NOT NULL,
                n00 INTEGER NOT NULL,
                n01 INTEGER NOT NULL,
                n10 INTEGER NOT NULL,
                n11 INTEGER NOT NULL,
                aa_pairs INTEGER NOT NULL,
                aa_discordant INTEGER NOT NULL,
                incomplete INTEGER NOT NULL,
                state_since_t INTEGER NOT NULL,
                version {bigint} NOT NULL,
                updated_at {real} NOT NULL
            )""",
            """CREATE TABLE transitions (
                id {serial_key},
                guard_key TEXT NOT NULL,
                from_state TEXT NOT NULL,
                to_state TEXT NOT NULL,
                reason TEXT NOT NULL,
                actor TEXT NOT NULL,
                at {real} NOT NULL,
                evidence {json} NOT NULL
            )""",
            "CREATE INDEX transitions_by_guard ON transitions (guard_key, id)",
        ),
    ),
    (
        3,
        (
            """CREATE TABLE pilot_tasks (
                pilot_key TEXT NOT NULL,
                task_id TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed')),
                attempt_id TEXT NOT NULL,
                attempts INTEGER NOT NULL,
                abandoned INTEGER NOT NULL,
                updated_at {real} NOT NULL,
                run_id TEXT,
                error TEXT,
                PRIMARY KEY (pilot_key, task_id)
            )""",
            "CREATE INDEX runs_by_task ON runs (task_id)",
        ),
    ),
    (
        4,
        (  # the monitor after each A/B pair, written with it (critic_guard.store.pair_track)
            """CREATE TABLE pair_monitor (
                pair_id TEXT PRIMARY KEY,
                guard_key TEXT NOT NULL,
                seq {bigint} NOT NULL,
                t {bigint} NOT NULL,
                band_low {real} NOT NULL,
                band_high {real} NOT NULL,
                harm_log_wealth {real} NOT NULL,
                benefit_log_wealth {real} NOT NULL,
                harm_proven_at {bigint},
                benefit_proven_at {bigint},
                inconclusive_at {bigint},
                state TEXT NOT NULL
            )""",
            "CREATE INDEX pair_monitor_by_guard ON pair_monitor (guard_key, seq)",
        ),
    ),
)


def migrations(dialect: Dialect) -> Migrations:
    """The schema versions in order, spelled for ``dialect`` (PostgreSQL's index on its ``seq`` column is left out
    of SQLite's, which has no such column)."""
    seq = "" if dialect.insertion_order == "rowid" else dialect.insertion_order  # SQLite's rowid is implicit
    names = {
        **dialect.types,
        "run_seq": f"{seq} BIGSERIAL NOT NULL," if seq else "",
        "by_seq": f", {seq}" if seq else "",
        "runs_by_start": f"CREATE INDEX runs_by_start ON runs (started_at, {seq})" if seq else "",
    }
    return tuple(
        (version, tuple(filter(None, (s.format_map(names) for s in statements)))) for version, statements in _VERSIONS
    )


def upgrade(execute: Callable[[str, Sequence[Any]], Any], dialect: Dialect, versions: Migrations) -> int:
    """Bring the schema to the newest of ``versions`` and return it, inside the caller's transaction and lock.

    Raises ``RuntimeError`` for a store written by a newer critic-guard: this one would misread it.
    """
    execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)", ())
    row = execute("SELECT COALESCE(MAX(version), 0) FROM schema_version", ()).fetchone()
    current = 0 if row is None else int(row[0])
    latest = versions[-1][0]
    if current > latest:
        raise RuntimeError(
            f"this store was written by a newer critic-guard (schema version {current}, this version knows "
            f"up to {latest}); upgrade critic-guard"
        )
    for version, statements in versions:
        if version > current:
            for statement in statements:
                execute(statement, ())
            execute(spell("INSERT INTO schema_version (version) VALUES (?)", dialect.placeholder), (version,))
    return latest
