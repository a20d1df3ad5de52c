"""Fork planning without any framework: which branches a first flag forks, their arms, pairs and fork decisions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from critic_guard.arms import DISABLED_REASON
from critic_guard.critics import ConstantCritic
from critic_guard.fork_plan import AA_PAIR_SUFFIX, BranchPlan, fork_step_review, open_unflagged_pair, plan_forks
from critic_guard.guard import CriticGuard, StepReview
from critic_guard.lifecycle import GuardState
from critic_guard.policy import Decision, Policy, Reason
from critic_guard.store import SQLiteStore
from critic_guard.store.base import PairKind, PairStatus
from critic_guard.types import Action, Arm, StepContext, Verdict

MESSAGES = ({"role": "user", "content": "add 2 and 3"}, {"role": "assistant", "content": "calling add"})
POLICY = Policy(tau=0.6, min_step=0, max_interventions=3, action=Action.ROLLBACK)


def make_guard(store: Any = None, **settings: Any) -> CriticGuard:
    settings = {"mode": "pilot", "policy": POLICY, **settings}
    return CriticGuard(ConstantCritic(0.9, rationale="stuck"), store=store, **settings)


def production_review(guard: CriticGuard, arm: Arm, step: int = 2, run_id: str = "prod") -> StepReview:
    """Production's own review of a flagged step, as an integration gets it from the guard."""
    return guard.review(StepContext(run_id, step, MESSAGES, {"task_id": "t1"}, arm))


@pytest.fixture
def guard() -> Iterator[CriticGuard]:
    with make_guard() as made:
        yield made


def test_serving_control_forks_a_treatment_branch_that_acts_as_the_policy_says(guard: CriticGuard) -> None:
    review = production_review(guard, Arm.CONTROL)
    assert review.decision == Decision(True, Action.NONE, None, Reason.CONTROL_ARM)  # production serves control
    (plan,) = plan_forks(guard, review, Arm.CONTROL, (0, None))
    assert (plan.pair_id, plan.arm, plan.kind, plan.parent_run_id, plan.fork_step) == (
        "prod",
        Arm.TREATMENT,
        PairKind.AB,
        "prod",
        2,
    )
    assert (plan.control_run_id, plan.treatment_run_id) == ("prod", plan.branch_run_id)
    assert plan.branch_run_id != "prod" and len(plan.branch_run_id) == 32
    expected = POLICY.decide(Verdict(0.9, "stuck"), step=2, interventions=0, last_intervention_step=None)
    assert plan.decision == expected and plan.decision.action is Action.ROLLBACK and plan.decision.feedback


def test_serving_treatment_forks_a_control_branch_that_never_acts() -> None:
    with make_guard(serve="treatment") as guard:
        review = production_review(guard, Arm.TREATMENT)
        assert review.decision.action is Action.ROLLBACK  # production acts
        (plan,) = plan_forks(guard, review, Arm.TREATMENT, (0, None))
    assert (plan.pair_id, plan.arm, plan.kind) == ("prod", Arm.CONTROL, PairKind.AB)
    assert (plan.control_run_id, plan.treatment_run_id) == (plan.branch_run_id, "prod")
    assert plan.decision == Decision(True, Action.NONE, None, "control_arm")


def test_the_treatment_branch_takes_production_s_intervention_budget(guard: CriticGuard) -> None:
    review = production_review(guard, Arm.CONTROL)
    (spent,) = plan_forks(guard, review, Arm.CONTROL, (3, 1))
    assert spent.decision == Decision(False, Action.NONE, None, Reason.BUDGET_EXHAUSTED)
    with make_guard(policy=Policy(tau=0.6, min_step=0, cooldown=2)) as cooling:
        (cooled,) = plan_forks(cooling, production_review(cooling, Arm.CONTROL), Arm.CONTROL, (1, 1))
    assert cooled.decision.reason == Reason.COOLDOWN


def test_without_a_verdict_the_treatment_branch_does_not_act(guard: CriticGuard) -> None:
    flagged = StepReview("prod", 2, None, Decision(True, Action.NONE, None, Reason.CONTROL_ARM), None, 0.0)
    (plan,) = plan_forks(guard, flagged, Arm.CONTROL, (0, None))
    assert plan.arm is Arm.TREATMENT and plan.decision == Decision(True, Action.NONE, None, "control_arm")


@pytest.mark.parametrize("served", [Arm.CONTROL, Arm.TREATMENT])
def test_an_aa_branch_reruns_the_served_arm_after_the_ab_branch(served: Arm) -> None:
    with make_guard(aa_fraction=1.0, serve=served.value) as guard:
        review = production_review(guard, served)
        ab, aa = plan_forks(guard, review, served, (0, None))
    assert ab.kind is PairKind.AB and ab.arm is not served
    assert (aa.pair_id, aa.arm, aa.kind, aa.parent_run_id, aa.fork_step) == (
        "prod" + AA_PAIR_SUFFIX,
        served,
        PairKind.AA,
        "prod",
        2,
    )
    assert aa.pair_id == "prod~aa"  # stored: the value never changes
    assert (aa.control_run_id, aa.treatment_run_id) == ("prod", aa.branch_run_id)
    assert aa.decision == review.decision  # doing at the fork step what production does
    assert len({ab.branch_run_id, aa.branch_run_id, "prod"}) == 3


