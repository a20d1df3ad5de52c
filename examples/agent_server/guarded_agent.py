"""A guarded ``create_agent`` graph for LangGraph's Agent Server. Offline: a scripted model stands in for the LLM.

    cd examples/agent_server && langgraph dev --no-browser         # pip install "langgraph-cli[inmem]"
    CRITIC_GUARD_MODE=pilot CRITIC_GUARD_STORE=sqlite:///pilot.db langgraph dev --no-browser

The module exposes two graphs (``langgraph.json``): ``agent``, guarded by one ``CriticGuardMiddleware``, and
``unguarded``, the same agent without it, so a client can check that the guard changes nothing it serves in modes
``observe`` and ``pilot`` (and ``auto`` until intervention is proven to help). Neither is compiled with a
checkpointer: the server gives every run its own (the middleware forks shadow branches through it). Settings come
from the environment: ``CRITIC_GUARD_MODE`` (default ``observe``) and ``CRITIC_GUARD_STORE`` (default
``sqlite:///critic_guard.db``; ``postgresql://...`` to share one store between server replicas and a pilot, see
``pilot_suite.py``). The agent itself is in ``adder.py``.
"""

from __future__ import annotations

import os

from adder import AGENT_NAME, POLICY, SHADOW_TOOLS, add, critic, judge, llm
from langchain.agents import create_agent

from critic_guard_langgraph import CriticGuardMiddleware
from critic_guard_langgraph.testing import ScriptedChatModel

guard = CriticGuardMiddleware(
    critic,
    agent_name=AGENT_NAME,
    policy=POLICY,
    mode=os.environ.get("CRITIC_GUARD_MODE", "observe"),
    store=os.environ.get("CRITIC_GUARD_STORE", "sqlite:///critic_guard.db"),
    judge=judge,
    shadow_tools=SHADOW_TOOLS,
)
agent = create_agent(ScriptedChatModel(policy=llm), [add], middleware=[guard], name="guarded")
unguarded = create_agent(ScriptedChatModel(policy=llm), [add], name="unguarded")
