"""Lean imports of the integration (issue 14): ``import critic_guard_langgraph`` adds no heavy module to LangChain's.

What ``import langchain.agents`` loads itself is not ours to judge (langsmith, for one, loads the OpenTelemetry SDK
when it is installed), so the check is on what our import adds after it, in a fresh interpreter: neither scipy,
matplotlib nor the OTel SDK. The time budget (at most 0.3 s more than ``langchain.agents``) is a measurement,
benchmarks/import_time.py, reported in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

QUICKSTART = Path(__file__).resolve().parents[3] / "examples" / "quickstart.py"
HEAVY = ("scipy", "matplotlib", "opentelemetry.sdk")


def run(script: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )


def test_the_integration_adds_no_heavy_module_to_langchain_agents() -> None:
    done = run(
        "import json, sys\n"
        "import langchain.agents\n"
        "before = set(sys.modules)\n"
        "import critic_guard_langgraph\n"
        "print(json.dumps(sorted(set(sys.modules) - before)))"
    )
    assert done.returncode == 0, done.stderr
    added: list[str] = json.loads(done.stdout.splitlines()[-1])
    assert "critic_guard_langgraph.middleware" in added and "critic_guard.guard" in added
    assert [m for m in added if any(m == h or m.startswith(h + ".") for h in HEAVY)] == []


def test_the_pilot_adapter_loads_on_first_use() -> None:
    done = run(
        "import sys\n"
        "import critic_guard_langgraph\n"
        "print('scipy' in sys.modules)\n"
        "from critic_guard_langgraph import LangGraphPilot\n"
        "print(LangGraphPilot.__module__, 'scipy' in sys.modules)"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "critic_guard_langgraph.pilot", "True"]


# Makes the OpenTelemetry SDK unimportable, as in an environment without the `otlp` extra.
NO_SDK = "import sys\nsys.modules['opentelemetry.sdk'] = None\n"


def test_a_guarded_agent_runs_with_the_opentelemetry_api_alone(tmp_path: Path) -> None:
    """The quickstart's guarded agent works without the SDK; asking for a trace file then names the extra."""
    done = run(
        NO_SDK + f"import runpy\nrunpy.run_path({str(QUICKSTART)!r})\n"
        "try:\n"
        "    from critic_guard.telemetry import configure_telemetry\n"
        "except ImportError as exc:\n"
        "    print(exc)\n",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("The sum is 10.\n")
    assert "step 2 attempt 0: p_fail=0.90 -> rollback" in done.stdout
    missing = done.stdout.splitlines()[-1]
    assert missing.startswith("a trace file or OTLP export needs the OpenTelemetry SDK")
    assert "pip install 'critic-guard[otlp]'" in missing


def test_the_cli_says_which_extra_its_pilot_and_traces_need(tmp_path: Path) -> None:
    for args, needs in (
        (["pilot", "critic_guard_langgraph.demo:suite"], "a trace file or OTLP export needs the OpenTelemetry SDK"),
        (["traces", str(tmp_path / "t.jsonl")], "reading a trace file needs the `otlp` extra"),
    ):
        done = run(NO_SDK + f"from critic_guard.cli import app\napp({args!r})", cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        [line] = done.stderr.splitlines()
        assert line.startswith(f"critic-guard: error: {needs}") and "pip install 'critic-guard[otlp]'" in line
    assert list(tmp_path.iterdir()) == []  # nothing was run, nothing written
