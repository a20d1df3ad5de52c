"""Guard spans beside the LangChain instrumentations users already run: OpenInference and OpenLLMetry (Traceloop).

A real ``create_agent`` with a scripted model and the real ``CriticGuardMiddleware`` (mode observe, tracing to the
global provider the instrumentation also uses), plus a probe that records whether the instrumentation's span is
current inside a hook. Each case runs in a fresh interpreter: instrumentors patch LangChain globally and a global tracer
provider can be set only once per process.

What the cases pin down (and what the guard's integration relies on):
- OpenLLMetry wraps every node, middleware hooks included, and makes its span current: the run nests under it;
- OpenInference does not make its spans current inside hooks: the middleware passes its span as the run's
  ``trace_parent`` (``openinference.instrumentation.langchain.get_current_span()``), and the run nests under it;
- either way our step spans are children of our run span, whatever nodes the instrumentation adds.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

import pytest

from critic_guard.telemetry import attributes as A

_SCRIPT = """
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

which = sys.argv[1]
memory = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(memory))
trace.set_tracer_provider(provider)
if which == "openinference":
    from openinference.instrumentation.langchain import LangChainInstrumentor
    LangChainInstrumentor().instrument(tracer_provider=provider)
else:
    from opentelemetry.instrumentation.langchain import LangchainInstrumentor
    LangchainInstrumentor().instrument(tracer_provider=provider)

from langchain.agents import create_agent
from langchain.agents.middleware import AgentMiddleware
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from critic_guard import CriticGuard
from critic_guard_langgraph import CriticGuardMiddleware

current_at_start = []

class Scripted(GenericFakeChatModel):
    def bind_tools(self, tools, **kwargs):
        return self

@tool
def add(a: int, b: int) -> int:
    \"\"\"Add two integers.\"\"\"
    return a + b

class Probe(AgentMiddleware):  # only records whether the instrumentation's span is current inside a hook

    def before_agent(self, state, runtime):
        current_at_start.append(trace.get_current_span().get_span_context().is_valid)

guard = CriticGuard(lambda ctx: 0.2, agent_name="calc", mode="observe", store=None)  # global providers

model = Scripted(messages=iter([
    AIMessage(content="", tool_calls=[{"id": "t1", "name": "add", "args": {"a": 1, "b": 2}}]),
    AIMessage(content="3"),
]))
agent = create_agent(model, tools=[add], middleware=[Probe(), CriticGuardMiddleware(guard)])
agent.invoke({"messages": [{"role": "user", "content": "1+2?"}]})
guard.close()  # observe judges off the user's path: the run's span ends after its verdicts, which close() drains
spans = [
    {
        "name": s.name,
        "scope": s.instrumentation_scope.name,
        "trace": format(s.context.trace_id, "032x"),
        "span": format(s.context.span_id, "016x"),
        "parent": format(s.parent.span_id, "016x") if s.parent else None,
    }
    for s in memory.get_finished_spans()
]
print(json.dumps({"current_at_start": current_at_start, "spans": spans}))
"""

_PACKAGES = {
    "openinference": "openinference.instrumentation.langchain",
    "traceloop": "opentelemetry.instrumentation.langchain",
}


def _run(which: str) -> dict[str, object]:
    # both are in the dev extra: a missing one is a broken test environment, not a reason to skip
    assert importlib.util.find_spec(_PACKAGES[which]) is not None, (
        f"{_PACKAGES[which]} missing: pip install -e '.[dev]'"
    )
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), which], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(result, dict)
    return result


@pytest.mark.parametrize(
    ("which", "their_scope", "current_in_hooks"),
    [
        ("traceloop", "opentelemetry.instrumentation.langchain", True),
        ("openinference", "openinference.instrumentation.langchain", False),
    ],
)
def test_guard_spans_nest_under_the_instrumentations_span(which: str, their_scope: str, current_in_hooks: bool) -> None:
    result = _run(which)
    assert result["current_at_start"] == [current_in_hooks]
    spans = result["spans"]
    assert isinstance(spans, list)
    by_id = {s["span"]: s for s in spans}
    (run,) = [s for s in spans if s["name"] == "invoke_agent calc"]
    steps = [s for s in spans if s["name"] == A.SPAN_STEP]
    assert len(steps) == 2  # one per model call, however many nodes the instrumentation wraps
    assert all(s["parent"] == run["span"] and s["trace"] == run["trace"] for s in steps)
    parent = by_id[run["parent"]]
    assert parent["scope"] == their_scope and parent["trace"] == run["trace"]
    # the run sits in the instrumentation's trace of the request, beside its node / model / tool spans
    assert sum(1 for s in spans if s["scope"] == their_scope and s["trace"] == run["trace"]) >= 5
