"""Lean imports of the core (issue 14): importing critic-guard loads neither scipy, matplotlib nor the OTel SDK.

The statistics (scipy), the report's figures (matplotlib) and the telemetry set-up (the OpenTelemetry SDK, an
optional extra) load where they are used. Each check runs in a fresh interpreter, since this test process has
imported everything already. The integration's budget against ``langchain.agents`` is tested in
integrations/langgraph/tests/test_import_cost.py and measured by benchmarks/import_time.py.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

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


FRAMEWORKS = ("langchain", "langchain_core", "langgraph", "critic_guard_langgraph")
CORE = Path(__file__).resolve().parents[1] / "critic_guard"
# what each lower layer may import from the core (docs/architecture.md, "Who may import whom"); itself always
LAYERS = {
    "types": set(),
    "stats": set(),
    "policy": {"types"},
    "config": {"policy", "types", "store.urls"},
    "lifecycle": {"config", "policy", "stats", "types"},
    "store": {"config", "lifecycle", "policy", "stats", "types"},
}
LEAVES = {"_lazy"}  # stdlib-only helpers every layer may use (critic_guard/_lazy.py: a package's lazy __getattr__)


def core_imports(path: Path) -> set[str]:
    """Every module a file imports, at the top or lazily inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_no_core_module_imports_a_framework_even_lazily() -> None:
    offenders = {
        str(path.relative_to(CORE)): sorted(m for m in core_imports(path) if m.split(".")[0] in FRAMEWORKS)
        for path in CORE.rglob("*.py")
    }
    assert {name: mods for name, mods in offenders.items() if mods} == {}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_the_lower_layers_import_only_downwards(layer: str) -> None:
    files = [CORE / f"{layer}.py"] if (CORE / f"{layer}.py").exists() else sorted((CORE / layer).rglob("*.py"))
    assert files
    allowed = LAYERS[layer] | LEAVES | {layer}
    used = {
        module.removeprefix("critic_guard.")  # the package itself stays "critic_guard": it re-exports upper layers
        for path in files
        for module in core_imports(path)
        if module.split(".")[0] == "critic_guard"
    }
    assert sorted(m for m in used if not any(m == a or m.startswith(a + ".") for a in allowed)) == []