def test_nothing_is_planned_for_an_unflagged_step_or_where_runs_never_fork() -> None:
    with make_guard() as guard:
        quiet = StepReview("prod", 2, Verdict(0.1), Decision(False, Action.NONE, None, Reason.BELOW_TAU), None, 0.0)
        assert plan_forks(guard, quiet, Arm.CONTROL, (0, None)) == ()
    for settings in ({"mode": "observe"}, {"mode": "on"}, {"design": "full"}):
        with make_guard(aa_fraction=1.0, **settings) as guard:
            review = production_review(guard, Arm.CONTROL)
            assert review.decision.flagged
            assert plan_forks(guard, review, Arm.CONTROL, (0, None)) == ()


def test_the_coins_are_the_guard_s_and_fixed_per_run() -> None:
    with make_guard(aa_fraction=0.5) as guard:
        kinds = {}
        for n in range(40):
            review = production_review(guard, Arm.CONTROL, run_id=f"run-{n}")
            plans = plan_forks(guard, review, Arm.CONTROL, (0, None))
            kinds[n] = tuple(plan.kind for plan in plans)
            assert kinds[n] == tuple(p.kind for p in plan_forks(guard, review, Arm.CONTROL, (0, None)))
            assert (PairKind.AA in kinds[n]) is guard.should_fork_aa(f"run-{n}")
    assert {PairKind.AB} <= {kinds[n][0] for n in kinds}
    assert {len(k) for k in kinds.values()} == {1, 2}  # some runs drew the A/A coin, some did not


def test_begin_records_the_branch_run_and_its_pair() -> None:
    with SQLiteStore(":memory:") as store, make_guard(store=store, aa_fraction=1.0) as guard:
        guard.start_run(run_id="prod", task={"task_id": "t1"}, arm=Arm.CONTROL)
        review = production_review(guard, Arm.CONTROL)
        for plan in plan_forks(guard, review, Arm.CONTROL, (0, None)):
            assert plan.begin(guard, task={"task_id": "t1"}, fork_checkpoint_id="cp-1")
            pair = store.get_pair(plan.pair_id)
            assert (pair.control_run_id, pair.treatment_run_id, pair.kind, pair.fork_step, pair.flagged) == (
                plan.control_run_id,
                plan.treatment_run_id,
                plan.kind,
                2,
                True,
            )
            assert pair.fork_checkpoint_id == "cp-1"
            run = store.get_run(plan.branch_run_id)
            assert (run.arm, run.parent_run_id, run.fork_step) == (plan.arm, "prod", 2)


def test_a_branch_records_its_fork_step_with_the_planned_decision() -> None:
    verdict = Verdict(0.9, "stuck", "fail")
    review = fork_step_review("branch", 2, verdict, Action.APPEND, "careful")
    assert review == StepReview("branch", 2, verdict, Decision(True, Action.APPEND, "careful", "fork"), None, 0.0)


def test_reasons_keep_their_stored_values() -> None:
    assert DISABLED_REASON is Reason.GUARD_DISABLED
    stored = {"guard_disabled": Reason.GUARD_DISABLED, "fork": Reason.FORK, "control_arm": Reason.CONTROL_ARM}
    assert all(member == value and member.value == value for value, member in stored.items())


def test_a_plan_is_frozen_data(guard: CriticGuard) -> None:
    (plan,) = plan_forks(guard, production_review(guard, Arm.CONTROL), Arm.CONTROL, (0, None))
    assert isinstance(plan, BranchPlan)
    with pytest.raises(AttributeError):
        plan.arm = Arm.CONTROL  # type: ignore[misc]


def test_a_run_never_flagged_opens_its_concordant_pair_which_its_outcome_completes(guard: CriticGuard) -> None:
    guard.start_run(run_id="quiet", task={"task_id": "t1"}, arm=Arm.CONTROL)
    assert open_unflagged_pair(guard, "quiet")
    [pair] = guard.pairs()
    assert (pair.control_run_id, pair.treatment_run_id, pair.flagged) == ("quiet", "quiet", False)
    guard.record_outcome("quiet", True)
    [pair] = guard.pairs()
    assert (pair.status, pair.control_success, pair.treatment_success) == (PairStatus.COMPLETE, True, True)
    assert guard.lifecycle().monitor.t == 1


def test_an_excluded_unflagged_pair_is_recorded_with_its_reason_and_never_counted(guard: CriticGuard) -> None:
    guard.start_run(run_id="unsure", task={"task_id": "t1"}, arm=Arm.CONTROL)
    assert open_unflagged_pair(guard, "unsure", excluded="whether it would have flagged is unknown")
    guard.record_outcome("unsure", True)
    [pair] = guard.pairs()
    assert (pair.status, pair.reason) == (PairStatus.INCOMPLETE, "whether it would have flagged is unknown")
    assert guard.lifecycle().monitor.t == 0


def test_a_run_the_coin_would_not_have_forked_opens_no_pair() -> None:
    with make_guard(mode="auto", shadow_fraction=0.0) as guard:
        guard.set_state(GuardState.ENABLED, reason="test")  # enabled: only shadow_fraction of runs fork
        guard.start_run(run_id="served", task={"task_id": "t1"}, arm=Arm.TREATMENT)
        assert not open_unflagged_pair(guard, "served")
        assert guard.pairs() == []
