"""The traces and metrics of a real pilot (issue #5): one recovery and one disruption, read back from the SDK.

Two calculator tasks in pilot mode, production serving control, ROLLBACK with feedback on the treatment arm:

* ``recover``: the model gets step 2 wrong (44) unless a guard note is in its input; the critic flags step 2; the
  treatment branch's retry answers 42: pair ``n01`` (a recovery);
* ``disrupt``: the model is right (42) unless a guard note is in its input, then gets step 3 wrong; the critic
  falsely flags step 2; the treatment branch goes wrong: pair ``n10`` (a disruption).

Asserted: one trace per run with an ``invoke_agent calc`` root and one step span per judged step; the verdict as a
``gen_ai.evaluation.result`` event; the shadow branch as its own trace, linked to the production step span it
forked at, whose id the production run carries; the intervention event on the branch's fork step; outcomes with
their pair cell; the metrics (verdict histogram, flags, interventions by action, pairs by cell, monitor wealth).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from calc_agent import PLAN, RIGHT, SHADOW_TOOLS, START, build_agent, steps_done, task_input, thread
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langgraph.checkpoint.memory import InMemorySaver
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from critic_guard.guard import CriticGuard
from critic_guard.policy import Policy
from critic_guard.telemetry import GuardTelemetry
from critic_guard.telemetry import attributes as A
from critic_guard.types import StepContext, Verdict
from critic_guard_langgraph import CriticGuardMiddleware
from critic_guard_langgraph.messages import is_guard_note
from critic_guard_langgraph.testing import ScriptedChatModel, tool_call

RECOVER = "recover: compute ((2 + 3) * 4 + 1) * 2"
DISRUPT = "disrupt: compute ((2 + 3) * 4 + 1) * 2"


def _policy(messages: Sequence[BaseMessage], rng: random.Random) -> AIMessage | str:
    task = messages[0].text
    noted = any(is_guard_note(m) for m in messages)
    k = steps_done(messages)
    results = [m for m in messages if isinstance(m, ToolMessage)]
    x = int(results[-1].text) if results else START
    if k < len(PLAN):
        op, b = PLAN[k]
        wrong = (task == RECOVER and k == 2 and not noted) or (task == DISRUPT and k == 3 and noted)
        return tool_call(op, a=x, b=b + 1 if wrong else b)
    return str(x)


def _critic(ctx: StepContext) -> Verdict:
    """Flags step 2 of both tasks (right for ``recover``, a false alarm for ``disrupt``), not its retry."""
    retried = sum(m["role"] == "user" for m in ctx.messages) > 1  # a guard note follows the task
    return Verdict(0.9, rationale="step 2 looks wrong") if ctx.step == 2 and not retried else Verdict(0.1)


def _judge(task: Any, state: Any) -> bool:
    return bool(state["messages"][-1].text == RIGHT)


class Telemetry:
    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.metrics = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.metrics])
        self.guard_telemetry = GuardTelemetry(tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)

    def metric_points(self) -> dict[str, list[Any]]:
        data = self.metrics.get_metrics_data()
        assert data is not None
        points: dict[str, list[Any]] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points


def run_pilot(telemetry: GuardTelemetry, store_url: str) -> CriticGuard:
    """Run both tasks through a real pilot traced by ``telemetry``; returns the guard (the caller closes it)."""
    guard = CriticGuard(
        _critic, agent_name="calc", mode="pilot", policy=Policy(min_step=0), store=store_url, telemetry=telemetry
    )
    middleware = CriticGuardMiddleware(guard, judge=_judge, shadow_tools=SHADOW_TOOLS)
    agent = build_agent(ScriptedChatModel(policy=_policy), [middleware], InMemorySaver())
    for name, text in (("recover", RECOVER), ("disrupt", DISRUPT)):
        agent.invoke(task_input(text, msg_id=name), thread(name))
    assert middleware.wait(30)
    assert guard.wait_for_writes(30)  # a run's span ends once the guard's writer has recorded its outcome
    return guard


@pytest.fixture
def pilot(tmp_path: Path) -> Iterator[tuple[CriticGuard, Telemetry]]:
    telemetry = Telemetry()
    guard = run_pilot(telemetry.guard_telemetry, f"sqlite:///{tmp_path / 'guard.db'}")
    yield guard, telemetry
    guard.close()


def _runs(spans: Sequence[ReadableSpan]) -> list[ReadableSpan]:
    return [s for s in spans if s.name == "invoke_agent calc"]


def _children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> list[ReadableSpan]:
    parent_id = parent.context.span_id
    return [s for s in spans if s.parent is not None and s.parent.span_id == parent_id]


def _outcomes(spans: Sequence[ReadableSpan], run: ReadableSpan) -> list[dict[str, Any]]:
    """The outcome events of a run: on its span, or on its late ``critic_guard.outcome`` child spans."""
    holders = [run, *(s for s in _children(spans, run) if s.name == A.SPAN_OUTCOME)]
    return [dict(e.attributes or {}) for h in holders for e in h.events if e.name == A.EVENT_OUTCOME]


def test_pilot_traces_show_the_recovery_and_the_disruption(pilot: tuple[CriticGuard, Telemetry]) -> None:
    guard, telemetry = pilot
    spans = telemetry.spans.get_finished_spans()
    runs = _runs(spans)
    assert len(runs) == 4  # two production runs, two shadow branches
    by_run_id = {r.attributes[A.RUN_ID]: r for r in runs if r.attributes}
    cells = {}
    for pair in guard.pairs():
        assert pair.flagged and pair.fork_step == 2
        production = by_run_id[pair.control_run_id]  # production serves control
        shadow = by_run_id[pair.treatment_run_id]
        cells[production.attributes[A.GEN_AI_CONVERSATION_ID]] = pair.cell  # the thread id names the task

        # production: root of its trace (no outer span here), one step span per judged step, all ended ok
        assert production.parent is None
        assert production.attributes[A.RUN_ROLE] == A.ROLE_PRODUCTION
        assert production.attributes[A.GEN_AI_OPERATION_NAME] == "invoke_agent"
        assert production.attributes[A.GEN_AI_AGENT_NAME] == "calc"
        assert production.attributes[A.RUN_STATUS] == A.STATUS_OK
        steps = sorted(
            (s for s in _children(spans, production) if s.name == A.SPAN_STEP), key=lambda s: s.attributes[A.STEP]
        )
        assert [s.attributes[A.STEP] for s in steps] == [0, 1, 2, 3, 4]
        assert all(s.context.trace_id == production.context.trace_id for s in steps)
        [evaluation] = [e for e in steps[2].events if e.name == A.EVENT_EVALUATION_RESULT]
        assert evaluation.attributes[A.GEN_AI_EVALUATION_NAME] == guard.critic.name
        assert evaluation.attributes[A.GEN_AI_EVALUATION_SCORE_VALUE] == 0.9
        assert evaluation.attributes[A.FLAGGED] is True
        assert A.GEN_AI_EVALUATION_EXPLANATION not in evaluation.attributes  # content capture is off
        assert not any(e.name == A.EVENT_INTERVENTION for s in steps for e in s.events)  # control never acts

        # the shadow branch: its own trace, linked to production's step-2 span, which names it
        assert shadow.parent is None and shadow.context.trace_id != production.context.trace_id
        assert shadow.attributes[A.RUN_ROLE] == A.ROLE_SHADOW
        [link] = shadow.links
        assert (link.context.trace_id, link.context.span_id) == (steps[2].context.trace_id, steps[2].context.span_id)
        assert link.attributes[A.LINK_TYPE] == A.LINK_FORK
        assert production.attributes[A.SHADOW_TRACE_ID] == format(shadow.context.trace_id, "032x")
        assert production.attributes[A.FORK_CHECKPOINT_ID] == pair.fork_checkpoint_id
        assert any(e.name == A.EVENT_FORK for e in production.events)
        branch_steps = sorted(
            (s for s in _children(spans, shadow) if s.name == A.SPAN_STEP), key=lambda s: s.attributes[A.STEP]
        )
        assert branch_steps[0].attributes[A.STEP] == 2  # the fork step opens the branch's trace
        [intervention] = [e for e in branch_steps[0].events if e.name == A.EVENT_INTERVENTION]
        assert intervention.attributes[A.ACTION] == "rollback"
        assert intervention.attributes[A.FEEDBACK_MODE] == "feedback"
        assert A.FEEDBACK_TEXT not in intervention.attributes
        assert shadow.attributes[A.RUN_INTERVENTIONS] == 1

        # outcomes, each with the pair's cell once both arms are in
        for run, success in ((production, pair.control_success), (shadow, pair.treatment_success)):
            assert {(o[A.OUTCOME_SUCCESS], o.get(A.PAIR_CELL)) for o in _outcomes(spans, run)} >= {(success, pair.cell)}
    assert cells == {"recover": "n01", "disrupt": "n10"}


def test_pilot_metrics_count_verdicts_interventions_and_pairs(pilot: tuple[CriticGuard, Telemetry]) -> None:
    guard, telemetry = pilot
    points = telemetry.metric_points()
    store = guard.store
    assert store is not None
    judged = [s for r in store.runs(guard.guard_key) for s in store.steps_of(r.run_id) if s.p_fail is not None]
    [histogram] = [p for p in points[A.METRIC_VERDICT_SCORE] if p.attributes[A.RUN_ROLE] == A.ROLE_PRODUCTION]
    shadow_hist = [p for p in points[A.METRIC_VERDICT_SCORE] if p.attributes[A.RUN_ROLE] == A.ROLE_SHADOW]
    assert histogram.count + sum(p.count for p in shadow_hist) == len(judged)
    assert histogram.count == 10  # five judged steps in each production run
    flags = {(p.attributes[A.RUN_ROLE], p.attributes[A.ARM]): p.value for p in points[A.METRIC_FLAGS]}
    assert flags[(A.ROLE_PRODUCTION, "control")] == 2
    interventions = {(p.attributes[A.ARM], p.attributes[A.ACTION]): p.value for p in points[A.METRIC_INTERVENTIONS]}
    assert interventions == {("treatment", "rollback"): 2}
    pairs = {p.attributes[A.PAIR_CELL]: p.value for p in points[A.METRIC_PAIRS]}
    assert pairs == {"n01": 1, "n10": 1}
    wealth = {p.attributes[A.MONITOR_HYPOTHESIS]: p.value for p in points[A.METRIC_MONITOR_WEALTH]}
    monitor = guard.lifecycle().monitor
    assert wealth == pytest.approx({"harm": monitor.harm_wealth, "benefit": monitor.benefit_wealth})
    [threshold] = {p.value for p in points[A.METRIC_MONITOR_THRESHOLD]}
    assert threshold == pytest.approx(2 / guard.config.alpha)  # alpha bounds both e-processes: alpha/2 each
