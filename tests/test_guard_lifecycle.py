"""CriticGuard's pilot and lifecycle API: seeded AUTO scenarios driven through the guard, pairs, overrides, caching,
listeners, and the hot-path cost of AUTO mode. Store-level atomicity is in tests/store_suite.py."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from critic_guard.critics import ConstantCritic
from critic_guard.guard import DISABLED_REASON, CriticGuard, EventKind, GuardEvent
from critic_guard.lifecycle import GuardRecord, GuardState, LifecycleError
from critic_guard.stats import MonitorState, PairedCounts
from critic_guard.store import (
    OutcomeConflictError,
    PairStateError,
    PairStatus,
    SQLiteStore,
    UnknownPairError,
    UnknownRunError,
)
from critic_guard.telemetry import attributes as A
from critic_guard.telemetry.tracing import GuardTelemetry
from critic_guard.types import Action, Arm, Mode, StepContext

PILOT, ENABLED, DISABLED = GuardState.PILOT, GuardState.ENABLED, GuardState.DISABLED


def ctx(run_id: str, arm: Arm, step: int = 3) -> StepContext:
    return StepContext(run_id, step, ({"role": "assistant", "content": "x"},), {"task_id": run_id}, arm)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    with SQLiteStore(tmp_path / "guard.db") as opened:
        yield opened


@dataclass(frozen=True)
class Effect:
    """A simulated intervention: control succeeds w.p. ``base``; on a flagged task the treatment recovers a failed
    control w.p. ``r`` and disrupts a successful one w.p. ``d``. ``flag_rate`` of tasks get flagged."""

    r: float
    d: float
    base: float = 0.5
    flag_rate: float = 0.6


HARMFUL = Effect(r=0.05, d=0.40)
HELPFUL = Effect(r=0.45, d=0.02)
NULL = Effect(r=0.10, d=0.10)


def run_tasks(guard: CriticGuard, effect: Effect, n_tasks: int, rng: random.Random, start: int = 0) -> list[str]:
    """Drive ``n_tasks`` tasks through the guard API as an integration would; return what happened to each."""
    log = []
    for i in range(start, start + n_tasks):
        served = guard.serve_arm()
        prod = guard.start_run(run_id=f"task{i}", arm=served)
        control_ok = rng.random() < effect.base
        if rng.random() >= effect.flag_rate:  # never flagged: one run stands for both arms, sampled by the same coin
            paired = guard.should_fork(prod)
            if paired:
                guard.open_pair(prod, control_run_id=prod, treatment_run_id=prod, flagged=False)
            guard.end_run(prod, success=control_ok)
            log.append("single" if paired else "unpaired")
            continue
        review = guard.review(ctx(prod, served))
        assert review.decision.flagged
        assert (review.action is Action.ROLLBACK) is guard.acts(served)
        treatment_ok = rng.random() < effect.r if not control_ok else rng.random() >= effect.d
        if not guard.should_fork(prod):
            guard.end_run(prod, success=treatment_ok if served is Arm.TREATMENT else control_ok)
            log.append("unforked")
            continue
        shadow_arm = Arm.TREATMENT if served is Arm.CONTROL else Arm.CONTROL
        shadow = guard.start_run(run_id=f"task{i}:shadow", arm=shadow_arm, parent_run_id=prod, fork_step=3)
        runs = {served: prod, shadow_arm: shadow}
        guard.open_pair(
            prod, control_run_id=runs[Arm.CONTROL], treatment_run_id=runs[Arm.TREATMENT], flagged=True, fork_step=3
        )
        guard.end_run(runs[Arm.TREATMENT], success=treatment_ok)
        guard.end_run(runs[Arm.CONTROL], success=control_ok)
        log.append(f"forked:{served.value}")
    return log


def one_transition(guard: CriticGuard) -> tuple[GuardState, str]:
    [transition] = guard.transitions()
    assert (transition.from_state, transition.actor) == (PILOT, "monitor")
    return transition.to_state, transition.reason


# -- seeded AUTO scenarios -------------------------------------------------------------------------------------


@pytest.mark.parametrize("persisted", [False, True])
def test_auto_disables_a_harmful_intervention(persisted: bool, store: SQLiteStore) -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode="auto", store=store if persisted else None)
    log = run_tasks(guard, HARMFUL, 200, random.Random(1))
    to_state, reason = one_transition(guard)
    assert (to_state, guard.lifecycle().state) == (DISABLED, DISABLED)
    assert reason.startswith("harm proven")
    assert set(log) == {"single", "forked:control", "unpaired", "unforked"}
    disabled_at = min(log.index("unpaired"), log.index("unforked"))  # after disabling: no more pairs
    assert set(log[:disabled_at]) == {"single", "forked:control"}
    assert set(log[disabled_at:]) == {"unpaired", "unforked"}
    record = guard.lifecycle()
    assert record.pairs_counted == record.monitor.t == disabled_at == guard.transitions()[0].evidence["t"]
    assert record.counts.n10 > 3 * record.counts.n01
    assert (guard.serve_arm(), guard.acts(Arm.TREATMENT), guard.should_fork("next")) == (Arm.CONTROL, False, False)


def test_auto_enables_a_helpful_intervention_and_keeps_a_shadow_control() -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode="auto", store=None, shadow_fraction=0.25)
    log = run_tasks(guard, HELPFUL, 300, random.Random(2))  # benefit is proven at pair 185 (alpha/2 per side)
    to_state, reason = one_transition(guard)
    assert to_state is ENABLED and reason.startswith("benefit proven")
    assert (guard.serve_arm(), guard.acts(Arm.TREATMENT), guard.acts(Arm.CONTROL)) == (Arm.TREATMENT, True, False)
    enabled_at = guard.transitions()[0].evidence["t"]
    assert log[:enabled_at].count("single") + log[:enabled_at].count("forked:control") == enabled_at
    after = log[enabled_at:]
    assert (
        {"forked:treatment", "unforked", "unpaired"}
        <= set(after)
        <= {"forked:treatment", "unforked", "unpaired", "single"}
    )
    forked = after.count("forked:treatment") / (after.count("forked:treatment") + after.count("unforked"))
    assert 0.1 < forked < 0.45  # shadow_fraction 0.25 of the flagged production runs
    record = guard.lifecycle()
    assert record.monitor.t == enabled_at + after.count("forked:treatment") + after.count("single")
    assert record.state is ENABLED and not record.monitor.harm_proven


def test_null_effect_stays_in_pilot_then_the_budget_ends_it_inconclusive() -> None:
    unbounded = CriticGuard(ConstantCritic(0.9), mode="auto", store=None)
    run_tasks(unbounded, NULL, 150, random.Random(3))
    assert unbounded.transitions() == [] and unbounded.lifecycle().state is PILOT
    assert unbounded.lifecycle().monitor.t == 150

    # Default on_budget_spent="serve_control": inconclusive, not harm; the state stays pilot, production serves
    # control and nothing forks any more.
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    telemetry = GuardTelemetry(tracer_provider=provider)
    budget = CriticGuard(
        ConstantCritic(0.9), mode="auto", store=None, max_pilot_pairs=50, serve="treatment", telemetry=telemetry
    )
    assert budget.serve_arm() is Arm.TREATMENT
    log = run_tasks(budget, NULL, 150, random.Random(3))
    traced = [
        dict(e.attributes or {})
        for span in spans.get_finished_spans()
        for e in span.events
        if e.name == A.EVENT_TRANSITION
    ]  # the trace says inconclusive, pilot -> pilot: no harm verdict anywhere
    assert [(t[A.LIFECYCLE_FROM], t[A.LIFECYCLE_TO]) for t in traced] == [("pilot", "pilot")]
    assert str(traced[0][A.LIFECYCLE_REASON]).startswith("budget spent, inconclusive")
    provider.shutdown()
    [transition] = budget.transitions()
    assert (transition.from_state, transition.to_state, transition.actor) == (PILOT, PILOT, "monitor")
    assert transition.reason == (
        "budget spent, inconclusive: 50 pilot pairs without proof (max_pilot_pairs=50); production serves control "
        "and nothing forks; not evidence of harm"
    )
    assert transition.evidence["t"] == 50 and transition.evidence["outcome"] == "inconclusive"
    record = budget.lifecycle()
    assert (record.state, record.monitor.t, record.monitor.inconclusive_at) == (PILOT, 50, 50)
    paused = (budget.serve_arm(), budget.should_fork("next"), budget.should_fork_aa("next"))
    assert paused == (Arm.CONTROL, False, False)
    assert set(log[log.index("unpaired") :]) <= {"unpaired", "unforked"}  # nothing forks after the budget

    # The other actions are settings: disable (the old behaviour), or keep piloting as before.
    disable = CriticGuard(ConstantCritic(0.9), mode="auto", store=None, max_pilot_pairs=50, on_budget_spent="disable")
    run_tasks(disable, NULL, 150, random.Random(3))
    assert one_transition(disable)[0] is DISABLED and disable.lifecycle().monitor.t == 50
    keep = CriticGuard(
        ConstantCritic(0.9), mode="auto", store=None, max_pilot_pairs=50, on_budget_spent="keep_piloting"
    )
    run_tasks(keep, NULL, 150, random.Random(3))
    assert one_transition(keep)[0] is PILOT and keep.lifecycle().monitor.t == 150  # still pairing
    assert keep.lifecycle().monitor.inconclusive_at == 50


def test_pilot_mode_monitors_but_never_moves() -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode="pilot", store=None, serve="treatment")
    log = run_tasks(guard, HARMFUL, 200, random.Random(1))
    assert guard.transitions() == []
    record = guard.lifecycle()
    assert record.state is PILOT and record.monitor.harm_proven
    assert set(log) == {"single", "forked:treatment"}  # serve="treatment": the shadow is the control


# -- restarts, replicas and idempotency ------------------------------------------------------------------------


def test_state_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/g.db"
    with CriticGuard(ConstantCritic(0.9), mode="auto", store=url) as guard:
        run_tasks(guard, HELPFUL, 250, random.Random(2))
        before = guard.lifecycle()
    with CriticGuard(ConstantCritic(0.9), mode="auto", store=url) as restarted:
        assert restarted.lifecycle() == before and before.state is ENABLED
        assert restarted.serve_arm() is Arm.TREATMENT  # read at construction, no step needed
        run_tasks(restarted, HELPFUL, 20, random.Random(9), start=1000)
        assert restarted.lifecycle().version > before.version
    with CriticGuard(ConstantCritic(0.9, name="other@2"), mode="auto", store=url) as other_critic:
        assert other_critic.lifecycle().state is PILOT and other_critic.lifecycle().version == 0  # fresh evidence


def test_outcomes_are_idempotent_across_replicas(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/g.db"
    with (
        CriticGuard(ConstantCritic(0.9), mode="auto", store=url) as a,
        CriticGuard(ConstantCritic(0.9), mode="auto", store=url) as b,
    ):
        a.start_run(run_id="p")
        b.start_run(run_id="s", arm=Arm.TREATMENT)
        a.open_pair("p", control_run_id="p", treatment_run_id="s", flagged=True)
        assert b.open_pair("p", control_run_id="p", treatment_run_id="s", flagged=True).status is PairStatus.OPEN
        assert a.record_outcome("p", True) == []  # the treatment outcome is missing
        [update] = b.record_outcome("s", False)
        assert (update.pair.cell, update.guard.monitor.t) == ("n10", 1)
        assert a.record_outcome("s", False) == [] and b.record_outcome("p", True) == []  # repeats change nothing
        with pytest.raises(OutcomeConflictError):
            a.record_outcome("s", True)
        assert a.lifecycle().monitor == MonitorState.start().update_pair(True, False)


def test_unknown_runs_and_pairs_are_clear_errors() -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode="pilot", store=None)
    with pytest.raises(UnknownRunError, match=r"unknown run id 'ghost': no run with this id was started"):
        guard.record_outcome("ghost", True)
    with pytest.raises(UnknownRunError, match=r"start it with guard\.start_run"):
        guard.end_run("ghost")
    with pytest.raises(UnknownPairError, match="unknown pair id 'ghost'"):
        guard.mark_incomplete("ghost", "no reason")


# -- pairs -----------------------------------------------------------------------------------------------------


def test_a_pair_opened_after_its_outcomes_completes_at_once() -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode="pilot", store=None)
    guard.start_run(run_id="r", task={"task_id": "t-1"})
    guard.end_run("r", success=True)
    pair = guard.open_pair("r", control_run_id="r", treatment_run_id="r", flagged=False)
    assert (pair.status, pair.cell, pair.task_id, pair.design) == (PairStatus.COMPLETE, "n11", "t-1", "fork")
    assert guard.lifecycle().counts == PairedCounts(0, 0, 0, 1)
    assert guard.open_pair("r", control_run_id="r", treatment_run_id="r", flagged=False) == pair  # idempotent


@pytest.mark.parametrize(
    ("control", "treatment", "flagged", "design", "message"),
    [
        ("p", "s", False, None, "never flagged .* pass the production run id as both"),
        ("p", "p", True, None, "needs two different runs"),
        ("p", "p", False, "full", "needs two different runs"),
    ],
)
def test_open_pair_validates_the_shape(
    control: str, treatment: str, flagged: bool, design: str | None, message: str
) -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode="pilot", store=None)
    with pytest.raises(ValueError, match=message):
        guard.open_pair("p", control_run_id=control, treatment_run_id=treatment, flagged=flagged, design=design)


def test_full_design_pairs_and_aa_pairs() -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode="pilot", store=None, design="full")
    assert guard.should_fork("x") is False  # the full design runs two full runs per task instead
    for run_id, arm in (("c", Arm.CONTROL), ("t", Arm.TREATMENT)):
        guard.start_run(run_id=run_id, arm=arm)
    assert guard.open_pair("task-1", control_run_id="c", treatment_run_id="t", flagged=False).design == "full"
    guard.start_run(run_id="c2")
    guard.open_pair("c:aa", control_run_id="c", treatment_run_id="c2", flagged=True, kind="aa", design="fork")
    assert guard.record_outcome("c", True) == []
    [aa] = guard.record_outcome("c2", False)
    assert (aa.counted, aa.pair.cell, aa.guard.aa_pairs, aa.guard.aa_discordant, aa.guard.monitor.t) == (
        False,
        "n10",
        1,
        1,
        0,
    )
    [ab] = guard.record_outcome("t", True)
    assert (ab.counted, ab.guard.monitor.t, ab.guard.aa_pairs) == (True, 1, 1)


def test_incomplete_pairs_are_counted_and_excluded() -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode="auto", store=None, lifecycle_ttl_s=60.0)
    guard.start_run(run_id="p")
    guard.start_run(run_id="s", arm=Arm.TREATMENT)
    guard.open_pair("p", control_run_id="p", treatment_run_id="s", flagged=True)
    guard.mark_incomplete("p", "shadow would call send_email (side effects, no fork hook)")
    guard.mark_incomplete("p", "again")  # idempotent
    assert guard.record_outcome("p", True) == [] and guard.record_outcome("s", True) == []
    record = guard.lifecycle()
    assert (record.incomplete, record.monitor.t, record.pairs_counted) == (1, 0, 0)
    [pair] = guard.pairs(PairStatus.INCOMPLETE)
    assert pair.reason == "shadow would call send_email (side effects, no fork hook)"
    guard.start_run(run_id="q")
    guard.open_pair("q", control_run_id="q", treatment_run_id="q", flagged=False)
    guard.record_outcome("q", False)
    with pytest.raises(PairStateError, match="is complete"):
        guard.mark_incomplete("q", "too late")


@pytest.mark.parametrize("background", [False, True])
def test_an_abandoned_run_ends_and_excludes_only_its_open_pairs(background: bool, store: SQLiteStore) -> None:
    """A production run that raised: its A/B and A/A pairs could never complete, so they are excluded with the
    reason; a complete pair of the same run, and another guard's pair, are left as they are."""
    guard = CriticGuard(ConstantCritic(0.9), mode="pilot", store=store)
    other = CriticGuard(ConstantCritic(0.9), mode="pilot", store=store, agent_name="other")
    for run_id, arm in (("p", Arm.CONTROL), ("s", Arm.TREATMENT), ("a", Arm.CONTROL), ("done", Arm.CONTROL)):
        guard.start_run(run_id=run_id, arm=arm)
    other.start_run(run_id="o")
    guard.open_pair("p", control_run_id="p", treatment_run_id="s", flagged=True)
    guard.open_pair("p~aa", control_run_id="p", treatment_run_id="a", flagged=True, kind="aa")
    guard.open_pair("done", control_run_id="done", treatment_run_id="done", flagged=False)
    guard.record_outcome("done", True)
    other.open_pair("o", control_run_id="o", treatment_run_id="o", flagged=False)
    guard.record_outcome("s", True)  # its branch finished: the pair still lacks production's outcome
    guard.abandon_run("p", "the run raised before its end", background=background)
    guard.abandon_run("done", "the run raised before its end", background=background)
    assert guard.wait_for_writes(10)
    assert {p.pair_id: (p.status, p.reason) for p in guard.pairs()} == {
        "p": (PairStatus.INCOMPLETE, "the run raised before its end"),
        "p~aa": (PairStatus.INCOMPLETE, "the run raised before its end"),
        "done": (PairStatus.COMPLETE, None),
    }
    assert [p.status for p in other.pairs()] == [PairStatus.OPEN]
    assert (store.get_run("p").status, store.get_outcome("p")) == ("abandoned", None)
    assert guard.lifecycle().incomplete == 2
    guard.abandon_run("p", "again")  # idempotent
    assert guard.lifecycle().incomplete == 2


