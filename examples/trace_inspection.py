"""Trace inspection: a pilot's traces in a local file, shown as trees, and queried for what the critic did. Offline.

`configure_telemetry` writes OTLP/JSON lines (what an OpenTelemetry Collector's `otlpjsonfile` receiver reads, or
Phoenix / Jaeger through a collector: docs/telemetry.md); the guard traces every run to it by itself. Then:

    python examples/trace_inspection.py                # a 12-task shadow pilot; then, from the file alone, each
                                                       # fork: the flagged step, its verdict, both outcomes, the cell
    critic-guard traces critic_guard_traces.jsonl      # every trace of the file as a tree in the terminal
"""

import asyncio

from rich.console import Console
from shadow_pilot import suite  # the suite of examples/shadow_pilot.py

from critic_guard.pilot import run_pilot
from critic_guard.telemetry import attributes as A
from critic_guard.telemetry import configure_telemetry
from critic_guard.telemetry.otlp_json import read_trace_file

TRACE_FILE = "critic_guard_traces.jsonl"


def main(tasks: int = 12) -> None:
    with configure_telemetry(file=TRACE_FILE, otlp=False) as telemetry:  # flushed and closed on exit
        pilot = suite()
        with pilot.guard(
            mode="pilot", store="sqlite:///critic_guard_traces.db", telemetry=telemetry.telemetry
        ) as guard:
            asyncio.run(run_pilot(pilot, guard, concurrency=2, limit=tasks))

    spans = read_trace_file(TRACE_FILE).spans
    runs = [s for s in spans if s.attributes.get(A.GEN_AI_OPERATION_NAME) == "invoke_agent"]
    by_span = {(s.trace_id, s.span_id): s for s in spans}
    console = Console(width=110)
    console.print(f"{len(runs)} runs in {TRACE_FILE}; the shadow branches and the production steps they forked at:")
    for shadow in (r for r in runs if r.attributes[A.RUN_ROLE] == A.ROLE_SHADOW):
        (link,) = shadow.links
        step = by_span[(link.trace_id, link.span_id)]  # the production step span the branch forked at
        verdict = next(e for e in step.events if e.name == A.EVENT_EVALUATION_RESULT)
        production = by_span[(step.trace_id, step.parent_span_id)]
        console.print(
            f"  {_task(production)}: step {step.attributes[A.STEP]} "
            f"flagged (p_fail {verdict.attributes[A.GEN_AI_EVALUATION_SCORE_VALUE]:.2f}); "
            f"control {'succeeded' if production.attributes[A.OUTCOME_SUCCESS] else 'failed'}, "
            f"treatment {'succeeded' if shadow.attributes[A.OUTCOME_SUCCESS] else 'failed'} "
            f"-> cell {shadow.attributes.get(A.PAIR_CELL) or production.attributes.get(A.PAIR_CELL)}"
        )


def _task(production):  # the pilot names each run's thread pilot-<task id>-<attempt id>
    return production.attributes[A.GEN_AI_CONVERSATION_ID].removeprefix("pilot-").rsplit("-", 1)[0]


if __name__ == "__main__":
    main()
