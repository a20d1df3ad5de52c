"""The ``critic-guard`` command line.

Each command is a thin function: parse options, delegate to a library module, render. Bad input (usage errors,
our own validation errors, unreadable files and stores) ends with one line on stderr and a documented exit code
(:mod:`critic_guard.cli_errors`), never a traceback; stored strings are shown as data, never as markup or terminal
control (:mod:`critic_guard.safe_text`).

One module per job: the app and its shared options (:mod:`~critic_guard.cli.common`), the statistics
(:mod:`~critic_guard.cli.analysis`), trace files (:mod:`~critic_guard.cli.traces`), report and status
(:mod:`~critic_guard.cli.reports`), human overrides (:mod:`~critic_guard.cli.overrides`) and pilots
(:mod:`~critic_guard.cli.pilots`); opening a store is :mod:`~critic_guard.cli.stores`. A new command is a function
in the module of its job, registered below (the order here is the order of ``--help``).
"""

from __future__ import annotations

from critic_guard.cli.analysis import analyze_command, power_command
from critic_guard.cli.common import app
from critic_guard.cli.overrides import disable_command, enable_command
from critic_guard.cli.pilots import demo_command, pilot_command
from critic_guard.cli.reports import report_command, status_command
from critic_guard.cli.traces import traces_command

__all__ = ["app"]

app.command("analyze")(analyze_command)
app.command("demo")(demo_command)
app.command("power")(power_command)
app.command("traces")(traces_command)
app.command("report")(report_command)
app.command("status")(status_command)
app.command("enable")(enable_command)
app.command("disable")(disable_command)
app.command("pilot")(pilot_command)
