"""For every test session (tests/ and integrations/langgraph/tests/): the versions tested, isolation, and the shared
PostgreSQL fixtures (``postgres_url``: one server per session; ``postgres_schema_url``: a fresh schema per test;
tests/pg_fixtures.py).

The header names the versions that matter, since the resolver picks them per machine and ``make test`` runs the
integration tests in two environments (newest and oldest supported LangChain).

Tests write only to temporary paths. Two things used to leak into the repository root (about 20 MB of traces
per ``make test``):

* OpenTelemetry's global providers. A test that runs ``critic-guard pilot`` in-process installs the CLI's SDK
  provider as the process-wide one (``configure_telemetry(set_global=True)``, right for a CLI process); every
  guard of every later test then traced into its file exporter, whose path is relative to the working directory.
  After each test, a provider the test installed is shut down and the API's globals are reset, as
  ``opentelemetry.test.globals_test`` (opentelemetry-test-utils, which pins exact SDK versions) does.
* Default output paths relative to the working directory. ``_repository_root_untouched`` fails the session when a
  test created or changed one of them here.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.util._once import Once

from tests.pg_fixtures import postgres_schema_url, postgres_url

__all__ = ["postgres_schema_url", "postgres_url"]  # fixtures for both test directories

ROOT = Path(__file__).resolve().parent
# What the CLI, the guard and the report write by default, relative to the working directory.
DEFAULT_OUTPUTS = (
    "critic_guard.db",
    "critic_guard_traces.jsonl",
    "critic_guard_traces.metrics.jsonl",
    "critic_guard_report.html",
    "figures",
    "harmful.db",
)

_REPORTED = (
    "critic-guard",
    "critic-guard-langgraph",
    "langchain",
    "langchain-core",
    "langgraph",
    "langgraph-checkpoint",
    "langgraph-checkpoint-sqlite",
    "langgraph-checkpoint-postgres",
    "numpy",
    "scipy",
    "pydantic",
    "opentelemetry-api",
    "opentelemetry-sdk",
    "psycopg",
)


def pytest_report_header() -> list[str]:
    versions = []
    for name in _REPORTED:
        try:
            versions.append(f"{name}={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name}=absent")
    return ["versions: " + ", ".join(versions)]


def _reset_otel_globals() -> None:
    """Shut down the global providers a test installed and put the API's placeholders back."""
    tracer_provider = trace.get_tracer_provider()
    if not isinstance(tracer_provider, trace.ProxyTracerProvider):
        getattr(tracer_provider, "shutdown", lambda: None)()
        trace._TRACER_PROVIDER_SET_ONCE = Once()
        trace._TRACER_PROVIDER = None
        trace._PROXY_TRACER_PROVIDER = trace.ProxyTracerProvider()
    meter_provider = metrics.get_meter_provider()
    if not isinstance(meter_provider, metrics_internal._ProxyMeterProvider):
        if not getattr(meter_provider, "_shutdown", True):  # the SDK warns when shut down twice
            meter_provider.shutdown()  # type: ignore[attr-defined]
        metrics_internal._METER_PROVIDER_SET_ONCE = Once()
        metrics_internal._METER_PROVIDER = None
        metrics_internal._PROXY_METER_PROVIDER = metrics_internal._ProxyMeterProvider()


@pytest.fixture(autouse=True)
def _otel_globals_reset() -> Iterator[None]:
    yield
    _reset_otel_globals()


def _snapshot() -> dict[str, tuple[int, int] | None]:
    """Size and modification time of each default output in the repository root (None: absent)."""
    state: dict[str, tuple[int, int] | None] = {}
    for name in DEFAULT_OUTPUTS:
        path = ROOT / name
        state[name] = (path.stat().st_size, path.stat().st_mtime_ns) if path.exists() else None
    return state


@pytest.fixture(autouse=True, scope="session")
def _repository_root_untouched() -> Iterator[None]:
    before = _snapshot()
    yield
    changed = sorted(name for name, state in _snapshot().items() if state != before[name])
    if changed:
        pytest.fail(f"tests wrote to the repository root (use tmp_path): {', '.join(changed)}", pytrace=False)
