"""GuardConfig validation and store URL parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from critic_guard.config import GuardConfig
from critic_guard.policy import Policy
from critic_guard.store import SQLiteStore, open_store, parse_store_url
from critic_guard.types import Action, Mode


def test_defaults() -> None:
    config = GuardConfig()
    assert config.agent_name == "agent"
    assert config.mode is Mode.OBSERVE
    assert config.policy == Policy()
    assert config.critic_timeout_s == 5.0
    assert config.critic_workers == 8
    assert config.store == "sqlite:///critic_guard.db"
    assert config.capture_content is False


def test_coercion_from_plain_values() -> None:
    config = GuardConfig.model_validate(
        {"mode": "on", "policy": {"tau": 0.5, "action": "append"}, "critic_timeout_s": None, "store": None}
    )
    assert config.mode is Mode.ON
    assert config.policy == Policy(tau=0.5, action=Action.APPEND)
    assert config.critic_timeout_s is None
    assert config.store is None


@pytest.mark.parametrize("mode", list(Mode))
def test_every_mode_is_accepted(mode: Mode) -> None:
    assert GuardConfig(mode=mode).mode is mode


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"polcy": {}}, "unknown GuardConfig field 'polcy'; did you mean 'policy'"),
        ({"zzz": 1}, "known fields: agent_name, capture_content"),
        ({"mode": "sometimes"}, "'off', 'observe', 'pilot', 'on' or 'auto'"),
        ({"critic_timeout_s": 0}, "greater than 0"),
        ({"critic_timeout_s": float("inf")}, "finite number"),
        ({"critic_workers": 0}, "greater than or equal to 1"),
        ({"agent_name": ""}, "at least 1 character"),
        ({"agent_name": "a/b"}, "must not contain '/'"),
        ({"store": "mysql://db"}, "unsupported store URL 'mysql://db'"),
        ({"store": "critic_guard.db"}, "unsupported store URL"),
        ({"store": "sqlite://relative.db"}, "needs three slashes"),
        ({"policy": {"tau": 2}}, "less than or equal to 1"),
    ],
)
def test_invalid_configs(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        GuardConfig(**kwargs)  # type: ignore[arg-type]


def test_config_is_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        GuardConfig().mode = Mode.ON


@pytest.mark.parametrize(
    ("url", "parsed"),
    [
        ("sqlite:///critic_guard.db", ("sqlite", "critic_guard.db")),
        ("sqlite:///data/x.db", ("sqlite", "data/x.db")),
        ("sqlite:////var/lib/cg.db", ("sqlite", "/var/lib/cg.db")),
        ("sqlite:///:memory:", ("sqlite", ":memory:")),
        ("postgresql://u@h/db", ("postgres", "postgresql://u@h/db")),
        ("postgres://u@h/db", ("postgres", "postgres://u@h/db")),
    ],
)
def test_parse_store_url(url: str, parsed: tuple[str, str]) -> None:
    assert parse_store_url(url) == parsed


def test_open_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert open_store(None) is None
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///sub/guard.db")
    assert isinstance(store, SQLiteStore)
    store.close()
    assert (tmp_path / "sub" / "guard.db").is_file()
    memory = open_store("sqlite:///:memory:")
    assert isinstance(memory, SQLiteStore) and memory.path == ":memory:"
    memory.close()


def test_postgres_backend_is_not_there_yet() -> None:
    with pytest.raises(NotImplementedError, match="PostgreSQL store is not available"):
        open_store("postgresql://user@localhost/db")
