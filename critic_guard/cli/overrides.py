"""``critic-guard enable KEY`` and ``critic-guard disable KEY``: a human override of a guard's lifecycle, recorded in
the store with its reason and traced (docs/report.md, "Status and overrides"). The two commands differ only in the
state they set, so one function builds both."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from critic_guard.cli.common import StoreUrl
from critic_guard.cli.stores import open_cli_store, unreadable_store
from critic_guard.cli_errors import database_errors, fail
from critic_guard.config import DEFAULT_STORE_URL
from critic_guard.lifecycle import GuardState, LifecycleError
from critic_guard.safe_text import visible

__all__ = ["disable_command", "enable_command"]

Reason = Annotated[
    str | None, typer.Option("--reason", help="Why (recorded with the transition; required).", show_default=False)
]
TraceFile = Annotated[
    Path | None,
    typer.Option(
        "--trace-file", help="Also emit the transition event to this OTLP/JSON lines file.", show_default=False
    ),
]
ResetMonitor = Annotated[
    bool, typer.Option("--reset-monitor", help="Start fresh evidence (needed against a standing proof).")
]
GuardKey = Annotated[str, typer.Argument(help="The guard key (see `critic-guard status`).")]


def _override(key: str, state: GuardState, reason: str | None, store_url: str, trace_file: Path | None,
              reset_monitor: bool) -> None:  # fmt: skip
    from critic_guard.report.data import UnknownGuardKeyError
    from critic_guard.report.override import apply_override, otlp_configured, trace_transition

    if reason is None or not reason.strip():
        fail("--reason TEXT is required: it is recorded with the transition")
    with open_cli_store(store_url) as store:
        try:
            transition = apply_override(store, key, state, reason=reason, reset_monitor=reset_monitor)
        except (UnknownGuardKeyError, LifecycleError) as exc:
            hint = " (add --reset-monitor)" if "reset_monitor=True" in str(exc) else ""
            fail(f"{exc}{hint}")
        except database_errors() as exc:
            fail(unreadable_store(store_url, exc))
    moved = f"{transition.from_state.value} -> {transition.to_state.value}"
    typer.echo(f"{visible(key)}: {moved} ({visible(transition.reason)})")
    if trace_file is not None or otlp_configured():
        try:
            trace_transition(transition, trace_file)
        except (ImportError, ValueError, OSError) as exc:  # recorded already: say so, and why it was not traced
            typer.echo(
                f"critic-guard: warning: the transition is recorded but was not traced: {visible(exc)}", err=True
            )


def _override_command(state: GuardState, doc: str) -> Callable[..., None]:
    """The command that sets ``state``; ``doc`` is its ``--help`` text."""

    def command(
        key: GuardKey,
        reason: Reason = None,
        store_url: StoreUrl = DEFAULT_STORE_URL,
        trace_file: TraceFile = None,
        reset_monitor: ResetMonitor = False,
    ) -> None:
        _override(key, state, reason, store_url, trace_file, reset_monitor)

    command.__doc__ = doc
    return command


enable_command = _override_command(
    GuardState.ENABLED,
    "Enable intervention for a guard key by hand (recorded as a lifecycle transition with the reason).",
)
disable_command = _override_command(
    GuardState.DISABLED,
    "Disable intervention for a guard key by hand (recorded as a lifecycle transition with the reason).",
)
