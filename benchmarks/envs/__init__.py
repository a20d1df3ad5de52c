"""Real task environments for the benchmarks, behind one framework-neutral protocol (see README.md here).

Only the protocol is imported here: each environment module imports its own optional package (``textworld``,
``bfcl_eval``), installed by ``make bench-envs``.
"""

from benchmarks.envs.base import Environment, TaskEnded, ToolCall, ToolSpec

__all__ = ["Environment", "TaskEnded", "ToolCall", "ToolSpec"]
