"""How the ``critic-guard`` command line fails: one line on stderr and a documented exit code, never a traceback.

Why: an operator runs these commands against stores and files that crashes, other versions or other tools
produced. Whatever is wrong with the input, the answer is one ``critic-guard: error: ...`` line that a script can
log and a person can act on, and an exit code from :data:`EXIT_CODES` (listed in ``--help`` and docs/report.md,
"Command line"). Stored strings quoted in a message are shown as data (:func:`critic_guard.safe_text.visible`).
"""

from __future__ import annotations

import importlib
import os
import sqlite3
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from critic_guard.safe_text import visible

__all__ = [
    "EXIT_CODES",
    "FAILED",
    "INTERNAL_ERROR",
    "OK",
    "USAGE_ERROR",
    "OneLineErrors",
    "database_errors",
    "exit_codes_epilog",
    "fail",
]

OK = 0
FAILED = 1
USAGE_ERROR = 2
INTERNAL_ERROR = 3

EXIT_CODES = {
    OK: "success",
    FAILED: "the command ran but something in it failed (pilot: a task failed; rerun to retry it)",
    USAGE_ERROR: "bad input: usage, an unreadable or invalid file, a store that cannot be opened or read",
    INTERNAL_ERROR: "an error critic-guard did not expect: a bug (CRITIC_GUARD_DEBUG=1 shows the traceback)",
}
DEBUG_VARIABLE = "CRITIC_GUARD_DEBUG"


def exit_codes_epilog() -> str:
    """The exit codes as ``--help`` shows them below the commands."""
    return "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + "."


def fail(message: str) -> NoReturn:
    """Print one error line on stderr and exit with the usage-error code (control characters shown escaped)."""
    typer.echo(f"critic-guard: error: {visible(message)}", err=True)
    raise typer.Exit(USAGE_ERROR)


def database_errors() -> tuple[type[BaseException], ...]:
    """The error classes of the store drivers in use (SQLite's, and psycopg's once it is loaded), for ``except``.

    Evaluated only when an exception is being matched, so naming psycopg costs nothing when it is not installed.
    """
    psycopg = sys.modules.get("psycopg")
    return (sqlite3.Error,) if psycopg is None else (sqlite3.Error, psycopg.Error)


_click_errors: Any = importlib.import_module(typer.BadParameter.__module__)
"""click's exceptions module as typer uses it: click's own, or the copy newer typers vendor (``typer._click``)."""


class OneLineErrors(TyperGroup):
    """typer's command group, with click's usage errors (an unknown option, ``--mode on``, a missing argument)
    printed as one ``critic-guard: error:`` line with a pointer to ``--help``, instead of a usage block and a panel,
    and anything a command did not expect as one ``critic-guard: internal error:`` line (exit 3) unless
    ``CRITIC_GUARD_DEBUG`` is set, when the traceback is what a bug report needs.
    """

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            result = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except _click_errors.ClickException as exc:
            if type(exc).__name__ == "NoArgsIsHelpError":  # bare `critic-guard`: the help, as typer shows it
                exc.show()
                sys.exit(exc.exit_code)
            ctx = getattr(exc, "ctx", None)
            hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
            typer.echo(f"critic-guard: error: {visible(exc.format_message())}{hint}", err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("critic-guard: aborted", err=True)
            sys.exit(FAILED)
        except Exception as exc:
            if os.environ.get(DEBUG_VARIABLE):
                raise
            what = " ".join(str(exc).split())
            typer.echo(
                f"critic-guard: internal error: {type(exc).__name__}: {visible(what)} "
                f"(a bug; {DEBUG_VARIABLE}=1 shows the traceback)",
                err=True,
            )
            sys.exit(INTERNAL_ERROR)
        sys.exit(result if isinstance(result, int) else OK)
