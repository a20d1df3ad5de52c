"""Lean imports of the core (issue 14): importing critic-guard loads neither scipy, matplotlib nor the OTel SDK.

The statistics (scipy), the report's figures (matplotlib) and the telemetry set-up (the OpenTelemetry SDK, an
optional extra) load where they are used. Each check runs in a fresh interpreter, since this test process has
imported everything already. The integration's budget against ``langchain.agents`` is tested in
integrations/langgraph/tests/test_import_cost.py and measured by benchmarks/import_time.py.
"""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("scipy", "matplotlib", "opentelemetry.sdk")


def loaded_after(code: str) -> list[str]:
    """The modules a fresh interpreter has loaded after running ``code``."""
    script = f"import json, sys\n{code}\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return modules


def heavy(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY)]


def test_importing_the_core_and_its_guard_loads_no_heavy_module() -> None:
    modules = loaded_after(
        "import critic_guard, critic_guard.guard, critic_guard.telemetry, critic_guard.stats.counts, critic_guard.store"
    )
    assert "critic_guard.guard" in modules and "critic_guard.stats.counts" in modules
    assert heavy(modules) == []
    assert not [m for m in modules if m.split(".")[0] in ("langchain", "langchain_core", "langgraph")]


def test_the_statistics_load_scipy_on_first_use() -> None:
    modules = loaded_after("from critic_guard.stats import analyze, PairedCounts\nanalyze(PairedCounts(5, 3, 1, 6))")
    assert "scipy.stats" in modules and "critic_guard.stats.report" in modules
    assert "matplotlib" not in modules and "opentelemetry.sdk" not in modules