def test_complete_pairs_recovers_pairs_left_open(store: SQLiteStore) -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode="pilot", store=store)
    guard.start_run(run_id="p")
    guard.start_run(run_id="s", arm=Arm.TREATMENT)
    guard.open_pair("p", control_run_id="p", treatment_run_id="s", flagged=True)
    for run_id in ("p", "s"):  # outcomes written, but the process "crashed" before completing the pair
        store.record_outcome(run_id, True, recorded_at=1.0)
    assert [p.pair_id for p in guard.pairs("open")] == ["p"]
    [update] = guard.complete_pairs()
    assert update.pair.cell == "n11" and guard.complete_pairs() == []


# -- modes, states and forks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "state", "acts_control", "acts_treatment", "served", "forks"),
    [
        (Mode.OFF, PILOT, False, False, Arm.CONTROL, False),
        (Mode.OBSERVE, PILOT, False, False, Arm.CONTROL, False),
        (Mode.ON, PILOT, True, True, Arm.TREATMENT, False),
        (Mode.PILOT, PILOT, False, True, Arm.CONTROL, True),
        (Mode.PILOT, DISABLED, False, True, Arm.CONTROL, True),  # PILOT ignores the lifecycle
        (Mode.AUTO, PILOT, False, True, Arm.CONTROL, True),
        (Mode.AUTO, ENABLED, False, True, Arm.TREATMENT, None),  # None: shadow_fraction of runs
        (Mode.AUTO, DISABLED, False, False, Arm.CONTROL, False),
    ],
)
def test_modes_and_states(
    mode: Mode, state: GuardState, acts_control: bool, acts_treatment: bool, served: Arm, forks: bool | None
) -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode=mode, store=None, shadow_fraction=0.3)
    if state is not PILOT:
        guard.set_state(state, reason="test")
    assert (guard.acts(Arm.CONTROL), guard.acts(Arm.TREATMENT), guard.serve_arm()) == (
        acts_control,
        acts_treatment,
        served,
    )
    hits = sum(guard.should_fork(f"run-{i}") for i in range(4000))
    if forks is None:
        assert abs(hits / 4000 - 0.3) < 0.03
    else:
        assert hits == (4000 if forks else 0)


