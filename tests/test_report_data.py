"""Gathering report data from a real store filled by a real CriticGuard, and from pairs files.

``build_pilot_store`` is the seeded scenario the other report tests (and docs/images/report.png) use: an AUTO guard
whose critic flags at steps 0-5, where early flags mostly disrupt and later ones mostly recover, with A/A forks and
a few shadow branches that cannot finish.
"""

from __future__ import annotations

import json
import random
from contextlib import nullcontext
from pathlib import Path

import pytest
from cli_support import store_with_two_guard_keys

from critic_guard.critics import FunctionCritic
from critic_guard.guard import CriticGuard
from critic_guard.lifecycle import GuardState
from critic_guard.pairs_io import PairsFileError
from critic_guard.policy import Policy
from critic_guard.report.data import UnknownGuardKeyError, choose_guard_key, from_pairs_file, from_store
from critic_guard.stats import PairedCounts
from critic_guard.store import PairStatus, SQLiteStore, Store
from critic_guard.types import Arm, StepContext

INCOMPLETE_REASONS = ("undeclared side-effecting tool 'send_email'", "shadow branch timed out")


def _ctx(run_id: str, arm: Arm, step: int) -> StepContext:
    return StepContext(run_id, step, ({"role": "assistant", "content": f"step {step}"},), {"task_id": run_id}, arm)


