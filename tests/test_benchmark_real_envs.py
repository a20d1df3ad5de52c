"""The real-environment benchmark (benchmarks/real_envs.py) at smoke size: both environments, both designs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support import in_ci

try:
    import bfcl_eval  # noqa: F401
    import textworld  # noqa: F401
except ImportError:
    if in_ci():
        raise
    pytest.skip("textworld / bfcl-eval are not installed: run `make bench-envs`", allow_module_level=True)

from benchmarks import real_envs


@pytest.mark.slow
def test_smoke_run_reports_both_designs_per_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "real.json"
    results = real_envs.main(["--smoke", "--regime", "help", "--json", str(out)])
    printed = capsys.readouterr().out
    payload = json.loads(out.read_text())
    assert [(r["regime"], r["env"]) for r in payload["results"]] == [("help", "textworld"), ("help", "bfcl")]
    sizes = {"textworld": real_envs.SMOKE_SIZE["games"], "bfcl": real_envs.SMOKE_SIZE["bfcl_tasks"]}
    for env in results:
        fork, full = env.results["fork"], env.results["full"]
        for result in (fork, full):
            assert len(result.model_calls) == sizes[env.env]
            assert result.incomplete == 0 and result.counts.n == sizes[env.env]  # every pair complete
        # the same seeds: the full design's control run is the fork design's production run
        assert [p.control_success for p in fork.pairs] == [p.control_success for p in full.pairs]
        assert fork.flagged == sum(p.fork_step is not None for p in fork.pairs)
        assert f"| help | {env.env} | fork | {sizes[env.env]} | {fork.flagged} | 0 |" in printed
        summary = next(r for r in payload["results"] if r["env"] == env.env)
        assert summary["fork"]["model_calls_per_task"] == fork.calls_per_task
        assert summary["full"]["n"] == sizes[env.env]
    assert "full / fork" in printed
