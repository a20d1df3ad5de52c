"""critic-guard for LangChain ``create_agent`` agents and compiled LangGraph graphs.

* :class:`CriticGuardMiddleware`: judge every proposed step of a ``create_agent`` agent, roll it back or warn.
* :func:`guard_graph`: the same for any compiled graph with a checkpointer.
* :class:`ChatModelCritic`: an LLM judge over any chat model with structured output.
* :func:`to_neutral` / :func:`from_neutral`: LangChain messages <-> critic-guard's neutral messages.
* Pilots (counterfactual shadow branches): ``CriticGuardMiddleware(critic, mode="pilot", judge=...,
  shadow_tools=...)`` in ``create_agent(..., middleware=[...], checkpointer=...)`` forks at the first flag and
  lets a branch run only the tools declared safe for it (:class:`ToolSafety`, ``READ_ONLY``, ``FORKED``);
  :func:`is_shadow_branch` tells other middlewares and tools to skip their own side effects;
  :class:`LangGraphPilot` runs a pilot suite (``critic-guard pilot``).
* :mod:`critic_guard_langgraph.testing`: ``ScriptedChatModel``, a deterministic chat model for tests and demos.

The names above are what users call; the parts they are built from stay importable from their modules
(``critic_guard_langgraph.runner.ShadowRunner``, ``.shadow.ShadowToolGate``, ``.fork.clone_checkpoint``,
``.messages.insert_note``, ``.critic.render_trajectory``, ...).

``LangGraphPilot`` is loaded on first use (module ``__getattr__``): the pilot runner brings the statistics (numpy,
scipy), which a guarded production agent never needs, so ``import critic_guard_langgraph`` stays within 0.3 s of
``import langchain.agents`` (benchmarks/import_time.py, integrations/langgraph/tests/test_import_cost.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from critic_guard._lazy import lazy_getattr
from critic_guard_langgraph.critic import ChatModelCritic, CriticOutput
from critic_guard_langgraph.fork import ForkError
from critic_guard_langgraph.graph import GuardedGraph, guard_graph
from critic_guard_langgraph.messages import from_neutral, is_guard_note, to_neutral
from critic_guard_langgraph.middleware import CriticGuardMiddleware
from critic_guard_langgraph.shadow import FORKED, READ_ONLY, ToolSafety, is_shadow_branch

if TYPE_CHECKING:
    from critic_guard_langgraph.pilot import LangGraphPilot

_LAZY = {"LangGraphPilot": "critic_guard_langgraph.pilot"}

__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = [
    "FORKED",
    "READ_ONLY",
    "ChatModelCritic",
    "CriticGuardMiddleware",
    "CriticOutput",
    "ForkError",
    "GuardedGraph",
    "LangGraphPilot",
    "ToolSafety",
    "from_neutral",
    "guard_graph",
    "is_guard_note",
    "is_shadow_branch",
    "to_neutral",
]
