"""The intervention policy: the decision table, feedback text, validation and the config fingerprint."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from critic_guard.policy import Decision, Policy, Reason
from critic_guard.types import Action, Verdict

HIGH = Verdict(0.9, rationale="it is looping")


def test_defaults_are_the_papers() -> None:
    policy = Policy()
    assert (policy.tau, policy.min_step, policy.max_interventions, policy.cooldown) == (0.6, 2, 3, 0)
    assert policy.action is Action.ROLLBACK
    assert policy.feedback is True
    assert policy.template is None


@pytest.mark.parametrize(
    ("p_fail", "step", "interventions", "last", "flagged", "reason"),
    [
        (0.59, 5, 0, None, False, "below_tau"),
        (0.6, 5, 0, None, True, "flag"),  # p_fail == tau flags
        (0.9, 0, 0, None, False, "before_min_step"),
        (0.9, 1, 0, None, False, "before_min_step"),
        (0.9, 2, 0, None, True, "flag"),
        (0.9, 7, 2, 6, True, "flag"),
        (0.9, 7, 3, 6, False, "budget_exhausted"),
        (0.9, 7, 4, 6, False, "budget_exhausted"),
        (0.1, 0, 3, None, False, "below_tau"),  # below tau wins over every other reason
        (0.9, 4, 1, 4, True, "flag"),  # cooldown 0: a retry of the same step may be intervened on again
    ],
)
def test_decision_table(
    p_fail: float, step: int, interventions: int, last: int | None, flagged: bool, reason: str
) -> None:
    decision = Policy().decide(Verdict(p_fail), step=step, interventions=interventions, last_intervention_step=last)
    assert decision.flagged is flagged
    assert decision.reason == reason
    assert decision.action is (Action.ROLLBACK if flagged else Action.NONE)
    assert (decision.feedback is not None) is flagged


@pytest.mark.parametrize(
    ("step", "last", "reason"),
    [(3, 3, "cooldown"), (4, 3, "cooldown"), (5, 3, "cooldown"), (6, 3, "flag"), (9, None, "flag")],
)
def test_cooldown_two_steps(step: int, last: int | None, reason: str) -> None:
    decision = Policy(cooldown=2).decide(HIGH, step=step, interventions=1, last_intervention_step=last)
    assert decision.reason == reason
    assert decision.flagged is (reason == "flag")


def test_zero_budget_never_flags() -> None:
    decision = Policy(max_interventions=0).decide(HIGH, step=5, interventions=0, last_intervention_step=None)
    assert decision == Decision(False, Action.NONE, None, Reason.BUDGET_EXHAUSTED)


def test_min_step_zero_allows_step_zero() -> None:
    assert Policy(min_step=0).decide(HIGH, step=0, interventions=0, last_intervention_step=None).flagged


def test_default_feedback_text() -> None:
    rollback = Policy().decide(HIGH, step=4, interventions=0, last_intervention_step=None)
    assert rollback.feedback == (
        "Your previous step was withdrawn before it ran: a reviewer estimated a 0.90 probability that this "
        "approach leads the task to fail. Reconsider and take a different next step. "
        "Reviewer's note: it is looping"
    )
    append = Policy(action=Action.APPEND).decide(Verdict(0.75), step=4, interventions=0, last_intervention_step=None)
    assert append.action is Action.APPEND
    assert append.feedback == (
        "Warning from a reviewer: after your last step it estimates a 0.75 probability that the task will fail. "
        "Check your progress and change course if needed."
    )


def test_silent_variant_has_no_feedback() -> None:
    decision = Policy(feedback=False).decide(HIGH, step=4, interventions=0, last_intervention_step=None)
    assert decision == Decision(True, Action.ROLLBACK, None, Reason.FLAG)


def test_custom_template() -> None:
    policy = Policy(template="Step {step}: risk {p_fail:.2f}. {rationale} {{literal}}")
    decision = policy.decide(HIGH, step=3, interventions=0, last_intervention_step=None)
    assert decision.feedback == "Step 3: risk 0.90. it is looping {literal}"
    no_reason = policy.decide(Verdict(0.7), step=3, interventions=0, last_intervention_step=None)
    assert no_reason.feedback == "Step 3: risk 0.70.  {literal}"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("risk {probability}", r"unknown field\(s\) \['probability'\]"),
        ("risk {0}", r"unknown field\(s\) \['0'\]"),
        ("risk {p_fail:.2f", "not valid str.format syntax"),
        ("why: {rationale:.2f}", "cannot be formatted"),
        ("{p_fail.real}", r"unknown field\(s\) \['p_fail.real'\]"),
    ],
)
def test_template_is_validated_at_construction(template: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Policy(template=template)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"tau": 1.2}, "less than or equal to 1"),
        ({"tau": float("nan")}, "finite number"),
        ({"min_step": -1}, "greater than or equal to 0"),
        ({"max_interventions": -1}, "greater than or equal to 0"),
        ({"cooldown": -2}, "greater than or equal to 0"),
        ({"action": "none"}, "to never act use mode='observe'"),
        ({"action": "explode"}, "'none', 'rollback' or 'append'"),
        ({"tua": 0.5}, "unknown Policy field 'tua'; did you mean 'tau'"),
    ],
)
def test_invalid_policies(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Policy(**kwargs)  # type: ignore[arg-type]


def test_policy_is_frozen() -> None:
    with pytest.raises(ValidationError, match="frozen"):
        Policy().tau = 0.3


def test_decide_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        Policy().decide(HIGH, step=-1, interventions=0, last_intervention_step=None)


def test_fingerprint_is_a_hash_of_the_canonical_config() -> None:
    canonical = (
        '{"action":"rollback","cooldown":0,"feedback":true,"max_interventions":3,"min_step":2,"tau":0.6,'
        '"template":null}'
    )
    assert Policy().fingerprint() == hashlib.sha256(canonical.encode()).hexdigest()[:8] == "e43abd61"
    assert json.loads(canonical) == Policy().model_dump(mode="json")


def test_fingerprint_changes_with_every_knob() -> None:
    variants = [
        Policy(),
        Policy(tau=0.5),
        Policy(min_step=3),
        Policy(max_interventions=2),
        Policy(cooldown=1),
        Policy(action=Action.APPEND),
        Policy(feedback=False),
        Policy(template="{p_fail}"),
    ]
    prints = [p.fingerprint() for p in variants]
    assert len(set(prints)) == len(variants)
    assert Policy(tau=0.5).fingerprint() == Policy.model_validate({"tau": 0.5}).fingerprint()
