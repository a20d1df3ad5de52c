"""Fork planning: at a production run's first flag in a pilot, which shadow branches start and what each one does.

The pilot's semantics live here once, as plain data, so that every integration forks alike (docs/pilot-design.md,
"Pairs"): an integration finds the flag, clones its checkpoint and submits one branch per :class:`BranchPlan`, and
decides none of this itself.

* **A/B** (``guard.should_fork``): a branch of the *other* arm. Its pair is keyed by the production run id; the
  control run is whichever of production and branch runs the control arm.
* **A/A** (``guard.should_fork_aa``, for ``aa_fraction`` of runs): a second branch of the *served* arm, rerun noise.
  Its pair id is the production run id with :data:`AA_PAIR_SUFFIX`; production is its control run.

What a branch does with production's proposal at the fork step is decided here too, from the verdict judged in
production (never a second critic call: a second, noisy verdict would break the shared prefix): a treatment branch
takes the policy's decision with production's intervention budget, a control branch never acts, and an A/A branch
does what production did. The branch records that step with :func:`fork_step_review` (reason ``fork``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from critic_guard.guard_events import StepReview
from critic_guard.policy import Decision, Reason
from critic_guard.store.base import PairKind
from critic_guard.types import Action, Arm, Verdict

if TYPE_CHECKING:
    from critic_guard.guard import CriticGuard

__all__ = ["AA_PAIR_SUFFIX", "BranchPlan", "fork_step_review", "open_unflagged_pair", "plan_forks"]

AA_PAIR_SUFFIX: Final = "~aa"
"""An A/A pair's id is its production run id with this suffix (an A/B pair's is the production run id itself)."""

_CONTROL_AT_FORK: Final = Decision(True, Action.NONE, None, Reason.CONTROL_ARM)


@dataclass(frozen=True, slots=True)
class BranchPlan:
    """One shadow branch to fork from a production run's first flag, and the pair it opens with that run.

    ``decision`` is what the branch's arm does with production's proposal at ``fork_step`` (its action and feedback
    travel with the branch; the branch applies them instead of asking the critic again).
    """

    pair_id: str
    branch_run_id: str  # a new run id (hex uuid4) for the branch
    arm: Arm  # the arm the branch runs
    control_run_id: str
    treatment_run_id: str
    parent_run_id: str  # the production run
    fork_step: int
    kind: PairKind
    decision: Decision

    def begin(
        self,
        guard: CriticGuard,
        *,
        task: Mapping[str, Any] | None,
        fork_checkpoint_id: str | None = None,
        background: bool = False,
    ) -> bool:
        """Record the branch's run and its pair before it starts (:meth:`CriticGuard.begin_fork`, which never
        raises); True when the branch may start."""
        return guard.begin_fork(
            pair_id=self.pair_id,
            branch_run_id=self.branch_run_id,
            arm=self.arm,
            control_run_id=self.control_run_id,
            treatment_run_id=self.treatment_run_id,
            parent_run_id=self.parent_run_id,
            fork_step=self.fork_step,
            task=task,
            kind=self.kind,
            fork_checkpoint_id=fork_checkpoint_id,
            background=background,
        )


def plan_forks(
    guard: CriticGuard, review: StepReview, served_arm: Arm, budget: tuple[int, int | None]
) -> tuple[BranchPlan, ...]:
    """The branches to fork at a production run's first flag: an A/B branch first, then an A/A one, each only if
    the guard's coin says so; none when ``review`` is not flagged.

    ``review`` is production's review of the flagged step, ``served_arm`` production's arm, ``budget`` the run's
    (interventions so far, step of the last one) before this step, as the policy saw them. The caller finds the
    first flag (a run forks once, at its first flagged step, whether or not the coins say fork).
    """
    if not review.decision.flagged:
        return ()
    prod = review.run_id
    ab, aa = guard.should_fork(prod), guard.should_fork_aa(prod)
    plans: list[BranchPlan] = []
    if ab:
        other = Arm.TREATMENT if served_arm is Arm.CONTROL else Arm.CONTROL
        branch = uuid.uuid4().hex
        control, treatment = (prod, branch) if other is Arm.TREATMENT else (branch, prod)
        decision = _treatment_at_fork(guard, review, budget) if other is Arm.TREATMENT else _CONTROL_AT_FORK
        plans.append(BranchPlan(prod, branch, other, control, treatment, prod, review.step, PairKind.AB, decision))
    if aa:  # the served arm again, doing at the fork step what production does
        branch = uuid.uuid4().hex
        plans.append(
            BranchPlan(
                prod + AA_PAIR_SUFFIX, branch, served_arm, prod, branch, prod, review.step, PairKind.AA, review.decision
            )
        )
    return tuple(plans)


def open_unflagged_pair(
    guard: CriticGuard, run_id: str, *, excluded: str | None = None, background: bool = False
) -> bool:
    """At the end of a production run never flagged (fork design): open its concordant pair, the run standing for
    both arms (had it been flagged, both arms would have run the same steps), if the guard's coin says the run would
    have forked; True if a pair was opened.

    ``excluded``: the reason the pair must not count (e.g. whether the run would have been flagged is unknown); the
    pair is then recorded excluded with it, so ``status`` and the report show it, rather than left out silently.
    """
    if not guard.should_fork(run_id):
        return False
    guard.open_pair(run_id, control_run_id=run_id, treatment_run_id=run_id, flagged=False, background=background)
    if excluded is not None:
        guard.mark_incomplete(run_id, excluded, background=background)
    return True


def _treatment_at_fork(guard: CriticGuard, review: StepReview, budget: tuple[int, int | None]) -> Decision:
    """What the treatment arm does at the flagged step: the policy's decision on production's verdict."""
    if review.verdict is None:
        return _CONTROL_AT_FORK
    interventions, last = budget
    return guard.policy.decide(
        review.verdict, step=review.step, interventions=interventions, last_intervention_step=last
    )


def fork_step_review(
    run_id: str, step: int, verdict: Verdict | None, action: Action, feedback: str | None
) -> StepReview:
    """A branch's fork step as its own run records it (``guard.record_fork_step``): production's verdict and the
    decision planned for the branch's arm, with reason ``fork`` and no critic latency (the critic was not asked)."""
    return StepReview(run_id, step, verdict, Decision(True, action, feedback, Reason.FORK), None, 0.0)