def build_pilot_store(target: Path | Store, *, tasks: int = 240, seed: int = 10, agent_name: str = "demo-agent") -> str:
    """Drive a real AUTO guard over ``tasks`` seeded tasks into ``target`` (a store, or a SQLite file to create and
    close); return the guard key."""
    rng = random.Random(seed)
    scores: dict[tuple[str, int], float] = {}
    critic = FunctionCritic(lambda ctx: scores[(ctx.run_id, ctx.step)], name="demo-critic@1")
    with (
        SQLiteStore(target) if isinstance(target, Path) else nullcontext(target) as store,
        CriticGuard(
            critic,
            mode="auto",
            store=store,
            agent_name=agent_name,
            policy=Policy(min_step=0),
            aa_fraction=0.15,
            shadow_fraction=0.5,
            lifecycle_ttl_s=0.0,
        ) as guard,
    ):
        flagged_tasks = 0
        for i in range(tasks):
            served = guard.serve_arm()
            prod = guard.start_run(run_id=f"task{i:03d}", arm=served, task={"task_id": f"t{i:03d}"})
            control_ok = rng.random() < 0.55
            flag_step = rng.randrange(6) if rng.random() < 0.6 else None
            last = flag_step if flag_step is not None else rng.randrange(2, 6)
            for step in range(last + 1):
                low = 0.1 if control_ok else 0.25
                scores[(prod, step)] = round(rng.uniform(low, low + 0.3), 3)
            if flag_step is None:
                for step in range(last + 1):
                    guard.review(_ctx(prod, served, step))
                if guard.should_fork(prod):
                    guard.open_pair(prod, control_run_id=prod, treatment_run_id=prod, flagged=False)
                guard.end_run(prod, success=control_ok)
                continue
            scores[(prod, flag_step)] = round(rng.uniform(0.6, 0.85) if control_ok else rng.uniform(0.7, 0.99), 3)
            for step in range(flag_step + 1):
                guard.review(_ctx(prod, served, step))
            early = flag_step < 2
            recover, disrupt = (0.15, 0.35) if early else (0.45, 0.05)
            treatment_ok = rng.random() < recover if not control_ok else rng.random() >= disrupt
            outcome = {Arm.CONTROL: control_ok, Arm.TREATMENT: treatment_ok}
            if not guard.should_fork(prod):
                guard.end_run(prod, success=outcome[served])
                continue
            flagged_tasks += 1
            shadow_arm = Arm.TREATMENT if served is Arm.CONTROL else Arm.CONTROL
            shadow = guard.start_run(run_id=f"{prod}:shadow", arm=shadow_arm, parent_run_id=prod, fork_step=flag_step)
            runs = {served: prod, shadow_arm: shadow}
            guard.open_pair(
                prod,
                control_run_id=runs[Arm.CONTROL],
                treatment_run_id=runs[Arm.TREATMENT],
                flagged=True,
                fork_step=flag_step,
            )
            if guard.should_fork_aa(prod):
                again = guard.start_run(run_id=f"{prod}:aa", arm=served, parent_run_id=prod, fork_step=flag_step)
                guard.open_pair(f"{prod}:aa", control_run_id=prod, treatment_run_id=again, flagged=True, kind="aa")
                guard.end_run(again, success=outcome[served] if rng.random() < 0.9 else not outcome[served])
            guard.end_run(prod, success=outcome[served])
            if flagged_tasks % 20 == 0:
                guard.mark_incomplete(prod, INCOMPLETE_REASONS[flagged_tasks // 20 % 2])
                continue
            guard.end_run(shadow, success=outcome[shadow_arm])
        return guard.guard_key


@pytest.fixture(scope="module")
def pilot_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    path = tmp_path_factory.mktemp("report") / "pilot.db"
    return path, build_pilot_store(path)


def test_store_data_matches_the_guard_record(pilot_store: tuple[Path, str]) -> None:
    path, key = pilot_store
    with SQLiteStore(path) as store:
        data = from_store(store, key, source="test")
        record = store.get_guard(key)
        incomplete = store.pairs(key, PairStatus.INCOMPLETE)
    assert record is not None and data.store is not None
    assert data.counts == record.counts  # the pairs we read are exactly the pairs the monitor counted
    assert data.counts.n01 > 0 and data.counts.n10 > 0 and data.counts.n00 + data.counts.n11 > 0
    assert (data.store.aa_pairs, data.store.aa_discordant) == (record.aa_pairs, record.aa_discordant)
    assert data.store.aa_pairs > 0
    assert len(data.store.incomplete_reasons) == record.incomplete == len(incomplete) > 0
    assert set(data.store.incomplete_reasons) <= set(INCOMPLETE_REASONS)
    assert data.store.state is record.state and data.store.transitions[-1] == record.last_transition
    flagged = [p for p in data.pairs if p.flagged]
    assert flagged and all(p.fork_step is not None and p.p_fail is not None and p.p_fail >= 0.6 for p in flagged)
    assert all(p.fork_step is None and p.p_fail is None for p in data.pairs if not p.flagged)
    assert {p.fork_step for p in flagged} == set(range(6))
    assert len(data.store.scores) == len(data.store.failed) > len(data.pairs)


def test_store_pairs_are_in_completion_order(pilot_store: tuple[Path, str]) -> None:
    path, key = pilot_store
    with SQLiteStore(path) as store:
        data = from_store(store, key, source="test")
        transition = store.transitions(key)[0]
    assert transition.actor == "monitor" and transition.from_state is GuardState.PILOT
    at = transition.evidence["pairs"]  # the monitor's count when it moved: the same prefix of our ordered pairs
    cells = transition.evidence["counts"]
    assert list(PairedCounts.from_pairs((p.control, p.treatment) for p in data.pairs[:at]).as_tuple()) == cells


def test_choose_guard_key(tmp_path: Path, pilot_store: tuple[Path, str]) -> None:
    path, key = pilot_store
    with SQLiteStore(path) as store:
        assert choose_guard_key(store, None) == key == choose_guard_key(store, key)
        with pytest.raises(UnknownGuardKeyError, match="unknown guard key 'nope'; the store has: demo-agent/"):
            choose_guard_key(store, "nope")
    with SQLiteStore(tmp_path / "empty.db") as empty, pytest.raises(UnknownGuardKeyError, match="no guard keys"):
        choose_guard_key(empty, None)
    two = store_with_two_guard_keys(tmp_path / "two.db")
    many = "2 guard keys, choose one with --key: a/"
    with SQLiteStore(two) as store, pytest.raises(UnknownGuardKeyError, match=many):
        choose_guard_key(store, None)


def test_pairs_file_keeps_file_order(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    rows = [(False, True), (True, True), (True, False), (False, False), (False, True)]
    path.write_text("\n".join(json.dumps({"control": c, "treatment": t, "task": i}) for i, (c, t) in enumerate(rows)))
    data = from_pairs_file(path)
    assert [(p.control, p.treatment) for p in data.pairs] == rows
    assert data.store is None and data.guard_key is None and data.source == "pairs file pairs.jsonl"
    assert all(p.flagged is None for p in data.pairs)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(PairsFileError, match="no pairs found"):
        from_pairs_file(tmp_path / "empty.jsonl")
