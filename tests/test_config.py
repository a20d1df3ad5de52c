"""GuardConfig validation and store URL parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from critic_guard.config import GuardConfig
from critic_guard.policy import Policy
from critic_guard.store import SQLiteStore, open_store, parse_store_url
from critic_guard.types import Action, Arm, Mode


def test_defaults() -> None:
    config = GuardConfig()
    assert config.agent_name == "agent"
    assert config.mode is Mode.OBSERVE
    assert config.policy == Policy()
    assert config.critic_timeout_s == 5.0
    assert config.critic_workers == 8
    assert config.store == "sqlite:///critic_guard.db"
    assert config.capture_content is False
    assert config.serve is Arm.CONTROL
    assert config.design == "fork"
    assert config.alpha == 0.05
    assert config.max_pilot_pairs is None
    assert config.shadow_fraction == 0.1
    assert config.aa_fraction == 0.0
    assert config.lifecycle_ttl_s == 1.0


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
        ({"zzz": 1}, "known fields: aa_fraction, agent_name, alpha, alpha_per_side, background_queue"),
        ({"srve": "treatment"}, "did you mean 'serve'"),
        ({"serve": "both"}, "'control' or 'treatment'"),
        ({"design": "paired"}, "'fork' or 'full'"),
        ({"alpha": 0}, "greater than 0"),
        ({"alpha": 1}, "less than 1"),
        ({"max_pilot_pairs": 0}, "greater than or equal to 1"),
        ({"shadow_fraction": 1.5}, "less than or equal to 1"),
        ({"aa_fraction": -0.1}, "greater than or equal to 0"),
        ({"lifecycle_ttl_s": -1}, "greater than or equal to 0"),
        ({"mode": "sometimes"}, "'off', 'observe', 'pilot', 'on' or 'auto'"),
        ({"critic_timeout_s": 0}, "greater than 0"),
        ({"critic_timeout_s": float("inf")}, "finite number"),
        ({"critic_workers": 0}, "greater than or equal to 1"),
        ({"background_workers": 0}, "greater than or equal to 1"),
        ({"background_queue": 0}, "greater than or equal to 1"),
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


def test_pilot_knobs_from_plain_values() -> None:
    config = GuardConfig.model_validate(
        {"serve": "treatment", "design": "full", "alpha": 0.01, "max_pilot_pairs": 200, "shadow_fraction": 1}
    )
    assert (config.serve, config.design, config.alpha, config.max_pilot_pairs, config.shadow_fraction) == (
        Arm.TREATMENT,
        "full",
        0.01,
        200,
        1.0,
    )
