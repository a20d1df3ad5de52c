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

import pytest

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


def test_the_benchmark_interval_of_the_median_is_the_order_statistics_interval() -> None:
    from benchmarks.import_time import median_interval

    # n = 15: P(Binomial(15, 1/2) <= 3) = 1.8% <= 2.5% < P(<= 4) = 5.9%, so ranks 4 and 12 (coverage 96.5%)
    assert median_interval([float(x) for x in range(15, 0, -1)]) == (8.0, 4.0, 12.0)
    assert median_interval([float(x) for x in range(6)]) == (2.5, 0.0, 5.0)  # n = 6: min and max (96.9%)
    with pytest.raises(ValueError, match="5 repeats are too few"):
        median_interval([1.0, 2.0, 3.0, 4.0, 5.0])