def test_serve_treatment_during_the_pilot() -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode="auto", store=None, serve="treatment")
    assert guard.serve_arm() is Arm.TREATMENT and guard.acts(Arm.TREATMENT) and not guard.acts(Arm.CONTROL)


def test_fork_coins_agree_across_replicas_and_are_independent(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/g.db"
    config = {"mode": "auto", "shadow_fraction": 0.5, "aa_fraction": 0.5, "store": url}
    with CriticGuard(ConstantCritic(0.9), **config) as a, CriticGuard(ConstantCritic(0.9), **config) as b:
        a.set_state("enabled", reason="test")
        b.lifecycle()
        ids = [f"run-{i}" for i in range(2000)]
        shadow_a, shadow_b = [a.should_fork(i) for i in ids], [b.should_fork(i) for i in ids]
        aa = [a.should_fork_aa(i) for i in ids]
        assert shadow_a == shadow_b and aa == [b.should_fork_aa(i) for i in ids]
        both = sum(s and x for s, x in zip(shadow_a, aa, strict=True))
        assert abs(sum(shadow_a) / 2000 - 0.5) < 0.04 and abs(both / 2000 - 0.25) < 0.04  # independent coins
        assert sum(a.should_fork() for _ in range(2000)) in range(900, 1100)  # no run id: a seeded coin


def test_aa_forks_only_when_asked() -> None:
    assert not any(
        CriticGuard(ConstantCritic(0.9), mode="pilot", store=None).should_fork_aa(str(i)) for i in range(500)
    )
    always = CriticGuard(ConstantCritic(0.9), mode="pilot", store=None, aa_fraction=1.0)
    assert always.should_fork_aa("x")
    assert not CriticGuard(ConstantCritic(0.9), mode="on", store=None, aa_fraction=1.0).should_fork_aa("x")
    always_auto = CriticGuard(ConstantCritic(0.9), mode="auto", store=None, aa_fraction=1.0)
    always_auto.set_state("disabled", reason="test")
    assert not always_auto.should_fork_aa("x")


def test_disabled_guard_reports_why_treatment_does_not_act() -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode="auto", store=None)
    assert guard.review(ctx("r", Arm.TREATMENT)).action is Action.ROLLBACK
    guard.set_state("disabled", reason="incident 7")
    assert guard.review(ctx("r", Arm.TREATMENT)).decision.reason == DISABLED_REASON
    assert guard.review(ctx("r", Arm.CONTROL)).decision.reason == "control_arm"


