"""The pure lifecycle rule (critic_guard.lifecycle): tables of records in, records and transitions out."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest

from critic_guard.config import GuardConfig
from critic_guard.lifecycle import (
    GuardRecord,
    GuardState,
    LifecycleError,
    Transition,
    apply_aa_pair,
    apply_incomplete,
    apply_pair,
    evidence_of,
    override,
    paused_after_budget,
)
from critic_guard.stats import MonitorState, PairedCounts, run_monitor
from critic_guard.types import Mode

KEY = "shop/judge@1/0badc0de"
PILOT, ENABLED, DISABLED = GuardState.PILOT, GuardState.ENABLED, GuardState.DISABLED


def record(
    state: GuardState = PILOT,
    *,
    harm: bool = False,
    benefit: bool = False,
    t: int = 0,
    since: int = 0,
    alpha: float = 0.05,
) -> GuardRecord:
    """A record whose monitor has seen ``t`` concordant pairs and, if asked, already proved harm and/or benefit."""
    monitor = MonitorState.start(alpha)
    for _ in range(t):
        monitor = monitor.update(0.5)
    monitor = replace(monitor, harm_proven_at=3 if harm else None, benefit_proven_at=4 if benefit else None)
    return GuardRecord(KEY, state, monitor, state_since_t=since, version=7, updated_at=1.0)


def config(**kw: object) -> GuardConfig:
    return GuardConfig(store=None, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mode", "start", "harm", "benefit", "budget", "t", "since", "expected", "reason"),
    [
        # AUTO: proofs move the state; harm first (safety wins a tie); disabled only moves by a human
        (Mode.AUTO, PILOT, False, False, None, 0, 0, PILOT, None),
        (Mode.AUTO, PILOT, True, False, None, 0, 0, DISABLED, "harm proven: harm e-value"),
        (Mode.AUTO, PILOT, False, True, None, 0, 0, ENABLED, "benefit proven: benefit e-value"),
        (Mode.AUTO, PILOT, True, True, None, 0, 0, DISABLED, "harm proven"),
        (Mode.AUTO, ENABLED, False, True, None, 0, 0, ENABLED, None),
        (Mode.AUTO, ENABLED, True, True, None, 0, 0, DISABLED, "harm proven"),
        (Mode.AUTO, DISABLED, True, False, None, 0, 0, DISABLED, None),
        (Mode.AUTO, DISABLED, False, True, None, 0, 0, DISABLED, None),
        # AUTO: the pilot budget counts pairs since the pilot began, and only in the pilot
        (Mode.AUTO, PILOT, False, False, 10, 8, 0, PILOT, None),
        # (a spent budget is inconclusive, not harm: by default the state stays pilot, serving control)
        (Mode.AUTO, PILOT, False, False, 10, 9, 0, PILOT, "budget spent, inconclusive: 10 pilot pairs without"),
        (Mode.AUTO, PILOT, False, False, 10, 50, 41, PILOT, "budget spent, inconclusive: 10 pilot pairs"),
        (Mode.AUTO, PILOT, False, False, 10, 49, 41, PILOT, None),
        (Mode.AUTO, PILOT, False, True, 10, 9, 0, ENABLED, "benefit proven"),
        (Mode.AUTO, ENABLED, False, False, 10, 100, 0, ENABLED, None),
        # other modes: the monitor learns, the state never moves
        (Mode.PILOT, PILOT, True, False, None, 0, 0, PILOT, None),
        (Mode.PILOT, PILOT, False, False, 1, 5, 0, PILOT, None),
        (Mode.ON, PILOT, False, True, None, 0, 0, PILOT, None),
        (Mode.OBSERVE, ENABLED, True, False, None, 0, 0, ENABLED, None),
        (Mode.OFF, PILOT, True, False, None, 0, 0, PILOT, None),
    ],
)
def test_apply_pair_rule(
    mode: Mode,
    start: GuardState,
    harm: bool,
    benefit: bool,
    budget: int | None,
    t: int,
    since: int,
    expected: GuardState,
    reason: str | None,
) -> None:
    before = record(start, harm=harm, benefit=benefit, t=t, since=since)
    after, transition = apply_pair(before, False, False, mode=mode, config=config(max_pilot_pairs=budget), now=9.0)
    assert after.state is expected
    assert (after.monitor.t, after.version, after.updated_at) == (t + 1, 8, 9.0)
    if reason is None:
        assert transition is None
        assert (after.state_since_t, after.last_transition) == (since, None)
        return
    assert transition is not None
    assert transition.reason.startswith(reason)
    assert (transition.guard_key, transition.from_state, transition.to_state) == (KEY, start, expected)
    assert (transition.actor, transition.at) == ("monitor", 9.0)
    assert transition.evidence["t"] == t + 1
    assert (after.state_since_t, after.last_transition) == (t + 1, transition)


def test_apply_pair_updates_counts_and_monitor_exactly() -> None:
    start = GuardRecord.start(KEY, now=1.0)
    cells = [(True, False), (False, True), (False, False), (True, True), (True, False)]
    current, monitor = start, MonitorState.start(0.05)
    for control, treatment in cells:
        current, transition = apply_pair(current, control, treatment, mode=Mode.AUTO, config=config(), now=2.0)
        monitor = monitor.update_pair(control, treatment)
        assert transition is None
    assert current.counts == PairedCounts(1, 1, 2, 1)
    assert current.pairs_counted == 5 == current.pilot_pairs
    assert current.monitor == monitor
    assert current.version == 5
    assert start.version == 0 and start.counts == PairedCounts(0, 0, 0, 0)  # records are immutable


def test_real_harm_proof_from_disruptions() -> None:
    current = GuardRecord.start(KEY, now=0.0)
    moved = []
    for i in range(1, 30):
        current, transition = apply_pair(current, True, False, mode=Mode.AUTO, config=config(), now=float(i))
        if transition is not None:
            moved.append((i, transition, current))
    [(at_pair, transition, at_transition)] = moved
    assert current.monitor.harm_proven_at == at_pair
    assert transition.reason == (
        f"harm proven: harm e-value {transition.evidence['harm_wealth']:.3g} >= 1/0.025 = 40 after {at_pair} pairs"
    )  # alpha = 0.05 bounds a wrong harm *or* benefit proof: alpha/2 per side
    assert transition.evidence["harm_wealth"] >= 40.0 > transition.evidence["benefit_wealth"]
    assert (transition.evidence["alpha"], transition.evidence["alpha_per_side"]) == (0.05, 0.025)
    assert transition.evidence["outcome"] == "harm proven"
    assert transition.evidence["counts"] == [0, 0, at_pair, 0]
    net = at_transition.monitor.net_interval()
    assert (transition.evidence["net_low"], transition.evidence["net_high"]) == (net.low, net.high)
    assert net.high < 0  # the band the evidence records excludes 0 at the pair that proved harm


@pytest.mark.parametrize(
    ("action", "state_after", "paused"),
    [("serve_control", PILOT, True), ("disable", DISABLED, False), ("keep_piloting", PILOT, False)],
)
def test_a_spent_budget_is_inconclusive_and_its_action_is_a_setting(
    action: str, state_after: GuardState, paused: bool
) -> None:
    settings = config(max_pilot_pairs=6, on_budget_spent=action)
    current = GuardRecord.start(KEY, now=0.0)
    moved = []
    for i, (control, treatment) in enumerate([(True, False), (False, True)] * 10, start=1):
        current, transition = apply_pair(current, control, treatment, mode=Mode.AUTO, config=settings, now=float(i))
        if transition is not None:
            moved.append((i, transition))
    [(at_pair, transition)] = moved  # once: the pilot does not end inconclusive again at every further pair
    assert at_pair == 6 and current.monitor.inconclusive_at == 6
    assert (transition.from_state, transition.to_state, current.state) == (PILOT, state_after, state_after)
    assert transition.reason.startswith("budget spent, inconclusive: 6 pilot pairs without proof (max_pilot_pairs=6)")
    assert "harm" not in transition.reason.split(";")[0]
    assert transition.evidence["outcome"] == evidence_of(current)["outcome"] == "inconclusive"
    band = current.monitor.net_interval()
    assert not current.monitor.harm_proven and band.low < 0 < band.high
    assert paused_after_budget(current, settings) is paused


def test_a_human_ends_an_inconclusive_pause_and_the_budget_starts_again() -> None:
    settings = config(max_pilot_pairs=3)
    current = GuardRecord.start(KEY, now=0.0)
    for i in range(3):
        current, _ = apply_pair(current, True, True, mode=Mode.AUTO, config=settings, now=float(i))
    assert paused_after_budget(current, settings)
    resumed, transition = override(current, PILOT, reason="more budget", now=9.0)  # pilot -> pilot is allowed here
    assert (transition.from_state, transition.to_state) == (PILOT, PILOT)
    assert not paused_after_budget(resumed, settings) and resumed.monitor.t == 3 and resumed.pilot_pairs == 0
    with pytest.raises(LifecycleError, match="already pilot"):
        override(resumed, PILOT, reason="again", now=10.0)


def test_wrong_automatic_transitions_under_no_effect_stay_within_alpha_in_total() -> None:
    # The null simulation: 2,000 seeded deployments of 1,000 pairs each with no effect (30% of tasks flip,
    # half each way), monitored with the defaults. Any automatic transition is wrong here; alpha bounds them all.
    settings = config(mode="auto")
    start = GuardRecord.start(KEY, settings.alpha, split=not settings.alpha_per_side)
    assert not settings.alpha_per_side and start.monitor.split and start.monitor.threshold == 40.0
    rng = np.random.default_rng(15)
    u = rng.random((2000, 1000))
    xs = np.where(u < 0.15, 0.0, np.where(u < 0.3, 1.0, 0.5))
    paths = run_monitor(xs, settings.alpha, split=start.monitor.split, band=False)
    harm, benefit = paths.harm_times(), paths.benefit_times()
    wrong = (harm > 0) | (benefit > 0)
    se = math.sqrt(settings.alpha * (1 - settings.alpha) / wrong.size)
    assert wrong.mean() <= settings.alpha + 3 * se
    # The lifecycle's own rule, pair by pair, transitions at exactly those pairs (two deployments with a wrong
    # proof, one without).
    for run in [*np.flatnonzero(wrong)[:2], int(np.flatnonzero(~wrong)[0])]:
        current, first = start, None
        for t, x in enumerate(xs[run], start=1):
            control, treatment = {0.0: (False, True), 1.0: (True, False), 0.5: (True, True)}[float(x)]
            current, transition = apply_pair(current, control, treatment, mode=Mode.AUTO, config=settings, now=0.0)
            if transition is not None and first is None:
                first = t
        proofs = [int(t) for t in (harm[run], benefit[run]) if t > 0]
        assert first == (min(proofs) if proofs else None)


def test_non_bool_outcomes_are_refused() -> None:
    with pytest.raises(TypeError, match="pair outcomes must be bools, got int and bool"):
        apply_pair(record(), 1, True, mode=Mode.AUTO, config=config(), now=0.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        apply_aa_pair(record(), True, None, now=0.0)  # type: ignore[arg-type]


def test_aa_pairs_and_incomplete_pairs_never_reach_the_monitor() -> None:
    start = record(harm=True, t=12)
    after, transition = apply_aa_pair(start, True, False, now=3.0)
    after, _ = apply_aa_pair(after, True, True, now=4.0)
    assert transition is None
    assert (after.aa_pairs, after.aa_discordant, after.version, after.updated_at) == (2, 1, 9, 4.0)
    assert after.monitor == start.monitor and after.state is PILOT  # harm is proven, yet nothing moved
    dropped = apply_incomplete(after, now=5.0)
    assert (dropped.incomplete, dropped.version, dropped.monitor) == (1, 10, start.monitor)


@pytest.mark.parametrize(
    ("start", "harm", "benefit", "target", "reset", "error"),
    [
        (PILOT, False, False, DISABLED, False, None),
        (PILOT, False, False, ENABLED, False, None),
        (DISABLED, False, False, PILOT, False, None),
        (ENABLED, False, True, DISABLED, False, None),
        (PILOT, False, False, PILOT, False, "already pilot"),
        (PILOT, False, False, PILOT, True, None),  # a reset may keep the state
        (DISABLED, True, False, ENABLED, False, "harm is proven .* pass reset_monitor=True"),
        (DISABLED, True, False, PILOT, False, "the next pair would disable it again"),
        (DISABLED, True, False, ENABLED, True, None),
        (ENABLED, False, True, PILOT, False, "benefit is proven .* the next pair would enable it again"),
        (ENABLED, False, True, PILOT, True, None),
        (ENABLED, True, True, DISABLED, False, None),
    ],
)
def test_override(
    start: GuardState, harm: bool, benefit: bool, target: GuardState, reset: bool, error: str | None
) -> None:
    before = replace(record(start, harm=harm, benefit=benefit, t=30, since=10), counts=PairedCounts(10, 5, 9, 6))
    if error is not None:
        with pytest.raises(LifecycleError, match=error):
            override(before, target, reason="ops", reset_monitor=reset, now=5.0)
        return
    after, transition = override(
        before, target.value, reason=" ops ticket 42 ", actor="alice", reset_monitor=reset, now=5.0
    )
    assert (after.state, after.version, after.updated_at, after.last_transition) == (target, 8, 5.0, transition)
    assert (transition.from_state, transition.to_state, transition.reason, transition.actor) == (
        start,
        target,
        "ops ticket 42",
        "alice",
    )
    assert after.counts == before.counts  # evidence counts are kept even when the monitor restarts
    if reset:
        assert after.monitor == MonitorState.start(0.05)
        assert after.state_since_t == 0 and transition.evidence["t"] == 0
    else:
        assert after.monitor == before.monitor
        assert after.state_since_t == 30 and transition.evidence["t"] == 30


def test_override_reset_takes_a_new_alpha_and_needs_reason_and_actor() -> None:
    after, _ = override(
        record(DISABLED, harm=True, t=40), PILOT, reason="new critic prompt", reset_monitor=True, alpha=0.01, now=1.0
    )
    assert after.monitor == MonitorState.start(0.01)
    with pytest.raises(LifecycleError, match="needs a reason"):
        override(record(), DISABLED, reason="  ", now=1.0)
    with pytest.raises(LifecycleError, match="needs an actor"):
        override(record(), DISABLED, reason="x", actor="", now=1.0)
    with pytest.raises(ValueError, match="'paused' is not a valid GuardState"):
        override(record(), "paused", reason="x", now=1.0)


def test_records_normalise_and_freeze() -> None:
    transition = Transition(KEY, "pilot", "disabled", "r", "monitor", 1.0, {"t": 3})  # type: ignore[arg-type]
    assert transition.from_state is PILOT and transition.to_state is DISABLED
    with pytest.raises(TypeError):
        transition.evidence["t"] = 4  # type: ignore[index]
    assert GuardRecord(KEY, "enabled", MonitorState.start()).state is ENABLED  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty"):
        GuardRecord.start("")
    start = GuardRecord.start(KEY, 0.1, now=3.0)
    assert (start.state, start.monitor, start.counts, start.version, start.updated_at) == (
        PILOT,
        MonitorState.start(0.1),
        PairedCounts(0, 0, 0, 0),
        0,
        3.0,
    )


def test_evidence_is_json_even_for_huge_wealth() -> None:
    monitor = replace(MonitorState.start().update(1.0), t=5000, harm_log_wealth=1000.0, harm_proven_at=9)
    evidence = evidence_of(GuardRecord(KEY, PILOT, monitor))
    assert math.isfinite(evidence["harm_wealth"]) and evidence["harm_wealth"] > 1e299
    assert json.loads(json.dumps(evidence, allow_nan=False))["t"] == 5000
    after, transition = apply_pair(
        GuardRecord(KEY, PILOT, monitor), True, False, mode=Mode.AUTO, config=config(), now=1.0
    )
    assert transition is not None and after.state is DISABLED
