"""Every span, event, attribute and metric name critic-guard emits, in one place.

Why strings and not ``opentelemetry.semconv`` constants: the semconv package marks its ``gen_ai`` constants as
moved to the separate GenAI conventions repository (they are deprecated there and may disappear), and the GenAI
conventions are still in development. Pinning the names here keeps our traces stable across semconv releases; the
values follow the GenAI conventions (agent spans, the ``gen_ai.evaluation.result`` event) as of their current
development version.

Naming rule for our own ``critic_guard.*`` attributes: no name is a dotted prefix of another (``a.b`` and
``a.b.c`` never both exist). Backends such as Arize Phoenix store attributes as a nested tree, where such a pair
would collide.
"""

from __future__ import annotations

from typing import Final

# --- GenAI semantic conventions (https://github.com/open-telemetry/semantic-conventions-genai) -----------------
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_OUTPUT_MESSAGES: Final = "gen_ai.output.messages"  # opt-in content
GEN_AI_EVALUATION_NAME: Final = "gen_ai.evaluation.name"
GEN_AI_EVALUATION_SCORE_VALUE: Final = "gen_ai.evaluation.score.value"
GEN_AI_EVALUATION_SCORE_LABEL: Final = "gen_ai.evaluation.score.label"
GEN_AI_EVALUATION_EXPLANATION: Final = "gen_ai.evaluation.explanation"  # opt-in content here (see docs)
ERROR_TYPE: Final = "error.type"

OPERATION_INVOKE_AGENT: Final = "invoke_agent"
"""Value of ``gen_ai.operation.name`` on the run span (an in-process agent invocation: span kind INTERNAL)."""

# --- OpenInference conventions: only so that Phoenix and other OpenInference backends render our spans well ------
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
OPENINFERENCE_SESSION_ID: Final = "session.id"
OPENINFERENCE_KIND_AGENT: Final = "AGENT"
OPENINFERENCE_KIND_CHAIN: Final = "CHAIN"

# --- Span names ------------------------------------------------------------------------------------------------
SPAN_RUN_PREFIX: Final = "invoke_agent"
"""A run span is named ``invoke_agent {agent}`` (GenAI agent span naming)."""
SPAN_STEP: Final = "critic_guard.step"
"""One span per judged model step; low-cardinality name, the index is the ``critic_guard.step`` attribute."""
SPAN_LIFECYCLE: Final = "critic_guard.lifecycle"
"""A short span carrying a lifecycle transition when no span is there to hold the event."""
SPAN_OUTCOME: Final = "critic_guard.outcome"
"""A short span recording an outcome that arrives after its run span has ended (``record_outcome``)."""

# --- Event names -----------------------------------------------------------------------------------------------
EVENT_EVALUATION_RESULT: Final = "gen_ai.evaluation.result"
EVENT_INTERVENTION: Final = "critic_guard.intervention"
EVENT_CRITIC_ERROR: Final = "critic_guard.critic_error"
EVENT_FORK: Final = "critic_guard.fork"
EVENT_OUTCOME: Final = "critic_guard.outcome"
EVENT_TRANSITION: Final = "critic_guard.lifecycle.transition"

# --- critic-guard attributes (spans, events and metrics) -------------------------------------------------------
RUN_ID: Final = "critic_guard.run.id"
RUN_ROLE: Final = "critic_guard.run.role"
"""``production`` (the run the user is served) or ``shadow`` (a counterfactual branch)."""
RUN_STATUS: Final = "critic_guard.run.status"
RUN_INTERVENTIONS: Final = "critic_guard.run.interventions"
GUARD_KEY: Final = "critic_guard.guard.key"
ARM: Final = "critic_guard.arm"
MODE: Final = "critic_guard.mode"
STEP: Final = "critic_guard.step"
ATTEMPT: Final = "critic_guard.attempt"
"""0 for the first proposal at a step, 1, 2, ... for re-asks after a ROLLBACK (the step index stays the same)."""
CRITIC_NAME: Final = "critic_guard.critic.name"
FLAGGED: Final = "critic_guard.flagged"
TAU: Final = "critic_guard.tau"
ACTION: Final = "critic_guard.action"
FEEDBACK_MODE: Final = "critic_guard.feedback.mode"
FEEDBACK_TEXT: Final = "critic_guard.feedback.text"  # opt-in content
FORK_CHECKPOINT_ID: Final = "critic_guard.fork.checkpoint_id"
FORK_STEP: Final = "critic_guard.fork.step"
FORK_TRACE_ID: Final = "critic_guard.fork.trace_id"
"""On a shadow run: the production trace it forked from (the span link says the same; some backends drop links)."""
FORK_SPAN_ID: Final = "critic_guard.fork.span_id"
SHADOW_TRACE_ID: Final = "critic_guard.shadow.trace_id"
"""On a production run: the trace id of its shadow branch (the latest one; every fork also leaves an event)."""
SHADOW_SPAN_ID: Final = "critic_guard.shadow.span_id"
OUTCOME_SUCCESS: Final = "critic_guard.outcome.success"
PAIR_CELL: Final = "critic_guard.pair.cell"
LIFECYCLE_FROM: Final = "critic_guard.lifecycle.from"
LIFECYCLE_TO: Final = "critic_guard.lifecycle.to"
LIFECYCLE_REASON: Final = "critic_guard.lifecycle.reason"
LIFECYCLE_STATE: Final = "critic_guard.lifecycle.state"
MONITOR_HYPOTHESIS: Final = "critic_guard.monitor.hypothesis"
LINK_TYPE: Final = "critic_guard.link.type"
"""On a span link: ``fork`` (shadow run -> the production step it forked at) or ``outcome``."""

# --- Attribute values ------------------------------------------------------------------------------------------
ROLE_PRODUCTION: Final = "production"
ROLE_SHADOW: Final = "shadow"
STATUS_OK: Final = "ok"
STATUS_ERROR: Final = "error"
STATUS_INCOMPLETE: Final = "incomplete"
RUN_STATUSES: Final = (STATUS_OK, STATUS_ERROR, STATUS_INCOMPLETE)
PAIR_CELLS: Final = ("n00", "n01", "n10", "n11")
LINK_FORK: Final = "fork"
LINK_OUTCOME: Final = "outcome"

# --- Metric names (OTel metrics API) ---------------------------------------------------------------------------
METRIC_VERDICT_SCORE: Final = "critic_guard.verdict.p_fail"
METRIC_FLAGS: Final = "critic_guard.flags"
METRIC_INTERVENTIONS: Final = "critic_guard.interventions"
METRIC_CRITIC_ERRORS: Final = "critic_guard.critic.errors"
METRIC_PAIRS: Final = "critic_guard.pairs"
METRIC_MONITOR_WEALTH: Final = "critic_guard.monitor.wealth"
METRIC_MONITOR_THRESHOLD: Final = "critic_guard.monitor.threshold"
METRIC_LIFECYCLE_STATE: Final = "critic_guard.lifecycle.state"

VERDICT_SCORE_BUCKETS: Final = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
"""Histogram boundaries for p_fail: deciles, so a dashboard can read the score distribution around tau."""

INSTRUMENTATION_SCOPE: Final = "critic_guard"
