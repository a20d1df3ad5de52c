"""critic-guard for LangChain ``create_agent`` agents and compiled LangGraph graphs.

* :class:`CriticGuardMiddleware`: judge every proposed step of a ``create_agent`` agent, roll it back or warn.
* :func:`guard_graph`: the same for any compiled graph with a checkpointer.
* :class:`ChatModelCritic`: an LLM judge over any chat model with structured output.
* :func:`to_neutral` / :func:`from_neutral`: LangChain messages <-> critic-guard's neutral messages.
* :mod:`critic_guard_langgraph.testing`: ``ScriptedChatModel``, a deterministic chat model for tests and demos.
"""

from critic_guard_langgraph.critic import DEFAULT_PROMPT, ChatModelCritic, CriticOutput, render_trajectory
from critic_guard_langgraph.graph import GuardedGraph, guard_graph
from critic_guard_langgraph.messages import from_neutral, insert_note, is_guard_note, to_neutral
from critic_guard_langgraph.middleware import CriticGuardMiddleware, CriticGuardState

__all__ = [
    "DEFAULT_PROMPT",
    "ChatModelCritic",
    "CriticGuardMiddleware",
    "CriticGuardState",
    "CriticOutput",
    "GuardedGraph",
    "from_neutral",
    "guard_graph",
    "insert_note",
    "is_guard_note",
    "render_trajectory",
    "to_neutral",
]