# -- overrides and the cache -----------------------------------------------------------------------------------


def test_human_overrides() -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode="auto", store=None)
    run_tasks(guard, HARMFUL, 200, random.Random(1))
    assert guard.lifecycle().state is DISABLED
    with pytest.raises(LifecycleError, match="harm is proven"):
        guard.set_state("enabled", reason="I know better")
    transition = guard.set_state("pilot", reason="critic v2 prompt", actor="bob", reset_monitor=True)
    assert (transition.from_state, transition.to_state, transition.actor) == (DISABLED, PILOT, "bob")
    record = guard.lifecycle()
    assert (record.state, record.monitor, record.last_transition) == (PILOT, MonitorState.start(), transition)
    assert record.pairs_counted > 0  # counts are kept across the reset
    assert [t.actor for t in guard.transitions()] == ["monitor", "bob"]
    assert guard.acts(Arm.TREATMENT) and guard.should_fork("x")


def test_the_lifecycle_cache_expires(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/g.db"
    with (
        CriticGuard(ConstantCritic(0.9), mode="auto", store=url, lifecycle_ttl_s=0.2) as cached,
        CriticGuard(ConstantCritic(0.9), mode="auto", store=url) as other,
    ):
        assert cached.acts(Arm.TREATMENT)
        other.set_state("disabled", reason="from another replica")
        assert cached.acts(Arm.TREATMENT)  # still the cached state
        time.sleep(0.25)
        assert not cached.acts(Arm.TREATMENT)
        other.set_state("pilot", reason="back")
        assert cached.lifecycle().state is PILOT  # lifecycle() always reads the store
        assert cached.acts(Arm.TREATMENT)


def test_a_failing_store_read_keeps_the_last_known_state(store: SQLiteStore) -> None:
    class Flaky(SQLiteStore):
        broken = False

        def get_guard(self, guard_key: str) -> GuardRecord | None:
            if self.broken:
                raise OSError("connection reset")
            return super().get_guard(guard_key)

    flaky = Flaky(store.path)
    guard = CriticGuard(ConstantCritic(0.9), mode="auto", store=flaky, lifecycle_ttl_s=0.0)
    guard.set_state("enabled", reason="test")
    flaky.broken = True
    assert guard.serve_arm() is Arm.TREATMENT and guard.acts(Arm.TREATMENT)
    assert guard.counters.store_errors == 2
    flaky.close()


def test_a_different_stored_alpha_is_reported_once(store: SQLiteStore, caplog: pytest.LogCaptureFixture) -> None:
    CriticGuard(ConstantCritic(0.9), mode="auto", store=store).set_state("disabled", reason="x")
    with caplog.at_level(logging.WARNING, logger="critic_guard"):
        guard = CriticGuard(ConstantCritic(0.9), mode="auto", store=store, alpha=0.01, lifecycle_ttl_s=0.0)
        guard.acts(Arm.TREATMENT)
        guard.acts(Arm.TREATMENT)
    assert [r.getMessage().count("alpha=0.05") for r in caplog.records] == [1]
    transition = guard.set_state("pilot", reason="new level", reset_monitor=True)
    assert transition.to_state is PILOT and guard.lifecycle().monitor.alpha == 0.01


# -- listeners -------------------------------------------------------------------------------------------------


def test_listeners_see_verdicts_interventions_pairs_and_transitions() -> None:
    guard = CriticGuard(ConstantCritic(0.9), mode="auto", store=None, serve="treatment")
    events: list[GuardEvent] = []
    guard.add_listener(events.append)

    def broken(event: GuardEvent) -> None:
        raise RuntimeError("exporter down")

    guard.add_listener(broken)
    log = run_tasks(guard, HARMFUL, 200, random.Random(1))
    kinds = [e.kind for e in events]
    reviews = [e.review for e in events if e.kind is EventKind.VERDICT]
    interventions = [e.review for e in events if e.kind is EventKind.INTERVENTION]
    assert len(reviews) == len(log) - log.count("single") - log.count("unpaired")  # one review per flagged task
    assert interventions == [r for r in reviews if r is not None and r.action is Action.ROLLBACK]
    assert len(interventions) == log.count("forked:treatment") > 0  # served treatment runs act until disabled
    assert kinds.count(EventKind.PAIR_COMPLETED) == guard.lifecycle().monitor.t
    [transition] = [e.transition for e in events if e.kind is EventKind.TRANSITION]
    assert transition == guard.transitions()[0]
    assert all(e.guard_key == guard.guard_key for e in events)
    assert guard.counters.listener_errors == len(events)  # the broken listener failed every time, the agent went on
    guard.remove_listener(events.append)
    guard.remove_listener(broken)
    seen = len(events)
    guard.set_state("pilot", reason="x", reset_monitor=True)
    guard.review(ctx("r", Arm.TREATMENT))
    assert len(events) == seen
    with pytest.raises(ValueError):
        guard.remove_listener(broken)
    with pytest.raises(TypeError, match="listener must be callable"):
        guard.add_listener("print")  # type: ignore[arg-type]


# -- overhead --------------------------------------------------------------------------------------------------


def test_the_hot_path_reads_the_lifecycle_from_its_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`acts()` and `review()` run at every step; within `lifecycle_ttl_s` they must not query the store (what they
    cost in time is measured by benchmarks/overhead.py, not asserted here)."""
    with CriticGuard(
        ConstantCritic(0.9), mode="auto", store=f"sqlite:///{tmp_path}/g.db", lifecycle_ttl_s=3600
    ) as guard:
        run_id = guard.start_run(arm=guard.serve_arm())
        guard.review(ctx(run_id, Arm.TREATMENT, 0))
        assert guard.store is not None
        reads = 0
        original = guard.store.get_guard

        def counting(key: str) -> object:
            nonlocal reads
            reads += 1
            return original(key)

        monkeypatch.setattr(guard.store, "get_guard", counting)
        for step in range(1, 400):
            guard.acts(Arm.TREATMENT)
            guard.review(ctx(run_id, Arm.TREATMENT, step), interventions=1, last_intervention_step=1)
        assert reads == 0
        assert guard.counters.verdicts == 400


def test_without_a_store_old_runs_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("critic_guard.run_recorder._MAX_TRACKED_RUNS", 5)
    monkeypatch.setattr("critic_guard.run_recorder._FORGET_EVERY", 4)
    guard = CriticGuard(ConstantCritic(0.9), mode="pilot", store=None)
    guard.start_run(run_id="open-c")
    guard.start_run(run_id="open-t", arm=Arm.TREATMENT)
    guard.open_pair("open-c", control_run_id="open-c", treatment_run_id="open-t", flagged=True)
    for i in range(10):
        guard.start_run(run_id=f"r{i}")
        guard.open_pair(f"r{i}", control_run_id=f"r{i}", treatment_run_id=f"r{i}", flagged=False)
        guard.end_run(f"r{i}", success=True)
    assert guard.store is None  # runs live in the guard's private in-memory store
    kept = [r.run_id for r in guard._parts.stores.records.runs()]
    # checked before the 4th, 8th and 12th start; the 12th keeps the newest 5 (r4..r8) and the open pair's runs
    assert kept == ["open-c", "open-t", "r4", "r5", "r6", "r7", "r8", "r9"]
    assert [p.pair_id for p in guard.pairs()] == ["open-c", *(f"r{i}" for i in range(4, 10))]
    with pytest.raises(UnknownRunError):
        guard.record_outcome("r0", True)
    assert guard.lifecycle().counts == PairedCounts(0, 0, 0, 10)  # evidence is never forgotten
    [update] = [*guard.record_outcome("open-c", True), *guard.record_outcome("open-t", True)]
    assert update.guard.counts == PairedCounts(0, 0, 0, 11)
