"""benchmarks/overhead.py at smoke size: every variant's row, the ratio to the floor, the split; the floor's shape.

Not timed: the figures are whatever this machine gives; the tests check that the script measures what it says.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from benchmarks import overhead
from benchmarks.scripted_agent import Counting, answer, build_agent, request

VARIANTS = [overhead.UNGUARDED, overhead.FLOOR, overhead.GUARD, overhead.TRACED, overhead.INLINE, overhead.BARE]


@pytest.mark.slow
@pytest.mark.parametrize("api", [[], ["--async"]], ids=["invoke", "ainvoke"])
def test_overhead_prints_cpu_per_step_for_every_variant_and_the_ratio_to_the_floor(
    api: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    summary = overhead.main(["--reps", "2", "--block", "1", "--warmup", "0", "--steps", "1", *api])
    out = capsys.readouterr().out
    variants = VARIANTS + ([overhead.ASYNC, overhead.ASYNC_INLINE] if api else [])
    assert list(summary.cpu) == variants
    assert all(summary.cpu[label].estimate > 0 and summary.wall[label] > 0 for label in variants)
    assert summary.added[overhead.UNGUARDED].estimate == 0.0
    for label in variants:
        line = next(line for line in out.splitlines() if line.startswith(f"  {label}  "))
        assert float(line[len(label) + 2 :].split()[0]) == pytest.approx(summary.cpu[label].estimate, abs=0.05)
    for label, ratio in ((overhead.GUARD, summary.ratio_to_floor), (overhead.INLINE, summary.inline_ratio_to_floor)):
        assert not math.isnan(ratio.estimate)
        assert f"{label} / floor, added CPU per step: {ratio.show(2)}x; target <= 1.5x: " in out
    assert len(summary.split) == (6 if api else 5)
    assert all(not math.isnan(part.estimate) for part in summary.split.values())
    assert ("ainvoke" in out) == bool(api)


def test_the_floor_writes_its_private_record_back_at_every_hook(tmp_path: Path) -> None:
    """The floor must do the work of the guard's shape (three hooks, a record in the state), or the ratio lies."""
    agent = build_agent(Counting(3), [overhead.FloorMiddleware()], checkpointer="memory", path=tmp_path / "c.db")
    config = {"configurable": {"thread_id": "t"}}
    out = agent.invoke(request(), config)
    assert out["messages"][-1].text == answer(3)
    assert "floor_record" not in out  # private: not in the agent's output
    assert agent.get_state(config).values["floor_record"] == {"run": None, "step": 4}  # 4 model calls, run ended
